//! The Raft log and vote on disk, in the node's [`DurableDb`]: the `raft_log` tree holds entries
//! under their big-endian index, `raft_meta` the vote and the last purged log id.
//!
//! openraft's correctness rests on two promises kept here: `save_vote` returns only after the
//! vote is forced to disk (or a node could vote twice in a term), and an append's flushed
//! callback is called only after its `fdatasync` (or a leader could count an entry a follower
//! would lose). Both go through the database's one group-commit flusher.

// openraft's traits return its StorageError and RPCError, large by design; the helpers here
// return what the traits do.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NodeId, TypeConfig};
use crate::durable::{self, DurableDb, Tree};

const VOTE: &[u8] = b"vote";
const PURGED: &[u8] = b"purged";

/// A storage failure as openraft wants it.
pub(super) fn failed(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Store, verb, AnyError::error(e.to_string())).into()
}

pub(super) fn to_bytes(value: &impl Serialize) -> Result<Vec<u8>, StorageError<NodeId>> {
    bincode::serialize(value).map_err(|e| failed(ErrorVerb::Write, e))
}

pub(super) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError<NodeId>> {
    bincode::deserialize(bytes).map_err(|e| failed(ErrorVerb::Read, e))
}

/// The Raft log of one node. Clones share the same trees.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DurableDb>,
    entries: Tree,
    meta: Tree,
}

impl LogStore {
    pub fn open(db: Arc<DurableDb>) -> Result<Self, durable::StorageError> {
        Ok(LogStore {
            entries: db.tree("raft_log")?,
            meta: db.tree("raft_meta")?,
            db,
        })
    }

    fn meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(|e| failed(ErrorVerb::Read, e))? {
            Some(bytes) => from_bytes(&bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn flush(&self) -> Result<(), StorageError<NodeId>> {
        self.db
            .flush()
            .await
            .map_err(|e| failed(ErrorVerb::Write, e))
    }

    /// Removes every entry whose index is in `range`.
    fn remove(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError<NodeId>> {
        let keys: Vec<_> = self
            .entries
            .range(range)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| failed(ErrorVerb::Read, e))?;
        self.db
            .write(|w| {
                for key in &keys {
                    w.remove(&self.entries, key);
                }
                Ok::<_, durable::StorageError>(())
            })
            .map_err(|e| failed(ErrorVerb::Write, e))
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.entries
            .range((start, end))
            .values()
            .map(|value| from_bytes(&value.map_err(|e| failed(ErrorVerb::Read, e))?))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta(PURGED)?;
        let last = match self.entries.iter().next_back() {
            Some(entry) => {
                let (_, value) = entry.map_err(|e| failed(ErrorVerb::Read, e))?;
                Some(from_bytes::<Entry<TypeConfig>>(&value)?.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.meta
            .insert(VOTE, to_bytes(vote)?)
            .map_err(|e| failed(ErrorVerb::Write, e))?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.meta(VOTE)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<([u8; 8], Vec<u8>)> = entries
            .into_iter()
            .map(|entry| Ok((key(entry.log_id.index), to_bytes(&entry)?)))
            .collect::<Result<_, StorageError<NodeId>>>()?;
        self.db
            .write(|w| {
                for (key, value) in &encoded {
                    w.insert(&self.entries, key, value);
                }
                Ok::<_, durable::StorageError>(())
            })
            .map_err(|e| failed(ErrorVerb::Write, e))?;
        // The entries are readable now; openraft hears they are durable only after the sync.
        let flushed = self.db.flush();
        tokio::spawn(async move {
            let result = flushed.await.map_err(std::io::Error::other);
            callback.log_io_completed(result);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove(key(log_id.index)..)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // The purged id first: a crash between the two leaves entries openraft then ignores.
        self.meta
            .insert(PURGED, to_bytes(&log_id)?)
            .map_err(|e| failed(ErrorVerb::Write, e))?;
        self.remove(..=key(log_id.index))
    }
}
