//! The crash matrix's steps, shared by the single-node and the cluster matrix: rounds of
//! concurrent cross-bank transfers until the armed process aborts at its crash point, and the
//! verdict on the history afterwards.

use std::time::Duration;

use std::path::Path;

use super::cluster::{Cluster, ClusterConfig};
use super::ledger::{check, Attempt, Ledger, Report};
use crate::client::Client;

/// Transfers in flight at once, so that a crash catches several at different steps.
const CONCURRENT: usize = 4;
/// Rounds tried before giving up on the crash point being reached.
const MAX_ROUNDS: usize = 10;

/// The matrix's deployment: `coordinator_nodes` coordinator nodes (one, or a Raft cluster) of
/// `exe` and two banks, with data under `dir`; short deadlines and retries, so a crash is
/// recovered from quickly.
pub fn config(exe: &Path, dir: &Path, coordinator_nodes: usize) -> ClusterConfig {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    let coordinator_args = [
        "--txn-timeout",
        "3s",
        "--retry-initial",
        "20ms",
        "--retry-max",
        "200ms",
    ];
    ClusterConfig {
        exe: exe.into(),
        dir: dir.into(),
        banks: 2,
        coordinator_nodes,
        proxies: false,
        coordinator_args: args(&coordinator_args),
        bank_args: args(&["--quiet-period", "300ms"]),
    }
}

/// Runs rounds of transfers until node `victim` (in [`Cluster::nodes`] order) exits by itself.
/// Returns the attempts, and whether it exited.
pub async fn transfer_until_exit(
    cluster: &mut Cluster,
    victim: usize,
    ledger: &Ledger,
    client: &Client,
) -> (Vec<Attempt>, bool) {
    let banks = cluster.bank_clients();
    let mut attempts = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let mut round = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT {
            let (ledger, banks, client) = (ledger.clone(), banks.clone(), client.clone());
            // With two accounts per bank, accounts 0-1 are on bank-0 and 2-3 on bank-1: every
            // transfer crosses banks.
            let (from, to) = [(0, 2), (3, 1), (1, 3), (2, 0)][i];
            round.spawn(async move { ledger.transfer(&banks, &client, (from, to, 10)).await });
        }
        attempts.extend(round.join_all().await);
        let node = cluster.nodes().nth(victim).expect("a node of the cluster");
        if node.exits_within(Duration::from_millis(200)).await {
            return (attempts, true);
        }
    }
    (attempts, false)
}

/// Waits for the cluster to settle and checks every invariant over `attempts`; prints the
/// counts, and on any violation every process's log, and fails naming `point`.
pub async fn judge(
    cluster: &mut Cluster,
    ledger: &Ledger,
    attempts: &[Attempt],
    point: &str,
) -> anyhow::Result<Report> {
    let report = check(cluster, ledger, attempts, Duration::from_secs(30)).await?;
    eprintln!(
        "{point}: attempted {} committed {} aborted {} indeterminate {}",
        report.attempted, report.committed, report.aborted, report.indeterminate
    );
    if !report.violations.is_empty() {
        for node in cluster.nodes() {
            let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            eprintln!("---- {} ----\n{log}", node.name);
        }
        anyhow::bail!("crash point {point}: violations {:#?}", report.violations);
    }
    Ok(report)
}
