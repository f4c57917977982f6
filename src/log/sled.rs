//! The single-node decision log on sled, with group commit (see [`crate::durable`]).
//!
//! Four trees: `open` holds records of unfinished transactions (what recovery reads),
//! `finished` the END records kept for the retention period, `finished_at` indexes them by
//! finish time (8-byte big-endian ms ++ id → the Submit request id, if any) so collection is a
//! range scan, and `requests` maps a Submit's request id to its transaction for as long as the
//! transaction's record is kept.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use super::{decode, encode, DecisionLog, LogError, Status, TxnRecord};
use crate::core::TxnId;
use crate::durable::{DurableDb, FlushStats, LogSync, StorageError, Tree, Writes};

/// The sled-backed [`DecisionLog`]; clones share the database.
#[derive(Clone)]
pub struct SledLog {
    db: Arc<DurableDb>,
    open: Tree,
    finished: Tree,
    finished_at: Tree,
    requests: Tree,
}

/// Finished records deleted per write when collecting.
const COLLECT_BATCH: usize = 256;

fn io_error(e: impl std::fmt::Display) -> LogError {
    LogError::Io(e.to_string())
}

impl From<StorageError> for LogError {
    fn from(e: StorageError) -> Self {
        LogError::Io(e.0)
    }
}

impl SledLog {
    /// Opens (or creates) the log in `dir` and starts its flusher.
    pub fn open(dir: &Path, sync: LogSync) -> Result<Self, LogError> {
        Self::in_db(Arc::new(DurableDb::open(dir, sync)?))
    }

    /// The log's trees in `db`, which others may share (the cluster's state machine keeps its
    /// records here, beside the Raft log).
    pub fn in_db(db: Arc<DurableDb>) -> Result<Self, LogError> {
        Ok(SledLog {
            open: db.tree("open")?,
            finished: db.tree("finished")?,
            finished_at: db.tree("finished_at")?,
            requests: db.tree("requests")?,
            db,
        })
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &FlushStats {
        self.db.stats()
    }

    fn key(txn_id: TxnId) -> [u8; 16] {
        txn_id.to_bytes()
    }

    fn finished_key(record: &TxnRecord) -> [u8; 24] {
        let mut key = [0; 24];
        key[..8].copy_from_slice(&record.finished_unix_ms.to_be_bytes());
        key[8..].copy_from_slice(&record.txn_id.to_bytes());
        key
    }

    /// Writes `record` in place of the transaction's previous one; durable with the next flush.
    pub fn store(&self, record: &TxnRecord) -> Result<(), LogError> {
        let frame = encode(record);
        self.db.write(|w| {
            self.stage(w, record, &frame);
            Ok::<_, StorageError>(())
        })?;
        Ok(())
    }

    /// Stages the writes that put `record`, already encoded as `frame`, in place of the
    /// transaction's previous one: callers storing many records make one write of them all.
    pub fn stage(&self, w: &mut Writes, record: &TxnRecord, frame: &[u8]) {
        let key = Self::key(record.txn_id);
        let request = record.timeline.request_id.as_deref().unwrap_or_default();
        if !request.is_empty() && !self.indexes(request, &key) {
            w.insert(&self.requests, request.as_bytes(), key);
        }
        if let Status::Finished(_) = record.status {
            w.insert(&self.finished, key, frame);
            w.insert(
                &self.finished_at,
                Self::finished_key(record),
                request.as_bytes(),
            );
            w.remove(&self.open, key);
        } else {
            w.insert(&self.open, key, frame);
        }
    }

    /// Whether `request`'s index entry names `key` already: each of a transaction's records
    /// carries its request, and a read costs far less than writing the entry again.
    fn indexes(&self, request: &str, key: &[u8]) -> bool {
        matches!(self.requests.get(request.as_bytes()), Ok(Some(found)) if found.as_ref() == key)
    }

    /// Deletes finished records that finished before `before_unix_ms`; returns how many.
    pub fn collect(&self, before_unix_ms: u64) -> Result<usize, LogError> {
        let expired = self
            .finished_at
            .range(..before_unix_ms.to_be_bytes().to_vec());
        let mut collected = 0;
        let mut entries = Vec::with_capacity(COLLECT_BATCH);
        for entry in expired {
            entries.push(entry.map_err(io_error)?);
            if entries.len() == COLLECT_BATCH {
                collected += self.remove_finished(&mut entries)?;
            }
        }
        collected += self.remove_finished(&mut entries)?;
        Ok(collected)
    }

    /// Removes the finished records whose `finished_at` entries are `entries`, and their
    /// requests' index entries, as one write.
    fn remove_finished(
        &self,
        entries: &mut Vec<(sled::IVec, sled::IVec)>,
    ) -> Result<usize, LogError> {
        self.db.write(|w| {
            for (key, request) in entries.iter() {
                w.remove(&self.finished, &key[8..]);
                w.remove(&self.finished_at, key);
                if !request.is_empty() {
                    w.remove(&self.requests, request);
                }
            }
            Ok::<_, StorageError>(())
        })?;
        Ok(std::mem::take(entries).len())
    }

    /// Every record's frame, unfinished and finished (for a snapshot).
    pub fn frames(&self) -> Result<Vec<Vec<u8>>, LogError> {
        let mut frames = Vec::new();
        for tree in [&self.open, &self.finished] {
            for value in tree.iter().values() {
                frames.push(value.map_err(io_error)?.to_vec());
            }
        }
        Ok(frames)
    }

    /// Deletes every record (before a snapshot is installed in their place).
    pub fn clear(&self) -> Result<(), LogError> {
        for tree in [
            &self.open,
            &self.finished,
            &self.finished_at,
            &self.requests,
        ] {
            let keys: Vec<sled::IVec> = tree
                .iter()
                .keys()
                .collect::<Result<_, _>>()
                .map_err(io_error)?;
            self.db.write(|w| {
                for key in &keys {
                    w.remove(tree, key);
                }
                Ok::<_, StorageError>(())
            })?;
        }
        Ok(())
    }

    fn decode_entry(entry: sled::Result<(sled::IVec, sled::IVec)>) -> Result<TxnRecord, LogError> {
        let (key, value) = entry.map_err(io_error)?;
        let key_txn = <[u8; 16]>::try_from(key.as_ref())
            .ok()
            .map(TxnId::from_bytes);
        decode(&value, key_txn)
    }
}

impl DecisionLog for SledLog {
    fn close(&self) {
        self.db.close();
    }

    fn write(&self, record: &TxnRecord) -> Result<(), LogError> {
        self.store(record)
    }

    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl Future<Output = Result<(), LogError>> + Send + use<> {
        let stored = self.store(record).map(|()| self.db.flush());
        async move { Ok(stored?.await?) }
    }

    fn read(&self, txn_id: TxnId) -> Result<Option<TxnRecord>, LogError> {
        let key = Self::key(txn_id);
        for tree in [&self.open, &self.finished] {
            if let Some(value) = tree.get(key).map_err(io_error)? {
                return decode(&value, Some(txn_id)).map(Some);
            }
        }
        Ok(None)
    }

    fn submitted(&self, request_id: &str) -> Result<Option<TxnId>, LogError> {
        let Some(key) = self.requests.get(request_id.as_bytes()).map_err(io_error)? else {
            return Ok(None);
        };
        let id = <[u8; 16]>::try_from(key.as_ref()).map_err(|_| LogError::Corrupt {
            txn: None,
            what: format!("the index entry of request {request_id:?} is not a transaction id"),
        })?;
        Ok(Some(TxnId::from_bytes(id)))
    }

    fn unfinished(&self) -> Result<Vec<Result<TxnRecord, LogError>>, LogError> {
        let mut records = Vec::new();
        for entry in self.open.iter() {
            let (key, _) = entry.as_ref().map_err(io_error)?;
            if self.finished.contains_key(key).map_err(io_error)? {
                self.open.remove(key).map_err(io_error)?;
                continue;
            }
            records.push(Self::decode_entry(entry));
        }
        Ok(records)
    }

    fn finished(
        &self,
        after: Option<TxnId>,
    ) -> Box<dyn Iterator<Item = Result<TxnRecord, LogError>> + '_> {
        let entries = match after {
            Some(id) => self.finished.range(Self::key(id)..),
            None => self.finished.iter(),
        };
        let after_key = after.map(Self::key);
        Box::new(
            entries
                .filter(
                    move |e| !matches!((e, after_key), (Ok((k, _)), Some(a)) if k.as_ref() == a),
                )
                .map(Self::decode_entry),
        )
    }

    fn collect_finished(
        &self,
        before_unix_ms: u64,
    ) -> impl Future<Output = Result<usize, LogError>> + Send + use<> {
        // A day's finished transactions take seconds to delete: off the async workers, which
        // keep answering calls (and HTTP/2 pings) meanwhile.
        let log = self.clone();
        async move {
            tokio::task::spawn_blocking(move || log.collect(before_unix_ms))
                .await
                .map_err(|e| {
                    LogError::Io(format!("collecting finished transactions stopped: {e}"))
                })?
        }
    }
}

#[cfg(test)]
mod tests;
