//! The randomized nemesis in its CI form, on a single-node coordinator and on a 3-node cluster
//! (one after the other: two at once starve each other on two cores): bounded by
//! VERDICT_NEMESIS_SECS (default 45 s of faults for the single node, 30 s for the cluster);
//! VERDICT_NEMESIS_SEED replays a seed. The long form is `verdict nemesis [--cluster 3]`.

use std::time::Duration;

use verdict::chaos::nemesis::{run, NemesisConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// One nemesis at a time.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

async fn survives(coordinator_nodes: usize, default_secs: u64) {
    let _turn = ONE_AT_A_TIME.acquire().await.unwrap();
    let seed = env_u64("VERDICT_NEMESIS_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("VERDICT_NEMESIS_SECS").unwrap_or(default_secs);
    let dir = tempfile::tempdir().unwrap();
    let config = NemesisConfig {
        exe: env!("CARGO_BIN_EXE_verdict").into(),
        dir: dir.path().into(),
        duration: Duration::from_secs(secs),
        seed,
        banks: 3,
        coordinator_nodes,
        accounts_per_bank: 4,
        workers: 8,
        patience: Duration::from_secs(60),
    };
    eprintln!(
        "nemesis ({coordinator_nodes} coordinator nodes) seed {seed} ({secs} s); replay with \
         VERDICT_NEMESIS_SEED={seed}"
    );
    let summary = run(&config).await.expect("nemesis run");
    println!("{summary}");
    assert!(
        summary.report.violations.is_empty(),
        "seed {seed}: {:#?}",
        summary.report.violations
    );
    assert!(
        summary.report.committed > 0,
        "seed {seed}: nothing committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_survives_the_nemesis() {
    survives(1, 45).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_survives_the_nemesis_on_a_cluster() {
    survives(3, 30).await;
}
