//! Records on sled, as a participant [`Resource`].
//!
//! An insertion is staged in memory and touches nothing until prepared. Prepare takes the first
//! of its keys that neither a committed record nor another prepared insertion holds, records
//! the insertion in the `prepared` tree (made durable by the journal's forced flush, same
//! database) and holds the key; with no key free it votes NO. Commit writes the record and
//! drops the prepared entry in one sled transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::time::Instant;

use crate::core::{TxnId, Vote};
use crate::durable::{DurableDb, StorageError, Tree};
use crate::frame;
use crate::participant::{Resource, ResourceError};
use crate::staging::Staging;

const MAGIC: &[u8; 2] = b"VR";

/// A record as listed: committed, or pending under a prepared transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: String,
    /// The prepared transaction holding it, while undecided.
    pub pending: Option<TxnId>,
}

/// Why a records request failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("transaction {0} is already prepared here; it can no longer change")]
    AlreadyPrepared(TxnId),
    #[error("the records' storage failed: {0}")]
    Storage(#[from] StorageError),
}

impl From<sled::Error> for RecordsError {
    fn from(e: sled::Error) -> Self {
        RecordsError::Storage(e.into())
    }
}

struct Staged {
    keys: Vec<String>,
    value: String,
    expires: Instant,
}

/// A prepared insertion: the key it took, and the record.
#[derive(Clone, PartialEq, prost::Message)]
struct Insertion {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Default)]
struct Book {
    staged: HashMap<TxnId, Staged>,
    prepared: HashMap<TxnId, Insertion>,
    /// Key → the prepared transaction holding it.
    held: HashMap<String, TxnId>,
}

impl Book {
    fn hold(&mut self, txn: TxnId, insertion: Insertion) {
        self.held.insert(insertion.key.clone(), txn);
        self.prepared.insert(txn, insertion);
    }

    fn release(&mut self, txn: TxnId) -> Option<Insertion> {
        let insertion = self.prepared.remove(&txn)?;
        self.held.remove(&insertion.key);
        Some(insertion)
    }
}

/// The records: committed ones, and staged and prepared insertions.
pub struct RecordStore {
    db: Arc<DurableDb>,
    records: Tree,
    prepared: Tree,
    book: Mutex<Book>,
    /// What a key stands for, in reasons ("order", "courier").
    item: String,
}

fn decode(value: &[u8]) -> Result<Insertion, StorageError> {
    let corrupt = |what: String| StorageError(format!("corrupt prepared insertion: {what}"));
    Insertion::decode(frame::open(MAGIC, value).map_err(corrupt)?)
        .map_err(|e| corrupt(e.to_string()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl RecordStore {
    /// Opens the records in `db`, reloading what was prepared before a restart.
    pub fn open(db: Arc<DurableDb>, item: String) -> Result<Self, RecordsError> {
        let store = RecordStore {
            records: db.tree("records")?,
            prepared: db.tree("prepared")?,
            db,
            book: Mutex::new(Book::default()),
            item,
        };
        {
            let mut book = store.book.lock().expect("lock");
            for entry in store.prepared.iter() {
                let (key, value) = entry?;
                let Ok(id) = <[u8; 16]>::try_from(key.as_ref()) else {
                    continue;
                };
                book.hold(TxnId::from_bytes(id), decode(&value)?);
            }
        }
        Ok(store)
    }

    /// Stages the insertion of `value` under the first free one of `keys` (replacing what `txn`
    /// staged before), to be discarded at `expires` unless prepared by then.
    pub fn stage(
        &self,
        txn: TxnId,
        keys: Vec<String>,
        value: String,
        expires: Instant,
    ) -> Result<(), RecordsError> {
        let mut book = self.book.lock().expect("lock");
        if book.prepared.contains_key(&txn) {
            return Err(RecordsError::AlreadyPrepared(txn));
        }
        let staged = Staged {
            keys,
            value,
            expires,
        };
        book.staged.insert(txn, staged);
        Ok(())
    }

    /// Every record, committed and pending, in key order.
    pub fn list(&self) -> Result<Vec<Record>, RecordsError> {
        let book = self.book.lock().expect("lock");
        let mut records = BTreeMap::new();
        for entry in self.records.iter() {
            let (key, value) = entry?;
            let (key, value) = (text(&key), text(&value));
            records.insert(key.clone(), (value, None));
        }
        for (txn, insertion) in &book.prepared {
            let record = (insertion.value.clone(), Some(*txn));
            records.insert(insertion.key.clone(), record);
        }
        Ok(records
            .into_iter()
            .map(|(key, (value, pending))| Record {
                key,
                value,
                pending,
            })
            .collect())
    }

    /// Why none of `keys` is free, or the first free one.
    fn free_key(
        &self,
        book: &Book,
        keys: &[String],
    ) -> Result<Result<String, String>, RecordsError> {
        let mut taken = Vec::new();
        for key in keys {
            if let Some(value) = self.records.get(key.as_bytes())? {
                taken.push(format!("{key} is taken by {}", text(&value)));
            } else if let Some(holder) = book.held.get(key) {
                taken.push(format!("{key} is held by transaction {holder}"));
            } else {
                return Ok(Ok(key.clone()));
            }
        }
        let item = &self.item;
        Ok(Err(match taken.as_slice() {
            [one] => format!("{item} {one}"),
            all => format!("no {item} is free: {}", all.join(", ")),
        }))
    }

    fn prepare_now(&self, txn: TxnId) -> Result<Vote, RecordsError> {
        let mut book = self.book.lock().expect("lock");
        let Some(staged) = book.staged.remove(&txn) else {
            return Ok(Vote::No(
                "no insertion is staged here for this transaction (it expired, or was lost in \
                 a restart)"
                    .into(),
            ));
        };
        let key = match self.free_key(&book, &staged.keys)? {
            Ok(key) => key,
            Err(reason) => return Ok(Vote::No(reason)),
        };
        let insertion = Insertion {
            key,
            value: staged.value,
        };
        let entry = frame::seal(MAGIC, &insertion.encode_to_vec());
        self.prepared.insert(txn.to_bytes(), entry)?;
        book.hold(txn, insertion);
        Ok(Vote::Yes)
    }

    fn commit_now(&self, txn: TxnId) -> Result<(), RecordsError> {
        let mut book = self.book.lock().expect("lock");
        let Some(insertion) = book.prepared.get(&txn).cloned() else {
            return Ok(());
        };
        // Atomic: a record written with its prepared entry kept would be inserted again by a
        // commit after a restart — harmless — but the reverse would lose it.
        self.db.write_atomically(|w| {
            w.insert(
                &self.records,
                insertion.key.as_bytes(),
                insertion.value.as_bytes(),
            );
            w.remove(&self.prepared, txn.to_bytes());
            Ok::<_, StorageError>(())
        })?;
        book.release(txn);
        Ok(())
    }

    fn abort_now(&self, txn: TxnId) -> Result<(), RecordsError> {
        let mut book = self.book.lock().expect("lock");
        book.staged.remove(&txn);
        if book.release(txn).is_some() {
            self.prepared.remove(txn.to_bytes())?;
        }
        Ok(())
    }
}

fn resource_error(e: RecordsError) -> ResourceError {
    ResourceError(e.to_string())
}

impl Resource for RecordStore {
    async fn prepare(&self, txn: TxnId) -> Result<Vote, ResourceError> {
        self.prepare_now(txn).map_err(resource_error)
    }

    async fn commit(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.commit_now(txn).map_err(resource_error)
    }

    async fn abort(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.abort_now(txn).map_err(resource_error)
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        let book = self.book.lock().expect("lock");
        Ok(book.prepared.keys().copied().collect())
    }
}

impl Staging for RecordStore {
    fn discard_expired(&self, now: Instant) -> usize {
        let mut book = self.book.lock().expect("lock");
        let before = book.staged.len();
        book.staged.retain(|_, staged| staged.expires > now);
        before - book.staged.len()
    }
}

#[cfg(test)]
mod tests;
