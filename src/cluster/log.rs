//! [`ReplicatedLog`]: the decision log as the leader's engine sees it. Writes become commands
//! of a Raft entry; reads come from this node's state machine.
//!
//! Group commit carries over from the single-node log: one proposer task per node takes every
//! write queued while the previous entry was replicating and proposes them as one entry, so
//! many decisions share one append and one flush on each node. A forced write resolves once its
//! entry is committed (a majority has it on disk) and applied here; an unforced one is not
//! waited for, but travels in the same order. Every entry costs a flush on every node, so an
//! entry of unforced writes alone lingers a little for a forced write to ride with, and an
//! entry keeps only the last of its writes to one transaction. Until its entry is applied, a
//! written record is read from a small overlay, so the engine reads what it wrote.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::ClientWriteError;
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{timeout_at, Instant};

use super::state::StateMachine;
use super::types::{Applied, Batch, Command, Leader};
use super::{NodeId, Raft, TypeConfig};
use crate::core::TxnId;
use crate::log::{encode, DecisionLog, LogError, TxnRecord};

/// Most commands in one entry.
const MAX_BATCH: usize = 2048;

/// Entries submitted and not yet committed, at most.
const ENTRIES_IN_FLIGHT: usize = 4;

/// How long an entry of unforced writes waits for a forced write to join it. Unforced records
/// may be lost in a crash anyway (DESIGN §3); waiting this long spares each transaction the
/// flushes of entries of their own (at concurrency 1, three entries become one).
const LINGER: Duration = Duration::from_millis(5);

/// Who hears how a write's entry ended.
type Done = Box<dyn FnOnce(&Result<Applied, LogError>) + Send>;

/// One queued write and who hears how it ended.
pub struct Proposal {
    leader: Leader,
    /// The transaction a `Put` writes; a later `Put` to it in the same entry replaces it.
    txn: Option<TxnId>,
    command: Command,
    /// Whether someone waits for the entry (a forced write, a collection).
    waited: bool,
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
        let (commands, dones) = entry(group);
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
/// after. While no proposal in it is waited for, the group waits up to [`LINGER`] for one.
/// `None` once every sender is gone and nothing is held.
async fn next_group(
    held: &mut Option<Proposal>,
    queue: &mut mpsc::UnboundedReceiver<Proposal>,
) -> Option<(Leader, Vec<Proposal>)> {
    let first = match held.take() {
        Some(first) => first,
        None => queue.recv().await?,
    };
    let leader = first.leader;
    let until = Instant::now() + LINGER;
    let mut waited = first.waited;
    let mut group = vec![first];
    while group.len() < MAX_BATCH {
        let next = match queue.try_recv() {
            Ok(p) => p,
            Err(TryRecvError::Empty) if !waited => match timeout_at(until, queue.recv()).await {
                Ok(Some(p)) => p,
                _ => break,
            },
            Err(_) => break,
        };
        if next.leader != leader {
            *held = Some(next);
            break;
        }
        waited |= next.waited;
        group.push(next);
    }
    Some((leader, group))
}

/// One entry's commands, keeping only the last `Put` to each transaction (a record replaces
/// the one before), and everyone to tell how it ended.
fn entry(group: Vec<Proposal>) -> (Vec<Command>, Vec<Done>) {
    let mut written = HashSet::new();
    let mut commands = Vec::with_capacity(group.len());
    let mut dones = Vec::with_capacity(group.len());
    for proposal in group.into_iter().rev() {
        if proposal.txn.is_none_or(|id| written.insert(id)) {
            commands.push(proposal.command);
        }
        dones.push(proposal.done);
    }
    commands.reverse();
    (commands, dones)
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

    /// Queues a proposal; `waited` when its caller waits for the entry.
    fn send(
        &self,
        txn: Option<TxnId>,
        command: Command,
        waited: bool,
        done: Done,
    ) -> Result<(), LogError> {
        let proposal = Proposal {
            leader: self.leader,
            txn,
            command,
            waited,
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
        waited: bool,
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
        let command = Command::Put(encode(record));
        self.send(Some(id), command, waited, Box::new(done))
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
        self.put(record, false, |_| {})
    }

    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl Future<Output = Result<(), LogError>> + Send + use<> {
        let (done, applied) = waiter();
        let queued = self.put(record, true, done);
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

    fn submitted(&self, request_id: &str) -> Result<Option<TxnId>, LogError> {
        let overlay = self.overlay.lock().expect("lock");
        let pending = overlay
            .values()
            .find(|(_, record)| record.timeline.request_id.as_deref() == Some(request_id));
        if let Some((_, record)) = pending {
            return Ok(Some(record.txn_id));
        }
        drop(overlay);
        self.state.records().submitted(request_id)
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
        let queued = self.send(None, Command::Collect { before_unix_ms }, true, done);
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

    /// A collection, which someone waits for, tagged by its cutoff.
    fn collect(term: u64, tag: u8) -> Proposal {
        Proposal {
            leader: Leader { term, node_id: 1 },
            txn: None,
            command: Command::Collect {
                before_unix_ms: tag.into(),
            },
            waited: true,
            done: Box::new(|_| {}),
        }
    }

    /// A write of transaction `txn`, tagged by its one byte of "record".
    fn put(txn: u8, tag: u8, waited: bool) -> Proposal {
        Proposal {
            leader: Leader {
                term: 5,
                node_id: 1,
            },
            txn: Some(TxnId::from_bytes([txn; 16])),
            command: Command::Put(vec![tag]),
            waited,
            done: Box::new(|_| {}),
        }
    }

    fn tag(command: &Command) -> u8 {
        match command {
            Command::Collect { before_unix_ms } => *before_unix_ms as u8,
            Command::Put(record) => record[0],
        }
    }

    fn tags(group: &[Proposal]) -> Vec<u8> {
        group.iter().map(|p| tag(&p.command)).collect()
    }

    #[tokio::test]
    async fn entries_group_one_engines_writes_in_order_and_lose_none() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        for (term, n) in [(5, 1), (5, 2), (7, 3), (7, 4), (5, 5)] {
            tx.send(collect(term, n)).unwrap();
        }
        drop(tx);
        let mut held = None;
        let mut entries = Vec::new();
        while let Some((leader, group)) = next_group(&mut held, &mut queue).await {
            entries.push((leader.term, tags(&group)));
        }
        assert_eq!(
            entries,
            vec![(5, vec![1, 2]), (7, vec![3, 4]), (5, vec![5])]
        );
    }

    #[tokio::test]
    async fn a_held_proposal_goes_out_without_waiting_for_another() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        tx.send(collect(5, 1)).unwrap();
        tx.send(collect(7, 2)).unwrap();
        let mut held = None;
        let (_, first) = next_group(&mut held, &mut queue).await.unwrap();
        assert_eq!(tags(&first), vec![1]);
        // The queue is empty now (and its sender still open): the held one must not wait.
        let next = next_group(&mut held, &mut queue);
        let waited = tokio::time::timeout(Duration::from_secs(5), next).await;
        let (leader, second) = waited.expect("the held proposal waited").unwrap();
        assert_eq!((leader.term, tags(&second)), (7, vec![2]));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn unforced_writes_wait_for_a_forced_one_to_ride_with() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        tx.send(put(1, 1, false)).unwrap();
        let mut held = None;
        let mut next = tokio_test::task::spawn(next_group(&mut held, &mut queue));
        assert!(
            next.poll().is_pending(),
            "an unforced write went out alone at once"
        );
        tx.send(put(2, 2, false)).unwrap();
        tx.send(put(3, 3, true)).unwrap();
        tx.send(put(4, 4, false)).unwrap();
        let started = Instant::now();
        let (_, group) = next.await.unwrap();
        assert_eq!(tags(&group), vec![1, 2, 3, 4]);
        assert_eq!(started.elapsed(), Duration::ZERO, "the forced write waited");
    }

    #[tokio::test(start_paused = true)]
    async fn unforced_writes_alone_go_out_after_the_linger() {
        let (tx, mut queue) = mpsc::unbounded_channel();
        tx.send(put(1, 1, false)).unwrap();
        let started = Instant::now();
        let (_, group) = next_group(&mut None, &mut queue).await.unwrap();
        assert_eq!(tags(&group), vec![1]);
        assert_eq!(started.elapsed(), LINGER);
        drop(tx);
    }

    #[test]
    fn an_entry_keeps_the_last_write_of_each_transaction_and_tells_everyone() {
        let told = Arc::new(AtomicU64::new(0));
        let group = [
            put(1, 1, false),
            put(2, 2, false),
            collect(5, 9),
            put(1, 3, true),
        ]
        .into_iter()
        .map(|mut p| {
            let told = told.clone();
            p.done = Box::new(move |_| {
                told.fetch_add(1, Ordering::Relaxed);
            });
            p
        })
        .collect();
        let (commands, dones) = entry(group);
        let kept: Vec<u8> = commands.iter().map(tag).collect();
        assert_eq!(kept, vec![2, 9, 3]);
        for done in dones {
            done(&Ok(Applied::default()));
        }
        assert_eq!(told.load(Ordering::Relaxed), 4);
    }
}
