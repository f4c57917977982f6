//! The crash matrix: for every named crash point, a coordinator and two banks run transfers
//! until the armed process aborts there (as SIGKILL would); it is restarted on the same data
//! directory, the cluster settles, and every invariant is checked: participants agree with the
//! coordinator, every COMMITTED told to a client is applied everywhere, money is conserved,
//! nothing stays prepared. Needs `--features failpoints`.

use std::path::Path;
use std::time::Duration;

use verdict::chaos::cluster::{Cluster, ClusterConfig};
use verdict::chaos::ledger::{check, Attempt, Ledger};
use verdict::client::Client;
use verdict::failpoint::CRASH_POINTS;

/// Rounds of concurrent transfers tried before giving up on the point being reached.
const MAX_ROUNDS: usize = 10;
/// Transfers in flight at once, so that the crash catches several at different steps.
const CONCURRENT: usize = 4;

fn config(dir: &Path) -> ClusterConfig {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    ClusterConfig {
        exe: env!("CARGO_BIN_EXE_verdict").into(),
        dir: dir.into(),
        banks: 2,
        coordinator_nodes: 1,
        proxies: false,
        coordinator_args: args(&[
            "--txn-timeout",
            "3s",
            "--retry-initial",
            "20ms",
            "--retry-max",
            "200ms",
        ]),
        bank_args: args(&["--quiet-period", "300ms"]),
    }
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
    let banks = cluster.bank_clients();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut crashed = false;
    for _ in 0..MAX_ROUNDS {
        let mut round = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT {
            let (ledger, banks, client) = (ledger.clone(), banks.clone(), client.clone());
            // Accounts 0-1 are on bank-0, 2-3 on bank-1: every transfer crosses banks.
            let (from, to) = [(0, 2), (3, 1), (1, 3), (2, 0)][i];
            round.spawn(async move { ledger.transfer(&banks, &client, (from, to, 10)).await });
        }
        attempts.extend(round.join_all().await);
        let node = cluster.nodes().nth(victim).unwrap();
        if node.exits_within(Duration::from_millis(200)).await {
            crashed = true;
            break;
        }
    }
    assert!(
        crashed,
        "crash point {point} was never reached in {MAX_ROUNDS} rounds"
    );

    cluster.heal().await.unwrap();
    // Liveness: the cluster works again.
    for _ in 0..3 {
        attempts.push(ledger.transfer(&banks, &client, (1, 3, 5)).await);
    }
    let report = check(&cluster, &ledger, &attempts, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "{point}: attempted {} committed {} aborted {} indeterminate {}",
        report.attempted, report.committed, report.aborted, report.indeterminate
    );
    if !report.violations.is_empty() {
        for node in cluster.nodes() {
            let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            eprintln!("---- {} ----\n{log}", node.name);
        }
        panic!("crash point {point}: violations {:#?}", report.violations);
    }
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
