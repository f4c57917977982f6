//! The one client layer through which the coordinator reaches participants: a pooled channel per
//! endpoint, a bound on the decisions being delivered to one endpoint at once, a deadline on
//! every call, and failures turned into messages an operator can act on. Retry policy is the
//! engine's (phase 2 retries forever; a prepare is asked once).
//!
//! The bound is what keeps a participant that returns after an outage — owed the decisions of
//! every transaction decided meanwhile, perhaps a hundred thousand after a coordinator restart —
//! from being sent them all at once: deliveries beyond it wait their turn, in order, and their
//! deadline starts when they are sent. Prepares do not queue behind that backlog: there are
//! only as many as transactions in flight (`--max-in-flight`), and new transactions wait on
//! them. Prepares go as messages of one long-lived call per endpoint ([`super::prepares`]),
//! and decisions whose turn it is several to a call ([`super::decisions`]), except a traced
//! transaction's, which each go alone with their trace context. Each endpoint's call
//! durations go to its own metric handles, looked up once rather than per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::transport::Channel;

use super::decisions::{Batches, Delivery};
use super::prepares::{PrepareStream, Streamed};
use super::service::TRACEPARENT;
use crate::core::{Outcome, TxnId, Vote};
use crate::metrics as names;
use crate::proto::participant_client::ParticipantClient;
use crate::proto::{self, ParticipantAbortRequest, ParticipantCommitRequest, PrepareRequest};
use crate::{net, tls};

/// How long establishing a connection to a participant may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The NO counted for a participant that voted without running the work handed to it.
const IGNORED_WORK: &str = "it did not run the work the application handed over in Commit \
     (it does not read PrepareRequest.work, so it would have committed without it): give this \
     participant its work through its own API before Commit";

/// Where participants reach this coordinator, as sent with every Prepare.
#[derive(Clone, Debug, Default)]
pub struct Coordinator {
    /// This node's URL (the leader's, in a cluster).
    pub url: String,
    /// Every node of the cluster; empty on a single node.
    pub cluster_urls: Vec<String>,
}

/// Why a call to a participant got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the call's timeout.
    TimedOut,
    /// No connection (or the endpoint is no usable URL).
    Unreachable,
    /// It answered with an error status.
    Refused,
}

/// A failed call: why, and a message an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub failure: Failure,
    pub message: String,
}

impl CallError {
    pub(super) fn new(failure: Failure, message: String) -> Self {
        CallError { failure, message }
    }
}

/// Pooled gRPC channels to participants, one per endpoint, shared by every transaction.
pub struct ParticipantClients {
    /// The most decisions being delivered to one endpoint at once.
    deliveries_per_endpoint: usize,
    channels: Mutex<HashMap<String, Endpoint>>,
}

/// One participant endpoint: its channel, the turns to deliver decisions to it, the batches
/// they go in, and how long its calls take.
#[derive(Clone)]
struct Endpoint {
    channel: Channel,
    turns: Arc<Semaphore>,
    batches: Arc<Batches>,
    prepares: PrepareStream,
    durations: Arc<Durations>,
}

/// The histograms of one endpoint's calls.
struct Durations {
    prepare: Histogram,
    commit: Histogram,
    abort: Histogram,
}

impl Durations {
    fn of(endpoint: &str) -> Self {
        let phase2 = |decision: &'static str| {
            let labels = [
                ("participant", endpoint.to_owned()),
                ("decision", decision.into()),
            ];
            metrics::histogram!(names::PHASE2_SECONDS, &labels)
        };
        Durations {
            prepare: metrics::histogram!(names::PREPARE_SECONDS, "participant" => endpoint.to_owned()),
            commit: phase2("commit"),
            abort: phase2("abort"),
        }
    }

    fn phase2(&self, outcome: Outcome) -> &Histogram {
        match outcome {
            Outcome::Committed => &self.commit,
            Outcome::Aborted => &self.abort,
        }
    }
}

impl ParticipantClients {
    pub fn new(deliveries_per_endpoint: usize) -> Self {
        ParticipantClients {
            deliveries_per_endpoint: deliveries_per_endpoint.max(1),
            channels: Mutex::default(),
        }
    }

    /// `endpoint` once it is this delivery's turn, with the turn to give back when the
    /// delivery is over.
    async fn delivery_turn(
        &self,
        endpoint: &str,
    ) -> Result<(Endpoint, OwnedSemaphorePermit), CallError> {
        let endpoint = self.endpoint(endpoint)?;
        let turn = endpoint.turns.clone().acquire_owned().await;
        Ok((endpoint, turn.expect("never closed")))
    }

    fn endpoint(&self, endpoint: &str) -> Result<Endpoint, CallError> {
        let mut channels = self.channels.lock().expect("lock");
        if let Some(known) = channels.get(endpoint) {
            return Ok(known.clone());
        }
        let configured = tls::endpoint(endpoint).map_err(|e| {
            let message = format!("the participant's endpoint is not usable: {e}");
            CallError::new(Failure::Unreachable, message)
        })?;
        let channel = net::channel(net::watched(
            configured
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true),
        ));
        let known = Endpoint {
            batches: Arc::new(Batches::start(
                endpoint,
                ParticipantClient::new(channel.clone()),
            )),
            prepares: PrepareStream::new(ParticipantClient::new(channel.clone())),
            channel,
            turns: Arc::new(Semaphore::new(self.deliveries_per_endpoint)),
            durations: Arc::new(Durations::of(endpoint)),
        };
        channels.insert(endpoint.to_owned(), known.clone());
        Ok(known)
    }

    /// Asks `endpoint` to prepare, sending `work` if any; `Err` when no vote came back (timeout,
    /// unreachable, error). The call's duration is recorded either way.
    pub async fn prepare(
        &self,
        endpoint: &str,
        txn_id: TxnId,
        coordinator: &Coordinator,
        timeout: Duration,
        trace: Option<&str>,
        work: Vec<u8>,
    ) -> Result<Vote, CallError> {
        let endpoint = self.endpoint(endpoint)?;
        let handed_work = !work.is_empty();
        let request = PrepareRequest {
            txn_id: txn_id.to_string(),
            coordinator_endpoint: coordinator.url.clone(),
            coordinator_endpoints: coordinator.cluster_urls.clone(),
            timeout_ms: timeout.as_millis() as u64,
            work,
        };
        let started = Instant::now();
        // A traced transaction's prepare goes alone, with its trace context.
        let streamed = match trace {
            None => endpoint.prepares.prepare(request, timeout).await,
            Some(_) => Streamed::NotStreamed(request),
        };
        let response = match streamed {
            Streamed::Answered(answer) => answer.map_err(|status| failure(&status, timeout)),
            Streamed::NotStreamed(request) => {
                let mut client = ParticipantClient::new(endpoint.channel.clone());
                let request = outgoing(request, timeout, trace);
                Box::pin(call(timeout, client.prepare(request))).await
            }
        };
        endpoint.durations.prepare.record(started.elapsed());
        let response = response?;
        match response.vote() {
            proto::Vote::Yes | proto::Vote::ReadOnly if handed_work && !response.took_work => {
                Ok(Vote::No(IGNORED_WORK.into()))
            }
            proto::Vote::Yes => Ok(Vote::Yes),
            proto::Vote::ReadOnly => Ok(Vote::ReadOnly),
            proto::Vote::No => Ok(Vote::No(response.reason)),
            proto::Vote::Unspecified => Err(CallError::new(
                Failure::Refused,
                "answered Prepare without a vote".into(),
            )),
        }
    }

    /// Delivers the decision to `endpoint`; `Ok` once it acknowledged. The delivery's
    /// duration, its wait for a turn included, is recorded either way.
    pub async fn deliver(
        &self,
        endpoint: &str,
        txn_id: TxnId,
        outcome: Outcome,
        timeout: Duration,
        trace: Option<&str>,
    ) -> Result<(), CallError> {
        let started = Instant::now();
        // A delivery waiting for its turn holds only this future, and a backlog may hold
        // 100,000 of them: the call's own (several KB) is made, on the heap, once it is its turn.
        let (endpoint, _turn) = self.delivery_turn(endpoint).await?;
        let durations = endpoint.durations.clone();
        let delivered = Self::send_decision(endpoint, txn_id, outcome, timeout, trace).await;
        durations.phase2(outcome).record(started.elapsed());
        delivered
    }

    /// Sends the decision in the endpoint's next batch, or on its own: a traced transaction's,
    /// or to an endpoint that takes no batches.
    async fn send_decision(
        endpoint: Endpoint,
        txn_id: TxnId,
        outcome: Outcome,
        timeout: Duration,
        trace: Option<&str>,
    ) -> Result<(), CallError> {
        if trace.is_none() {
            let batched = endpoint.batches.deliver(txn_id, outcome, timeout).await;
            if let Delivery::Sent(result) = batched {
                return result;
            }
        }
        let mut client = ParticipantClient::new(endpoint.channel);
        let txn_id = txn_id.to_string();
        match outcome {
            Outcome::Committed => {
                let request = outgoing(ParticipantCommitRequest { txn_id }, timeout, trace);
                Box::pin(call(timeout, client.commit(request)))
                    .await
                    .map(drop)
            }
            Outcome::Aborted => {
                let request = outgoing(ParticipantAbortRequest { txn_id }, timeout, trace);
                Box::pin(call(timeout, client.abort(request)))
                    .await
                    .map(drop)
            }
        }
    }
}

/// A request to a participant: it says how long we wait (the grpc-timeout header), and carries
/// the application's trace context on, so one trace shows the whole transaction.
pub(super) fn outgoing<T>(message: T, timeout: Duration, trace: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    if let Some(value) = trace.and_then(|t| t.parse().ok()) {
        request.metadata_mut().insert(TRACEPARENT, value);
    }
    request
}

/// Runs one call under `timeout` and describes any failure.
async fn call<T>(
    timeout: Duration,
    response: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    answer(timeout, response)
        .await
        .map_err(|status| failure(&status, timeout))
}

/// Runs one call under `timeout`: its answer, or the status it failed with (`DEADLINE_EXCEEDED`
/// when the timeout ran out).
pub(super) async fn answer<T>(
    timeout: Duration,
    response: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, response).await {
        Ok(answered) => answered.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("")),
    }
}

/// Describes a call's failure for an operator.
pub(super) fn failure(status: &tonic::Status, timeout: Duration) -> CallError {
    match status.code() {
        // tonic's own deadline (the grpc-timeout we set) may fire first, as Cancelled.
        tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            let message = format!("no answer within {}", humantime::format_duration(timeout));
            CallError::new(Failure::TimedOut, message)
        }
        tonic::Code::Unavailable => CallError::new(
            Failure::Unreachable,
            format!("unreachable: {}", status.message()),
        ),
        code => CallError::new(
            Failure::Refused,
            format!("answered {code:?}: {}", status.message()),
        ),
    }
}
