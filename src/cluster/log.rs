//! [`ReplicatedLog`]: the decision log as the leader's engine sees it. Writes become commands
//! of a Raft entry; reads come from this node's state machine.
//!
//! Group commit carries over from the single-node log: one proposer task per node takes every
//! write queued while the previous entry was replicating and proposes them as one entry, so
//! many decisions share one append and one flush on each node. A forced write resolves once its
//! entry is committed (a majority has it on disk) and applied here; an unforced one is not
//! waited for, but travels in the same order. Until its entry is applied, a written record is
//! read from a small overlay, so the engine reads what it wrote.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::state::StateMachine;
use super::types::{Applied, Batch, Command, Leader};
use super::{NodeId, Raft, TypeConfig};
use crate::core::TxnId;
use crate::log::{encode, DecisionLog, LogError, TxnRecord};

/// Most commands in one entry.
const MAX_BATCH: usize = 2048;

/// Entries submitted and not yet committed, at most.
const ENTRIES_IN_FLIGHT: usize = 4;

/// Who hears how a write's entry ended.
type Done = Box<dyn FnOnce(&Result<Applied, LogError>) + Send>;

/// One queued write and who hears how it ended.
pub struct Proposal {
    leader: Leader,
    command: Command,
    done: Done,
}

/// Queues proposals for the node's proposer task.
pub type Proposals = mpsc::UnboundedSender<Proposal>;

/// Runs the node's proposer until every sender is gone: each entry carries everything queued
/// while earlier ones were replicating. Entries are submitted to Raft in queue order (a
/// transaction's records must apply in the order they were written); up to
/// [`ENTRIES_IN_FLIGHT`] await their commit at once, so one append's flush overlaps the next
/// entry's batching.
pub async fn propose(raft: Raft, mut queue: mpsc::UnboundedReceiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT));
    let mut held = None;
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let Some((leader, group)) = next_group(&mut held, &mut queue).await else {
            return;
        };
        let (commands, dones): (Vec<_>, Vec<_>) =
            group.into_iter().map(|p| (p.command, p.done)).unzip();
        let submitted = raft.client_write_ff(Batch { leader, commands }).await;
        tokio::spawn(async move {
            let answer = match submitted {
                Ok(response) => answer(leader, response.await),
                Err(fatal) => Err(LogError::Unavailable(format!(
                    "the Raft log failed: {fatal}"
                ))),
            };
            for done in dones {
                done(&answer);
            }
            drop(slot);
        });
    }
}

/// The next entry's proposals: the one held back, or the next queued, and everything queued
/// behind it from the same engine; a proposal of another engine is held back for the entry
/// after. `None` once every sender is gone and nothing is held.
async fn next_group(
    held: &mut Option<Proposal>,
    queue: &mut mpsc::UnboundedReceiver<Proposal>,
) -> Option<(Leader, Vec<Proposal>)> {
    let first = match held.take() {
        Some(first) => first,
        None => queue.recv().await?,
    };
    let leader = first.leader;
    let mut group = vec![first];
    while group.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(p) if p.leader != leader => {
                *held = Some(p);
                break;
            }
            Ok(p) => group.push(p),
            Err(_) => break,
        }
    }
    Some((leader, group))
}

/// What the engine hears of an entry's commit.
fn answer<E: std::fmt::Display>(
    leader: Leader,
    response: Result<
        Result<ClientWriteResponse<TypeConfig>, ClientWriteError<NodeId, BasicNode>>,
        E,
    >,
) -> Result<Applied, LogError> {
    match response {
        Ok(Ok(response)) if response.data.accepted => Ok(response.data),
        Ok(Ok(_)) => Err(LogError::Unavailable(format!(
            "writes of the leader of term {} were committed in a later term and dropped",
            leader.term
        ))),
        Ok(Err(ClientWriteError::ForwardToLeader(_))) => Err(LogError::Unavailable(
            "this node is no longer the leader".into(),
        )),
        Ok(Err(e)) => Err(LogError::Unavailable(format!("the Raft log refused: {e}"))),
        Err(e) => Err(LogError::Unavailable(format!("Raft stopped: {e}"))),
    }
}

/// Records written but not yet applied here, each with the sequence number of its write.
type Overlay = Mutex<HashMap<TxnId, (u64, TxnRecord)>>;

/// The decision log of the engine that leads as `leader`.
pub struct ReplicatedLog {
    leader: Leader,
    proposals: Proposals,
    state: StateMachine,
    overlay: Arc<Overlay>,
    next_seq: AtomicU64,
}

impl ReplicatedLog {
    pub fn new(leader: Leader, proposals: Proposals, state: StateMachine) -> Self {
        ReplicatedLog {
            leader,
            proposals,
            state,
            overlay: Arc::default(),
            next_seq: AtomicU64::new(0),
        }
    }

    fn send(&self, command: Command, done: Done) -> Result<(), LogError> {
        let proposal = Proposal {
            leader: self.leader,
            command,
            done,
        };
        self.proposals
            .send(proposal)
            .map_err(|_| LogError::Unavailable("the node is shutting down".into()))
    }

    /// Queues `record`; `then` hears how its entry ended, after the overlay forgets it.
    fn put(
        &self,
        record: &TxnRecord,
        then: impl FnOnce(&Result<Applied, LogError>) + Send + 'static,
    ) -> Result<(), LogError> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = record.txn_id;
        let overlay = self.overlay.clone();
        overlay
            .lock()
            .expect("lock")
            .insert(id, (seq, record.clone()));
        let done = move |answer: &Result<Applied, LogError>| {
            let mut pending = overlay.lock().expect("lock");
            if pending.get(&id).is_some_and(|(s, _)| *s == seq) {
                pending.remove(&id);
            }
            drop(pending);
            then(answer);
        };
        self.send(Command::Put(encode(record)), Box::new(done))
    }
}

/// A completion that passes the entry's answer on, and the future that waits for it.
fn waiter() -> (Done, impl Future<Output = Result<Applied, LogError>> + Send) {
    let (tx, rx) = oneshot::channel();
    let done: Done = Box::new(move |answer: &Result<Applied, LogError>| {
        let _ = tx.send(answer.clone());
    });
    let answer = async move {
        rx.await
            .map_err(|_| LogError::Unavailable("the node is shutting down".into()))?
    };
    (done, answer)
}

impl DecisionLog for ReplicatedLog {
    fn write(&self, record: &TxnRecord) -> Result<(), LogError> {
        self.put(record, |_| {})
    }

    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl Future<Output = Result<(), LogError>> + Send + use<> {
        let (done, applied) = waiter();
        let queued = self.put(record, done);
        async move {
            queued?;
            applied.await.map(|_| ())
        }
    }

    fn read(&self, txn_id: TxnId) -> Result<Option<TxnRecord>, LogError> {
        if let Some((_, record)) = self.overlay.lock().expect("lock").get(&txn_id) {
            return Ok(Some(record.clone()));
        }
        self.state.records().read(txn_id)
    }

    fn unfinished(&self) -> Result<Vec<Result<TxnRecord, LogError>>, LogError> {
        self.state.records().unfinished()
    }

    fn finished(
        &self,
        after: Option<TxnId>,
    ) -> Box<dyn Iterator<Item = Result<TxnRecord, LogError>> + '_> {
        self.state.records().finished(after)
    }

    fn collect_finished(
        &self,
        before_unix_ms: u64,
    ) -> impl Future<Output = Result<usize, LogError>> + Send + use<> {
        let (done, applied) = waiter();
        let queued = self.send(Command::Collect { before_unix_ms }, done);
        async move {
            queued?;
            applied.await.map(|a| a.collected)
        }
    }

    /// The node closes the storage it shares among its engines.
    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(term: u64, before_unix_ms: u64) -> Proposal {
        Proposal {
            leader: Leader { term, node_id: 1 },
            command: Command::Collect { before_unix_ms },
            done: Box::new(|_| {}),
        }
    }

    fn cutoffs(group: &[Proposal]) -> Vec<u64> {
        let cutoff = |p: &Proposal| match p.command {
            Command::Collect { before_unix_ms } => before_unix_ms,
            Command::Put(_) => unreachable!(),
        };
        group.iter().map(cutoff).collect()
    }

    #[tokio::test]
    async fn entries_group_one_engines_writes_in_order_and_lose_none() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        for (term, n) in [(5, 1), (5, 2), (7, 3), (7, 4), (5, 5)] {
            tx.send(proposal(term, n)).unwrap();
        }
        drop(tx);
        let mut held = None;
        let mut entries = Vec::new();
        while let Some((leader, group)) = next_group(&mut held, &mut queue).await {
            entries.push((leader.term, cutoffs(&group)));
        }
        assert_eq!(
            entries,
            vec![(5, vec![1, 2]), (7, vec![3, 4]), (5, vec![5])]
        );
    }

    #[tokio::test]
    async fn a_held_proposal_goes_out_without_waiting_for_another() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        tx.send(proposal(5, 1)).unwrap();
        tx.send(proposal(7, 2)).unwrap();
        let mut held = None;
        let (_, first) = next_group(&mut held, &mut queue).await.unwrap();
        assert_eq!(cutoffs(&first), vec![1]);
        // The queue is empty now (and its sender still open): the held one must not wait.
        let next = next_group(&mut held, &mut queue);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), next).await;
        let (leader, second) = waited.expect("the held proposal waited").unwrap();
        assert_eq!((leader.term, cutoffs(&second)), (7, vec![2]));
        drop(tx);
    }
}
