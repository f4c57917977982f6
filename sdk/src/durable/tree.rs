//! Writing to the database: a named tree's reads and writes, and batches of writes.

use std::sync::Arc;

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::redo::Op;
use super::{Shared, StorageError};

/// Writes staged inside [`DurableDb::write`](super::DurableDb::write), applied together when it
/// returns.
#[derive(Default)]
pub struct Writes {
    pub(super) ops: Vec<(sled::Tree, Op)>,
}

impl Writes {
    pub fn insert(&mut self, tree: &Tree, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let op = Op::Insert {
            tree: tree.name.clone(),
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        };
        self.ops.push((tree.tree.clone(), op));
    }

    pub fn remove(&mut self, tree: &Tree, key: impl AsRef<[u8]>) {
        let op = Op::Remove {
            tree: tree.name.clone(),
            key: key.as_ref().to_vec(),
        };
        self.ops.push((tree.tree.clone(), op));
    }
}

/// Applies one write to a tree, or to a tree inside a sled transaction.
pub(super) fn apply_op<T: TreeWrites>(tree: &T, op: &Op) -> Result<(), T::Error> {
    match op {
        Op::Insert { key, value, .. } => tree.put(key, value),
        Op::Remove { key, .. } => tree.delete(key),
    }
}

/// What sled's trees and transactional trees both do.
pub(super) trait TreeWrites {
    type Error;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn delete(&self, key: &[u8]) -> Result<(), Self::Error>;
}

impl TreeWrites for sled::Tree {
    type Error = sled::Error;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), sled::Error> {
        self.insert(key, value).map(drop)
    }
    fn delete(&self, key: &[u8]) -> Result<(), sled::Error> {
        self.remove(key).map(drop)
    }
}

impl TreeWrites for TransactionalTree {
    type Error = UnabortableTransactionError;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Self::Error> {
        self.insert(key, value).map(drop)
    }
    fn delete(&self, key: &[u8]) -> Result<(), Self::Error> {
        self.remove(key).map(drop)
    }
}

/// A named tree: reads go straight to sled, writes through the redo log.
#[derive(Clone)]
pub struct Tree {
    pub(super) name: Arc<str>,
    pub(super) tree: sled::Tree,
    pub(super) shared: Arc<Shared>,
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, StorageError> {
        Ok(self.tree.get(key)?)
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StorageError> {
        Ok(self.tree.contains_key(key)?)
    }

    pub fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> sled::Iter {
        self.tree.range(range)
    }

    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), StorageError> {
        self.shared.write(false, |w| {
            w.insert(self, key, value);
            Ok::<_, StorageError>(())
        })
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StorageError> {
        self.shared.write(false, |w| {
            w.remove(self, key);
            Ok::<_, StorageError>(())
        })
    }
}
