//! The `verdict` command as a user runs it: the demo, and the bank subcommands.

mod support;

use std::process::{Command, Output};

use support::Server;

fn verdict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(args)
        .output()
        .expect("run verdict")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "verdict failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A coordinator and two KV banks, `bank-a` and `bank-b`, enlisting with it.
async fn coordinator_and_banks() -> (Server, Server, Server) {
    let coordinator = Server::start(&[]).await;
    let a = Server::start_bank(&coordinator, "bank-a", &[]).await;
    let b = Server::start_bank(&coordinator, "bank-b", &[]).await;
    (coordinator, a, b)
}

#[test]
fn the_demo_runs_transfers_aborts_the_overdraft_and_stops_cleanly() {
    let out = stdout(&verdict(&["demo"]));
    assert!(out.contains("alice -> bob   30  Committed"), "{out}");
    assert!(
        out.contains(
            "alice -> bob  500  Aborted: participant \"bank-a\" voted no: insufficient funds"
        ),
        "{out}"
    );
    assert_eq!(
        out.matches("total  120").count(),
        4,
        "money is conserved after each: {out}"
    );
    assert!(out.contains("all processes stopped cleanly"), "{out}");
}

#[tokio::test]
async fn a_second_server_on_a_data_directory_in_use_is_refused_with_a_clear_error() {
    let first = Server::start(&[]).await;
    let data_dir = first.data_path();
    let second = verdict(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("another process is using this data directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    first.wait_serving("verdict.v1.Coordinator").await;
}

#[tokio::test]
async fn bank_subcommands_open_read_and_transfer() {
    let (coordinator, a, b) = coordinator_and_banks().await;
    let (a_url, b_url, c_url) = (a.url(), b.url(), coordinator.url());
    stdout(&verdict(&[
        "bank", "open", "--bank", &a_url, "alice", "100",
    ]));
    stdout(&verdict(&["bank", "open", "--bank", &b_url, "bob", "0"]));
    let transfer = |amount: &str| {
        verdict(&[
            "bank",
            "transfer",
            "--coordinator",
            &c_url,
            "--from-bank",
            &a_url,
            "--from",
            "alice",
            "--to-bank",
            &b_url,
            "--to",
            "bob",
            "--amount",
            amount,
        ])
    };
    let committed = stdout(&transfer("60"));
    assert!(committed.contains(" Committed"), "{committed}");
    assert!(stdout(&transfer("60")).contains(" Aborted participant \"bank-a\" voted no"));
    let refused = transfer("0");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not positive"));

    let balance =
        |url: &str, account: &str| stdout(&verdict(&["bank", "balance", "--bank", url, account]));
    // Phase 2 may still be on its way to bob's bank: a retried Commit that waits for every
    // acknowledgement tells when it has arrived.
    let client = verdict::client::Client::new(&c_url, support::PATIENCE).unwrap();
    let txn = committed
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    client.commit_and_wait(txn).await.unwrap();
    assert_eq!(balance(&a_url, "alice").trim(), "balance 40 (held 0)");
    assert_eq!(balance(&b_url, "bob").trim(), "balance 60 (held 0)");

    let unknown = verdict(&["bank", "balance", "--bank", &a_url, "carol"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
}

#[tokio::test]
async fn bank_exercise_runs_transfers_and_checks_the_books() {
    let (coordinator, a, b) = coordinator_and_banks().await;
    let (a_url, b_url, c_url) = (a.url(), b.url(), coordinator.url());
    let exercise = |duration: &str| {
        let banks = ["--bank", &a_url, "--bank", &b_url];
        let args = [
            "bank",
            "exercise",
            "--coordinator",
            &c_url,
            "--duration",
            duration,
        ];
        stdout(&verdict(&[&args[..], &banks[..]].concat()))
    };
    let out = exercise("2s");
    let summary = out.lines().last().unwrap_or_default();
    assert!(summary.starts_with("exercise: attempted "), "{out}");
    assert!(summary.contains(" violations 0 "), "{out}");
    let committed: u64 = summary
        .split_whitespace()
        .skip_while(|word| *word != "committed")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a committed count");
    assert!(committed > 0, "{out}");
    // Again on the same banks: fresh accounts, the books still balance.
    assert!(exercise("1s").contains(" violations 0 "));

    let one_bank = verdict(&[
        "bank",
        "exercise",
        "--coordinator",
        &c_url,
        "--bank",
        &a_url,
    ]);
    assert!(!one_bank.status.success());
    let stderr = String::from_utf8_lossy(&one_bank.stderr);
    assert!(stderr.contains("at least two banks"), "{stderr}");
}

#[tokio::test]
async fn health_answers_for_coordinators_and_participants_and_fails_when_unreachable() {
    let (coordinator, bank, _) = coordinator_and_banks().await;
    bank.wait_serving("verdict.v1.Participant").await;
    let url = coordinator.url();
    assert_eq!(stdout(&verdict(&["health", &url])).trim(), "SERVING");
    let ready = verdict(&["health", &url, "--service", "verdict.v1.Coordinator"]);
    assert_eq!(stdout(&ready).trim(), "SERVING");
    let bank_ready = verdict(&["health", &bank.url(), "--service", "verdict.v1.Participant"]);
    assert_eq!(stdout(&bank_ready).trim(), "SERVING");

    let unknown = verdict(&["health", &url, "--service", "no.such.Service"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));

    let port = verdict::process::free_local_ports(1).unwrap()[0];
    let nobody = verdict(&["health", &format!("http://127.0.0.1:{port}")]);
    assert!(!nobody.status.success());
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(stderr.contains("cannot be reached"), "{stderr}");
}

#[tokio::test]
async fn the_demo_runs_through_a_running_deployment_again_and_again() {
    let (coordinator, a, b) = coordinator_and_banks().await;
    let (a_url, b_url, c_url) = (a.url(), b.url(), coordinator.url());
    let args = [
        "demo",
        "--coordinator",
        &c_url,
        "--bank",
        &a_url,
        "--bank",
        &b_url,
    ];
    for _ in 0..2 {
        let out = stdout(&verdict(&args));
        assert!(out.contains("alice -> bob   30  Committed"), "{out}");
        assert!(out.contains("voted no: insufficient funds"), "{out}");
        assert_eq!(out.matches("total  120").count(), 4, "{out}");
    }
    let one_bank = verdict(&["demo", "--coordinator", &c_url, "--bank", &a_url]);
    assert!(!one_bank.status.success());
    let stderr = String::from_utf8_lossy(&one_bank.stderr);
    assert!(stderr.contains("give two --bank URLs"), "{stderr}");
}

/// A transaction committed with one participant, "payments", a double that fails every
/// decision sent to it: it stays in doubt.
async fn committed_to_a_participant_that_fails_decisions(
    coordinator: &Server,
) -> (support::Double, String) {
    use verdict::proto::{BeginRequest, CommitRequest, Outcome, ParticipantRef};
    let double = support::Double::start(support::Behavior {
        fail_decisions: true,
        ..support::Behavior::default()
    })
    .await;
    let mut client = coordinator.client().await;
    let request = BeginRequest {
        timeout_ms: 0,
        participants: vec![ParticipantRef {
            name: "payments".into(),
            endpoint: double.endpoint(),
        }],
    };
    let txn = client.begin(request).await.unwrap().into_inner().txn_id;
    let commit = CommitRequest {
        txn_id: txn.clone(),
        wait_for_acks: false,
        work: Vec::new(),
    };
    let answer = client.commit(commit).await.unwrap().into_inner();
    assert_eq!(answer.outcome(), Outcome::Committed);
    (double, txn)
}

#[tokio::test]
async fn txn_list_and_show_find_a_transaction_stuck_in_doubt() {
    let coordinator = Server::start(&["--retry-max", "200ms"]).await;
    let (stuck, txn) = committed_to_a_participant_that_fails_decisions(&coordinator).await;
    stuck.wait_for(support::Call::Commit(txn.clone()), 2).await;

    let url = coordinator.url();
    let list = |extra: &[&str]| {
        let args = [&["txn", "list", "--coordinator", &url, "--json"][..], extra].concat();
        let listed: serde_json::Value = serde_json::from_str(&stdout(&verdict(&args))).unwrap();
        listed.as_array().unwrap().clone()
    };
    let in_doubt = list(&["--state", "in-doubt"]);
    assert_eq!(in_doubt.len(), 1, "{in_doubt:?}");
    assert_eq!(in_doubt[0]["txn_id"], txn.as_str());
    assert_eq!(in_doubt[0]["state"], "committing");
    let payments = &in_doubt[0]["participants"][0];
    assert_eq!(
        (
            payments["vote"].as_str(),
            payments["acknowledged"].as_bool()
        ),
        (Some("yes"), Some(false))
    );
    assert_eq!(
        list(&["--state", "in-doubt", "--participant", "payments"]).len(),
        1
    );
    assert!(list(&["--state", "in-doubt", "--participant", "shipping"]).is_empty());
    assert!(list(&["--state", "in-doubt", "--older-than", "1h"]).is_empty());
    assert!(list(&["--state", "finished"]).is_empty());

    let table = stdout(&verdict(&["txn", "list", "--coordinator", &url]));
    assert!(
        table.contains(&txn) && table.contains("payments:yes"),
        "{table}"
    );
    let shown = stdout(&verdict(&["txn", "show", &txn, "--coordinator", &url]));
    assert!(shown.contains("committing"), "{shown}");
    assert!(
        shown.contains("test double is failing decisions"),
        "{shown}"
    );

    let bad = verdict(&["txn", "show", "not-an-id", "--coordinator", &url]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a transaction id"));
}

#[tokio::test]
async fn txn_retry_delivers_phase_2_now_instead_of_after_the_backoff() {
    use support::Call;

    // The first retry would come only after an hour.
    let coordinator = Server::start(&["--retry-initial", "1h", "--retry-max", "1h"]).await;
    let (down, txn) = committed_to_a_participant_that_fails_decisions(&coordinator).await;
    down.wait_for(Call::Commit(txn.clone()), 1).await;

    let url = coordinator.url();
    let finished = || {
        let args = [
            "txn",
            "list",
            "--coordinator",
            &url,
            "--state",
            "finished",
            "--json",
        ];
        let listed: serde_json::Value = serde_json::from_str(&stdout(&verdict(&args))).unwrap();
        listed.as_array().unwrap().len()
    };
    assert_eq!(finished(), 0);
    // The participant is back; the operator does not wait the hour.
    down.set(|b| b.fail_decisions = false);
    let retried = stdout(&verdict(&["txn", "retry", &txn, "--coordinator", &url]));
    assert!(retried.contains("being sent again now"), "{retried}");
    down.wait_for(Call::Commit(txn.clone()), 2).await;
    let done = tokio::time::timeout(support::PATIENCE, async {
        while finished() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the retried delivery never finished the transaction"
    );

    let again = verdict(&["txn", "retry", &txn, "--coordinator", &url]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("is finished"),
        "{stderr}"
    );
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    let unknown = verdict(&["txn", "retry", unknown, "--coordinator", &url]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}

/// `verdict` failing with `code` (as the status prints it) and a message containing `words`.
fn refused(output: &Output, code: &str, words: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "expected a refusal, got success");
    assert!(
        stderr.contains(code) && stderr.contains(words),
        "expected {code} with {words:?}: {stderr}"
    );
}

/// `verdict txn resolve TXN OUTCOME --reason REASON [extra…]` against the coordinator at `url`.
fn resolve_by_hand(url: &str, txn: &str, outcome: &str, reason: &str, extra: &[&str]) -> Output {
    let args = [
        "txn",
        "resolve",
        txn,
        outcome,
        "--reason",
        reason,
        "--coordinator",
        url,
    ];
    verdict(&[&args[..], extra].concat())
}

fn shown(url: &str, txn: &str) -> serde_json::Value {
    let args = ["txn", "show", txn, "--coordinator", url, "--json"];
    serde_json::from_str(&stdout(&verdict(&args))).unwrap()
}

fn events(txn: &serde_json::Value) -> Vec<String> {
    let timeline = txn["timeline"].as_array().unwrap();
    timeline
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn txn_resolve_settles_a_stuck_commit_by_hand_and_records_who_why_and_when() {
    let mut coordinator = Server::start(&["--retry-initial", "1h", "--retry-max", "1h"]).await;
    let (gone, txn) = committed_to_a_participant_that_fails_decisions(&coordinator).await;
    gone.wait_for(support::Call::Commit(txn.clone()), 1).await;
    let url = coordinator.url();
    let resolve = |outcome: &str, operator: &str| {
        let reason = "payments was decommissioned";
        resolve_by_hand(&url, &txn, outcome, reason, &["--operator", operator])
    };

    // An abort would contradict the durable commit: refused, and nothing changes.
    refused(
        &resolve("--abort", "mallory"),
        "FailedPrecondition",
        "is committed",
    );
    assert_eq!(shown(&url, &txn)["state"], "committing");
    assert!(shown(&url, &txn)["resolution"].is_null());

    let settled = stdout(&resolve("--commit", "alice@ops-1"));
    assert!(settled.contains("resolved  by hand as COMMIT"), "{settled}");
    assert!(settled.contains("by hand"), "{settled}");
    // Repeating the same resolution succeeds; the other one is still refused.
    stdout(&resolve("--commit", "alice@ops-1"));
    refused(
        &resolve("--abort", "mallory"),
        "FailedPrecondition",
        "is committed",
    );

    // Recorded durably: the coordinator SIGKILLed and restarted still tells who, why and when.
    coordinator.kill().await;
    coordinator.restart().await;
    let after = shown(&coordinator.url(), &txn);
    assert_eq!(after["state"], "committed");
    let resolution = &after["resolution"];
    assert_eq!(resolution["outcome"], "commit");
    assert_eq!(resolution["reason"], "payments was decommissioned");
    let by = resolution["operator"].as_str().unwrap();
    assert!(by.starts_with("alice@ops-1 (from 127.0.0.1:"), "{by}");
    assert!(resolution["at_unix_ms"].as_u64().unwrap() > 0);
    assert_eq!(after["participants"][0]["settled_by_hand"], true);
    assert_eq!(after["participants"][0]["acknowledged"], false);
    let timeline = events(&after);
    let expected = [
        "begun",
        "commit requested",
        "\"payments\" voted YES",
        "decided COMMIT",
        "resolved by hand as COMMIT by alice@ops-1",
        "finished",
    ];
    let mut at = 0;
    for step in expected {
        let found = timeline[at..].iter().position(|e| e.starts_with(step));
        let found = found.unwrap_or_else(|| panic!("no {step:?} after {at} in {timeline:?}"));
        at += found + 1;
    }
}

#[tokio::test]
async fn txn_resolve_commits_an_undecided_transaction_only_with_every_yes() {
    use verdict::proto::{BeginRequest, ParticipantRef};
    let coordinator = Server::start(&[]).await;
    let double = support::Double::start(support::Behavior::default()).await;
    let request = BeginRequest {
        timeout_ms: 0,
        participants: vec![ParticipantRef {
            name: "stock".into(),
            endpoint: double.endpoint(),
        }],
    };
    let mut client = coordinator.client().await;
    let txn = client.begin(request).await.unwrap().into_inner().txn_id;
    let url = coordinator.url();
    let resolve = |outcome: &str| {
        resolve_by_hand(&url, &txn, outcome, "the order was cancelled by phone", &[])
    };
    refused(
        &resolve("--commit"),
        "FailedPrecondition",
        "stock did not vote YES",
    );
    assert_eq!(shown(&url, &txn)["state"], "active");
    let without_reason = [
        "txn",
        "resolve",
        &txn,
        "--abort",
        "--reason",
        " ",
        "--coordinator",
        &url,
    ];
    refused(
        &verdict(&without_reason),
        "InvalidArgument",
        "reason is empty",
    );

    stdout(&resolve("--abort"));
    let after = shown(&url, &txn);
    assert!(
        matches!(after["state"].as_str(), Some("aborting" | "aborted")),
        "{after}"
    );
    assert_eq!(
        after["reason"],
        "settled by hand: the order was cancelled by phone"
    );
    assert!(events(&after)
        .iter()
        .any(|e| e.starts_with("resolved by hand as ABORT by ")));
    refused(&resolve("--commit"), "FailedPrecondition", "is aborted");
}
