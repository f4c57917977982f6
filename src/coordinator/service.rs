//! `verdict.v1.Coordinator` over gRPC: arguments are validated, the engine is called, and its
//! errors become status codes here and nowhere else.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::view::{State, TxnView};
use super::{validate, Engine, EngineError};
use crate::core::{Outcome, Participant, Vote};
use crate::log::DecisionLog;
use crate::proto::{self, coordinator_server};

/// The gRPC face of an [`Engine`].
pub struct CoordinatorService<L> {
    engine: Arc<Engine<L>>,
}

impl<L: DecisionLog> CoordinatorService<L> {
    pub fn new(engine: Arc<Engine<L>>) -> Self {
        CoordinatorService { engine }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> coordinator_server::CoordinatorServer<Self> {
        coordinator_server::CoordinatorServer::new(self)
    }
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        let message = error.to_string();
        match error {
            EngineError::InvalidArgument(_) => Status::invalid_argument(message),
            EngineError::NotFound(_) => Status::not_found(message),
            EngineError::Rejected(..) => Status::failed_precondition(message),
            EngineError::Overloaded(_) => Status::resource_exhausted(message),
            EngineError::Corrupt(_) => Status::data_loss(message),
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
    }
}

fn wire_transaction(view: TxnView) -> proto::Transaction {
    proto::Transaction {
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

fn span(method: &'static str, txn_id: &str) -> tracing::Span {
    tracing::debug_span!("rpc", method, txn_id = %txn_id.chars().take(40).collect::<String>())
}

#[tonic::async_trait]
impl<L: DecisionLog> coordinator_server::Coordinator for CoordinatorService<L> {
    async fn begin(
        &self,
        request: Request<proto::BeginRequest>,
    ) -> Result<Response<proto::BeginResponse>, Status> {
        let request = request.into_inner();
        let timeout = validate::txn_timeout(request.timeout_ms, self.engine.max_txn_timeout())?;
        let participants = validate::participants(request.participants)?;
        let begun = self.engine.begin(timeout, participants)?;
        Ok(Response::new(proto::BeginResponse {
            txn_id: begun.txn_id.to_string(),
            deadline_unix_ms: begun.deadline_unix_ms,
        }))
    }

    async fn enlist(
        &self,
        request: Request<proto::EnlistRequest>,
    ) -> Result<Response<proto::EnlistResponse>, Status> {
        let request = request.into_inner();
        let _span = span("Enlist", &request.txn_id).entered();
        let id = validate::txn_id(&request.txn_id)?;
        let participant = validate::participant(request.participant)?;
        let (newly_enlisted, deadline_unix_ms) = self.engine.enlist(id, participant)?;
        Ok(Response::new(proto::EnlistResponse {
            newly_enlisted,
            deadline_unix_ms,
        }))
    }

    async fn commit(
        &self,
        request: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitResponse>, Status> {
        let request = request.into_inner();
        let id = validate::txn_id(&request.txn_id)?;
        let (outcome, reason) = self
            .engine
            .commit(id, request.wait_for_acks)
            .instrument(span("Commit", &request.txn_id))
            .await?;
        Ok(Response::new(proto::CommitResponse {
            outcome: wire_outcome(Some(outcome)).into(),
            reason: reason.unwrap_or_default(),
        }))
    }

    async fn abort(
        &self,
        request: Request<proto::AbortRequest>,
    ) -> Result<Response<proto::AbortResponse>, Status> {
        let request = request.into_inner();
        let _span = span("Abort", &request.txn_id).entered();
        let id = validate::txn_id(&request.txn_id)?;
        let mut reason = validate::reason(request.reason)?;
        if reason.is_empty() {
            reason = "aborted by request".into();
        }
        self.engine.abort(id, reason)?;
        Ok(Response::new(proto::AbortResponse {}))
    }

    async fn get_transaction(
        &self,
        request: Request<proto::GetTransactionRequest>,
    ) -> Result<Response<proto::GetTransactionResponse>, Status> {
        let id = validate::txn_id(&request.get_ref().txn_id)?;
        let view = self.engine.get(id)?;
        Ok(Response::new(proto::GetTransactionResponse {
            transaction: Some(wire_transaction(view)),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<proto::ListTransactionsRequest>,
    ) -> Result<Response<proto::ListTransactionsResponse>, Status> {
        let request = request.into_inner();
        let state = validate::state_filter(request.state)?;
        let limit = validate::page_size(request.page_size)?;
        let after = validate::page_token(&request.page_token)?;
        let (views, more) = self.engine.list(state, after, limit)?;
        let next_page_token = match (more, views.last()) {
            (true, Some(last)) => last.txn_id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListTransactionsResponse {
            transactions: views.into_iter().map(wire_transaction).collect(),
            next_page_token,
        }))
    }

    async fn resolve(
        &self,
        request: Request<proto::ResolveRequest>,
    ) -> Result<Response<proto::ResolveResponse>, Status> {
        let id = validate::txn_id(&request.get_ref().txn_id)?;
        let outcome = self.engine.resolve(id)?;
        Ok(Response::new(proto::ResolveResponse {
            outcome: wire_outcome(outcome).into(),
        }))
    }
}
