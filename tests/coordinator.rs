//! The coordinator as a real process, with real tonic participant doubles on loopback.

mod support;

use std::time::Duration;

use support::*;
use tonic::Code;
use verdict::proto::*;

fn yes() -> Behavior {
    Behavior::default()
}

fn votes_no(reason: &str) -> Behavior {
    Behavior {
        vote: Vote::No,
        no_reason: reason.into(),
        ..Behavior::default()
    }
}

fn failing_decisions() -> Behavior {
    Behavior {
        fail_decisions: true,
        ..Behavior::default()
    }
}

async fn commit_and_wait(
    client: &mut CoordinatorClient<tonic::transport::Channel>,
    txn_id: &str,
) -> CommitResponse {
    let request = CommitRequest {
        txn_id: txn_id.into(),
        wait_for_acks: true,
        work: Vec::new(),
    };
    tokio::time::timeout(PATIENCE, client.commit(request))
        .await
        .expect("phase 2 finished in time")
        .expect("commit")
        .into_inner()
}

use verdict::proto::coordinator_client::CoordinatorClient;

#[tokio::test]
async fn all_yes_commits_and_every_participant_acknowledges() {
    let coordinator = Coordinator::start(&[]).await;
    let (a, b) = (Double::start(yes()).await, Double::start(yes()).await);
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, &[("a", a.endpoint())]).await;
    let enlisted = client
        .enlist(EnlistRequest {
            txn_id: txn.clone(),
            participant: Some(participant("b", &b.endpoint())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enlisted.newly_enlisted);

    let response = commit_and_wait(&mut client, &txn).await;
    assert_eq!(response.outcome(), Outcome::Committed);
    assert_eq!(response.reason, "");
    for double in [&a, &b] {
        assert_eq!(double.count(&Call::Prepare(txn.clone())), 1);
        assert_eq!(double.count(&Call::Commit(txn.clone())), 1);
    }
    let view = get(&mut client, &txn).await;
    assert_eq!(view.state(), TransactionState::Committed);
    for p in &view.participants {
        assert_eq!((p.vote(), p.acknowledged, p.attempts), (Vote::Yes, true, 1));
    }
}

#[tokio::test]
async fn one_no_vote_aborts_with_its_reason() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let b = Double::start(votes_no("insufficient funds in account 7")).await;
    let mut client = coordinator.client().await;
    let txn = begin(
        &mut client,
        &[("a", a.endpoint()), ("bank-b", b.endpoint())],
    )
    .await;

    let response = commit(&mut client, &txn).await;
    assert_eq!(response.outcome(), Outcome::Aborted);
    assert_eq!(
        response.reason,
        "participant \"bank-b\" voted no: insufficient funds in account 7"
    );
    a.wait_for(Call::Abort(txn.clone()), 1).await;
    assert_eq!(a.count(&Call::Commit(txn.clone())), 0);
    // A NO voter takes no part in phase 2.
    let finished = commit_and_wait(&mut client, &txn).await;
    assert_eq!(finished.outcome(), Outcome::Aborted);
    assert_eq!(b.count(&Call::Abort(txn.clone())), 0);
}

#[tokio::test]
async fn a_prepare_slower_than_its_deadline_aborts() {
    let coordinator = Coordinator::start(&["--prepare-timeout", "300ms"]).await;
    let a = Double::start(yes()).await;
    let slow = Double::start(Behavior {
        prepare_delay: Duration::from_secs(5),
        ..yes()
    })
    .await;
    let mut client = coordinator.client().await;
    let txn = begin(
        &mut client,
        &[("a", a.endpoint()), ("slow", slow.endpoint())],
    )
    .await;

    let response = commit(&mut client, &txn).await;
    assert_eq!(response.outcome(), Outcome::Aborted);
    assert!(
        response
            .reason
            .starts_with("participant \"slow\" did not vote: no answer within 300ms"),
        "{}",
        response.reason
    );
    a.wait_for(Call::Abort(txn.clone()), 1).await;
    // The slow one may be prepared by now: it is told too.
    slow.wait_for(Call::Abort(txn.clone()), 1).await;
}

#[tokio::test]
async fn an_unreachable_participant_aborts() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let txn = begin(
        &mut client,
        &[("a", a.endpoint()), ("gone", dead_endpoint())],
    )
    .await;

    let response = commit(&mut client, &txn).await;
    assert_eq!(response.outcome(), Outcome::Aborted);
    assert!(
        response
            .reason
            .starts_with("participant \"gone\" did not vote: unreachable"),
        "{}",
        response.reason
    );
    a.wait_for(Call::Abort(txn.clone()), 1).await;
    let view = get(&mut client, &txn).await;
    let gone = &view.participants[1];
    assert!(gone.last_error.contains("unreachable"), "{gone:?}");
}

#[tokio::test]
async fn a_retried_commit_returns_the_same_outcome() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let no = Double::start(votes_no("locked")).await;
    let mut client = coordinator.client().await;

    let committed = begin(&mut client, &[("a", a.endpoint())]).await;
    let first = commit(&mut client, &committed).await;
    let second = commit(&mut client, &committed).await;
    let after_phase_two = commit_and_wait(&mut client, &committed).await;
    assert_eq!(first.outcome(), Outcome::Committed);
    assert_eq!(first, second);
    assert_eq!(first, after_phase_two);
    assert_eq!(a.count(&Call::Prepare(committed.clone())), 1);

    let aborted = begin(&mut client, &[("no", no.endpoint())]).await;
    let first = commit(&mut client, &aborted).await;
    let second = commit_and_wait(&mut client, &aborted).await;
    assert_eq!(first.outcome(), Outcome::Aborted);
    assert_eq!(first, second);
}

#[tokio::test]
async fn concurrent_commits_of_one_transaction_agree() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(Behavior {
        prepare_delay: Duration::from_millis(200),
        ..yes()
    })
    .await;
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, &[("a", a.endpoint())]).await;
    let commits: Vec<_> = (0..5)
        .map(|_| {
            let (mut client, txn) = (client.clone(), txn.clone());
            tokio::spawn(async move { commit(&mut client, &txn).await })
        })
        .collect();
    for handle in commits {
        assert_eq!(handle.await.unwrap().outcome(), Outcome::Committed);
    }
    assert_eq!(a.count(&Call::Prepare(txn)), 1);
}

#[tokio::test]
async fn abort_of_an_active_transaction_tells_its_participants() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, &[("a", a.endpoint())]).await;

    let abort = |reason: &str| AbortRequest {
        txn_id: txn.clone(),
        reason: reason.into(),
    };
    client.abort(abort("customer cancelled")).await.unwrap();
    a.wait_for(Call::Abort(txn.clone()), 1).await;
    client
        .abort(abort("again"))
        .await
        .expect("abort is idempotent");

    let view = get(&mut client, &txn).await;
    assert_eq!(view.reason, "customer cancelled");
    assert!(matches!(
        view.state(),
        TransactionState::Aborted | TransactionState::Aborting
    ));
    let refused = client
        .commit(CommitRequest {
            txn_id: txn.clone(),
            wait_for_acks: false,
            work: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("aborted before Commit"),
        "{refused}"
    );
    assert_eq!(a.count(&Call::Prepare(txn)), 0);
}

#[tokio::test]
async fn a_transaction_past_its_deadline_is_aborted() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let txn = client
        .begin(BeginRequest {
            timeout_ms: 300,
            participants: vec![participant("a", &a.endpoint())],
        })
        .await
        .unwrap()
        .into_inner()
        .txn_id;

    a.wait_for(Call::Abort(txn.clone()), 1).await;
    let view = get(&mut client, &txn).await;
    assert!(view.reason.contains("deadline passed"), "{}", view.reason);
    let late = client
        .enlist(EnlistRequest {
            txn_id: txn.clone(),
            participant: Some(participant("late", &a.endpoint())),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(resolve(&mut client, &txn).await, Outcome::Aborted);
}

#[tokio::test]
async fn phase_two_is_retried_until_a_participant_that_was_down_comes_back() {
    let coordinator =
        Coordinator::start(&["--retry-initial", "20ms", "--retry-max", "200ms"]).await;
    let a = Double::start(yes()).await;
    let mut b = Double::start(failing_decisions()).await;
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, &[("a", a.endpoint()), ("b", b.endpoint())]).await;

    assert_eq!(
        commit(&mut client, &txn).await.outcome(),
        Outcome::Committed
    );
    b.wait_for(Call::Commit(txn.clone()), 3).await;
    b.stop();
    let in_doubt = client
        .list_transactions(ListTransactionsRequest {
            state: TransactionState::Committing.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_doubt.transactions.len(), 1);
    let b_status = &in_doubt.transactions[0].participants[1];
    assert!(!b_status.acknowledged);
    // The third send follows the handling of the second failure.
    assert!(b_status.attempts >= 2, "{b_status:?}");
    assert!(!b_status.last_error.is_empty());

    b.set(|behavior| behavior.fail_decisions = false);
    b.restart().await;
    let finished = commit_and_wait(&mut client, &txn).await;
    assert_eq!(finished.outcome(), Outcome::Committed);
    let view = get(&mut client, &txn).await;
    assert_eq!(view.state(), TransactionState::Committed);
    assert!(view.participants.iter().all(|p| p.acknowledged));
}

/// Commits `count` transactions with `double` as their only participant; their ids.
async fn commit_each(
    client: &mut CoordinatorClient<tonic::transport::Channel>,
    double: &Double,
    count: usize,
) -> Vec<String> {
    let mut txns = Vec::new();
    for _ in 0..count {
        let txn = begin(client, &[("a", double.endpoint())]).await;
        assert_eq!(commit(client, &txn).await.outcome(), Outcome::Committed);
        txns.push(txn);
    }
    txns
}

#[tokio::test]
async fn decisions_for_one_participant_go_several_to_a_call_two_calls_at_a_time() {
    // The first calls are held longer than the default 5 s they may take before a retry.
    let coordinator = Coordinator::start(&["--decision-timeout", "10m"]).await;
    let holding = Behavior {
        hold_decisions: true,
        ..yes()
    };
    let double = Double::start(holding).await;
    let mut client = coordinator.client().await;
    let mut sent = Vec::new();
    for _ in 0..2 {
        let txn = commit_each(&mut client, &double, 1).await.remove(0);
        double.wait_for(Call::Commit(txn.clone()), 1).await;
        sent.push(txn);
    }
    // Decided while both calls are held, so they wait in the queue. (Each is queued a few
    // microseconds after its decision; the later Begins and Commits take milliseconds, so at
    // most the last can still be on its way when the calls are released.)
    let queued = commit_each(&mut client, &double, 8).await;
    double.set(|behavior| behavior.hold_decisions = false);
    for txn in sent.iter().chain(&queued) {
        double.wait_for(Call::Commit(txn.clone()), 1).await;
    }

    let calls = double.decide_calls();
    assert_eq!(
        calls.iter().sum::<usize>(),
        10,
        "every decision in a Decide: {calls:?}"
    );
    assert_eq!(
        calls[..2],
        [1, 1],
        "lone decisions leave at once: {calls:?}"
    );
    assert!(
        calls.len() <= 4,
        "the queued decisions went together: {calls:?}"
    );
    assert_eq!(double.most_open_decides(), 2, "two Decides at a time");
}

#[tokio::test]
async fn prepares_for_one_participant_share_one_prepare_stream_call() {
    let coordinator = Coordinator::start(&[]).await;
    let holding = Behavior {
        hold_prepare: true,
        ..yes()
    };
    let double = Double::start(holding).await;
    let mut client = coordinator.client().await;
    let mut txns = Vec::new();
    for _ in 0..3 {
        txns.push(begin(&mut client, &[("a", double.endpoint())]).await);
    }
    let commits = txns.clone().into_iter().map(|txn| {
        let mut client = client.clone();
        async move { commit(&mut client, &txn).await.outcome() }
    });
    let committing = tokio::spawn(futures_util::future::join_all(commits));
    // All three held at once: none can have gone on a call of its own.
    for txn in &txns {
        double.wait_for(Call::Prepare(txn.clone()), 1).await;
    }
    double.set(|behavior| behavior.hold_prepare = false);
    assert_eq!(committing.await.unwrap(), [Outcome::Committed; 3]);
    assert_eq!(
        double.prepare_stream_calls(),
        1,
        "one PrepareStream call carried all three prepares"
    );
}

#[tokio::test]
async fn an_idle_prepare_stream_call_is_ended_and_the_next_prepare_opens_another() {
    let coordinator = Coordinator::start(&[]).await;
    let double = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    commit_each(&mut client, &double, 1).await;
    double.wait_prepare_streams_ended(1).await;
    commit_each(&mut client, &double, 1).await;
    assert_eq!(double.prepare_stream_calls(), 2);
}

#[tokio::test]
async fn a_participant_without_prepare_stream_gets_prepare_calls() {
    let coordinator = Coordinator::start(&[]).await;
    let old = Behavior {
        no_prepare_stream: true,
        ..yes()
    };
    let double = Double::start(old).await;
    let mut client = coordinator.client().await;
    // The first prepare is refused on the stream and sent again as a call, and commits.
    let txns = commit_each(&mut client, &double, 3).await;
    for txn in &txns {
        assert_eq!(double.count(&Call::Prepare(txn.clone())), 1, "{txn}");
    }
    assert_eq!(
        double.prepare_stream_calls(),
        1,
        "asked PrepareStream once, then Prepare alone"
    );
}

#[tokio::test]
async fn a_vote_later_than_its_deadline_is_dropped_and_later_prepares_are_answered() {
    let coordinator = Coordinator::start(&["--prepare-timeout", "300ms"]).await;
    let holding = Behavior {
        hold_prepare: true,
        ..yes()
    };
    let double = Double::start(holding).await;
    let mut client = coordinator.client().await;
    let late = begin(&mut client, &[("a", double.endpoint())]).await;
    let response = commit(&mut client, &late).await;
    assert_eq!(response.outcome(), Outcome::Aborted);
    assert!(
        response.reason.contains("no answer within 300ms"),
        "{}",
        response.reason
    );
    // The held prepare now answers YES, too late to count; the next one is answered in time.
    double.set(|behavior| behavior.hold_prepare = false);
    double.wait_for(Call::Abort(late.clone()), 1).await;
    commit_each(&mut client, &double, 1).await;
    let view = get(&mut client, &late).await;
    assert!(
        matches!(
            view.state(),
            TransactionState::Aborted | TransactionState::Aborting
        ),
        "the late YES changed nothing: {view:?}"
    );
}

#[tokio::test]
async fn a_participant_without_decide_gets_its_decisions_one_by_one() {
    let coordinator = Coordinator::start(&[]).await;
    let old = Behavior {
        no_decide: true,
        ..yes()
    };
    let double = Double::start(old).await;
    let mut client = coordinator.client().await;
    let txns = commit_each(&mut client, &double, 3).await;
    for txn in &txns {
        double.wait_for(Call::Commit(txn.clone()), 1).await;
        let finished = commit_and_wait(&mut client, txn).await;
        assert_eq!(finished.outcome(), Outcome::Committed);
    }
    let calls = double.decide_calls();
    assert_eq!(
        calls.len(),
        1,
        "asked Decide once, then Commit alone: {calls:?}"
    );
}

#[tokio::test]
async fn a_restarted_coordinator_redrives_phase_two_and_aborts_undecided_transactions() {
    let mut coordinator =
        Coordinator::start(&["--retry-initial", "20ms", "--retry-max", "200ms"]).await;
    let a = Double::start(yes()).await;
    let b = Double::start(failing_decisions()).await;
    let mut client = coordinator.client().await;
    let both = [("a", a.endpoint()), ("b", b.endpoint())];

    // Decided and durable, phase 2 unfinished: b keeps failing.
    let decided = begin(&mut client, &both).await;
    assert_eq!(
        commit(&mut client, &decided).await.outcome(),
        Outcome::Committed
    );
    b.wait_for(Call::Commit(decided.clone()), 1).await;
    // Undecided: begun and enlisted, never committed.
    let undecided = begin(&mut client, &both).await;
    // Finished before the crash; its forced decision also flushes the record of `undecided`.
    let finished = begin(&mut client, &[("a", a.endpoint())]).await;
    assert_eq!(
        commit_and_wait(&mut client, &finished).await.outcome(),
        Outcome::Committed
    );

    coordinator.kill().await;
    b.set(|behavior| behavior.fail_decisions = false);
    let commits_before = b.count(&Call::Commit(decided.clone()));
    coordinator.restart().await;
    let mut client = coordinator.client().await;

    b.wait_for(Call::Commit(decided.clone()), commits_before + 1)
        .await;
    assert_eq!(
        commit_and_wait(&mut client, &decided).await.outcome(),
        Outcome::Committed
    );
    assert_eq!(
        get(&mut client, &decided).await.state(),
        TransactionState::Committed
    );

    a.wait_for(Call::Abort(undecided.clone()), 1).await;
    b.wait_for(Call::Abort(undecided.clone()), 1).await;
    assert_eq!(resolve(&mut client, &undecided).await, Outcome::Aborted);
    let view = get(&mut client, &undecided).await;
    assert!(view.reason.contains("restarted"), "{}", view.reason);
    // A Commit the crash cut short, retried: the outcome, not a refusal.
    let retried = commit(&mut client, &undecided).await;
    assert_eq!(retried.outcome(), Outcome::Aborted);
    assert!(
        retried.reason.contains("before deciding"),
        "{}",
        retried.reason
    );

    assert_eq!(
        get(&mut client, &finished).await.state(),
        TransactionState::Committed
    );
    assert_eq!(resolve(&mut client, &finished).await, Outcome::Committed);
}

#[tokio::test]
async fn resolve_answers_in_every_state() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(yes()).await;
    let slow = Double::start(Behavior {
        prepare_delay: Duration::from_millis(1500),
        ..yes()
    })
    .await;
    let stuck = Double::start(failing_decisions()).await;
    let mut client = coordinator.client().await;

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        resolve(&mut client, &unknown).await,
        Outcome::Aborted,
        "presumed abort"
    );

    let active = begin(&mut client, &[("a", a.endpoint())]).await;
    assert_eq!(resolve(&mut client, &active).await, Outcome::Pending);

    let preparing = begin(&mut client, &[("slow", slow.endpoint())]).await;
    let pending_commit = {
        let (mut client, txn) = (client.clone(), preparing.clone());
        tokio::spawn(async move { commit(&mut client, &txn).await })
    };
    slow.wait_for(Call::Prepare(preparing.clone()), 1).await;
    assert_eq!(resolve(&mut client, &preparing).await, Outcome::Pending);
    assert_eq!(pending_commit.await.unwrap().outcome(), Outcome::Committed);
    assert_eq!(resolve(&mut client, &preparing).await, Outcome::Committed);

    let committing = begin(&mut client, &[("stuck", stuck.endpoint())]).await;
    commit(&mut client, &committing).await;
    stuck.wait_for(Call::Commit(committing.clone()), 1).await;
    assert_eq!(
        get(&mut client, &committing).await.state(),
        TransactionState::Committing
    );
    assert_eq!(resolve(&mut client, &committing).await, Outcome::Committed);

    client
        .abort(AbortRequest {
            txn_id: active.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(resolve(&mut client, &active).await, Outcome::Aborted);

    let malformed = client
        .resolve(ResolveRequest {
            txn_id: "12345".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
}

/// The services a reflection client of protocol version `$version` (`v1`, `v1alpha`) lists.
macro_rules! listed_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = responses.message().await.unwrap().expect("a response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response {response:?}");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn reflection_and_health_describe_the_server() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let coordinator = Coordinator::start(&[]).await;
    let channel = tonic::transport::Channel::from_shared(coordinator.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Both versions of the reflection protocol: many tools speak only v1alpha.
    let listed = [
        listed_services!(v1, channel.clone()),
        listed_services!(v1alpha, channel.clone()),
    ];
    for names in listed {
        for service in [
            "verdict.v1.Coordinator",
            "verdict.v1.Participant",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.contains(&service.to_string()),
                "{service} not in {names:?}"
            );
        }
    }

    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "verdict.v1.Coordinator".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let coordinator = Coordinator::start(&["--max-txn-timeout", "10m"]).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let begin_with = |participants, timeout_ms| BeginRequest {
        timeout_ms,
        participants,
    };

    for (endpoint, hint) in [
        ("not a url", "is not a URL"),
        ("ftp://host:1", "http:// or https://"),
        ("http://host:1/path", "must not have a path"),
        ("localhost:7500", "http:// or https://"),
    ] {
        let r = client
            .begin(begin_with(vec![participant("a", endpoint)], 0))
            .await;
        expect_status(r, Code::InvalidArgument, hint);
    }
    let long_name = "n".repeat(129);
    let r = client
        .begin(begin_with(vec![participant(&long_name, &a.endpoint())], 0))
        .await;
    expect_status(r, Code::InvalidArgument, "1 to 128 bytes");
    let r = client
        .begin(begin_with(vec![participant("", &a.endpoint())], 0))
        .await;
    expect_status(r, Code::InvalidArgument, "1 to 128 bytes");
    let r = client.begin(begin_with(vec![], 3_600_000)).await;
    expect_status(r, Code::InvalidArgument, "--max-txn-timeout");
    let twice = vec![
        participant("a", &a.endpoint()),
        participant("a", &dead_endpoint()),
    ];
    let r = client.begin(begin_with(twice, 0)).await;
    expect_status(r, Code::InvalidArgument, "already enlisted");
    let listed = client
        .list_transactions(ListTransactionsRequest::default())
        .await
        .unwrap();
    assert!(
        listed.into_inner().transactions.is_empty(),
        "refused Begins created nothing"
    );

    let txn = begin(&mut client, &[("a", a.endpoint())]).await;
    let enlist = |txn_id: &str, name: &str, endpoint: &str| EnlistRequest {
        txn_id: txn_id.into(),
        participant: Some(participant(name, endpoint)),
    };
    let r = client.enlist(enlist("", "b", &a.endpoint())).await;
    expect_status(r, Code::InvalidArgument, "txn_id is empty");
    let r = client.enlist(enlist("txn-1", "b", &a.endpoint())).await;
    expect_status(r, Code::InvalidArgument, "is not a Verdict transaction id");
    let unknown = uuid::Uuid::now_v7().to_string();
    let r = client.enlist(enlist(&unknown, "b", &a.endpoint())).await;
    expect_status(r, Code::NotFound, "unknown");
    let r = client.enlist(enlist(&txn, "a", &dead_endpoint())).await;
    expect_status(
        r,
        Code::FailedPrecondition,
        "already enlisted with endpoint",
    );
    let r = client
        .enlist(EnlistRequest {
            txn_id: txn.clone(),
            participant: None,
        })
        .await;
    expect_status(r, Code::InvalidArgument, "participant is missing");
    let again = client
        .enlist(enlist(&txn, "a", &a.endpoint()))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.newly_enlisted, "re-enlisting is a no-op");
    assert_eq!(
        get(&mut client, &txn).await.participants.len(),
        1,
        "nothing changed"
    );

    let r = client
        .get_transaction(GetTransactionRequest {
            txn_id: unknown.clone(),
        })
        .await;
    expect_status(r, Code::NotFound, "never begun");
    let r = client
        .commit(CommitRequest {
            txn_id: unknown.clone(),
            wait_for_acks: false,
            work: Vec::new(),
        })
        .await;
    expect_status(r, Code::NotFound, "retention period");

    assert_eq!(
        commit(&mut client, &txn).await.outcome(),
        Outcome::Committed
    );
    let r = client.enlist(enlist(&txn, "b", &a.endpoint())).await;
    expect_status(r, Code::FailedPrecondition, "no longer active");
    let r = client
        .abort(AbortRequest {
            txn_id: txn.clone(),
            reason: String::new(),
        })
        .await;
    expect_status(r, Code::FailedPrecondition, "committed");
    let r = client
        .abort(AbortRequest {
            txn_id: txn.clone(),
            reason: "x".repeat(2000),
        })
        .await;
    expect_status(r, Code::InvalidArgument, "at most 1024");

    let list = |state: i32, page_size: u32, page_token: &str| ListTransactionsRequest {
        state,
        page_size,
        page_token: page_token.into(),
    };
    let r = client.list_transactions(list(0, 5000, "")).await;
    expect_status(r, Code::InvalidArgument, "maximum of 1000");
    let r = client.list_transactions(list(0, 10, "page-2")).await;
    expect_status(r, Code::InvalidArgument, "next_page_token");
    let r = client.list_transactions(list(99, 10, "")).await;
    expect_status(r, Code::InvalidArgument, "not a TransactionState");
}

#[tokio::test]
async fn too_many_transactions_in_flight_are_refused_after_a_wait_with_a_hint() {
    let coordinator =
        Coordinator::start(&["--max-in-flight", "2", "--admission-wait", "50ms"]).await;
    let mut client = coordinator.client().await;
    let first = begin(&mut client, &[]).await;
    begin(&mut client, &[]).await;
    let refused = client
        .begin(BeginRequest::default())
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("--max-in-flight"), "{refused}");
    assert!(refused.message().contains("within 50 ms"), "{refused}");
    let hint = refused.metadata().get("retry-after-ms").expect("a hint");
    assert_eq!(hint.to_str().unwrap(), "50");

    // Finishing one makes room.
    assert_eq!(
        commit(&mut client, &first).await.outcome(),
        Outcome::Committed
    );
    begin(&mut client, &[]).await;
}

#[tokio::test]
async fn a_begin_at_the_limit_is_admitted_when_a_transaction_finishes_during_its_wait() {
    let coordinator = Coordinator::start(&["--max-in-flight", "1", "--admission-wait", "1h"]).await;
    let mut client = coordinator.client().await;
    let first = begin(&mut client, &[]).await;
    let mut waiting = coordinator.client().await;
    let second = tokio::spawn(async move { waiting.begin(BeginRequest::default()).await });
    assert_eq!(
        commit(&mut client, &first).await.outcome(),
        Outcome::Committed
    );
    let second = second.await.unwrap().expect("admitted, not refused");
    assert!(!second.into_inner().txn_id.is_empty());
}

#[tokio::test]
async fn the_client_sdk_comes_back_after_the_hint_until_there_is_room() {
    let coordinator = Coordinator::start(&["--max-in-flight", "1", "--admission-wait", "0s"]).await;
    let client = verdict::client::Client::new(&coordinator.url(), PATIENCE).unwrap();
    let first = client.begin(None).await.unwrap().txn_id;
    let second = tokio::spawn({
        let client = client.clone();
        async move { client.begin(None).await }
    });
    // The coordinator refuses at once while the first is in flight; the SDK keeps coming back.
    let mut raw = coordinator.client().await;
    let refused = raw.begin(BeginRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(!second.is_finished());
    client.commit(first).await.unwrap();
    second.await.unwrap().expect("admitted after coming back");
}

#[tokio::test]
async fn transactions_are_listed_in_pages_by_state() {
    let coordinator = Coordinator::start(&[]).await;
    let mut client = coordinator.client().await;
    let mut active = Vec::new();
    for _ in 0..5 {
        active.push(begin(&mut client, &[]).await);
    }
    let committed = begin(&mut client, &[]).await;
    commit_and_wait(&mut client, &committed).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_transactions(ListTransactionsRequest {
                state: TransactionState::Active.into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.transactions.len() <= 2);
        seen.extend(page.transactions.into_iter().map(|t| t.txn_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen, active,
        "every active transaction once, in begin order"
    );

    let all = client
        .list_transactions(ListTransactionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = all.transactions.iter().map(|t| t.txn_id.clone()).collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(
        ids.last(),
        Some(&committed),
        "finished ones come from the log"
    );
}

#[tokio::test]
async fn finished_transactions_are_collected_after_retention() {
    let coordinator = Coordinator::start(&["--retention", "1s", "--gc-interval", "100ms"]).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let txn = begin(&mut client, &[("a", a.endpoint())]).await;
    assert_eq!(
        commit_and_wait(&mut client, &txn).await.outcome(),
        Outcome::Committed
    );
    assert_eq!(
        get(&mut client, &txn).await.state(),
        TransactionState::Committed
    );

    let collected = tokio::time::timeout(PATIENCE, async {
        loop {
            let request = GetTransactionRequest {
                txn_id: txn.clone(),
            };
            match client.get_transaction(request).await {
                Err(status) if status.code() == Code::NotFound => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;
    assert!(collected.is_ok(), "the record was not collected");
    let retried = client
        .commit(CommitRequest {
            txn_id: txn.clone(),
            wait_for_acks: false,
            work: Vec::new(),
        })
        .await
        .expect_err("collected");
    assert_eq!(retried.code(), Code::NotFound);
    // Only Resolve presumes.
    assert_eq!(resolve(&mut client, &txn).await, Outcome::Aborted);
}

/// Begin with `double` as the one participant, "a".
fn only(double: &Double) -> BeginRequest {
    BeginRequest {
        timeout_ms: 0,
        participants: vec![participant("a", &double.endpoint())],
    }
}

/// Begins with `double` as the one participant, `traceparent` on the Begin, and commits.
async fn begin_traced_and_commit(
    client: &mut CoordinatorClient<tonic::transport::Channel>,
    double: &Double,
    traceparent: &str,
) -> String {
    let begun = client.begin(traced(only(double), traceparent)).await;
    let txn = begun.unwrap().into_inner().txn_id;
    commit_and_wait(client, &txn).await;
    txn
}

/// A `Request` carrying `traceparent` in its metadata, as a traced application sends it.
fn traced<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = traceparent.parse().unwrap();
    request.metadata_mut().insert("traceparent", value);
    request
}

#[tokio::test]
async fn the_callers_trace_context_reaches_every_participant_call() {
    let coordinator = Coordinator::start(&[]).await;
    let (a, b) = (
        Double::start(yes()).await,
        Double::start(votes_no("no stock")).await,
    );
    let mut client = coordinator.client().await;
    let begun = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let committed = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";

    // Traced from Begin: the Prepares and the phase-2 Commits carry it.
    let txn = begin_traced_and_commit(&mut client, &a, begun).await;
    let traces = a.traces();
    for call in [Call::Prepare(txn.clone()), Call::Commit(txn.clone())] {
        assert!(
            traces.contains(&(call.clone(), Some(begun.into()))),
            "{call:?} without the trace: {traces:?}"
        );
    }

    // Commit's own context wins; an abort (b votes NO) carries it too.
    let request = BeginRequest {
        timeout_ms: 0,
        participants: vec![
            participant("a", &a.endpoint()),
            participant("b", &b.endpoint()),
        ],
    };
    let txn = client.begin(request).await.unwrap().into_inner().txn_id;
    let commit = CommitRequest {
        txn_id: txn.clone(),
        wait_for_acks: true,
        work: Vec::new(),
    };
    let answer = client.commit(traced(commit, committed)).await.unwrap();
    assert_eq!(answer.into_inner().outcome(), Outcome::Aborted);
    a.wait_for(Call::Abort(txn.clone()), 1).await;
    assert!(a
        .traces()
        .contains(&(Call::Abort(txn.clone()), Some(committed.into()))));
    assert!(b
        .traces()
        .contains(&(Call::Prepare(txn.clone()), Some(committed.into()))));

    // The Rust client sends it on every call once given one.
    let traced_client = verdict::client::Client::new(&coordinator.url(), PATIENCE)
        .unwrap()
        .with_trace(committed)
        .unwrap();
    let id = traced_client.begin_with(only(&a)).await.unwrap().txn_id;
    traced_client.commit_and_wait(id).await.unwrap();
    let traces = a.traces();
    assert!(traces.contains(&(Call::Commit(id.to_string()), Some(committed.into()))));

    // A malformed context is not passed on.
    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let txn = begin_traced_and_commit(&mut client, &a, bad).await;
    let traces = a.traces();
    assert!(
        traces.contains(&(Call::Prepare(txn.clone()), None)),
        "{traces:?}"
    );
}

#[tokio::test]
async fn only_allowed_participant_endpoints_are_called() {
    let coordinator = Coordinator::start(&["--allow-participants", "localhost:*"]).await;
    let double = Double::start(yes()).await;
    let port = double.addr.port();
    let mut client = coordinator.client().await;

    let by_address = BeginRequest {
        timeout_ms: 0,
        participants: vec![participant("a", &double.endpoint())],
    };
    let refused = client.begin(by_address).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("--allow-participants localhost"),
        "{refused:?}"
    );

    let by_name = BeginRequest {
        timeout_ms: 0,
        participants: vec![participant("a", &format!("http://localhost:{port}"))],
    };
    let txn = client.begin(by_name).await.unwrap().into_inner().txn_id;
    let enlist = EnlistRequest {
        txn_id: txn.clone(),
        participant: Some(participant("b", &double.endpoint())),
    };
    let refused = client.enlist(enlist).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The refusal changed nothing: the transaction commits with its one allowed participant.
    let response = commit_and_wait(&mut client, &txn).await;
    assert_eq!(response.outcome(), Outcome::Committed);
    assert_eq!(get(&mut client, &txn).await.participants.len(), 1);
}

/// An OpenTelemetry collector double: keeps every span exported to it over OTLP/gRPC.
mod collector {
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;

    #[derive(Clone, Default)]
    pub struct Collector {
        spans: Arc<Mutex<Vec<Span>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let resources = request.into_inner().resource_spans;
            let scopes = resources.into_iter().flat_map(|r| r.scope_spans);
            let spans = scopes.flat_map(|s| s.spans);
            self.spans.lock().unwrap().extend(spans);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    impl Collector {
        /// Serves on a free port, over TLS when given its configuration; returns it and its URL.
        pub async fn start(tls: Option<tonic::transport::ServerTlsConfig>) -> (Self, String) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{}", listener.local_addr().unwrap());
            let collector = Collector::default();
            let mut server = tonic::transport::Server::builder();
            if let Some(tls) = tls {
                server = server.tls_config(tls).unwrap();
            }
            let server = server
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
            tokio::spawn(server);
            (collector, url)
        }

        pub fn spans(&self) -> Vec<Span> {
            self.spans.lock().unwrap().clone()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn with_otlp_its_own_spans_reach_the_collector_in_the_callers_trace() {
    let (collector, url) = collector::Collector::start(None).await;
    spans_reach(collector, &["--otlp-endpoint", &url]).await;
}

#[tokio::test]
async fn spans_reach_a_collector_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new(dir.path(), "otlp");
    let (cert, key) = ca.issue("collector", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(cert).unwrap(),
        std::fs::read(key).unwrap(),
    );
    let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    let (collector, url) = collector::Collector::start(Some(tls)).await;
    let ca_file = ca.ca_file();
    let flags = ["--otlp-endpoint", &url, "--tls-ca", certs::path(&ca_file)];
    spans_reach(collector, &flags).await;
}

/// A coordinator started with `flags` exports the spans of a traced transaction to
/// `collector`, in the caller's trace.
async fn spans_reach(collector: collector::Collector, flags: &[&str]) {
    let mut coordinator = Coordinator::start(flags).await;
    let a = Double::start(yes()).await;
    let mut client = coordinator.client().await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    begin_traced_and_commit(&mut client, &a, caller).await;
    // A graceful stop flushes what the exporter holds.
    coordinator.stop().await;

    let spans = collector.spans();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736")
        .collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    for name in ["Begin", "transaction", "Prepare", "Commit"] {
        assert!(
            names.contains(&name),
            "no {name:?} span in the caller's trace: {names:?}"
        );
    }
    let begin = in_trace.iter().find(|s| s.name == "Begin").unwrap();
    assert_eq!(
        hex(&begin.parent_span_id),
        "00f067aa0ba902b7",
        "Begin is the caller's child"
    );
    // OTLP span kinds: 2 server (a call served), 3 client (a call made).
    let kind = |name: &str| in_trace.iter().find(|s| s.name == name).unwrap().kind;
    assert_eq!(
        (kind("Begin"), kind("Prepare"), kind("Commit")),
        (2, 3, 3),
        "the Begin served, the Prepare and the decision sent: {names:?}"
    );
}

async fn begun(client: &mut CoordinatorClient<tonic::transport::Channel>) -> u64 {
    let stats = client.get_stats(GetStatsRequest {}).await;
    stats.expect("GetStats").into_inner().begun
}

#[tokio::test]
async fn a_caller_over_the_rate_limit_is_refused_with_a_retry_hint_and_nothing_changes() {
    let coordinator = Coordinator::start(&["--rate-limit", "2", "--rate-burst", "3"]).await;
    let mut client = coordinator.client().await;
    let (mut admitted, mut refused) = (0, Vec::new());
    for _ in 0..20 {
        let request = BeginRequest {
            timeout_ms: 0,
            participants: vec![],
        };
        match client.begin(request).await {
            Ok(_) => admitted += 1,
            Err(status) => refused.push(status),
        }
    }
    assert!(!refused.is_empty(), "20 Begins at once, 2 a second allowed");
    let first = &refused[0];
    assert_eq!(first.code(), Code::ResourceExhausted, "{first:?}");
    assert!(
        first.message().contains("--rate-limit"),
        "{}",
        first.message()
    );
    let hint = first
        .metadata()
        .get("retry-after-ms")
        .expect("a retry hint");
    let wait: u64 = hint.to_str().unwrap().parse().unwrap();
    assert!((1..=1000).contains(&wait), "{wait} ms");

    // Once a token is back, the count shows only the admitted ones began.
    let count = tokio::time::timeout(PATIENCE, async {
        loop {
            match client.get_stats(GetStatsRequest {}).await {
                Ok(stats) => return stats.into_inner().begun,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(count.await.expect("a token comes back"), admitted);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_before_it_is_read() {
    let coordinator = Coordinator::start(&["--max-message-bytes", "1024"]).await;
    let mut client = coordinator.client().await;
    let crowd = (0..30)
        .map(|i| {
            participant(
                &format!("participant-{i:03}-{}", "x".repeat(60)),
                "http://a:1",
            )
        })
        .collect();
    let request = BeginRequest {
        timeout_ms: 0,
        participants: crowd,
    };
    let refused = client.begin(request).await.expect_err("over 1024 bytes");
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(
        refused.message().contains("too large"),
        "{}",
        refused.message()
    );
    assert_eq!(begun(&mut client).await, 0);
}

#[tokio::test]
async fn metadata_over_the_limit_is_refused_and_the_server_serves_on() {
    let coordinator = Coordinator::start(&["--max-metadata-bytes", "1024"]).await;
    let mut client = coordinator.client().await;
    let mut request = tonic::Request::new(GetStatsRequest {});
    let big = "v".repeat(4096).parse().unwrap();
    request.metadata_mut().insert("x-padding", big);
    assert!(
        client.get_stats(request).await.is_err(),
        "4 KiB of metadata over a 1 KiB limit"
    );
    let mut client = coordinator.client().await;
    assert_eq!(
        begun(&mut client).await,
        0,
        "a normal request is still served"
    );
}

fn submission(request_id: &str, work: &[(&str, &Double)], wait_for_acks: bool) -> SubmitRequest {
    let work = work
        .iter()
        .map(|(name, double)| ParticipantWork {
            participant: Some(participant(name, &double.endpoint())),
            work: format!("work for {name}").into_bytes(),
        })
        .collect();
    SubmitRequest {
        request_id: request_id.into(),
        timeout_ms: 0,
        work,
        wait_for_acks,
    }
}

async fn submit(
    client: &mut CoordinatorClient<tonic::transport::Channel>,
    request: SubmitRequest,
) -> SubmitResponse {
    tokio::time::timeout(PATIENCE, client.submit(request))
        .await
        .expect("answered in time")
        .expect("submit")
        .into_inner()
}

fn takes_work() -> Behavior {
    Behavior {
        takes_work: true,
        ..yes()
    }
}

#[tokio::test]
async fn submit_begins_and_commits_in_one_call_and_its_retries_run_nothing_again() {
    let coordinator = Coordinator::start(&[]).await;
    let (a, b) = (
        Double::start(takes_work()).await,
        Double::start(takes_work()).await,
    );
    let no = Double::start(votes_no("out of stock")).await;
    let mut client = coordinator.client().await;

    let request = submission("order-1", &[("a", &a), ("b", &b)], true);
    let first = submit(&mut client, request.clone()).await;
    assert_eq!(
        (first.outcome(), first.reason.as_str()),
        (Outcome::Committed, "")
    );
    let view = get(&mut client, &first.txn_id).await;
    assert_eq!(view.state(), TransactionState::Committed);
    assert_eq!(view.participants.len(), 2);
    // Finished and out of memory: the retry finds it in the log. Its work is ignored.
    let mut retry = request.clone();
    retry.work.truncate(1);
    assert_eq!(submit(&mut client, retry).await, first);
    for double in [&a, &b] {
        assert_eq!(double.count(&Call::Prepare(first.txn_id.clone())), 1);
        assert_eq!(double.count(&Call::Commit(first.txn_id.clone())), 1);
    }

    let refused = submit(
        &mut client,
        submission("order-2", &[("a", &a), ("no", &no)], false),
    )
    .await;
    assert_eq!(refused.outcome(), Outcome::Aborted);
    assert!(
        refused.reason.contains("out of stock"),
        "{}",
        refused.reason
    );
    assert_ne!(refused.txn_id, first.txn_id);
    let retry = submission("order-2", &[("a", &a), ("no", &no)], false);
    assert_eq!(submit(&mut client, retry).await, refused);
    a.wait_for(Call::Abort(refused.txn_id.clone()), 1).await;
    assert_eq!(a.count(&Call::Prepare(refused.txn_id.clone())), 1);
    assert_eq!(begun(&mut client).await, 2);
}

#[tokio::test]
async fn concurrent_submits_of_one_request_begin_one_transaction() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(Behavior {
        prepare_delay: Duration::from_millis(200),
        ..takes_work()
    })
    .await;
    let mut client = coordinator.client().await;
    let submits: Vec<_> = (0..5)
        .map(|_| {
            let mut client = client.clone();
            let request = submission("order-7", &[("a", &a)], false);
            tokio::spawn(async move { submit(&mut client, request).await })
        })
        .collect();
    let mut answers = Vec::new();
    for handle in submits {
        answers.push(handle.await.unwrap());
    }
    assert_eq!(answers[0].outcome(), Outcome::Committed);
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );
    assert_eq!(a.count(&Call::Prepare(answers[0].txn_id.clone())), 1);
    assert_eq!(begun(&mut client).await, 1);
}

#[tokio::test]
async fn a_bad_submit_gets_a_clear_error_and_begins_nothing() {
    let coordinator = Coordinator::start(&["--max-txn-timeout", "10m"]).await;
    let a = Double::start(takes_work()).await;
    let mut client = coordinator.client().await;
    let request = |request_id: &str| submission(request_id, &[("a", &a)], false);

    let cases = [
        (request(""), "printable ASCII"),
        (request("order\n1"), "printable ASCII"),
        (request("commande-é"), "printable ASCII"),
        (request(&"r".repeat(129)), "1 to 128 bytes"),
        (
            SubmitRequest {
                work: Vec::new(),
                ..request("order-1")
            },
            "at least one participant",
        ),
        (
            SubmitRequest {
                timeout_ms: 3_600_000,
                ..request("order-1")
            },
            "maximum",
        ),
    ];
    for (bad, hint) in cases {
        expect_status(client.submit(bad).await, Code::InvalidArgument, hint);
    }
    let mut empty_work = request("order-1");
    empty_work.work[0].work.clear();
    let r = client.submit(empty_work).await;
    expect_status(r, Code::InvalidArgument, "give 1 to");
    let mut bad_endpoint = request("order-1");
    bad_endpoint.work[0].participant = Some(participant("a", "not a url"));
    let r = client.submit(bad_endpoint).await;
    expect_status(r, Code::InvalidArgument, "is not a URL");

    assert_eq!(begun(&mut client).await, 0);
    // The request id was not taken by any of them.
    let good = submit(&mut client, request("order-1")).await;
    assert_eq!(good.outcome(), Outcome::Committed);
}

#[tokio::test]
async fn a_traced_submit_carries_its_context_to_every_participant_call() {
    let coordinator = Coordinator::start(&[]).await;
    let a = Double::start(takes_work()).await;
    let mut client = coordinator.client().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = traced(submission("order-9", &[("a", &a)], true), traceparent);
    let answer = client.submit(request).await.unwrap().into_inner();
    assert_eq!(answer.outcome(), Outcome::Committed);
    let traces = a.traces();
    for call in [
        Call::Prepare(answer.txn_id.clone()),
        Call::Commit(answer.txn_id),
    ] {
        assert!(
            traces.contains(&(call.clone(), Some(traceparent.into()))),
            "{call:?} without the trace: {traces:?}"
        );
    }
}
