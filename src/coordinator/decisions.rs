//! Phase-2 decisions on their way to one participant endpoint, several to a call
//! (`Participant.Decide`).
//!
//! Two calls are in flight per endpoint at most; the decisions that come while both are out
//! leave together in the next one. A lone decision leaves at once, and under load a batch holds
//! what arrived during a round trip, so calls per decision fall as load grows: fewer HTTP/2
//! streams, wake-ups and task hand-offs on both ends, while the participant still makes the
//! whole batch durable at once. The second call keeps a decision from waiting out a whole slow
//! batch before it leaves: a prepared transaction holds its locks until it hears. A participant that answers `UNIMPLEMENTED` (written before `Decide`, in any
//! language) is sent its decisions one by one from then on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;

use super::clients::{answer, failure, outgoing, CallError, Failure};
use crate::core::{Outcome, TxnId};
use crate::metrics as names;
use crate::proto::participant_client::ParticipantClient;
use crate::proto::{DecideRequest, Decision, DecisionResult};

/// The most decisions in one call (a participant takes up to `validate::MAX_DECISIONS`).
const MOST_PER_CALL: usize = 256;

/// The most calls in flight to one endpoint.
const CALLS_IN_FLIGHT: usize = 2;

/// What became of a decision handed to [`Batches::deliver`].
#[derive(Clone)]
pub enum Delivery {
    /// Acknowledged, or why not.
    Sent(Result<(), CallError>),
    /// This endpoint takes no batches: send the decision on its own.
    NotBatched,
}

/// The decisions waiting for one endpoint, and the task that sends them.
pub struct Batches {
    waiting: mpsc::UnboundedSender<Waiting>,
    /// False once the endpoint answered `Decide` with `UNIMPLEMENTED`.
    taken: Arc<AtomicBool>,
}

struct Waiting {
    txn_id: TxnId,
    outcome: Outcome,
    timeout: Duration,
    delivered: oneshot::Sender<Delivery>,
}

impl Batches {
    /// Starts sending batches to `endpoint` over `client`; the task ends when these batches
    /// are dropped.
    pub fn start(endpoint: &str, client: ParticipantClient<Channel>) -> Self {
        let (waiting, queue) = mpsc::unbounded_channel();
        let taken = Arc::new(AtomicBool::new(true));
        tokio::spawn(send_batches(
            endpoint.to_owned(),
            client,
            queue,
            taken.clone(),
        ));
        Batches { waiting, taken }
    }

    /// Delivers one decision in the next batch. The queue is bounded by the caller's turns.
    pub async fn deliver(&self, txn_id: TxnId, outcome: Outcome, timeout: Duration) -> Delivery {
        if !self.taken.load(Ordering::Relaxed) {
            return Delivery::NotBatched;
        }
        let (delivered, answer) = oneshot::channel();
        let waiting = Waiting {
            txn_id,
            outcome,
            timeout,
            delivered,
        };
        if self.waiting.send(waiting).is_err() {
            return Delivery::NotBatched;
        }
        answer.await.unwrap_or(Delivery::NotBatched)
    }
}

async fn send_batches(
    endpoint: String,
    client: ParticipantClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    taken: Arc<AtomicBool>,
) {
    let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
    loop {
        let call = calls.clone().acquire_owned().await.expect("never closed");
        let mut batch = Vec::new();
        if queue.recv_many(&mut batch, MOST_PER_CALL).await == 0 {
            return;
        }
        metrics::histogram!(names::PHASE2_BATCH, "participant" => endpoint.clone())
            .record(batch.len() as f64);
        let (client, taken) = (client.clone(), taken.clone());
        tokio::spawn(async move {
            let deliveries = match taken.load(Ordering::Relaxed) {
                true => send(client, &batch, &taken).await,
                // Queued before the endpoint said it takes no batches.
                false => vec![Delivery::NotBatched; batch.len()],
            };
            for (waiting, delivery) in batch.into_iter().zip(deliveries) {
                let _ = waiting.delivered.send(delivery);
            }
            drop(call);
        });
    }
}

/// Sends one batch; a delivery for each of its decisions, in order.
async fn send(
    mut client: ParticipantClient<Channel>,
    batch: &[Waiting],
    taken: &AtomicBool,
) -> Vec<Delivery> {
    let timeout = batch.iter().map(|w| w.timeout).max().unwrap_or_default();
    let decisions = batch
        .iter()
        .map(|w| Decision {
            txn_id: w.txn_id.to_string(),
            commit: w.outcome == Outcome::Committed,
        })
        .collect();
    let request = outgoing(DecideRequest { decisions }, timeout, None);
    let each = |delivery: Delivery| vec![delivery; batch.len()];
    match Box::pin(answer(timeout, client.decide(request))).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            taken.store(false, Ordering::Relaxed);
            each(Delivery::NotBatched)
        }
        Err(status) => each(Delivery::Sent(Err(failure(&status, timeout)))),
        Ok(response) if response.results.len() != batch.len() => {
            let message = format!(
                "answered Decide with {} results for {} decisions",
                response.results.len(),
                batch.len()
            );
            each(Delivery::Sent(Err(CallError::new(
                Failure::Refused,
                message,
            ))))
        }
        Ok(response) => response
            .results
            .into_iter()
            .map(|result| Delivery::Sent(acknowledged(result, timeout)))
            .collect(),
    }
}

fn acknowledged(result: DecisionResult, timeout: Duration) -> Result<(), CallError> {
    match tonic::Code::from(result.code) {
        tonic::Code::Ok => Ok(()),
        code => Err(failure(&tonic::Status::new(code, result.message), timeout)),
    }
}
