//! The crash matrix on a 3-node cluster: for every coordinator crash point, the leader aborts
//! there (as SIGKILL would) while transfers run; another node takes over, the crashed one comes
//! back, and every invariant is checked as in the single-node matrix: every COMMITTED told to a
//! client is applied at both banks, nothing told ABORTED is, money is conserved, nothing stays
//! prepared. And a leader killed and started again at once, so that it resumes its term. Needs
//! `--features failpoints`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{running_leader as leader, Load, PATIENCE};
use verdict::chaos::cluster::{Cluster, ClusterConfig};
use verdict::chaos::crash::{judge, transfer_until_exit};
use verdict::chaos::ledger::Ledger;
use verdict::cluster::admin;

fn config(dir: &Path) -> ClusterConfig {
    verdict::chaos::crash::config(Path::new(env!("CARGO_BIN_EXE_verdict")), dir, 3)
}

/// Kills leaders other than `wanted` (restarting each) until `wanted` leads.
async fn make_leader(cluster: &mut Cluster, wanted: usize) {
    let all: Vec<usize> = (0..cluster.coordinators.len()).collect();
    for _ in 0..20 {
        let now = leader(cluster, &all).await;
        if now == wanted {
            return;
        }
        // A node behind the others cannot win the election the kill starts.
        caught_up(cluster).await;
        cluster.coordinators[now].kill().await.unwrap();
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != now).collect();
        leader(cluster, &others).await;
        cluster.coordinators[now].start().await.unwrap();
    }
    panic!("node {} never became leader", wanted + 1);
}

/// Waits until every node holds the same log.
async fn caught_up(cluster: &Cluster) {
    let urls: Vec<String> = cluster.coordinators.iter().map(|n| n.url()).collect();
    let same = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut ends = Vec::new();
            for url in &urls {
                ends.push(
                    admin::status(url)
                        .await
                        .ok()
                        .map(|s| s["last_log_index"].clone()),
                );
            }
            if ends.iter().all(|end| end.is_some() && *end == ends[0]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    same.expect("the nodes' logs never came level");
}

async fn crash_leader_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&config(dir.path())).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 100).await.unwrap();
    let victim = &mut cluster.coordinators[0];
    victim.kill().await.unwrap();
    victim.arm(point);
    victim.start().await.unwrap();
    make_leader(&mut cluster, 0).await;

    let client = cluster.client(Duration::from_secs(5)).unwrap();
    let (mut attempts, crashed) = transfer_until_exit(&mut cluster, 0, &ledger, &client).await;
    assert!(
        crashed,
        "crash point {point} was never reached on the leader"
    );

    // The others take over; then the crashed node returns.
    leader(&cluster, &[1, 2]).await;
    let banks = cluster.bank_clients();
    for _ in 0..3 {
        attempts.push(ledger.transfer(&banks, &client, (1, 3, 5)).await);
    }
    cluster.heal().await.unwrap();
    let report = judge(&mut cluster, &ledger, &attempts, point)
        .await
        .unwrap();
    assert!(
        report.committed > 0,
        "{point}: nothing committed, so nothing was checked"
    );
    cluster.stop().await.unwrap();
}

macro_rules! leader_crash_matrix {
    ($($test:ident => $point:literal,)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let _one = support::one_cluster_at_a_time().await;
                crash_leader_at($point).await;
            }
        )*
    };
}

leader_crash_matrix! {
    leader_after_begin => "coordinator::after_begin",
    leader_after_enlist => "coordinator::after_enlist",
    leader_after_prepare_send => "coordinator::after_prepare_send",
    leader_after_all_votes => "coordinator::after_all_votes",
    leader_before_decision_write => "coordinator::before_decision_write",
    leader_after_decision_durable => "coordinator::after_decision_durable",
    leader_before_phase2_send => "coordinator::before_phase2_send",
    leader_after_phase2_send => "coordinator::after_phase2_send",
    leader_before_end_record => "coordinator::before_end_record",
}

/// A leader SIGKILLed under load and started again at once may resume its term before the
/// others elect anyone (openraft keeps its committed vote): its engine must still recover every
/// decision its previous life had made durable, some of them not yet applied when it restarts.
/// Five kills; the checker then runs on the whole history.
#[tokio::test]
async fn a_leader_restarted_at_once_loses_no_decision() {
    let _one = support::one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&config(dir.path())).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 1000).await.unwrap();
    let all = [0, 1, 2];

    let load = Load::start(&cluster, &ledger, &[(0, 2), (3, 1), (1, 3), (2, 0)], 1);

    let mut resumed = 0;
    for _ in 0..5 {
        load.more(20).await;
        let victim = leader(&cluster, &all).await;
        let term = admin::status(&cluster.coordinators[victim].url())
            .await
            .unwrap()["term"]
            .clone();
        cluster.coordinators[victim].kill().await.unwrap();
        cluster.coordinators[victim].start().await.unwrap();
        let next = leader(&cluster, &all).await;
        let status = admin::status(&cluster.coordinators[next].url())
            .await
            .unwrap();
        resumed += usize::from(next == victim && status["term"] == term);
    }
    let attempts = load.stop().await;
    eprintln!("a leader resumed its term after {resumed} of 5 kills");
    let report = judge(&mut cluster, &ledger, &attempts, "leader restarted at once")
        .await
        .unwrap();
    assert!(report.committed > 0, "{report:?}");
    cluster.stop().await.unwrap();
}
