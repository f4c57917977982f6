//! A real network partition of a 3-node cluster: a fault proxy on every Raft link between the
//! nodes (`--raft-via`) cuts the leader off from the other two, while clients and banks still
//! reach it and it them. The minority side must decide nothing and presume nothing; the
//! majority elects a new leader and goes on; after the heal every invariant of the crash matrix
//! holds (no transfer applied at one bank only, no COMMITTED reversed, money conserved).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{running_leader, Load, PATIENCE};
use tonic::Code;
use verdict::chaos::cluster::Cluster;
use verdict::chaos::crash::judge;
use verdict::chaos::ledger::{Ledger, Reported};
use verdict::client::Client;
use verdict::cluster::admin;
use verdict::core::TxnId;
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::ResolveRequest;

async fn term(cluster: &Cluster, node: usize) -> u64 {
    let status = admin::status(&cluster.coordinators[node].url()).await;
    status.expect("status")["term"].as_u64().expect("a term")
}

/// Waits until node `node` says it runs no transactions.
async fn stops_taking_requests(cluster: &Cluster, node: usize) {
    let url = cluster.coordinators[node].url();
    let stopped = tokio::time::timeout(PATIENCE, async {
        while admin::status(&url).await.expect("status")["running_transactions"] == true {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    stopped.expect("the cut-off leader kept taking requests");
}

#[tokio::test]
async fn a_leader_cut_off_decides_nothing_and_the_majority_goes_on() {
    let _one = support::one_cluster_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_verdict"));
    let mut config = verdict::chaos::crash::config(exe, dir.path(), 3);
    config.proxies = true;
    let mut cluster = Cluster::start(&config).await.unwrap();
    let ledger = Ledger::open(&cluster, 2, 100).await.unwrap();
    let old = running_leader(&cluster, &[0, 1, 2]).await;
    let old_term = term(&cluster, old).await;

    // Transfers run all along, through the partition and the heal.
    let load = Load::start(&cluster, &ledger, &[(0, 2), (3, 1)], 3);

    // A transfer begun on the old leader, to be committed once it is cut off.
    let stale = Client::new(&cluster.coordinators[old].url(), Duration::from_secs(3)).unwrap();
    let begun = stale.begin(None).await.unwrap();

    cluster.cut_off(old).unwrap();
    let banks = cluster.bank_clients();
    // At once, before it notices: it prepares, but its decision cannot reach a majority.
    let cut = ledger
        .transfer_in(&banks, &stale, begun.txn_id, (2, 0, 7))
        .await;
    assert_ne!(
        cut.reported,
        Reported::Committed,
        "the minority side decided"
    );
    let mut attempts = vec![cut];
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = running_leader(&cluster, &others).await;
    assert!(
        term(&cluster, new).await > old_term,
        "the new leader's term"
    );
    // Still leader in its own eyes (openraft 0.9 has no step-down), the old one soon takes no
    // requests, so clients and banks that reach it move on to the new leader.
    stops_taking_requests(&cluster, old).await;

    // Through the majority, transfers commit.
    let urls: Vec<String> = others
        .iter()
        .map(|&i| cluster.coordinators[i].url())
        .collect();
    let majority = Client::new(&urls.join(","), PATIENCE).unwrap();
    let through = ledger.transfer(&banks, &majority, (1, 3, 5)).await;
    assert_eq!(
        through.reported,
        Reported::Committed,
        "through the majority"
    );
    attempts.push(through);

    // The old leader, asked alone, never presumes an unknown transaction aborted.
    let mut direct = CoordinatorClient::new(cluster.coordinators[old].channel());
    let unknown = ResolveRequest {
        txn_id: TxnId::from_bytes(rand::random()).to_string(),
    };
    let presumed = direct.resolve(unknown).await;
    assert_eq!(
        presumed.as_ref().map_err(|s| s.code()).err(),
        Some(Code::Unavailable),
        "the minority side answered Resolve: {presumed:?}"
    );

    cluster.heal().await.unwrap();
    // After the heal, the old leader follows and the cluster commits through any node.
    let after = ledger.transfer(&banks, &stale, (0, 2, 1)).await;
    assert_eq!(after.reported, Reported::Committed, "after the heal");
    attempts.push(after);
    attempts.extend(load.stop().await);

    let report = judge(&mut cluster, &ledger, &attempts, "leader cut off")
        .await
        .unwrap();
    assert!(report.committed > 1, "{report:?}");
    cluster.stop().await.unwrap();
}
