//! `verdict.v1.Participant` over gRPC around a [`Participant`] runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::resource::Resource;
use super::runtime::{Participant, ParticipantError};
use crate::proto::{self, participant_server};
use crate::validate;
use crate::{Outcome, TxnId, Vote};

/// The gRPC face of a [`Participant`].
pub struct ParticipantService<R> {
    participant: Arc<Participant<R>>,
    /// Turns true when the server shuts down (see [`ParticipantService::ending_streams_on`]).
    closing: watch::Receiver<bool>,
}

impl<R: Resource> ParticipantService<R> {
    pub fn new(participant: Arc<Participant<R>>) -> Self {
        ParticipantService {
            participant,
            closing: watch::channel(false).1,
        }
    }

    /// Ends `PrepareStream` calls once `closing` turns true: a server shutting down gracefully
    /// waits for every call to end, and a coordinator never ends its own. The prepares already
    /// read are answered first; the coordinator sends the next ones on a new call, to
    /// whichever process serves then.
    pub fn ending_streams_on(mut self, closing: watch::Receiver<bool>) -> Self {
        self.closing = closing;
        self
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
fn to_completion<T: Send + 'static, E: Send + 'static>(
    work: impl Future<Output = Result<T, E>> + Send + 'static,
) -> impl Future<Output = Result<T, Status>>
where
    Status: From<E>,
{
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

/// The answers of a `PrepareStream` call, in the order they are ready.
pub type Votes = Pin<Box<dyn Stream<Item = Result<proto::StreamedVote, Status>> + Send>>;

/// The most prepares of one `PrepareStream` call carried out at once: further ones are not
/// read until one is answered, so a caller cannot pile up unbounded work.
const STREAMED_AT_ONCE: usize = 1024;

/// Carries out one Prepare: the answer, or the status it fails with.
async fn prepare<R: Resource>(
    participant: Arc<Participant<R>>,
    request: proto::PrepareRequest,
) -> Result<proto::PrepareResponse, Status> {
    let txn = txn_id(&request.txn_id)?;
    let coordinator = coordinators(request.coordinator_endpoint, request.coordinator_endpoints)?;
    let work = request.work;
    let handed_work = !work.is_empty();
    let vote = participant.prepare(txn, &coordinator, work).await?;
    crate::crash_point!("participant::before_vote_sent");
    // A YES to a Prepare with work is a YES with the work staged: a repeated Prepare carries
    // the same work as the first, which is what the journaled vote was given for.
    let took_work = handed_work && !matches!(vote, Vote::No(_));
    let (vote, reason) = match vote {
        Vote::Yes => (proto::Vote::Yes, String::new()),
        Vote::No(reason) => (proto::Vote::No, reason),
        Vote::ReadOnly => (proto::Vote::ReadOnly, String::new()),
    };
    Ok(proto::PrepareResponse {
        vote: vote.into(),
        reason,
        took_work,
    })
}

/// Carries out each prepare of a `PrepareStream` call in its own task, so that a slow one (a
/// row lock held elsewhere) holds up no other, and sends each answer as it is ready. Every
/// prepare started runs to its end even if the caller goes away.
async fn prepare_each<R: Resource>(
    participant: Arc<Participant<R>>,
    mut incoming: Streaming<proto::StreamedPrepare>,
    votes: mpsc::UnboundedSender<Result<proto::StreamedVote, Status>>,
    mut closing: watch::Receiver<bool>,
) {
    let at_once = Arc::new(Semaphore::new(STREAMED_AT_ONCE));
    loop {
        let streamed = tokio::select! {
            message = incoming.message() => match message {
                Ok(Some(streamed)) => streamed,
                _ => return,
            },
            () = closed(&mut closing) => return,
        };
        let Ok(turn) = at_once.clone().acquire_owned().await else {
            return;
        };
        let (participant, votes) = (participant.clone(), votes.clone());
        tokio::spawn(async move {
            let answer = match streamed.request {
                Some(request) => prepare(participant, request).await,
                None => Err(Status::invalid_argument(
                    "a StreamedPrepare carries no request: set its request field",
                )),
            };
            let _ = votes.send(Ok(streamed_vote(streamed.id, answer)));
            drop(turn);
        });
    }
}

/// Completes once `closing` turns true; never if its sender is gone without.
async fn closed(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One prepare's answer on a `PrepareStream` call.
fn streamed_vote(id: u64, answer: Result<proto::PrepareResponse, Status>) -> proto::StreamedVote {
    match answer {
        Ok(response) => proto::StreamedVote {
            id,
            response: Some(response),
            ..Default::default()
        },
        Err(status) => proto::StreamedVote {
            id,
            response: None,
            code: status.code() as i32,
            message: status.message().to_owned(),
        },
    }
}

#[tonic::async_trait]
impl<R: Resource> participant_server::Participant for ParticipantService<R> {
    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<proto::PrepareResponse>, Status> {
        let answer = to_completion(prepare(self.participant.clone(), request.into_inner()));
        Ok(Response::new(answer.await?))
    }

    type PrepareStreamStream = Votes;

    async fn prepare_stream(
        &self,
        request: Request<Streaming<proto::StreamedPrepare>>,
    ) -> Result<Response<Votes>, Status> {
        let (votes, answers) = mpsc::unbounded_channel();
        tokio::spawn(prepare_each(
            self.participant.clone(),
            request.into_inner(),
            votes,
            self.closing.clone(),
        ));
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            answers,
        ))))
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
