//! The crash matrix: for every named crash point, a coordinator and two banks run transfers
//! until the armed process aborts there (as SIGKILL would); it is restarted on the same data
//! directory, the cluster settles, and every invariant is checked: participants agree with the
//! coordinator, every COMMITTED told to a client is applied everywhere, money is conserved,
//! nothing stays prepared. Needs `--features failpoints`.

use std::path::Path;
use std::time::Duration;

use verdict::chaos::cluster::{Cluster, ClusterConfig};
use verdict::chaos::crash::{judge, transfer_until_exit};
use verdict::chaos::ledger::{Attempt, Ledger, Reported};
use verdict::client::Client;
use verdict::failpoint::CRASH_POINTS;

fn config(dir: &Path) -> ClusterConfig {
    verdict::chaos::crash::config(Path::new(env!("CARGO_BIN_EXE_verdict")), dir, 1)
}

/// Crashes the coordinator at its points and at the storage points, a bank at its points.
async fn crash_at(point: &str) {
    let on_coordinator = ["coordinator::", "storage::"];
    let victim = match on_coordinator.iter().any(|p| point.starts_with(p)) {
        true => 0,
        false => 1,
    };
    crash_on(point, victim).await;
}

/// Crashes node `victim` (0: the coordinator, then the banks) at `point`.
async fn crash_on(point: &str, victim: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&config(dir.path())).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 100).await.unwrap();
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
    coordinator_storage_before_checkpoint_flush => "storage::before_checkpoint_flush",
    coordinator_storage_after_redo_restart => "storage::after_redo_restart",
}

#[tokio::test]
async fn bank_storage_before_checkpoint_flush() {
    crash_on("storage::before_checkpoint_flush", 1).await;
}

#[tokio::test]
async fn bank_storage_after_redo_restart() {
    crash_on("storage::after_redo_restart", 1).await;
}

#[test]
fn the_matrix_covers_every_crash_point() {
    assert_eq!(MATRIX, CRASH_POINTS);
}

/// A Submit whose coordinator dies at `point` before answering, retried with the same request id
/// once the coordinator is back: every retry answers the same transaction and outcome, and the
/// judge finds its transfer applied exactly when COMMITTED, and once.
async fn submit_retried_across_a_crash_at(point: &str) -> Attempt {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&config(dir.path())).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 100).await.unwrap();
    {
        let coordinator = cluster.nodes().next().unwrap();
        coordinator.kill().await.unwrap();
        coordinator.arm(point);
        coordinator.start().await.unwrap();
    }
    let banks = cluster.bank_clients();
    let transfer = (0, 2, 10);
    let client = Client::new(&cluster.node_urls(), Duration::from_secs(2)).unwrap();
    let cut_short = ledger.submit(&banks, &client, "transfer-1", transfer).await;
    assert_eq!(
        cut_short.reported,
        Reported::Unknown,
        "answered before {point}"
    );
    let crashed = cluster.nodes().next().unwrap();
    assert!(
        crashed.exits_within(Duration::from_secs(5)).await,
        "no crash at {point}"
    );

    cluster.heal().await.unwrap();
    let client = Client::new(&cluster.node_urls(), Duration::from_secs(10)).unwrap();
    let retried = ledger.submit(&banks, &client, "transfer-1", transfer).await;
    let again = ledger.submit(&banks, &client, "transfer-1", transfer).await;
    assert!(
        retried.txn.is_some(),
        "the retry after {point} was not answered"
    );
    assert_eq!(
        (retried.txn, retried.reported),
        (again.txn, again.reported),
        "two retries of one Submit answered differently"
    );
    judge(&mut cluster, &ledger, std::slice::from_ref(&retried), point)
        .await
        .unwrap();
    cluster.stop().await.unwrap();
    retried
}

#[tokio::test]
async fn a_submit_decided_before_its_coordinator_crashed_is_committed_to_its_retry() {
    let retried = submit_retried_across_a_crash_at("coordinator::after_decision_durable").await;
    assert_eq!(retried.reported, Reported::Committed);
}

#[tokio::test]
async fn a_submit_undecided_when_its_coordinator_crashed_is_applied_at_most_once() {
    // Its unforced begin record may or may not have reached the disk: the retry finds the
    // transaction aborted by recovery, or begins it anew; either way the judge holds.
    submit_retried_across_a_crash_at("coordinator::after_all_votes").await;
}
