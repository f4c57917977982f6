//! The crash matrix: for every named crash point, a coordinator and two banks run transfers
//! until the armed process aborts there (as SIGKILL would); it is restarted on the same data
//! directory, the cluster settles, and every invariant is checked: participants agree with the
//! coordinator, every COMMITTED told to a client is applied everywhere, money is conserved,
//! nothing stays prepared. Needs `--features failpoints`.

use std::path::Path;
use std::time::Duration;

use verdict::chaos::cluster::{Cluster, ClusterConfig};
use verdict::chaos::crash::{judge, transfer_until_exit};
use verdict::chaos::ledger::Ledger;
use verdict::client::Client;
use verdict::failpoint::CRASH_POINTS;

fn config(dir: &Path) -> ClusterConfig {
    verdict::chaos::crash::config(Path::new(env!("CARGO_BIN_EXE_verdict")), dir, 1)
}

async fn crash_at(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&config(dir.path())).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 100).await.unwrap();
    let victim = if point.starts_with("coordinator::") {
        0
    } else {
        1
    };
    {
        let node = cluster.nodes().nth(victim).unwrap();
        node.kill().await.unwrap();
        node.arm(point);
        node.start().await.unwrap();
    }
    let client = Client::new(&cluster.node_urls(), Duration::from_secs(5)).unwrap();
    let (mut attempts, crashed) = transfer_until_exit(&mut cluster, victim, &ledger, &client).await;
    assert!(crashed, "crash point {point} was never reached");

    cluster.heal().await.unwrap();
    // Liveness: the cluster works again.
    let banks = cluster.bank_clients();
    for _ in 0..3 {
        attempts.push(ledger.transfer(&banks, &client, (1, 3, 5)).await);
    }
    judge(&mut cluster, &ledger, &attempts, point)
        .await
        .unwrap();
    cluster.stop().await.unwrap();
}

macro_rules! crash_matrix {
    ($($test:ident => $point:literal,)*) => {
        const MATRIX: &[&str] = &[$($point),*];
        $(
            #[tokio::test]
            async fn $test() {
                crash_at($point).await;
            }
        )*
    };
}

crash_matrix! {
    coordinator_after_begin => "coordinator::after_begin",
    coordinator_after_enlist => "coordinator::after_enlist",
    coordinator_before_prepare_send => "coordinator::before_prepare_send",
    coordinator_after_prepare_send => "coordinator::after_prepare_send",
    coordinator_after_all_votes => "coordinator::after_all_votes",
    coordinator_before_decision_write => "coordinator::before_decision_write",
    coordinator_after_decision_durable => "coordinator::after_decision_durable",
    coordinator_before_phase2_send => "coordinator::before_phase2_send",
    coordinator_after_phase2_send => "coordinator::after_phase2_send",
    coordinator_before_end_record => "coordinator::before_end_record",
    participant_before_prepared_record => "participant::before_prepared_record",
    participant_after_prepared_record => "participant::after_prepared_record",
    participant_before_vote_sent => "participant::before_vote_sent",
    participant_before_commit_applied => "participant::before_commit_applied",
    participant_after_commit_applied => "participant::after_commit_applied",
    participant_before_ack => "participant::before_ack",
}

#[test]
fn the_matrix_covers_every_crash_point() {
    assert_eq!(MATRIX, CRASH_POINTS);
}
