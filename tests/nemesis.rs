//! The randomized nemesis in its CI form: bounded by VERDICT_NEMESIS_SECS (default 45 s of
//! faults); VERDICT_NEMESIS_SEED replays a seed. The long form is `verdict nemesis`.

use std::time::Duration;

use verdict::chaos::nemesis::{run, NemesisConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_survives_the_nemesis() {
    let seed = env_u64("VERDICT_NEMESIS_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("VERDICT_NEMESIS_SECS").unwrap_or(45);
    let dir = tempfile::tempdir().unwrap();
    let config = NemesisConfig {
        exe: env!("CARGO_BIN_EXE_verdict").into(),
        dir: dir.path().into(),
        duration: Duration::from_secs(secs),
        seed,
        banks: 3,
        accounts_per_bank: 4,
        workers: 8,
        patience: Duration::from_secs(60),
    };
    eprintln!("nemesis seed {seed} ({secs} s); replay with VERDICT_NEMESIS_SEED={seed}");
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
