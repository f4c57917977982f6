//! `verdict.v1.Coordinator` over gRPC: arguments are validated, the engine is called, and its
//! errors become status codes here and nowhere else.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::view::{State, TxnView};
use super::{validate, Engine, EngineError, Leadership, NotLeader, Submission};
use crate::auth::{self, Caller, Role};
use crate::core::{Outcome, Participant, TxnId, Vote};
use crate::log::DecisionLog;
use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{self, coordinator_server};
use crate::{limits, net, tls};

pub use crate::proto::{LEADER_METADATA, TRACEPARENT};

/// Marks a read forwarded by a node that does not lead, so it is forwarded at most once.
const FORWARDED_METADATA: &str = "verdict-forwarded";

/// The gRPC face of a node: its engine while it leads; otherwise writes are refused with the
/// leader's URL and reads are forwarded to the leader.
pub struct CoordinatorService<N> {
    node: N,
    /// Channels to leaders, for forwarded reads.
    leaders: Mutex<HashMap<String, CoordinatorClient<Channel>>>,
}

impl<N: Leadership> CoordinatorService<N> {
    pub fn new(node: N) -> Self {
        CoordinatorService {
            node,
            leaders: Mutex::new(HashMap::new()),
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> coordinator_server::CoordinatorServer<Self> {
        coordinator_server::CoordinatorServer::new(self)
    }

    /// The engine that runs transactions here, or `UNAVAILABLE` naming the leader.
    fn engine(&self) -> Result<Arc<Engine<N::Log>>, Status> {
        self.node.engine().map_err(not_leader)
    }

    fn leader_client(&self, url: &str) -> Result<CoordinatorClient<Channel>, Status> {
        let mut leaders = self.leaders.lock().expect("lock");
        if let Some(client) = leaders.get(url) {
            return Ok(client.clone());
        }
        let channel = net::channel(
            tls::endpoint(url)
                .map_err(|e| Status::internal(format!("the leader's URL is unusable: {e}")))?
                .tcp_nodelay(true),
        );
        let client = CoordinatorClient::new(channel);
        leaders.insert(url.to_owned(), client.clone());
        Ok(client)
    }

    /// Answers a read here if this node leads (confirmed by a quorum, so never from stale
    /// state), or forwards it once to the leader.
    async fn read<Req, Resp, Fut>(
        &self,
        request: Request<Req>,
        local: impl FnOnce(&Engine<N::Log>) -> Result<Resp, EngineError>,
        forward: impl FnOnce(CoordinatorClient<Channel>, Request<Req>) -> Fut,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let forwarded = request.metadata().contains_key(FORWARDED_METADATA);
        let caller = auth::caller(&request);
        match self.node.confirmed().await {
            Ok(engine) => Ok(Response::new(local(&engine)?)),
            Err(NotLeader {
                leader_url: Some(url),
                ..
            }) if !forwarded => {
                let client = self.leader_client(&url)?;
                let mut onward = Request::new(request.into_inner());
                onward.metadata_mut().insert(
                    FORWARDED_METADATA,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                // The leader checks the caller's rights again, as this node did.
                if let Some(caller) = caller {
                    let metadata = onward.metadata_mut();
                    if let Ok(name) = caller.name.parse() {
                        metadata.insert(auth::ON_BEHALF_OF, name);
                    }
                    if let Ok(roles) = caller.role_names().parse() {
                        metadata.insert(auth::ON_BEHALF_OF_ROLES, roles);
                    }
                }
                forward(client, onward).await
            }
            Err(not) => Err(not_leader(not)),
        }
    }
}

/// Who settled a transaction by hand, as recorded: the operator's words, the identity that
/// called (under `--auth`, when the words do not name it) and the address it called from.
fn settled_by(
    operator: String,
    identity: Option<String>,
    from: Option<std::net::SocketAddr>,
) -> String {
    let mut by = operator;
    if let Some(identity) = identity.filter(|identity| *identity != by) {
        by = format!("{by} (identity {identity})");
    }
    if let Some(addr) = from {
        by = format!("{by} (from {addr})");
    }
    by
}

/// Refuses an application acting on, or reading, a transaction another identity began
/// (operators may act on any, and without `--auth` there is no caller): `NotAllowed`, which
/// becomes `PERMISSION_DENIED`. A transaction with no record passes, to be answered `NOT_FOUND`
/// as for anyone.
fn began<L: DecisionLog>(
    engine: &Engine<L>,
    caller: Option<&Caller>,
    id: TxnId,
) -> Result<(), EngineError> {
    let Some(caller) = caller.filter(|c| !c.is(Role::Operator)) else {
        return Ok(());
    };
    match engine.begun_by(id, &caller.name)? {
        Some(false) => Err(EngineError::NotAllowed(format!(
            "{} may act only on the transactions it began, and another identity began {id}: \
             call as that identity, or as an operator",
            caller.name
        ))),
        _ => Ok(()),
    }
}

/// `UNAVAILABLE`, with the leader's URL in the message and the `verdict-leader` metadata.
fn not_leader(not: NotLeader) -> Status {
    let message = match &not.leader_url {
        Some(url) => format!(
            "{}; the leader is {url} (see the {LEADER_METADATA} metadata)",
            not.why
        ),
        None => format!(
            "{}; no leader is known yet (an election may be under way): retry shortly",
            not.why
        ),
    };
    let mut status = Status::unavailable(message);
    if let Some(url) = not.leader_url.and_then(|url| url.parse().ok()) {
        status.metadata_mut().insert(LEADER_METADATA, url);
    }
    status
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        let message = error.to_string();
        match error {
            EngineError::InvalidArgument(_) => Status::invalid_argument(message),
            EngineError::NotFound(_) => Status::not_found(message),
            EngineError::Rejected(..) | EngineError::NothingToDo(_) => {
                Status::failed_precondition(message)
            }
            EngineError::Overloaded { retry_after, .. } => {
                limits::retry_after(Status::resource_exhausted(message), retry_after)
            }
            EngineError::NotAllowed(_) => Status::permission_denied(message),
            EngineError::Corrupt(_) => Status::data_loss(message),
            EngineError::Unavailable(_) => Status::unavailable(message),
            EngineError::Log(e) => {
                tracing::error!(error = %e, "request failed in the decision log");
                Status::internal(
                    "the coordinator's decision log failed; retry against a healthy node",
                )
            }
        }
    }
}

fn wire_outcome(outcome: Option<Outcome>) -> proto::Outcome {
    match outcome {
        Some(Outcome::Committed) => proto::Outcome::Committed,
        Some(Outcome::Aborted) => proto::Outcome::Aborted,
        None => proto::Outcome::Pending,
    }
}

fn wire_state(state: State) -> proto::TransactionState {
    match state {
        State::Active => proto::TransactionState::Active,
        State::Preparing => proto::TransactionState::Preparing,
        State::Committing => proto::TransactionState::Committing,
        State::Aborting => proto::TransactionState::Aborting,
        State::Committed => proto::TransactionState::Committed,
        State::Aborted => proto::TransactionState::Aborted,
    }
}

fn wire_participant(p: Participant) -> proto::ParticipantStatus {
    let vote = match p.vote {
        None => proto::Vote::Unspecified,
        Some(Vote::Yes) => proto::Vote::Yes,
        Some(Vote::No(_)) => proto::Vote::No,
        Some(Vote::ReadOnly) => proto::Vote::ReadOnly,
    };
    proto::ParticipantStatus {
        participant: Some(proto::ParticipantRef {
            name: p.name,
            endpoint: p.endpoint,
        }),
        vote: vote.into(),
        acknowledged: p.delivery == crate::core::Delivery::Acked,
        attempts: p.attempts,
        last_error: p.last_error.unwrap_or_default(),
        settled_by_hand: p.delivery == crate::core::Delivery::SettledByHand,
    }
}

fn wire_transaction(view: TxnView) -> proto::Transaction {
    let timeline = view
        .events()
        .into_iter()
        .map(|(at_unix_ms, event)| proto::TimelineEvent { at_unix_ms, event });
    let resolution = view
        .timeline
        .settlement
        .as_ref()
        .map(|s| proto::HandResolution {
            outcome: wire_outcome(Some(s.outcome)).into(),
            operator: s.by.clone(),
            reason: s.reason.clone(),
            at_unix_ms: s.at_unix_ms,
        });
    proto::Transaction {
        begun_by: view.timeline.begun_by.clone().unwrap_or_default(),
        timeline: timeline.collect(),
        resolution,
        txn_id: view.txn_id.to_string(),
        state: wire_state(view.state).into(),
        reason: view.reason.unwrap_or_default(),
        deadline_unix_ms: view.deadline_unix_ms,
        participants: view
            .participants
            .into_iter()
            .map(wire_participant)
            .collect(),
    }
}

/// The caller's W3C trace context (`traceparent`), if it sent a well-formed one: version `00`,
/// a 32-hex trace id and a 16-hex parent id (neither all zeros), 2-hex flags. A malformed one is
/// ignored, as the W3C Trace Context recommendation says.
fn trace_parent(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get(TRACEPARENT)?.to_str().ok()?.trim();
    let fields: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let well_formed = matches!(fields.as_slice(), [version, trace, parent, flags]
        if *version == "00"
            && hex(trace, 32) && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16) && parent.bytes().any(|b| b != b'0')
            && hex(flags, 2));
    well_formed.then(|| value.to_owned())
}

/// The span of one RPC, exported as `method` (with `--otlp-endpoint`): a child of the caller's
/// span when it sent a `traceparent`.
fn span(method: &'static str, txn_id: &str, trace: Option<&str>) -> tracing::Span {
    // Fields are evaluated only when the span is enabled: nothing is built without an exporter.
    let span = tracing::debug_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        method,
        txn_id = %txn_id.chars().take(40).collect::<String>()
    );
    if let Some(trace) = trace.filter(|_| !span.is_disabled()) {
        crate::telemetry::continue_trace(&span, trace);
    }
    span
}

#[tonic::async_trait]
impl<N: Leadership> coordinator_server::Coordinator for CoordinatorService<N> {
    async fn begin(
        &self,
        request: Request<proto::BeginRequest>,
    ) -> Result<Response<proto::BeginResponse>, Status> {
        let trace = trace_parent(request.metadata());
        let begun_by = auth::caller(&request).map(|c| c.name.clone());
        let request = request.into_inner();
        let engine = self.engine()?;
        let timeout = validate::txn_timeout(request.timeout_ms, engine.max_txn_timeout())?;
        let participants = validate::participants(request.participants)?;
        // The transaction's own span, made in `begin`, is a child of this one.
        let span = span("Begin", "", trace.as_deref());
        let begun = engine
            .begin(timeout, participants, begun_by)
            .instrument(span)
            .await?;
        if let Some(trace) = trace {
            engine.trace(begun.txn_id, trace);
        }
        Ok(Response::new(proto::BeginResponse {
            txn_id: begun.txn_id.to_string(),
            deadline_unix_ms: begun.deadline_unix_ms,
        }))
    }

    async fn enlist(
        &self,
        request: Request<proto::EnlistRequest>,
    ) -> Result<Response<proto::EnlistResponse>, Status> {
        let trace = trace_parent(request.metadata());
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let _span = span("Enlist", &request.txn_id, trace.as_deref()).entered();
        let id = validate::txn_id(&request.txn_id)?;
        let participant = validate::participant(request.participant)?;
        let engine = self.engine()?;
        if let Some(caller) = caller.filter(|c| !c.is(Role::Operator)) {
            let itself = caller.is(Role::Participant) && caller.name == participant.name;
            if !itself && !caller.is(Role::Application) {
                return Err(Status::permission_denied(format!(
                    "{} may enlist only itself, not {:?}: a participant's name must be its \
                     identity's",
                    caller.name, participant.name
                )));
            }
            if !itself {
                began(&engine, Some(&caller), id)?;
            }
        }
        let (newly_enlisted, deadline_unix_ms) = engine.enlist(id, participant)?;
        Ok(Response::new(proto::EnlistResponse {
            newly_enlisted,
            deadline_unix_ms,
        }))
    }

    async fn commit(
        &self,
        request: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitResponse>, Status> {
        let trace = trace_parent(request.metadata());
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let id = validate::txn_id(&request.txn_id)?;
        let work = validate::work(request.work)?;
        let started = std::time::Instant::now();
        let engine = self.engine()?;
        began(&engine, caller.as_deref(), id)?;
        let span = span("Commit", &request.txn_id, trace.as_deref());
        if let Some(trace) = trace {
            engine.trace(id, trace);
        }
        let (outcome, reason) = engine
            .commit(id, request.wait_for_acks, work)
            .instrument(span)
            .await?;
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed());
        Ok(Response::new(proto::CommitResponse {
            outcome: wire_outcome(Some(outcome)).into(),
            reason: reason.unwrap_or_default(),
        }))
    }

    async fn submit(
        &self,
        request: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        let trace = trace_parent(request.metadata());
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let request_id = validate::request_id(request.request_id)?;
        let engine = self.engine()?;
        let timeout = validate::txn_timeout(request.timeout_ms, engine.max_txn_timeout())?;
        let work = validate::submitted_work(request.work)?;
        let started = std::time::Instant::now();
        // A retry answers only to the identity that submitted the request first.
        if caller.is_some() {
            if let Some(id) = engine.submitted(&request_id)? {
                began(&engine, caller.as_deref(), id)?;
            }
        }
        let span = span("Submit", "", trace.as_deref());
        let submission = Submission {
            id: request_id,
            timeout,
            wait_for_acks: request.wait_for_acks,
            begun_by: caller.map(|c| c.name.clone()),
            trace,
        };
        let submitted = engine.submit(submission, work).instrument(span).await;
        let (id, outcome, reason) = submitted?;
        metrics::histogram!(crate::metrics::COMMIT_SECONDS).record(started.elapsed());
        Ok(Response::new(proto::SubmitResponse {
            txn_id: id.to_string(),
            outcome: wire_outcome(Some(outcome)).into(),
            reason: reason.unwrap_or_default(),
        }))
    }

    async fn abort(
        &self,
        request: Request<proto::AbortRequest>,
    ) -> Result<Response<proto::AbortResponse>, Status> {
        let trace = trace_parent(request.metadata());
        let caller = auth::caller(&request);
        let request = request.into_inner();
        let _span = span("Abort", &request.txn_id, trace.as_deref()).entered();
        let id = validate::txn_id(&request.txn_id)?;
        let mut reason = validate::reason(request.reason)?;
        if reason.is_empty() {
            reason = "aborted by request".into();
        }
        let engine = self.engine()?;
        began(&engine, caller.as_deref(), id)?;
        engine.abort(id, reason)?;
        Ok(Response::new(proto::AbortResponse {}))
    }

    async fn get_transaction(
        &self,
        request: Request<proto::GetTransactionRequest>,
    ) -> Result<Response<proto::GetTransactionResponse>, Status> {
        let id = validate::txn_id(&request.get_ref().txn_id)?;
        let caller = auth::caller(&request);
        let local = |engine: &Engine<N::Log>| {
            began(engine, caller.as_deref(), id)?;
            Ok(proto::GetTransactionResponse {
                transaction: Some(wire_transaction(engine.get(id)?)),
            })
        };
        self.read(request, local, |mut leader, request| async move {
            leader.get_transaction(request).await
        })
        .await
    }

    async fn list_transactions(
        &self,
        request: Request<proto::ListTransactionsRequest>,
    ) -> Result<Response<proto::ListTransactionsResponse>, Status> {
        let args = request.get_ref();
        let state = validate::state_filter(args.state)?;
        let limit = validate::page_size(args.page_size)?;
        let after = validate::page_token(&args.page_token)?;
        let local = |engine: &Engine<N::Log>| {
            let (views, more) = engine.list(state, after, limit)?;
            let next_page_token = match (more, views.last()) {
                (true, Some(last)) => last.txn_id.to_string(),
                _ => String::new(),
            };
            Ok(proto::ListTransactionsResponse {
                transactions: views.into_iter().map(wire_transaction).collect(),
                next_page_token,
            })
        };
        self.read(request, local, |mut leader, request| async move {
            leader.list_transactions(request).await
        })
        .await
    }

    async fn retry_delivery(
        &self,
        request: Request<proto::RetryDeliveryRequest>,
    ) -> Result<Response<proto::RetryDeliveryResponse>, Status> {
        let id = validate::txn_id(&request.get_ref().txn_id)?;
        self.engine()?.retry_delivery(id)?;
        Ok(Response::new(proto::RetryDeliveryResponse {}))
    }

    async fn resolve_by_hand(
        &self,
        request: Request<proto::ResolveByHandRequest>,
    ) -> Result<Response<proto::ResolveByHandResponse>, Status> {
        let from = request.remote_addr();
        let identity = auth::caller(&request).map(|c| c.name.clone());
        let trace = trace_parent(request.metadata());
        let request = request.into_inner();
        let id = validate::txn_id(&request.txn_id)?;
        let outcome = validate::decided_outcome(request.outcome)?;
        let reason = validate::required_reason(request.reason)?;
        let operator = validate::operator(request.operator)?;
        let by = settled_by(operator, identity, from);
        let view = self
            .engine()?
            .settle_by_hand(id, outcome, by, reason)
            .instrument(span("ResolveByHand", &request.txn_id, trace.as_deref()))
            .await?;
        Ok(Response::new(proto::ResolveByHandResponse {
            transaction: Some(wire_transaction(view)),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::GetStatsResponse>, Status> {
        let local = |engine: &Engine<N::Log>| {
            let stats = engine.stats();
            Ok(proto::GetStatsResponse {
                begun: stats.begun,
                committed: stats.committed,
                aborted: stats.aborted,
                in_flight: stats.in_flight,
                in_doubt: stats.in_doubt,
            })
        };
        self.read(request, local, |mut leader, request| async move {
            leader.get_stats(request).await
        })
        .await
    }

    async fn resolve(
        &self,
        request: Request<proto::ResolveRequest>,
    ) -> Result<Response<proto::ResolveResponse>, Status> {
        let id = validate::txn_id(&request.get_ref().txn_id)?;
        let caller = auth::caller(&request).filter(|c| !c.is(Role::Operator));
        let local = |engine: &Engine<N::Log>| {
            // Presumed abort answers for a transaction with no record: that tells nothing.
            if let Some(caller) = caller {
                if engine.takes_part(id, &caller.name)? == Some(false) {
                    return Err(EngineError::NotAllowed(format!(
                        "{} is not a participant of {id}: a participant may resolve only the \
                         transactions it is enlisted in",
                        caller.name
                    )));
                }
            }
            Ok(proto::ResolveResponse {
                outcome: wire_outcome(engine.resolve(id)?).into(),
            })
        };
        self.read(request, local, |mut leader, request| async move {
            leader.resolve(request).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::settled_by;

    #[test]
    fn a_settlement_by_hand_names_the_identity_that_called_unless_the_words_do() {
        let from = Some("10.0.0.7:51234".parse().unwrap());
        assert_eq!(
            settled_by("alice".into(), Some("ops".into()), from),
            "alice (identity ops) (from 10.0.0.7:51234)"
        );
        assert_eq!(settled_by("ops".into(), Some("ops".into()), None), "ops");
        assert_eq!(
            settled_by("alice".into(), None, from),
            "alice (from 10.0.0.7:51234)"
        );
    }
}
