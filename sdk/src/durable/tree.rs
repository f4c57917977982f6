//! Writing to the database: a named tree's reads and writes, and batches of writes.

use std::sync::Arc;

use super::overlay::{key_range, Iter, Overlays};
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

/// Applies one write to a sled tree.
pub(super) fn apply_op(tree: &sled::Tree, op: &Op) -> sled::Result<()> {
    match op {
        Op::Insert { key, value, .. } => set(tree, key, Some(value)),
        Op::Remove { key, .. } => set(tree, key, None),
    }
}

/// Gives `key` in a sled tree `value`, or removes it.
pub(super) fn set(tree: &sled::Tree, key: &[u8], value: Option<&[u8]>) -> sled::Result<()> {
    match value {
        Some(value) => tree.insert(key, value).map(drop),
        None => tree.remove(key).map(drop),
    }
}

/// A named tree: reads see the writes sled has not yet taken (see [`overlay`](super::overlay))
/// over sled's entries; writes go through the redo log.
#[derive(Clone)]
pub struct Tree {
    pub(super) name: Arc<str>,
    pub(super) tree: sled::Tree,
    pub(super) shared: Arc<Shared>,
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>, StorageError> {
        let key = key.as_ref();
        let changed = self.overlays().lookup(&self.name, key);
        match changed {
            Some(value) => Ok(value),
            None => Ok(self.tree.get(key)?),
        }
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StorageError> {
        self.get(key).map(|value| value.is_some())
    }

    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    pub fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(&self, range: R) -> Iter {
        let range = key_range(&range);
        let changes = self.overlays().changes_in(&self.name, &range);
        Iter::new(self.tree.range(range), changes)
    }

    fn overlays(&self) -> std::sync::MutexGuard<'_, Overlays> {
        self.shared.overlays.lock().expect("lock")
    }

    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), StorageError> {
        self.shared.write(|w| {
            w.insert(self, key, value);
            Ok::<_, StorageError>(())
        })
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StorageError> {
        self.shared.write(|w| {
            w.remove(self, key);
            Ok::<_, StorageError>(())
        })
    }
}
