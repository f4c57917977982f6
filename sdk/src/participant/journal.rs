//! The participant's own durable record of each transaction: what it voted and how the
//! transaction ended here. Final entries are kept for a retention period (so late duplicates
//! are still answered truthfully), indexed by time for collection.

use std::sync::Arc;

use prost::Message;

use crate::durable::{DurableDb, StorageError, Tree};
use crate::frame;
use crate::TxnId;

const MAGIC: &[u8; 2] = b"VJ";

/// How a transaction stands at this participant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// Voted YES; waiting for the decision of the coordinator at this URL.
    Prepared {
        coordinator: String,
    },
    /// Voted NO, for this reason.
    VotedNo(String),
    /// Voted READ_ONLY: nothing to do in phase 2.
    ReadOnly,
    Committed,
    Aborted,
}

impl Local {
    fn code(&self) -> u32 {
        match self {
            Local::Prepared { .. } => 1,
            Local::VotedNo(_) => 2,
            Local::ReadOnly => 3,
            Local::Committed => 4,
            Local::Aborted => 5,
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryBody {
    #[prost(uint32, tag = "1")]
    state: u32,
    #[prost(string, tag = "2")]
    text: String,
    #[prost(uint64, tag = "3")]
    at_unix_ms: u64,
}

fn encode(local: &Local, at_unix_ms: u64) -> Vec<u8> {
    let text = match local {
        Local::Prepared { coordinator } => coordinator.clone(),
        Local::VotedNo(reason) => reason.clone(),
        _ => String::new(),
    };
    let body = EntryBody {
        state: local.code(),
        text,
        at_unix_ms,
    };
    frame::seal(MAGIC, &body.encode_to_vec())
}

pub(super) fn decode(txn: TxnId, value: &[u8]) -> Result<Local, StorageError> {
    let corrupt = |what: String| StorageError(format!("journal entry of {txn} is corrupt: {what}"));
    let body = frame::open(MAGIC, value).map_err(corrupt)?;
    let body = EntryBody::decode(body).map_err(|e| corrupt(e.to_string()))?;
    Ok(match body.state {
        1 => Local::Prepared {
            coordinator: body.text,
        },
        2 => Local::VotedNo(body.text),
        3 => Local::ReadOnly,
        4 => Local::Committed,
        5 => Local::Aborted,
        other => return Err(corrupt(format!("unknown state code {other}"))),
    })
}

/// The journal, in trees of a [`DurableDb`] it may share with the resource.
pub struct Journal {
    db: Arc<DurableDb>,
    entries: Tree,
    finished_at: Tree,
}

impl Journal {
    pub fn open(db: Arc<DurableDb>) -> Result<Self, StorageError> {
        Ok(Journal {
            entries: db.tree("journal")?,
            finished_at: db.tree("journal_finished_at")?,
            db,
        })
    }

    pub fn get(&self, txn: TxnId) -> Result<Option<Local>, StorageError> {
        self.entries
            .get(txn.to_bytes())?
            .map(|value| decode(txn, &value))
            .transpose()
    }

    /// Records `local` without forcing it.
    pub fn put(&self, txn: TxnId, local: &Local, now_unix_ms: u64) -> Result<(), StorageError> {
        // The entry first: should a crash keep only it, it is never collected; the index entry
        // kept alone would have collection delete the entry it replaced.
        self.db.write(|w| {
            w.insert(&self.entries, txn.to_bytes(), encode(local, now_unix_ms));
            if !matches!(local, Local::Prepared { .. }) {
                let mut key = now_unix_ms.to_be_bytes().to_vec();
                key.extend_from_slice(&txn.to_bytes());
                w.insert(&self.finished_at, key, []);
            }
            Ok(())
        })
    }

    /// Records `local` and waits until it (and every write before it) is durable. A `lazy`
    /// force may wait a moment to share the next urgent flush (see
    /// [`DurableDb::flush_lazily`]).
    pub async fn put_forced(
        &self,
        txn: TxnId,
        local: &Local,
        now_unix_ms: u64,
        lazy: bool,
    ) -> Result<(), StorageError> {
        self.put(txn, local, now_unix_ms)?;
        match lazy {
            true => self.db.flush_lazily().await,
            false => self.db.flush().await,
        }
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().await
    }

    /// Whether the journal was closed (at shutdown): its writes are then durable already.
    pub fn is_closed(&self) -> bool {
        self.db.is_closed()
    }

    /// Transactions prepared here with no decision yet, with their coordinators.
    pub fn prepared(&self) -> Result<Vec<(TxnId, String)>, StorageError> {
        let mut prepared = Vec::new();
        for entry in self.entries.iter() {
            let (key, value) = entry?;
            let Ok(id) = <[u8; 16]>::try_from(key.as_ref()) else {
                continue;
            };
            let txn = TxnId::from_bytes(id);
            if let Local::Prepared { coordinator } = decode(txn, &value)? {
                prepared.push((txn, coordinator));
            }
        }
        Ok(prepared)
    }

    /// Deletes final entries recorded before `before_unix_ms`; returns how many.
    pub fn collect(&self, before_unix_ms: u64) -> Result<usize, StorageError> {
        let mut collected = 0;
        for entry in self
            .finished_at
            .range(..before_unix_ms.to_be_bytes().to_vec())
        {
            let (key, _) = entry?;
            self.db.write(|w| {
                w.remove(&self.entries, &key[8..]);
                w.remove(&self.finished_at, &key);
                Ok::<_, StorageError>(())
            })?;
            collected += 1;
        }
        Ok(collected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::LogSync;

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DurableDb::open(dir.path(), LogSync::Fsync).unwrap());
        (dir, Journal::open(db).unwrap())
    }

    #[tokio::test]
    async fn entries_round_trip_and_prepared_ones_are_listed() {
        let (_dir, journal) = journal();
        let (a, b) = (TxnId::from_bytes([1; 16]), TxnId::from_bytes([2; 16]));
        let prepared = Local::Prepared {
            coordinator: "http://c:1".into(),
        };
        journal.put_forced(a, &prepared, 10, false).await.unwrap();
        journal
            .put(b, &Local::VotedNo("no funds".into()), 10)
            .unwrap();
        assert_eq!(journal.get(a), Ok(Some(prepared)));
        assert_eq!(journal.get(b), Ok(Some(Local::VotedNo("no funds".into()))));
        assert_eq!(journal.prepared(), Ok(vec![(a, "http://c:1".into())]));
    }

    #[test]
    fn final_entries_are_collected_after_retention() {
        let (_dir, journal) = journal();
        let (a, b) = (TxnId::from_bytes([1; 16]), TxnId::from_bytes([2; 16]));
        journal.put(a, &Local::Committed, 100).unwrap();
        journal.put(b, &Local::Aborted, 300).unwrap();
        assert_eq!(journal.collect(200), Ok(1));
        assert_eq!(journal.get(a), Ok(None));
        assert_eq!(journal.get(b), Ok(Some(Local::Aborted)));
    }

    #[test]
    fn a_corrupt_entry_is_an_error() {
        let (_dir, journal) = journal();
        let a = TxnId::from_bytes([1; 16]);
        journal
            .entries
            .insert(a.to_bytes(), &b"garbage"[..])
            .unwrap();
        assert!(journal.get(a).unwrap_err().0.contains("corrupt"));
    }
}
