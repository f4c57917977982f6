//! The participant side with real processes: a coordinator and KV bank participants, each a
//! `verdict` child process.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;
use support::*;
use tonic::transport::Channel;
use tonic::Code;
use verdict::bank::{
    participant_of, transfer, transfer_handing, transfer_in, transfer_submitting, work, AccountAt,
    AccountOf,
};
use verdict::client::Client;
use verdict::core::{Outcome as Decision, TxnId};
use verdict::proto::bank_client::BankClient;
use verdict::proto::participant_client::ParticipantClient;
use verdict::proto::*;

const PARTICIPANT_SERVICE: &str = "verdict.v1.Participant";

fn bank(server: &Server) -> BankClient<Channel> {
    BankClient::new(server.channel())
}

fn at(server: &Server, account: &str) -> AccountAt {
    AccountAt {
        bank: bank(server),
        account: account.into(),
    }
}

async fn open(server: &Server, account: &str, balance: i64) {
    let request = OpenAccountRequest {
        account: account.into(),
        balance,
    };
    bank(server)
        .open_account(request)
        .await
        .expect("open account");
}

/// (balance, held)
async fn balance(server: &Server, account: &str) -> (i64, i64) {
    let request = GetBalanceRequest {
        account: account.into(),
    };
    let response = bank(server)
        .get_balance(request)
        .await
        .expect("balance")
        .into_inner();
    (response.balance, response.held)
}

fn client(coordinator: &Server) -> Client {
    Client::new(&coordinator.url(), PATIENCE).unwrap()
}

async fn apply(
    server: &Server,
    txn: TxnId,
    account: &str,
    delta: i64,
) -> Result<(), tonic::Status> {
    let request = ApplyRequest {
        txn_id: txn.to_string(),
        account: account.into(),
        delta,
        deadline_unix_ms: 0,
    };
    bank(server).apply(request).await.map(drop)
}

/// A coordinator and two banks: alice@a with 100, bob@b with 20.
async fn two_banks() -> (Server, Server, Server) {
    let coordinator = Server::start(&["--retry-initial", "20ms", "--retry-max", "200ms"]).await;
    let a = Server::start_bank(&coordinator, "bank-a", &[]).await;
    let b = Server::start_bank(&coordinator, "bank-b", &[]).await;
    open(&a, "alice", 100).await;
    open(&b, "bob", 20).await;
    (coordinator, a, b)
}

#[tokio::test]
async fn a_transfer_commits_on_both_banks() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let (txn, outcome, reason) = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), 30)
        .await
        .unwrap();
    assert_eq!((outcome, reason.as_str()), (Decision::Committed, ""));
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (70, 0));
    assert_eq!(balance(&b, "bob").await, (50, 0));
    let view = client.get(txn).await.unwrap();
    let mut names: Vec<_> = view
        .participants
        .iter()
        .map(|p| p.participant.clone().unwrap().name)
        .collect();
    // Both Applies run at once: either bank may enlist first.
    names.sort();
    assert_eq!(names, ["bank-a", "bank-b"], "Apply enlisted each bank");
}

#[tokio::test]
async fn a_bank_stops_gracefully_while_the_coordinator_streams_it_prepares_and_serves_again() {
    let (coordinator, mut a, b) = two_banks().await;
    let client = client(&coordinator);
    let (alice, bob) = (at(&a, "alice"), at(&b, "bob"));
    let (_, outcome, _) = transfer(&client, &alice, &bob, 10).await.unwrap();
    assert_eq!(outcome, Decision::Committed);
    // The coordinator keeps its PrepareStream call to the bank open; a graceful stop ends it
    // rather than waiting for it.
    a.stop().await;
    a.restart().await;
    a.wait_serving(PARTICIPANT_SERVICE).await;
    let alice = at(&a, "alice");
    let (txn, outcome, reason) = transfer(&client, &alice, &bob, 20).await.unwrap();
    assert_eq!((outcome, reason.as_str()), (Decision::Committed, ""));
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (70, 0));
    assert_eq!(balance(&b, "bob").await, (50, 0));
}

/// The participant a bank takes part as, from its `Describe`.
async fn described(server: &Server) -> ParticipantRef {
    participant_of(&bank(server)).await.expect("describe")
}

#[tokio::test]
async fn a_bank_told_it_was_named_at_begin_does_not_enlist_itself() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let bank_b = described(&b).await;
    assert_eq!(
        (bank_b.name.as_str(), bank_b.endpoint.clone()),
        ("bank-b", b.url())
    );
    // Only bank-b is named; bank-a is told it was too, so it stages without enlisting and is
    // never asked to prepare: the transfer commits with bank-b's half alone, as documented.
    let begun = client
        .begin_with(BeginRequest {
            timeout_ms: 2_000,
            participants: vec![bank_b],
        })
        .await
        .unwrap();
    let (from, to) = (at(&a, "alice"), at(&b, "bob"));
    let until = begun.deadline_unix_ms;
    let (outcome, _) = transfer_in(&client, begun.txn_id, until, &from, &to, 30)
        .await
        .unwrap();
    assert_eq!(outcome, Decision::Committed);
    client.commit_and_wait(begun.txn_id).await.unwrap();
    let view = client.get(begun.txn_id).await.unwrap();
    let names: Vec<_> = view
        .participants
        .iter()
        .map(|p| p.participant.clone().unwrap().name)
        .collect();
    assert_eq!(names, ["bank-b"], "bank-a did not enlist itself");
    assert_eq!(balance(&b, "bob").await, (50, 0));
    assert_eq!(balance(&a, "alice").await, (100, 0), "never prepared here");
}

/// `account` at the bank `server`, as the coordinator reaches the bank.
async fn of(server: &Server, account: &str) -> AccountOf {
    AccountOf::at(&bank(server), account.into())
        .await
        .expect("describe")
}

/// `work` for `participant`, for `CommitRequest.work`.
fn piece(participant: &ParticipantRef, work: Vec<u8>) -> ParticipantWork {
    let participant = Some(participant.clone());
    ParticipantWork { participant, work }
}

/// Bank `bank`'s part in taking 10 out of alice.
fn alice_pays_10(bank: &ParticipantRef) -> ParticipantWork {
    piece(bank, work::encode([("alice", -10)]))
}

fn named(name: &str, endpoint: String) -> ParticipantRef {
    let name = name.into();
    ParticipantRef { name, endpoint }
}

/// The names of the participants the coordinator has for `txn`, in enlisting order.
async fn enlisted(client: &Client, txn: TxnId) -> Vec<String> {
    let view = client.get(txn).await.unwrap();
    let names = view.participants.iter();
    names.map(|p| p.participant.clone().unwrap().name).collect()
}

#[tokio::test]
async fn a_transfer_handed_over_in_commit_commits_on_both_banks_without_an_apply() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let txn = client.begin(None).await.unwrap().txn_id;
    let (from, to) = (of(&a, "alice").await, of(&b, "bob").await);
    let (outcome, reason) = transfer_handing(&client, txn, &from, &to, 30)
        .await
        .unwrap();
    assert_eq!((outcome, reason.as_str()), (Decision::Committed, ""));
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(enlisted(&client, txn).await, ["bank-a", "bank-b"]);
    assert_eq!(balance(&a, "alice").await, (70, 0));
    assert_eq!(balance(&b, "bob").await, (50, 0));
    // A retried Commit answers the same, and its work is not run again.
    let retried = transfer_handing(&client, txn, &from, &to, 30)
        .await
        .unwrap();
    assert_eq!(retried.0, Decision::Committed);
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (70, 0));
}

#[tokio::test]
async fn a_transfer_submitted_in_one_call_moves_the_money_once_however_often_it_is_retried() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let (from, to) = (of(&a, "alice").await, of(&b, "bob").await);
    let (txn, outcome, reason) = transfer_submitting(&client, "rent-2026-12", &from, &to, 30)
        .await
        .unwrap();
    assert_eq!((outcome, reason.as_str()), (Decision::Committed, ""));
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(enlisted(&client, txn).await, ["bank-a", "bank-b"]);
    assert_eq!(balance(&a, "alice").await, (70, 0));
    assert_eq!(balance(&b, "bob").await, (50, 0));
    for _ in 0..2 {
        let retried = transfer_submitting(&client, "rent-2026-12", &from, &to, 30)
            .await
            .unwrap();
        assert_eq!((retried.0, retried.1), (txn, Decision::Committed));
    }
    assert_eq!(balance(&a, "alice").await, (70, 0));
    assert_eq!(balance(&b, "bob").await, (50, 0));
    // Another request is another transfer.
    let (next, outcome, _) = transfer_submitting(&client, "rent-2027-01", &from, &to, 30)
        .await
        .unwrap();
    assert_eq!(outcome, Decision::Committed);
    assert_ne!(next, txn);
    client.commit_and_wait(next).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (40, 0));
}

#[tokio::test]
async fn handed_over_work_a_bank_cannot_run_votes_no_and_changes_nothing() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let bank_b = described(&b).await;
    let cases = [
        (
            work::encode([("carol", 5)]),
            "account \"carol\" does not exist",
        ),
        (
            work::encode([("bob", 0)]),
            "the change to account \"bob\" is zero",
        ),
        // Field 2 = 1: a message with no change in it (an empty one would be no work at all).
        (vec![0x10, 0x01], "names no change"),
        (vec![0xff, 0xff], "is not a verdict.v1.BankWork"),
    ];
    let bank_a = described(&a).await;
    for (bytes, expected) in cases {
        let txn = client.begin(None).await.unwrap().txn_id;
        let handed = vec![alice_pays_10(&bank_a), piece(&bank_b, bytes)];
        let (outcome, reason) = client.commit_handing(txn, handed).await.unwrap();
        assert_eq!(outcome, Decision::Aborted, "{expected}");
        assert!(
            reason.starts_with("participant \"bank-b\" voted no") && reason.contains(expected),
            "{reason}"
        );
        client.commit_and_wait(txn).await.unwrap();
    }
    assert_eq!(balance(&a, "alice").await, (100, 0));
    assert_eq!(balance(&b, "bob").await, (20, 0));
}

#[tokio::test]
async fn work_handed_to_a_participant_that_does_not_run_it_aborts_the_transaction() {
    let (coordinator, a, _b) = two_banks().await;
    let client = client(&coordinator);
    // A participant written before PrepareRequest.work: it votes YES and ignores the work.
    let unaware = Double::start(Behavior::default()).await;
    let txn = client.begin(None).await.unwrap().txn_id;
    let handed = vec![
        alice_pays_10(&described(&a).await),
        piece(&named("unaware", unaware.endpoint()), b"anything".to_vec()),
    ];
    let (outcome, reason) = client.commit_handing(txn, handed).await.unwrap();
    assert_eq!(outcome, Decision::Aborted);
    assert!(
        reason.starts_with("participant \"unaware\" voted no: it did not run the work"),
        "{reason}"
    );
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (100, 0));
}

#[tokio::test]
async fn work_handed_to_a_participant_that_takes_none_votes_no() {
    let (coordinator, a, _b) = two_banks().await;
    let client = client(&coordinator);
    // The records participant stages its work through its own API only.
    let url = coordinator.url();
    let records = Server::start_args(&[
        "participant",
        "records",
        "--coordinator",
        &url,
        "--name",
        "orders",
    ])
    .await;
    let txn = client.begin(None).await.unwrap().txn_id;
    let handed = vec![
        alice_pays_10(&described(&a).await),
        piece(&named("orders", records.url()), b"order 42".to_vec()),
    ];
    let (outcome, reason) = client.commit_handing(txn, handed).await.unwrap();
    assert_eq!(outcome, Decision::Aborted);
    let expected = format!(
        "participant \"orders\" voted no: {}",
        verdict::participant::TAKES_NO_HANDED_WORK
    );
    assert_eq!(reason, expected);
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (100, 0));
}

#[tokio::test]
async fn work_in_commit_is_checked_before_anything_changes() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let bank_a = described(&a).await;
    let for_a = |bytes: Vec<u8>| piece(&bank_a, bytes);
    let cases = [
        (vec![for_a(Vec::new())], "is 0 bytes; give 1 to 65536"),
        (vec![for_a(vec![1; 65_537])], "is 65537 bytes"),
        (vec![for_a(vec![1]), for_a(vec![2])], "is given work twice"),
    ];
    for (handed, expected) in cases {
        let txn = client.begin(None).await.unwrap().txn_id;
        let status = client.commit_handing(txn, handed).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(expected), "{}", status.message());
        // Nothing changed: the transaction is still active, with nobody enlisted.
        assert!(enlisted(&client, txn).await.is_empty());
        client.abort(txn, "test over").await.unwrap();
    }
    // A name enlisted at another endpoint: refused, and bank-a, valid, is not enlisted either.
    let bank_b = described(&b).await;
    let begun = BeginRequest {
        timeout_ms: 0,
        participants: vec![bank_b.clone()],
    };
    let txn = client.begin_with(begun).await.unwrap().txn_id;
    let elsewhere = named("bank-b", a.url());
    let handed = vec![alice_pays_10(&bank_a), piece(&elsewhere, vec![1])];
    let status = client.commit_handing(txn, handed).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("bank-b"), "{}", status.message());
    assert_eq!(enlisted(&client, txn).await, ["bank-b"]);
    let state = client.get(txn).await.unwrap().state();
    assert_eq!(state, TransactionState::Active);
    client.abort(txn, "test over").await.unwrap();
}

#[tokio::test]
async fn an_overdraft_votes_no_and_leaves_both_untouched() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let (txn, outcome, reason) = transfer(&client, &at(&b, "bob"), &at(&a, "alice"), 21)
        .await
        .unwrap();
    assert_eq!(outcome, Decision::Aborted);
    assert!(
        reason
            .starts_with("participant \"bank-b\" voted no: insufficient funds in account \"bob\""),
        "{reason}"
    );
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a, "alice").await, (100, 0));
    assert_eq!(balance(&b, "bob").await, (20, 0));
}

/// Begins a transfer of 10 from alice@a to a gate double that holds its vote, commits it in the
/// background, and waits until bank-a has voted YES. Returns the transaction and the commit.
async fn prepared_at_a(
    coordinator: &Server,
    a: &Server,
    gate: &Double,
) -> (TxnId, tokio::task::JoinHandle<(Decision, String)>) {
    let client = client(coordinator);
    let txn = client.begin(None).await.unwrap().txn_id;
    apply(a, txn, "alice", -10).await.unwrap();
    client.enlist(txn, "gate", &gate.endpoint()).await.unwrap();
    let committing = {
        let client = client.clone();
        tokio::spawn(async move { client.commit(txn).await.unwrap() })
    };
    gate.wait_for(Call::Prepare(txn.to_string()), 1).await;
    let voted = tokio::time::timeout(PATIENCE, async {
        loop {
            let view = client.get(txn).await.unwrap();
            if view.participants[0].vote() == Vote::Yes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(voted.is_ok(), "bank-a never voted YES");
    (txn, committing)
}

/// A transfer out of alice@bank-a with a gate double voting `gate_vote`: bank-a is killed
/// (SIGKILL) right after voting YES, then the gate votes. Returns the transaction, its outcome
/// and the gate (which must live on to acknowledge phase 2).
async fn bank_a_killed_after_voting_yes(
    coordinator: &Server,
    a: &mut Server,
    gate_vote: Vote,
) -> (TxnId, Decision, Double) {
    let gate = Double::start(Behavior {
        hold_prepare: true,
        vote: gate_vote,
        ..Behavior::default()
    })
    .await;
    let (txn, committing) = prepared_at_a(coordinator, a, &gate).await;
    a.kill().await;
    gate.set(|b| b.hold_prepare = false);
    (txn, committing.await.unwrap().0, gate)
}

async fn resolves_through_resolve(gate_vote: Vote, expected: Decision) {
    let (coordinator, mut a, _b) = two_banks().await;
    let (txn, outcome, _gate) =
        bank_a_killed_after_voting_yes(&coordinator, &mut a, gate_vote).await;
    assert_eq!(outcome, expected);
    // On a new port the coordinator's phase-2 messages cannot reach it: only Resolve can.
    a.restart_on_new_port().await;
    a.wait_serving(PARTICIPANT_SERVICE).await;

    let expected_balance = if expected == Decision::Committed {
        90
    } else {
        100
    };
    assert_eq!(balance(&a, "alice").await, (expected_balance, 0));
    let log = std::fs::read_to_string(a.log_path()).unwrap();
    let resolved = log
        .lines()
        .any(|l| l.contains("resolved a transaction in doubt") && l.contains(&txn.to_string()));
    assert!(resolved, "{txn} was not resolved via Resolve");
}

#[tokio::test]
async fn a_participant_killed_after_voting_yes_resolves_a_commit_through_resolve() {
    resolves_through_resolve(Vote::Yes, Decision::Committed).await;
}

#[tokio::test]
async fn a_participant_killed_after_voting_yes_resolves_an_abort_through_resolve() {
    resolves_through_resolve(Vote::No, Decision::Aborted).await;
}

#[tokio::test]
async fn a_participant_down_during_phase_two_gets_the_decision_when_it_returns() {
    let (coordinator, mut a, _b) = two_banks().await;
    let (txn, outcome, _gate) =
        bank_a_killed_after_voting_yes(&coordinator, &mut a, Vote::Yes).await;
    assert_eq!(outcome, Decision::Committed);

    let client = client(&coordinator);
    let view = client.get(txn).await.unwrap();
    assert_eq!(view.state(), TransactionState::Committing, "bank-a is down");
    a.restart().await;
    let (outcome, _) = client.commit_and_wait(txn).await.unwrap();
    assert_eq!(outcome, Decision::Committed);
    assert_eq!(balance(&a, "alice").await, (90, 0));
}

#[tokio::test]
async fn concurrent_random_transfers_conserve_money() {
    const ACCOUNTS: usize = 10;
    const OPENING: i64 = 100;
    const TRANSFERS: usize = 200;
    const WORKERS: usize = 16;
    let coordinator = Server::start(&[]).await;
    let banks = [
        Server::start_bank(&coordinator, "bank-a", &[]).await,
        Server::start_bank(&coordinator, "bank-b", &[]).await,
    ];
    let accounts: Vec<(usize, String)> = (0..ACCOUNTS)
        .map(|i| (i % 2, format!("acct-{i}")))
        .collect();
    for (bank, account) in &accounts {
        open(&banks[*bank], account, OPENING).await;
    }
    let banks = Arc::new(banks);
    let accounts = Arc::new(accounts);
    let client = client(&coordinator);
    let (remaining, committed, aborted) = (
        Arc::new(AtomicUsize::new(TRANSFERS)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let done = Arc::new(AtomicBool::new(false));

    let monitor = {
        let (banks, accounts, done) = (banks.clone(), accounts.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                for (bank, account) in accounts.iter() {
                    let (balance, held) = balance(&banks[*bank], account).await;
                    assert!(
                        balance >= 0 && held <= balance,
                        "{account}: {balance} held {held}"
                    );
                    reads += 1;
                }
            }
            reads
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (banks, accounts, client) = (banks.clone(), accounts.clone(), client.clone());
            let (remaining, committed, aborted) =
                (remaining.clone(), committed.clone(), aborted.clone());
            tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let (from, to, amount) = {
                        let mut rng = rand::rng();
                        let pair: Vec<_> = accounts.choose_multiple(&mut rng, 2).collect();
                        (pair[0].clone(), pair[1].clone(), rng.random_range(1..=60))
                    };
                    let from = at(&banks[from.0], &from.1);
                    let to = at(&banks[to.0], &to.1);
                    let (txn, outcome, _) = transfer(&client, &from, &to, amount).await.unwrap();
                    client.commit_and_wait(txn).await.unwrap();
                    let counter = if outcome == Decision::Committed {
                        &committed
                    } else {
                        &aborted
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = monitor.await.unwrap();

    let mut total = 0;
    for (bank, account) in accounts.iter() {
        let (balance, held) = balance(&banks[*bank], account).await;
        assert!(balance >= 0, "{account} is negative: {balance}");
        assert_eq!(held, 0, "{account} still has money held");
        total += balance;
    }
    let (committed, aborted) = (
        committed.load(Ordering::Relaxed),
        aborted.load(Ordering::Relaxed),
    );
    eprintln!(
        "{TRANSFERS} transfers: {committed} committed, {aborted} aborted; total {total} of \
         {}; {reads} balance reads during the run, none negative",
        OPENING * ACCOUNTS as i64
    );
    assert_eq!(committed + aborted, TRANSFERS);
    assert!(committed > 0);
    assert_eq!(
        total,
        OPENING * ACCOUNTS as i64,
        "money was created or lost"
    );
    let in_flight = coordinator
        .client()
        .await
        .list_transactions(ListTransactionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .transactions
        .into_iter()
        .filter(|t| {
            !matches!(
                t.state(),
                TransactionState::Committed | TransactionState::Aborted
            )
        })
        .count();
    assert_eq!(in_flight, 0, "transactions left unfinished");
}

#[tokio::test]
async fn every_participant_rpc_is_idempotent() {
    let (coordinator, a, _b) = two_banks().await;
    let client = client(&coordinator);
    let mut participant = ParticipantClient::new(a.channel());
    let prepare = |txn: TxnId| PrepareRequest {
        txn_id: txn.to_string(),
        coordinator_endpoint: coordinator.url(),
        coordinator_endpoints: vec![],
        timeout_ms: 1000,
        work: Vec::new(),
    };
    let commit = |txn: TxnId| ParticipantCommitRequest {
        txn_id: txn.to_string(),
    };
    let abort = |txn: TxnId| ParticipantAbortRequest {
        txn_id: txn.to_string(),
    };

    let txn = client.begin(None).await.unwrap().txn_id;
    apply(&a, txn, "alice", -25).await.unwrap();
    for _ in 0..2 {
        let vote = participant
            .prepare(prepare(txn))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            vote.vote(),
            Vote::Yes,
            "a second Prepare returns the first vote"
        );
    }
    assert_eq!(balance(&a, "alice").await, (100, 25));
    participant.commit(commit(txn)).await.unwrap();
    participant
        .commit(commit(txn))
        .await
        .expect("Commit after Commit succeeds");
    assert_eq!(balance(&a, "alice").await, (75, 0), "applied once");
    let vote = participant
        .prepare(prepare(txn))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vote.vote(), Vote::Yes);
    let refused = participant.abort(abort(txn)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let unknown = TxnId::from_uuid(uuid::Uuid::now_v7());
    participant
        .abort(abort(unknown))
        .await
        .expect("Abort of an unknown transaction succeeds");
    participant.abort(abort(unknown)).await.expect("and again");
    let vote = participant
        .prepare(prepare(unknown))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vote.vote(), Vote::No, "Prepare after Abort votes no");
    let never = TxnId::from_uuid(uuid::Uuid::now_v7());
    let refused = participant.commit(commit(never)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("never prepared"), "{refused}");

    let nothing_staged = TxnId::from_uuid(uuid::Uuid::now_v7());
    let first = participant
        .prepare(prepare(nothing_staged))
        .await
        .unwrap()
        .into_inner();
    let second = participant
        .prepare(prepare(nothing_staged))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.vote(), Vote::No);
    assert_eq!(first, second);

    let malformed = participant
        .prepare(PrepareRequest {
            txn_id: "nope".into(),
            ..prepare(txn)
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    let no_coordinator = participant
        .prepare(PrepareRequest {
            coordinator_endpoint: String::new(),
            ..prepare(never)
        })
        .await
        .unwrap_err();
    assert_eq!(no_coordinator.code(), Code::InvalidArgument);
    let bad_cluster_node = participant
        .prepare(PrepareRequest {
            coordinator_endpoints: vec![coordinator.url(), "not a url".into()],
            ..prepare(never)
        })
        .await
        .unwrap_err();
    assert_eq!(bad_cluster_node.code(), Code::InvalidArgument);
    assert!(bad_cluster_node.message().contains("coordinator_endpoints"));
}

#[tokio::test]
async fn bad_bank_requests_get_clear_errors_and_change_nothing() {
    let (coordinator, a, b) = two_banks().await;
    let client = client(&coordinator);
    let txn = client.begin(None).await.unwrap().txn_id;

    expect_status(
        apply(&a, txn, "mallory", -5).await,
        Code::NotFound,
        "does not exist",
    );
    expect_status(
        apply(&a, txn, "alice", 0).await,
        Code::InvalidArgument,
        "delta is zero",
    );
    let unknown_txn = TxnId::from_uuid(uuid::Uuid::now_v7());
    expect_status(
        apply(&a, unknown_txn, "alice", -5).await,
        Code::NotFound,
        "enlisting",
    );
    let malformed = bank(&a)
        .apply(ApplyRequest {
            txn_id: "42".into(),
            account: "alice".into(),
            delta: 5,
            deadline_unix_ms: 0,
        })
        .await;
    expect_status(
        malformed,
        Code::InvalidArgument,
        "not a Verdict transaction id",
    );
    let far = bank(&a)
        .apply(ApplyRequest {
            txn_id: txn.to_string(),
            account: "alice".into(),
            delta: -5,
            deadline_unix_ms: verdict::world::now_unix_ms() + 48 * 3600 * 1000,
        })
        .await;
    expect_status(
        far,
        Code::InvalidArgument,
        "more than a transaction may last",
    );
    let long = "x".repeat(65);
    expect_status(
        apply(&a, txn, &long, 5).await,
        Code::InvalidArgument,
        "1 to 64 bytes",
    );

    let negative = bank(&a)
        .open_account(OpenAccountRequest {
            account: "carol".into(),
            balance: -1,
        })
        .await;
    expect_status(negative, Code::InvalidArgument, "negative");
    let again = bank(&a)
        .open_account(OpenAccountRequest {
            account: "alice".into(),
            balance: 1_000_000,
        })
        .await;
    expect_status(again, Code::AlreadyExists, "already exists");
    let missing = bank(&a)
        .get_balance(GetBalanceRequest {
            account: "carol".into(),
        })
        .await;
    expect_status(missing, Code::NotFound, "open it first");
    for amount in [0, -5] {
        let r = transfer(&client, &at(&a, "alice"), &at(&b, "bob"), amount).await;
        expect_status(r, Code::InvalidArgument, "not positive");
    }

    assert_eq!(balance(&a, "alice").await, (100, 0));
    assert_eq!(balance(&b, "bob").await, (20, 0));
    let view = client.get(txn).await.unwrap();
    assert!(
        view.participants.is_empty(),
        "refused Applies enlisted nothing"
    );
}
