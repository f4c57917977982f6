//! Records on sled: a kind of [`Work`] on the embedded [`KvResource`].
//!
//! A transaction stages one insertion: a record, and the keys it may go under. Prepare takes
//! the first of them that neither a committed record nor another prepared insertion holds, and
//! holds it until the transaction is decided; with none free it votes NO, saying what holds
//! each. Commit writes the record.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use crate::core::TxnId;
use crate::durable::{StorageError, Tree, Writes};
use crate::kv::{AlreadyPrepared, KvResource, Work};

/// The records.
pub type RecordStore = KvResource<Wanted>;

/// A record as listed: committed, or pending under a prepared transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: String,
    /// The prepared transaction holding it, while undecided.
    pub pending: Option<TxnId>,
}

/// A staged insertion: the record, the keys it may go under in order of preference, and what
/// a key stands for ("order", "courier"), for the reason of a NO.
#[derive(Debug, Default)]
pub struct Wanted {
    pub keys: Vec<String>,
    pub value: String,
    pub item: String,
}

/// A prepared insertion: the key it took, and the record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Insertion {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Work for Wanted {
    type Prepared = Insertion;
    /// Key → the prepared transaction holding it.
    type Holds = HashMap<String, TxnId>;
    const DATA: &'static str = "records";
    const MAGIC: &'static [u8; 2] = b"VR";

    fn prepare(
        self,
        records: &Tree,
        held: &Self::Holds,
    ) -> Result<Result<Insertion, String>, StorageError> {
        let mut taken = Vec::new();
        for key in self.keys {
            if let Some(value) = records.get(key.as_bytes())? {
                taken.push(format!("{key} is taken by {}", text(&value)));
            } else if let Some(holder) = held.get(&key) {
                taken.push(format!("{key} is held by transaction {holder}"));
            } else {
                let value = self.value;
                return Ok(Ok(Insertion { key, value }));
            }
        }
        let item = self.item;
        Ok(Err(match taken.as_slice() {
            [one] => format!("{item} {one}"),
            all => format!("no {item} is free: {}", all.join(", ")),
        }))
    }

    fn hold(held: &mut Self::Holds, txn: TxnId, prepared: &Insertion, take: bool) {
        match take {
            true => held.insert(prepared.key.clone(), txn),
            false => held.remove(&prepared.key),
        };
    }

    fn apply(
        prepared: &Insertion,
        records: &Tree,
        writes: &mut Writes,
    ) -> Result<(), StorageError> {
        writes.insert(records, prepared.key.as_bytes(), prepared.value.as_bytes());
        Ok(())
    }
}

impl RecordStore {
    /// Stages `txn`'s insertion (replacing an earlier one), to be discarded at `expires` unless
    /// prepared by then.
    pub fn insert(
        &self,
        txn: TxnId,
        wanted: Wanted,
        expires: Instant,
    ) -> Result<(), AlreadyPrepared> {
        self.stage_work(txn, expires, |staged| *staged = wanted)
    }

    /// Every record, committed and pending, in key order.
    pub fn list(&self) -> Result<Vec<Record>, StorageError> {
        let mut records = BTreeMap::new();
        for entry in self.data().iter() {
            let (key, value) = entry?;
            records.insert(text(&key), (text(&value), None));
        }
        self.holds(|_, prepared| {
            for (txn, insertion) in prepared {
                let record = (insertion.value.clone(), Some(*txn));
                records.insert(insertion.key.clone(), record);
            }
        });
        let records = records.into_iter().map(|(key, (value, pending))| Record {
            key,
            value,
            pending,
        });
        Ok(records.collect())
    }
}

#[cfg(test)]
mod tests;
