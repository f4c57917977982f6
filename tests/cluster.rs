//! Cluster mode with real processes: three `verdict serve` nodes replicating the decision log
//! with Raft, KV banks as participants, and the application client following the leader.

mod support;

use std::time::Duration;

use support::*;
use tonic::transport::Channel;
use tonic::Code;
use verdict::bank::{transfer, AccountAt};
use verdict::client::Client;
use verdict::core::Outcome as Decision;
use verdict::proto::bank_client::BankClient;
use verdict::proto::*;

/// Fast phase-2 retries, so re-driving after a failover shows up quickly.
const NODE_ARGS: &[&str] = &["--retry-initial", "20ms", "--retry-max", "200ms"];

fn at(server: &Server, account: &str) -> AccountAt {
    AccountAt {
        bank: BankClient::new(server.channel()),
        account: account.into(),
    }
}

async fn open(server: &Server, account: &str, balance: i64) {
    let request = OpenAccountRequest {
        account: account.into(),
        balance,
    };
    let mut bank: BankClient<Channel> = BankClient::new(server.channel());
    bank.open_account(request).await.expect("open account");
}

async fn balance(server: &Server, account: &str) -> i64 {
    let request = GetBalanceRequest {
        account: account.into(),
    };
    let mut bank: BankClient<Channel> = BankClient::new(server.channel());
    bank.get_balance(request)
        .await
        .expect("balance")
        .into_inner()
        .balance
}

/// Waits until `account` at `server` holds `expected` (phase 2 reaches banks after Commit).
async fn await_balance(server: &Server, account: &str, expected: i64) {
    let reached = tokio::time::timeout(PATIENCE, async {
        while balance(server, account).await != expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{account} never reached {expected}: it holds {}",
        balance(server, account).await
    );
}

/// The state of `txn` as the node at `url` answers it, retried through elections as the
/// client does.
async fn state_on(node: &Server, txn: verdict::core::TxnId) -> TransactionState {
    let client = Client::new(&node.url(), PATIENCE).unwrap();
    client.get(txn).await.expect("get").state()
}

/// A 3-node cluster and two KV banks that know every node: alice@a with 1000, bob@b with 0.
async fn cluster_with_banks() -> (TestCluster, Server, Server) {
    let cluster = TestCluster::start(3, NODE_ARGS).await;
    cluster.leader().await;
    let urls = cluster.urls();
    let a = Server::start_bank_at(&urls, "bank-a", &["--quiet-period", "300ms"]).await;
    let b = Server::start_bank_at(&urls, "bank-b", &["--quiet-period", "300ms"]).await;
    open(&a, "alice", 1000).await;
    open(&b, "bob", 0).await;
    (cluster, a, b)
}

#[tokio::test]
async fn a_cluster_commits_and_followers_point_to_the_leader() {
    let (cluster, a, b) = cluster_with_banks().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;

    // The client is given a follower first: it follows the redirect.
    let urls = format!("{},{}", cluster.nodes[follower].url(), cluster.urls());
    let client = Client::new(&urls, PATIENCE).unwrap();
    let (txn, outcome, reason) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 30)
        .await
        .unwrap();
    assert_eq!((outcome, reason.as_str()), (Decision::Committed, ""));
    await_balance(&a, "alice", 970).await;
    await_balance(&b, "bob", 30).await;

    // A follower refuses to run transactions and names the leader.
    let mut direct = cluster.nodes[follower].client().await;
    let refused = direct
        .begin(BeginRequest::default())
        .await
        .expect_err("a follower does not begin transactions");
    assert_eq!(refused.code(), Code::Unavailable);
    let named = refused
        .metadata()
        .get("verdict-leader")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(named, Some(cluster.nodes[leader].url()), "{refused:?}");

    // Reads work on any node, answered by the leader.
    for node in &cluster.nodes {
        assert_eq!(state_on(node, txn).await, TransactionState::Committed);
        let never = "0190a0a0-0000-7000-8000-000000000000";
        assert_eq!(
            resolve(&mut node.client().await, never).await,
            Outcome::Aborted
        );
    }
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_no_decision_is_lost() {
    let (mut cluster, a, b) = cluster_with_banks().await;
    let client = Client::new(&cluster.urls(), PATIENCE).unwrap();
    let mut committed = Vec::new();
    for _ in 0..5 {
        let (txn, outcome, _) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 10)
            .await
            .unwrap();
        assert_eq!(outcome, Decision::Committed);
        committed.push(txn);
    }

    let old = cluster.leader().await;
    cluster.nodes[old].kill().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let new = cluster.leader_among(&others).await;
    assert_ne!(new, old);

    // Every COMMITTED answer stands on the new leader, and new transfers commit.
    for txn in &committed {
        let state = state_on(&cluster.nodes[new], *txn).await;
        assert_eq!(state, TransactionState::Committed, "{txn}");
    }
    for _ in 0..5 {
        let (_, outcome, reason) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 10)
            .await
            .unwrap();
        assert_eq!(outcome, Decision::Committed, "{reason}");
    }
    await_balance(&a, "alice", 900).await;
    await_balance(&b, "bob", 100).await;

    // The old leader comes back as a follower and catches up.
    cluster.nodes[old].restart().await;
    let last = *committed.last().unwrap();
    assert_eq!(
        state_on(&cluster.nodes[old], last).await,
        TransactionState::Committed
    );
}

#[tokio::test]
async fn without_a_majority_nothing_commits_and_service_resumes_when_one_returns() {
    let (mut cluster, a, b) = cluster_with_banks().await;
    let client = Client::new(&cluster.urls(), Duration::from_secs(2)).unwrap();
    let (first, outcome, _) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 10)
        .await
        .unwrap();
    assert_eq!(outcome, Decision::Committed);

    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.nodes[i].kill().await;
    }
    // The lone leader cannot make a decision durable: the transfer fails, it never commits.
    let refused = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 10).await;
    match refused {
        Err(status) => assert!(
            matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ),
            "{status:?}"
        ),
        Ok((_, outcome, reason)) => panic!("answered {outcome:?} ({reason}) without a majority"),
    }

    cluster.nodes[followers[0]].restart().await;
    cluster.leader_among(&[leader, followers[0]]).await;
    let client = Client::new(&cluster.urls(), PATIENCE).unwrap();
    let (_, outcome, reason) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 10)
        .await
        .unwrap();
    assert_eq!(outcome, Decision::Committed, "{reason}");
    let state = state_on(&cluster.nodes[followers[0]], first).await;
    assert_eq!(state, TransactionState::Committed);
    // Money is conserved whatever became of the refused transfer, once phase 2 settles.
    let settled = tokio::time::timeout(PATIENCE, async {
        while balance(&a, "alice").await + balance(&b, "bob").await != 1000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "money was created or lost");
}
