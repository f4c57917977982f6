//! Prepares on their way to one participant endpoint over one long-lived call
//! (`Participant.PrepareStream`).
//!
//! A unary call per prepare costs both ends a new HTTP/2 stream — headers encoded and decoded,
//! a task spawned, the server's layers run — and a transaction sends one prepare to each of its
//! participants. On the stream a prepare is one message each way, answered as soon as it is
//! done, whatever the others do: a prepare waiting for a row lock holds up no other. The call
//! is opened on the first prepare and again after it ends (the connection broke, the
//! participant restarted); the prepares it was carrying then fail as an unreachable
//! participant's would. A participant that answers `UNIMPLEMENTED` (written before
//! `PrepareStream`, in any language) is sent Prepare calls from then on, those caught in the
//! refused call among them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::Status;

use crate::proto::participant_client::ParticipantClient;
use crate::proto::{PrepareRequest, PrepareResponse, StreamedPrepare, StreamedVote};

/// What became of a prepare handed to [`PrepareStream::prepare`].
pub enum Streamed {
    /// The participant's answer, or the status the prepare failed with.
    Answered(Result<PrepareResponse, Status>),
    /// This endpoint takes no `PrepareStream`: send the request as a Prepare call.
    NotStreamed(PrepareRequest),
}

/// The prepares in flight on one call, by id; `None` once the call is over.
type Waiting = Arc<Mutex<Option<HashMap<u64, Pending>>>>;

/// A prepare sent and not yet answered: its request is kept for a participant that turns out
/// to take no stream.
struct Pending {
    request: PrepareRequest,
    answer: oneshot::Sender<Streamed>,
}

/// The open call, if any.
struct Call {
    prepares: mpsc::UnboundedSender<StreamedPrepare>,
    waiting: Waiting,
}

/// One endpoint's prepare stream; clones share it.
#[derive(Clone)]
pub struct PrepareStream(Arc<Lane>);

/// What a prepare stream and the task carrying its call share.
struct Lane {
    client: ParticipantClient<Channel>,
    call: Mutex<Option<Call>>,
    next_id: AtomicU64,
    /// False once the endpoint answered `PrepareStream` with `UNIMPLEMENTED`.
    taken: AtomicBool,
}

impl PrepareStream {
    pub fn new(client: ParticipantClient<Channel>) -> Self {
        PrepareStream(Arc::new(Lane {
            client,
            call: Mutex::new(None),
            next_id: AtomicU64::new(0),
            taken: AtomicBool::new(true),
        }))
    }

    /// Sends `request` on the stream and waits up to `timeout` for its answer.
    pub async fn prepare(&self, request: PrepareRequest, timeout: Duration) -> Streamed {
        let lane = &self.0;
        if !lane.taken.load(Ordering::Relaxed) {
            return Streamed::NotStreamed(request);
        }
        let id = lane.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        let waiting = self.send(id, request, answer);
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(streamed)) => streamed,
            Ok(Err(_)) => Streamed::Answered(Err(Status::unavailable(
                "the PrepareStream call ended before the answer",
            ))),
            Err(_) => {
                if let Some(waiting) = waiting.lock().expect("lock").as_mut() {
                    waiting.remove(&id);
                }
                Streamed::Answered(Err(Status::deadline_exceeded("")))
            }
        }
    }

    /// Puts the prepare among the open call's waiting ones, opening a call if none is open,
    /// and sends it; returns where it waits.
    fn send(&self, id: u64, request: PrepareRequest, answer: oneshot::Sender<Streamed>) -> Waiting {
        let mut message = StreamedPrepare {
            id,
            request: Some(request.clone()),
        };
        let mut call = self.0.call.lock().expect("lock");
        if let Some(open) = call.as_ref() {
            let mut waiting = open.waiting.lock().expect("lock");
            if let Some(waiting) = waiting.as_mut() {
                // Under the lock: its vote cannot be handed over before it waits.
                match open.prepares.send(message) {
                    Ok(()) => {
                        waiting.insert(id, Pending { request, answer });
                        return open.waiting.clone();
                    }
                    Err(mpsc::error::SendError(unsent)) => message = unsent,
                }
            }
        }
        let (prepares, outgoing) = mpsc::unbounded_channel();
        let pending = HashMap::from([(id, Pending { request, answer })]);
        let waiting: Waiting = Arc::new(Mutex::new(Some(pending)));
        let _ = prepares.send(message);
        tokio::spawn(carry(self.0.clone(), outgoing, waiting.clone()));
        *call = Some(Call {
            prepares,
            waiting: waiting.clone(),
        });
        waiting
    }
}

/// How long a call with no prepare waiting stays open. Closing it spares an idle connection
/// the keepalive pings an open call draws, which some servers count against their client.
const IDLE: Duration = Duration::from_secs(1);

/// Runs one call: sends what comes on `outgoing`, hands each vote to its waiting prepare,
/// closes the call once it has been idle for [`IDLE`], and when the call ends answers every
/// prepare still waiting.
async fn carry(
    lane: Arc<Lane>,
    outgoing: mpsc::UnboundedReceiver<StreamedPrepare>,
    waiting: Waiting,
) {
    let ended = match lane
        .client
        .clone()
        .prepare_stream(UnboundedReceiverStream::new(outgoing))
        .await
    {
        Ok(response) => {
            let mut votes = response.into_inner();
            let idle = tokio::time::sleep(IDLE);
            tokio::pin!(idle);
            loop {
                tokio::select! {
                    vote = votes.message() => match vote {
                        Ok(Some(vote)) => hand_over(&waiting, vote),
                        Ok(None) => break Status::unavailable("the participant ended the call"),
                        Err(status) => break status,
                    },
                    () = &mut idle => lane.close_if_idle(&waiting),
                }
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
            }
        }
        Err(status) => status,
    };
    let refused = ended.code() == tonic::Code::Unimplemented;
    if refused {
        lane.taken.store(false, Ordering::Relaxed);
    }
    let left = waiting.lock().expect("lock").take().unwrap_or_default();
    for pending in left.into_values() {
        let streamed = match refused {
            true => Streamed::NotStreamed(pending.request),
            false => Streamed::Answered(Err(ended.clone())),
        };
        let _ = pending.answer.send(streamed);
    }
}

impl Lane {
    /// Ends the sending side of the call whose prepares wait in `waiting`, if none does: the
    /// participant then ends the call, and the next prepare opens another.
    fn close_if_idle(&self, waiting: &Waiting) {
        let mut call = self.call.lock().expect("lock");
        let mut prepares = waiting.lock().expect("lock");
        if prepares.as_ref().is_some_and(HashMap::is_empty) {
            *prepares = None;
            if call
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.waiting, waiting))
            {
                *call = None;
            }
        }
    }
}

/// Hands `vote` to the prepare waiting for it (none if it timed out meanwhile).
fn hand_over(waiting: &Waiting, vote: StreamedVote) {
    let pending = waiting
        .lock()
        .expect("lock")
        .as_mut()
        .and_then(|w| w.remove(&vote.id));
    let Some(pending) = pending else {
        return;
    };
    let answer = match (tonic::Code::from(vote.code), vote.response) {
        (tonic::Code::Ok, Some(response)) => Ok(response),
        (tonic::Code::Ok, None) => Err(Status::unknown(
            "answered a StreamedPrepare with neither a response nor an error code",
        )),
        (code, _) => Err(Status::new(code, vote.message)),
    };
    let _ = pending.answer.send(Streamed::Answered(answer));
}
