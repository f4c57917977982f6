//! `verdict.v1.Participant` over gRPC around a [`Participant`] runtime.

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::resource::Resource;
use super::runtime::{Participant, ParticipantError};
use crate::proto::{self, participant_server};
use crate::validate;
use crate::{Outcome, TxnId, Vote};

/// The gRPC face of a [`Participant`].
pub struct ParticipantService<R> {
    participant: Arc<Participant<R>>,
}

impl<R: Resource> ParticipantService<R> {
    pub fn new(participant: Arc<Participant<R>>) -> Self {
        ParticipantService { participant }
    }

    pub fn into_server(self) -> participant_server::ParticipantServer<Self> {
        participant_server::ParticipantServer::new(self)
    }
}

impl From<ParticipantError> for Status {
    fn from(error: ParticipantError) -> Self {
        match error {
            ParticipantError::Conflict(..) => Status::failed_precondition(error.to_string()),
            ParticipantError::Resource(_) | ParticipantError::Storage(_) => {
                tracing::error!(%error, "participant request failed");
                Status::unavailable(error.to_string())
            }
        }
    }
}

fn txn_id(text: &str) -> Result<TxnId, Status> {
    Ok(validate::txn_id(text)?)
}

/// Starts `work` in its own task at once, and returns its result when awaited: tonic drops a
/// handler whose client went away, and a prepare or commit cut off half way (resource changed,
/// journal not yet) must not happen.
fn to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, ParticipantError>> + Send + 'static,
) -> impl Future<Output = Result<T, Status>> {
    let task = tokio::spawn(work);
    async move {
        match task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(Status::internal(format!("the request's task failed: {e}"))),
        }
    }
}

impl<R: Resource> ParticipantService<R> {
    /// Starts carrying out one decision; its result when awaited.
    fn start_deciding(
        &self,
        txn_id: &str,
        outcome: Outcome,
    ) -> Result<impl Future<Output = Result<(), Status>>, Status> {
        let txn = self::txn_id(txn_id)?;
        let participant = self.participant.clone();
        Ok(to_completion(async move {
            participant.decide(txn, outcome).await
        }))
    }

    async fn decide_one(&self, txn_id: &str, outcome: Outcome) -> Result<(), Status> {
        self.start_deciding(txn_id, outcome)?.await?;
        crate::crash_point!("participant::before_ack");
        Ok(())
    }
}

fn outcome(commit: bool) -> Outcome {
    match commit {
        true => Outcome::Committed,
        false => Outcome::Aborted,
    }
}

/// What Commit or Abort would have answered, as one `Decide` result.
fn decision_result(result: Result<(), Status>) -> proto::DecisionResult {
    match result {
        Ok(()) => proto::DecisionResult::default(),
        Err(status) => proto::DecisionResult {
            code: status.code() as i32,
            message: status.message().to_owned(),
        },
    }
}

/// Where to Resolve: the coordinator, or every node of its cluster with the leader first, as
/// the comma-separated list the runtime keeps.
fn coordinators(leader: String, nodes: Vec<String>) -> Result<String, Status> {
    validate::url("coordinator_endpoint", &leader)?;
    let mut urls = vec![leader];
    for url in nodes {
        validate::url("coordinator_endpoints", &url)?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(urls.join(","))
}

#[tonic::async_trait]
impl<R: Resource> participant_server::Participant for ParticipantService<R> {
    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<proto::PrepareResponse>, Status> {
        let request = request.into_inner();
        let txn = txn_id(&request.txn_id)?;
        let coordinator =
            coordinators(request.coordinator_endpoint, request.coordinator_endpoints)?;
        let participant = self.participant.clone();
        let work = request.work;
        let handed_work = !work.is_empty();
        let vote = to_completion(async move { participant.prepare(txn, &coordinator, work).await })
            .await?;
        crate::crash_point!("participant::before_vote_sent");
        // A YES to a Prepare with work is a YES with the work staged: a repeated Prepare carries
        // the same work as the first, which is what the journaled vote was given for.
        let took_work = handed_work && !matches!(vote, Vote::No(_));
        let (vote, reason) = match vote {
            Vote::Yes => (proto::Vote::Yes, String::new()),
            Vote::No(reason) => (proto::Vote::No, reason),
            Vote::ReadOnly => (proto::Vote::ReadOnly, String::new()),
        };
        Ok(Response::new(proto::PrepareResponse {
            vote: vote.into(),
            reason,
            took_work,
        }))
    }

    async fn commit(
        &self,
        request: Request<proto::ParticipantCommitRequest>,
    ) -> Result<Response<proto::ParticipantCommitResponse>, Status> {
        self.decide_one(&request.get_ref().txn_id, Outcome::Committed)
            .await?;
        Ok(Response::new(proto::ParticipantCommitResponse {}))
    }

    async fn abort(
        &self,
        request: Request<proto::ParticipantAbortRequest>,
    ) -> Result<Response<proto::ParticipantAbortResponse>, Status> {
        self.decide_one(&request.get_ref().txn_id, Outcome::Aborted)
            .await?;
        Ok(Response::new(proto::ParticipantAbortResponse {}))
    }

    async fn decide(
        &self,
        request: Request<proto::DecideRequest>,
    ) -> Result<Response<proto::DecideResponse>, Status> {
        let decisions = request.into_inner().decisions;
        validate::decisions(&decisions)?;
        // All start at once: a resource such as PostgreSQL makes them durable together.
        let started: Vec<_> = decisions
            .iter()
            .map(|d| self.start_deciding(&d.txn_id, outcome(d.commit)))
            .collect();
        let mut results = Vec::with_capacity(started.len());
        for decision in started {
            let result = match decision {
                Ok(running) => running.await,
                Err(invalid) => Err(invalid),
            };
            results.push(decision_result(result));
        }
        crate::crash_point!("participant::before_ack");
        Ok(Response::new(proto::DecideResponse { results }))
    }
}
