//! The replicated state machine: the decision log's records, kept by the same [`SledLog`] store
//! the single-node server uses (in the node's shared database), plus the last applied log id
//! and membership in `raft_sm`.
//!
//! Applying is not forced: the Raft log is what survives a crash, and the state machine's
//! writes reach the redo log in order, so after a crash it holds a prefix of them with an
//! applied id no later than what it holds; openraft applies the rest again, and replaying
//! whole-record writes in order ends in the same state. Snapshots are every record's frame,
//! written to `snapshot.bin` (forced, then renamed into place) before openraft purges the log.

// openraft's traits return its StorageError and RPCError, large by design; the helpers here
// return what the traits do.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::store::{failed, from_bytes, to_bytes};
use super::types::{Applied, Batch, Command, Leader};
use super::{NodeId, TypeConfig};
use crate::durable::{self, DurableDb, Tree};
use crate::log::{decode, SledLog, TxnRecord};

const APPLIED: &[u8] = b"applied";
const MEMBERSHIP: &[u8] = b"membership";
const INSTALLING: &[u8] = b"installing";
const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The last applied log id and the membership it left.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

/// Records to write, each with the frame it arrived in.
type Puts = Vec<(TxnRecord, Vec<u8>)>;

/// What `snapshot.bin` holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

struct Inner {
    db: Arc<DurableDb>,
    records: SledLog,
    meta: Tree,
    dir: PathBuf,
    /// Held while applying and while a snapshot reads the records, so a snapshot is the state
    /// at exactly its last applied id.
    applying: Mutex<()>,
}

/// What [`StateMachine::digest`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub applied_index: Option<u64>,
    pub records: usize,
    pub crc32: u32,
}

/// The state machine of one node; clones share it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

fn storage(verb: ErrorVerb) -> impl Fn(crate::log::LogError) -> StorageError<NodeId> {
    move |e| failed(verb, e)
}

impl StateMachine {
    /// Opens the state machine in `db`, finishing a snapshot install a crash interrupted.
    pub fn open(db: Arc<DurableDb>, dir: &Path) -> Result<Self, durable::StorageError> {
        let records = SledLog::in_db(db.clone()).map_err(durable::StorageError::from_display)?;
        let state = StateMachine {
            inner: Arc::new(Inner {
                db: db.clone(),
                records,
                meta: db.tree("raft_sm")?,
                dir: dir.to_owned(),
                applying: Mutex::new(()),
            }),
        };
        state
            .finish_install()
            .map_err(durable::StorageError::from_display)?;
        Ok(state)
    }

    fn finish_install(&self) -> Result<(), StorageError<NodeId>> {
        if self.meta::<bool>(INSTALLING)? != Some(true) {
            return Ok(());
        }
        tracing::warn!("finishing a snapshot install a crash interrupted");
        match self.read_snapshot()? {
            Some(file) => self.install(&file),
            // Interrupted before the new file was saved, so before any record changed.
            None => self.set_meta(INSTALLING, &false),
        }
    }

    /// The records, for the engine's reads.
    pub fn records(&self) -> &SledLog {
        &self.inner.records
    }

    /// A fingerprint of every record with the index it was taken at: nodes that applied the
    /// same entries hold the same records, so at the same index their digests match. Reads every
    /// record: for an operator's check, not for monitoring.
    pub fn digest(&self) -> Result<Digest, StorageError<NodeId>> {
        let (frames, (applied, _)) = self.frames_as_applied()?;
        let mut crc = crc32fast::Hasher::new();
        for frame in &frames {
            crc.update(&(frame.len() as u64).to_le_bytes());
            crc.update(frame);
        }
        Ok(Digest {
            applied_index: applied.map(|id| id.index),
            records: frames.len(),
            crc32: crc.finalize(),
        })
    }

    /// Every record's frame and the applied state they are exactly the state at.
    fn frames_as_applied(&self) -> Result<(Vec<Vec<u8>>, AppliedState), StorageError<NodeId>> {
        let _applying = self.inner.applying.lock().expect("lock");
        let frames = self
            .inner
            .records
            .frames()
            .map_err(storage(ErrorVerb::Read))?;
        Ok((frames, self.applied()?))
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self
            .inner
            .meta
            .get(key)
            .map_err(|e| failed(ErrorVerb::Read, e))?
        {
            Some(bytes) => from_bytes(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn set_meta(&self, key: &[u8], value: &impl Serialize) -> Result<(), StorageError<NodeId>> {
        self.inner
            .meta
            .insert(key, to_bytes(value)?)
            .map_err(|e| failed(ErrorVerb::Write, e))
    }

    fn applied(&self) -> Result<AppliedState, StorageError<NodeId>> {
        Ok((
            self.meta::<Option<LogId<NodeId>>>(APPLIED)?.flatten(),
            self.meta(MEMBERSHIP)?.unwrap_or_default(),
        ))
    }

    /// Applies one batch if it was committed in its proposer's term: its records are staged in
    /// `puts`, written together with the rest of the round's (see `write`).
    fn apply_batch(
        &self,
        log_id: &LogId<NodeId>,
        batch: Batch,
        puts: &mut Puts,
    ) -> Result<Applied, StorageError<NodeId>> {
        let committed_by = Leader {
            term: log_id.leader_id.term,
            node_id: log_id.leader_id.node_id,
        };
        if batch.leader != committed_by {
            tracing::info!(proposed_by = ?batch.leader, ?committed_by, "dropped a batch of a deposed leader");
            return Ok(Applied::default());
        }
        let mut applied = Applied {
            accepted: true,
            collected: 0,
        };
        for command in batch.commands {
            match command {
                Command::Put(frame) => match decode(&frame, None) {
                    Ok(record) => puts.push((record, frame)),
                    // Every node holds the same bytes, so every node skips the same record.
                    Err(error) => tracing::error!(%error, %log_id, "skipped a corrupt record"),
                },
                Command::Collect { before_unix_ms } => {
                    self.write(std::mem::take(puts), None)?;
                    let records = &self.inner.records;
                    applied.collected += blocking(|| records.collect(before_unix_ms))
                        .map_err(storage(ErrorVerb::Write))?;
                }
            }
        }
        Ok(applied)
    }

    /// Writes the staged records and, if given, the last applied id, as one write: a crash
    /// keeps all of it or none, so the id never runs ahead of the records.
    fn write(
        &self,
        puts: Puts,
        applied: Option<&LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let applied = applied.map(|id| to_bytes(&Some(id))).transpose()?;
        let records = &self.inner.records;
        self.inner
            .db
            .write(|w| {
                for (record, frame) in &puts {
                    records.stage(w, record, frame);
                }
                if let Some(applied) = &applied {
                    w.insert(&self.inner.meta, APPLIED, applied);
                }
                Ok::<_, durable::StorageError>(())
            })
            .map_err(|e| failed(ErrorVerb::Write, e))
    }

    /// Replaces every record with the snapshot's, then clears the install marker (see
    /// `install_snapshot`).
    fn install(&self, file: &SnapshotFile) -> Result<(), StorageError<NodeId>> {
        let frames: Vec<Vec<u8>> = from_bytes(&file.data)?;
        let _applying = self.inner.applying.lock().expect("lock");
        let records = &self.inner.records;
        records.clear().map_err(storage(ErrorVerb::Write))?;
        for frame in &frames {
            let record = decode(frame, None).map_err(storage(ErrorVerb::Read))?;
            records.store(&record).map_err(storage(ErrorVerb::Write))?;
        }
        self.set_meta(MEMBERSHIP, &file.meta.last_membership)?;
        self.set_meta(APPLIED, &file.meta.last_log_id)?;
        self.set_meta(INSTALLING, &false)?;
        tracing::info!(records = frames.len(), last = ?file.meta.last_log_id, "installed a snapshot");
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        self.inner
            .db
            .flush()
            .await
            .map_err(|e| failed(ErrorVerb::Write, e))
    }

    fn read_snapshot(&self) -> Result<Option<SnapshotFile>, StorageError<NodeId>> {
        match std::fs::read(self.snapshot_path()) {
            Ok(bytes) => from_bytes(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(ErrorVerb::Read, format!("snapshot: {e}"))),
        }
    }

    fn snapshot_path(&self) -> PathBuf {
        self.inner.dir.join(SNAPSHOT_FILE)
    }

    /// Writes the snapshot file durably: a crash leaves the old file or the new one.
    fn save_snapshot(&self, file: &SnapshotFile) -> Result<(), StorageError<NodeId>> {
        let bytes = to_bytes(file)?;
        let write = || -> std::io::Result<()> {
            let tmp = self.inner.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
            let mut out = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut out, &bytes)?;
            out.sync_all()?;
            std::fs::rename(&tmp, self.snapshot_path())?;
            std::fs::File::open(&self.inner.dir)?.sync_all()
        };
        write().map_err(|e| failed(ErrorVerb::Write, format!("snapshot: {e}")))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (frames, (last_log_id, last_membership)) = self.frames_as_applied()?;
        let data = to_bytes(&frames)?;
        let snapshot_id = match &last_log_id {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".into(),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let file = SnapshotFile { meta, data };
        // The state it was taken from must be durable first: after a crash, openraft loads
        // this snapshot and requires the state machine to have applied at least as far.
        self.flush().await?;
        self.save_snapshot(&file)?;
        tracing::info!(records = frames.len(), bytes = file.data.len(), last = ?file.meta.last_log_id, "built a snapshot");
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

/// Runs `work` that may block for seconds (a day's finished transactions take that long to
/// delete) so that the async worker's other tasks — calls, HTTP/2 pings, heartbeats — move to
/// another worker meanwhile. Applying must stay in order and under its lock, so it is not
/// handed to another thread; a single-threaded runtime (tests, the simulation) runs it inline.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError<NodeId>> {
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let _applying = self.inner.applying.lock().expect("lock");
        let mut answers = Vec::new();
        let mut puts = Puts::new();
        let mut last = None;
        for entry in entries {
            let answer = match entry.payload {
                EntryPayload::Blank => Applied::default(),
                EntryPayload::Normal(batch) => self.apply_batch(&entry.log_id, batch, &mut puts)?,
                EntryPayload::Membership(membership) => {
                    self.write(std::mem::take(&mut puts), None)?;
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    self.set_meta(MEMBERSHIP, &stored)?;
                    Applied::default()
                }
            };
            answers.push(answer);
            last = Some(entry.log_id);
        }
        self.write(puts, last.as_ref())?;
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let file = SnapshotFile {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        // A marker forced before the file is replaced and cleared after the records makes a
        // crash part-way finish the install at the next open, from whichever file is there
        // (the old one is behind nothing openraft purged). Forcing the records afterwards keeps
        // the state machine from ever being behind the snapshot openraft will load.
        self.set_meta(INSTALLING, &true)?;
        self.flush().await?;
        self.save_snapshot(&file)?;
        self.install(&file)?;
        self.flush().await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.read_snapshot()?.map(|file| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, RaftSnapshotBuilder};

    use super::*;
    use crate::core::{Outcome, TxnId};
    use crate::durable::LogSync;
    use crate::log::{encode, DecisionLog, Status, TxnRecord};

    fn record(id: u8, status: Status, finished_unix_ms: u64) -> TxnRecord {
        TxnRecord {
            txn_id: TxnId::from_bytes([id; 16]),
            status,
            deadline_unix_ms: 1_000,
            finished_unix_ms,
            commit_requested: true,
            reason: None,
            participants: vec![],
            timeline: Default::default(),
        }
    }

    fn entry(term: u64, node_id: u64, index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, node_id), index),
            payload: EntryPayload::Normal(Batch {
                leader: Leader {
                    term: 2,
                    node_id: 1,
                },
                commands,
            }),
        }
    }

    fn open(dir: &Path) -> StateMachine {
        let db = Arc::new(DurableDb::open(dir, LogSync::Fsync).unwrap());
        StateMachine::open(db, dir).unwrap()
    }

    #[tokio::test]
    async fn a_batch_counts_only_in_its_proposers_term() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = open(dir.path());
        let committed = record(1, Status::Committed, 0);
        let put = |r: &TxnRecord| vec![Command::Put(encode(r))];
        let answers = state
            .apply([
                entry(2, 1, 1, put(&committed)),
                // Proposed by the leader of term 2, committed in term 3: a deposed engine's
                // late write, dropped.
                entry(3, 2, 2, put(&record(1, Status::Aborted, 0))),
            ])
            .await
            .unwrap();
        assert!(answers[0].accepted && !answers[1].accepted);
        let read = state.records().read(committed.txn_id).unwrap();
        assert_eq!(read, Some(committed));
        let (applied, _) = state.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
    }

    // On the server's multi-threaded runtime, where the collection leaves the worker's other
    // tasks to the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_collects_by_the_cutoff_in_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = open(dir.path());
        let old = record(1, Status::Finished(Outcome::Committed), 100);
        let new = record(2, Status::Finished(Outcome::Aborted), 300);
        let commands = vec![
            Command::Put(encode(&old)),
            Command::Put(encode(&new)),
            Command::Collect {
                before_unix_ms: 200,
            },
        ];
        let answers = state.apply([entry(2, 1, 1, commands)]).await.unwrap();
        assert_eq!(answers[0].collected, 1);
        assert_eq!(state.records().read(old.txn_id).unwrap(), None);
        assert_eq!(state.records().read(new.txn_id).unwrap(), Some(new));
    }

    #[tokio::test]
    async fn a_snapshot_installed_elsewhere_holds_the_same_records() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut source, mut target) = (open(a.path()), open(b.path()));
        let records: Vec<TxnRecord> = (1..=5)
            .map(|i| record(i, Status::Finished(Outcome::Committed), 100))
            .collect();
        let commands = records.iter().map(|r| Command::Put(encode(r))).collect();
        source.apply([entry(2, 1, 7, commands)]).await.unwrap();
        target
            .apply([entry(
                2,
                1,
                1,
                vec![Command::Put(encode(&record(9, Status::Active, 0)))],
            )])
            .await
            .unwrap();

        let snapshot = source.build_snapshot().await.unwrap();
        target
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        for r in &records {
            assert_eq!(target.records().read(r.txn_id).unwrap().as_ref(), Some(r));
        }
        let stale = TxnId::from_bytes([9; 16]);
        assert_eq!(
            target.records().read(stale).unwrap(),
            None,
            "records not in the snapshot go"
        );
        let (applied, _) = target.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(7));
        // Reopened, it still is the snapshot's state, and the snapshot is kept.
        drop(target);
        let mut reopened = open(b.path());
        assert!(reopened.get_current_snapshot().await.unwrap().is_some());
        assert_eq!(
            reopened.records().read(records[0].txn_id).unwrap().as_ref(),
            Some(&records[0])
        );
    }
}
