//! Network faults between real processes: a coordinator and two banks behind fault proxies.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Behavior, Call, Double, PATIENCE};
use verdict::chaos::cluster::{Cluster, ClusterConfig};
use verdict::chaos::ledger::{check, Attempt, Ledger, Reported};
use verdict::chaos::proxy::Faults;
use verdict::client::Client;
use verdict::core::{Outcome, TxnId};
use verdict::proto::bank_client::BankClient;
use verdict::proto::{ApplyRequest, GetBalanceRequest, Vote};

async fn cluster(dir: &Path) -> (Cluster, Ledger, Client) {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    let config = ClusterConfig {
        exe: env!("CARGO_BIN_EXE_verdict").into(),
        dir: dir.into(),
        banks: 2,
        coordinator_nodes: 1,
        proxies: true,
        coordinator_args: args(&[
            "--prepare-timeout",
            "400ms",
            "--decision-timeout",
            "300ms",
            "--retry-initial",
            "20ms",
            "--retry-max",
            "200ms",
        ]),
        bank_args: args(&["--quiet-period", "300ms"]),
    };
    let cluster = Cluster::start(&config).await.unwrap();
    // acct-0-0 is on bank-0, acct-1-0 on bank-1.
    let ledger = Ledger::open(&cluster, 1, 100).await.unwrap();
    let client = Client::new(&cluster.node_urls(), PATIENCE).unwrap();
    (cluster, ledger, client)
}

async fn assert_consistent(cluster: &Cluster, ledger: &Ledger, attempts: &[Attempt]) {
    let report = check(cluster, ledger, attempts, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
}

#[tokio::test]
async fn a_prepare_slower_than_its_deadline_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, ledger, client) = cluster(dir.path()).await;
    cluster.bank_proxies[1].set(Faults {
        latency: Duration::from_millis(600),
        ..Faults::default()
    });
    let attempt = ledger
        .transfer(&cluster.bank_clients(), &client, (0, 1, 10))
        .await;
    assert_eq!(attempt.reported, Reported::Aborted);
    let txn = attempt.txn.unwrap();
    let view = client.get(txn).await.unwrap();
    assert!(
        view.reason
            .starts_with("participant \"bank-1\" did not vote: no answer within 400ms"),
        "{}",
        view.reason
    );
    cluster.bank_proxies[1].heal();
    assert_consistent(&cluster, &ledger, &[attempt]).await;
}

/// Stages a transfer of 10 from bank-0 to bank-1 and adds a gate double that holds its vote;
/// commits in the background; returns once bank-1 has voted YES.
async fn prepared_at_bank_1(
    cluster: &Cluster,
    client: &Client,
    gate: &Double,
) -> (Attempt, tokio::task::JoinHandle<(Outcome, String)>) {
    let txn = client.begin(None).await.unwrap().txn_id;
    for (bank, account, delta) in [(0, "acct-0-0", -10), (1, "acct-1-0", 10)] {
        let request = ApplyRequest {
            txn_id: txn.to_string(),
            account: account.into(),
            delta,
            deadline_unix_ms: 0,
        };
        cluster.bank_client(bank).apply(request).await.unwrap();
    }
    client.enlist(txn, "gate", &gate.endpoint()).await.unwrap();
    let committing = {
        let client = client.clone();
        tokio::spawn(async move { client.commit(txn).await.unwrap() })
    };
    gate.wait_for(Call::Prepare(txn.to_string()), 1).await;
    wait_until(client, txn, |t| t.participants[1].vote() == Vote::Yes).await;
    let attempt = Attempt {
        txn: Some(txn),
        from: 0,
        to: 1,
        amount: 10,
        reported: Reported::Unknown,
    };
    (attempt, committing)
}

/// Polls the coordinator's view of `txn` until `condition` holds.
async fn wait_until(
    client: &Client,
    txn: TxnId,
    condition: impl Fn(&verdict::proto::Transaction) -> bool,
) {
    let reached = tokio::time::timeout(PATIENCE, async {
        loop {
            if condition(&client.get(txn).await.unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{txn} never reached the expected state");
}

fn gate() -> Behavior {
    Behavior {
        hold_prepare: true,
        ..Behavior::default()
    }
}

/// A cluster where a transfer from bank-0 to bank-1 (plus a gate double) is committed while
/// bank-1 is partitioned from the coordinator's calls — and, with `cut_outbound`, the
/// coordinator from bank-1's calls too. Returns once the coordinator has failed to deliver the
/// decision to bank-1 at least twice.
struct CutOff {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    ledger: Ledger,
    client: Client,
    attempt: Attempt,
}

async fn committed_while_bank_1_is_cut_off(cut_outbound: bool) -> CutOff {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, ledger, client) = cluster(dir.path()).await;
    let gate = Double::start(gate()).await;
    let (mut attempt, committing) = prepared_at_bank_1(&cluster, &client, &gate).await;
    let txn = attempt.txn.unwrap();

    cluster.bank_proxies[1].set(Faults::partition());
    if cut_outbound {
        let coordinator = cluster.coordinator_proxy.as_ref().unwrap();
        coordinator.set(Faults::partition());
    }
    gate.set(|b| b.hold_prepare = false);
    assert_eq!(committing.await.unwrap().0, Outcome::Committed);
    attempt.reported = Reported::Committed;
    wait_until(&client, txn, |t| {
        let bank_1 = &t.participants[1];
        bank_1.attempts >= 2 && !bank_1.acknowledged && !bank_1.last_error.is_empty()
    })
    .await;
    CutOff {
        _dir: dir,
        cluster,
        ledger,
        client,
        attempt,
    }
}

impl CutOff {
    /// Heals the network; the decision must reach bank-1 and the books must balance.
    async fn heal_and_check(self) {
        for proxy in self.cluster.proxies() {
            proxy.heal();
        }
        let txn = self.attempt.txn.unwrap();
        let (outcome, _) = self.client.commit_and_wait(txn).await.unwrap();
        assert_eq!(outcome, Outcome::Committed);
        assert_consistent(&self.cluster, &self.ledger, &[self.attempt]).await;
    }
}

#[tokio::test]
async fn lost_phase_two_messages_are_redelivered() {
    committed_while_bank_1_is_cut_off(false)
        .await
        .heal_and_check()
        .await;
}

#[tokio::test]
async fn a_participant_cut_off_after_voting_yes_is_resolved_after_the_partition_heals() {
    // bank-1 can neither hear the coordinator nor reach it (its Resolve calls hang).
    let cut_off = committed_while_bank_1_is_cut_off(true).await;
    let request = verdict::proto::GetBalanceRequest {
        account: "acct-1-0".into(),
    };
    let bank_1 = cut_off.cluster.bank_client(1).get_balance(request).await;
    let bank_1 = bank_1.unwrap().into_inner();
    assert_eq!(
        (bank_1.balance, bank_1.held),
        (100, 0),
        "bank-1 is in doubt: nothing applied yet"
    );
    cut_off.heal_and_check().await;
}

/// A connection gone silent — a black hole, as when the peer's machine loses power or a
/// middlebox forgets the connection — fails the call waiting on it within seconds, and the next
/// call connects afresh: it does not keep every call on it waiting until its own timeout, or
/// for good when it has none. (Found by the simulation: see tests/simulation.)
#[tokio::test]
async fn a_call_on_a_connection_gone_silent_fails_and_the_next_one_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, ledger, _) = cluster(dir.path()).await;
    let proxy = &cluster.bank_proxies[0];
    let endpoint = verdict::tls::endpoint(proxy.url()).unwrap();
    let bank = BankClient::new(verdict::net::channel(verdict::net::watched(endpoint)));
    let balance = || {
        let request = GetBalanceRequest {
            account: ledger.accounts[0].1.clone(),
        };
        let mut bank = bank.clone();
        async move { bank.get_balance(request).await }
    };
    balance().await.expect("a healthy call");

    proxy.set(Faults::partition());
    let guard = Duration::from_secs(30);
    let silent = tokio::time::timeout(guard, balance()).await;
    let status = silent
        .expect("the call still waits: the dead connection was never torn down")
        .expect_err("nothing can answer through a black hole");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");

    proxy.heal();
    balance().await.expect("the next call, on a new connection");
}
