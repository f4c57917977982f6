//! Recovery at scale: a coordinator killed with many decided transactions whose phase 2 never
//! got through (the participant refused every decision) serves again as soon as it restarts —
//! new transactions are admitted beside the backlog, which counts against `--max-undelivered`,
//! not `--max-in-flight` — and re-drives them all without ever having more decisions open at
//! the participant than `--deliveries-per-participant`. `VERDICT_RECOVERY_TXNS` sets how many
//! (400 by default, to keep CI short; the README's Performance section gives the 100,000
//! figure and how to measure it).

mod support;

use std::time::{Duration, Instant};

use support::*;
use verdict::client::Client;
use verdict::core::Outcome;
use verdict::proto::{BeginRequest, CommitRequest, GetStatsRequest};

const DELIVERIES_PER_PARTICIPANT: usize = 8;

/// Decides `count` transactions on `participant`, `at_once` at a time.
async fn decide(client: &Client, participant: &str, count: usize, at_once: usize) {
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..count {
        if i >= at_once {
            pending.join_next().await.unwrap().unwrap();
        }
        let (client, endpoint) = (client.clone(), participant.to_owned());
        pending.spawn(async move {
            let request = BeginRequest {
                timeout_ms: 0,
                participants: vec![support::participant("double", &endpoint)],
            };
            let txn = client.begin_with(request).await.unwrap().txn_id;
            let (outcome, reason) = client.commit(txn).await.unwrap();
            assert_eq!(outcome, Outcome::Committed, "{reason}");
        });
    }
    while let Some(done) = pending.join_next().await {
        done.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_coordinator_redrives_many_decided_transactions_a_few_at_a_time() {
    let count: usize = std::env::var("VERDICT_RECOVERY_TXNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    let double = Double::start(Behavior {
        fail_decisions: true,
        decision_delay: Duration::from_millis(1),
        ..Behavior::default()
    })
    .await;
    let deliveries = DELIVERIES_PER_PARTICIPANT.to_string();
    // Decided transactions are held until their decision is delivered.
    let undelivered = (count + 100).to_string();
    // Fewer in flight than owed, and no waiting for room: were the backlog counted as in
    // flight, a Begin right after the restart would be refused at once.
    let args = [
        "--max-in-flight",
        "100",
        "--admission-wait",
        "0s",
        "--deliveries-per-participant",
        &deliveries,
        "--max-undelivered",
        &undelivered,
        "--retry-max",
        "1s",
    ];
    let mut coordinator = Coordinator::start(&args).await;
    let client = Client::new(&coordinator.url(), PATIENCE * 10).unwrap();
    decide(&client, &double.endpoint(), count, 64).await;

    coordinator.kill().await;
    double.set(|behavior| behavior.fail_decisions = false);
    let restarted = Instant::now();
    coordinator.restart().await;
    coordinator.wait_serving("verdict.v1.Coordinator").await;
    let serving = restarted.elapsed();
    let mut stats = coordinator.client().await;
    let begun = stats.begin(BeginRequest::default()).await;
    let txn_id = begun
        .expect("a new transaction admitted beside the backlog")
        .into_inner()
        .txn_id;
    let commit = CommitRequest {
        txn_id,
        wait_for_acks: false,
        work: Vec::new(),
    };
    let outcome = stats.commit(commit).await.unwrap().into_inner().outcome();
    assert_eq!(outcome, verdict::proto::Outcome::Committed);
    let patience = PATIENCE + Duration::from_millis(count as u64);
    let delivered = tokio::time::timeout(patience, async {
        loop {
            let now = stats.get_stats(GetStatsRequest {}).await.unwrap();
            if now.into_inner().in_flight == 0 {
                return restarted.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every recovered decision delivered");
    eprintln!(
        "{count} decided transactions recovered: serving after {serving:?}, every decision \
         delivered after {delivered:?}, at most {} decisions open at once",
        double.most_open_decisions()
    );
    assert!(
        double.most_open_decisions() <= DELIVERIES_PER_PARTICIPANT,
        "{} decisions open at once",
        double.most_open_decisions()
    );
}
