//! Writes not yet in sled: read before sled, moved into it in bulk at checkpoints.
//!
//! Why: a sled insert costs several microseconds of CPU, and most of what a log writes lives
//! only milliseconds (a transaction's open record is written a few times and then removed).
//! Held here until the next checkpoint, such writes cancel out and never reach sled. And sled
//! is given only writes the redo log already holds durably, so a crash never keeps part of a
//! write that was not made durable: every write is atomic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use sled::IVec;

use super::redo::Op;
use super::tree::set;

/// Owned bounds of a key range.
pub(super) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// What became of keys: a value, or `None` for removed.
type Changes = BTreeMap<Vec<u8>, Option<IVec>>;

/// `range` with owned bounds.
pub(super) fn key_range<K: AsRef<[u8]>>(range: &impl RangeBounds<K>) -> KeyRange {
    let own = |bound: Bound<&K>| bound.map(|key| key.as_ref().to_vec());
    (own(range.start_bound()), own(range.end_bound()))
}

/// Whether `range` holds no key; `BTreeMap::range` panics on such ranges, sled does not.
fn is_empty((start, end): &KeyRange) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// One tree's changes, with the sled tree they go to.
struct TreeChanges {
    tree: sled::Tree,
    changes: Changes,
}

/// The changes made to every tree between two checkpoints, and the lsn of the last frame that
/// made them.
#[derive(Default)]
pub(super) struct Overlay {
    trees: HashMap<Arc<str>, TreeChanges>,
    pub last_lsn: u64,
}

impl Overlay {
    /// Notes `op`, a write of frame `lsn` to `tree`.
    pub fn record(&mut self, tree: &sled::Tree, op: &Op, lsn: u64) {
        let (Op::Insert { tree: name, .. } | Op::Remove { tree: name, .. }) = op;
        let changes = &mut self
            .trees
            .entry(name.clone())
            .or_insert_with(|| TreeChanges {
                tree: tree.clone(),
                changes: Changes::new(),
            })
            .changes;
        match op {
            Op::Insert { key, value, .. } => changes.insert(key.clone(), Some(value[..].into())),
            Op::Remove { key, .. } => changes.insert(key.clone(), None),
        };
        self.last_lsn = lsn;
    }

    fn lookup(&self, tree: &str, key: &[u8]) -> Option<Option<IVec>> {
        self.trees.get(tree)?.changes.get(key).cloned()
    }

    fn changes_in(&self, tree: &str, range: &KeyRange, into: &mut Changes) {
        if let Some(tree) = self.trees.get(tree) {
            let changes = tree.changes.range::<Vec<u8>, _>(range.clone());
            into.extend(changes.map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    /// Makes every change in sled (not durably: a sled flush does that).
    pub fn apply_to_sled(&self) -> sled::Result<()> {
        for TreeChanges { tree, changes } in self.trees.values() {
            for (key, value) in changes {
                set(tree, key, value.as_deref())?;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }
}

/// The overlay being written, and the one being moved into sled by a checkpoint, if any.
#[derive(Default)]
pub(super) struct Overlays {
    pub active: Overlay,
    pub frozen: Option<Arc<Overlay>>,
}

impl Overlays {
    /// What became of `key` in `tree` since sled last took the changes: `None` if nothing.
    pub fn lookup(&self, tree: &str, key: &[u8]) -> Option<Option<IVec>> {
        self.active
            .lookup(tree, key)
            .or_else(|| self.frozen.as_ref()?.lookup(tree, key))
    }

    /// What became of the keys in `range` of `tree` since sled last took the changes, in order.
    pub fn changes_in(&self, tree: &str, range: &KeyRange) -> VecDeque<(IVec, Option<IVec>)> {
        let mut changes = Changes::new();
        if !is_empty(range) {
            if let Some(frozen) = &self.frozen {
                frozen.changes_in(tree, range, &mut changes);
            }
            self.active.changes_in(tree, range, &mut changes);
        }
        changes.into_iter().map(|(k, v)| (k.into(), v)).collect()
    }
}

/// A tree's entries in a range: sled's, with the overlay's changes over them.
///
/// The changes are a snapshot; sled is read as the iteration goes, and a checkpoint meanwhile
/// may move into sled changes the snapshot already gave: sled's entries for keys already passed
/// at either end are skipped.
pub struct Iter {
    sled: std::iter::Fuse<sled::Iter>,
    /// The next entry from sled at the front and at the back, once read.
    ends: [Option<(IVec, IVec)>; 2],
    /// The last key passed (yielded, or hidden by a removal) at the front and at the back.
    passed: [Option<IVec>; 2],
    changes: VecDeque<(IVec, Option<IVec>)>,
}

impl Iter {
    pub(super) fn new(sled: sled::Iter, changes: VecDeque<(IVec, Option<IVec>)>) -> Self {
        Iter {
            sled: sled.fuse(),
            ends: [None, None],
            passed: [None, None],
            changes,
        }
    }

    pub fn keys(self) -> impl DoubleEndedIterator<Item = sled::Result<IVec>> {
        self.map(|entry| entry.map(|(key, _)| key))
    }

    pub fn values(self) -> impl DoubleEndedIterator<Item = sled::Result<IVec>> {
        self.map(|entry| entry.map(|(_, value)| value))
    }

    /// The next entry from the front, or from the `back`.
    fn step(&mut self, back: bool) -> Option<sled::Result<(IVec, IVec)>> {
        let end = usize::from(back);
        loop {
            if let Err(e) = self.read_sled(back) {
                return Some(Err(e));
            }
            let change = match back {
                true => self.changes.back(),
                false => self.changes.front(),
            };
            let change_first = match (&self.ends[end], change) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((key, _)), Some((changed, _))) => !ahead(changed, key, back),
            };
            let (key, value) = match change_first {
                false => self.ends[end].take().map(|(key, value)| (key, Some(value))),
                true => match back {
                    true => self.changes.pop_back(),
                    false => self.changes.pop_front(),
                },
            }?;
            self.passed[end] = Some(key.clone());
            if let Some(value) = value {
                return Some(Ok((key, value)));
            }
        }
    }

    /// Reads sled's next entry not yet passed at the front or the `back`, unless one is waiting
    /// there. When sled has none left, the one waiting at the other end is the last.
    fn read_sled(&mut self, back: bool) -> sled::Result<()> {
        let end = usize::from(back);
        loop {
            if let Some((key, _)) = &self.ends[end] {
                if self.unpassed(key, back) {
                    return Ok(());
                }
            }
            let next = match back {
                true => self.sled.next_back(),
                false => self.sled.next(),
            };
            let next = match next.transpose()? {
                Some(entry) => Some(entry),
                None => self.ends[1 - end].take(),
            };
            let exhausted = next.is_none();
            self.ends[end] = next;
            if exhausted {
                return Ok(());
            }
        }
    }

    /// Whether `key`, read at the front or the `back`, lies between the keys passed at both.
    fn unpassed(&self, key: &IVec, back: bool) -> bool {
        let [here, there] = match back {
            true => [&self.passed[1], &self.passed[0]],
            false => [&self.passed[0], &self.passed[1]],
        };
        here.as_ref().is_none_or(|last| ahead(key, last, back))
            && there.as_ref().is_none_or(|last| ahead(last, key, back))
    }
}

/// Whether `key` comes after `other` going forward, or going `back`.
fn ahead(key: &IVec, other: &IVec, back: bool) -> bool {
    match back {
        true => key < other,
        false => key > other,
    }
}

impl Iterator for Iter {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(key: &str, value: &str) -> Op {
        Op::Insert {
            tree: "t".into(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn remove(key: &str) -> Op {
        Op::Remove {
            tree: "t".into(),
            key: key.into(),
        }
    }

    /// A sled tree holding `in_sled`, overlays holding `frozen` then `active` over it.
    fn layered(in_sled: &[&str], frozen: &[Op], active: &[Op]) -> (sled::Tree, Overlays) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for key in in_sled {
            tree.insert(key, &b"sled"[..]).unwrap();
        }
        let mut overlays = Overlays::default();
        let mut old = Overlay::default();
        for op in frozen {
            old.record(&tree, op, 1);
        }
        overlays.frozen = Some(Arc::new(old));
        for op in active {
            overlays.active.record(&tree, op, 2);
        }
        (tree, overlays)
    }

    fn entries(iter: impl Iterator<Item = sled::Result<(IVec, IVec)>>) -> Vec<String> {
        iter.map(|e| {
            let (k, v) = e.unwrap();
            format!(
                "{}={}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
    }

    fn scan(tree: &sled::Tree, overlays: &Overlays, range: KeyRange) -> Iter {
        Iter::new(tree.range(range.clone()), overlays.changes_in("t", &range))
    }

    #[test]
    fn the_newest_change_wins_and_removals_hide_sleds_entries() {
        let (tree, overlays) = layered(
            &["a", "b", "c", "e"],
            &[insert("b", "old"), remove("c"), insert("d", "old")],
            &[insert("b", "new"), remove("e"), insert("f", "new")],
        );
        let all = || scan(&tree, &overlays, key_range::<&[u8]>(&(..)));
        let forward = entries(all());
        assert_eq!(forward, ["a=sled", "b=new", "d=old", "f=new"]);
        let mut backward = entries(all().rev());
        backward.reverse();
        assert_eq!(backward, forward);
        assert_eq!(overlays.lookup("t", b"c"), Some(None));
        assert_eq!(overlays.lookup("t", b"b"), Some(Some(IVec::from("new"))));
        assert_eq!(overlays.lookup("t", b"a"), None);
    }

    #[test]
    fn both_ends_meet_without_losing_or_repeating_an_entry() {
        let (tree, overlays) = layered(&["a", "c", "e", "g"], &[insert("d", "x")], &[]);
        let keys = |taken: Vec<sled::Result<(IVec, IVec)>>| entries(taken.into_iter());
        for fronts in 0..=5 {
            let mut iter = scan(&tree, &overlays, key_range::<&[u8]>(&(..)));
            let front: Vec<_> = iter.by_ref().take(fronts).collect();
            let mut back: Vec<_> = iter.rev().collect();
            back.reverse();
            let mut seen = keys(front);
            seen.extend(keys(back));
            assert_eq!(seen, ["a=sled", "c=sled", "d=x", "e=sled", "g=sled"]);
        }
    }

    #[test]
    fn a_change_moved_into_sled_during_the_iteration_is_not_read_twice() {
        let (tree, overlays) = layered(&["a", "c"], &[insert("b", "x"), insert("d", "y")], &[]);
        let mut iter = scan(&tree, &overlays, key_range::<&[u8]>(&(..)));
        let mut seen = entries(iter.by_ref().take(2));
        // A checkpoint moves the changes into sled while the iteration goes on.
        overlays.frozen.as_ref().unwrap().apply_to_sled().unwrap();
        seen.extend(entries(iter));
        assert_eq!(seen, ["a=sled", "b=x", "c=sled", "d=y"]);

        // Sled holds "d" now too: passed at the back, it is not read again at the front.
        let mut iter = scan(&tree, &overlays, key_range::<&[u8]>(&(..)));
        let mut seen = entries(iter.by_ref().rev().take(1));
        seen.extend(entries(iter));
        assert_eq!(seen, ["d=y", "a=sled", "b=x", "c=sled"]);
    }

    #[test]
    fn a_range_takes_only_changes_within_it_and_an_empty_range_none() {
        let (tree, overlays) = layered(&["a", "c"], &[insert("b", "x")], &[insert("d", "y")]);
        let from_b = scan(&tree, &overlays, key_range(&(b"b".to_vec()..b"d".to_vec())));
        assert_eq!(entries(from_b), ["b=x", "c=sled"]);
        let inverted = (
            Bound::Excluded(b"c".to_vec()),
            Bound::Excluded(b"c".to_vec()),
        );
        assert!(overlays.changes_in("t", &inverted).is_empty());
    }

    #[test]
    fn applying_an_overlay_leaves_sled_as_the_layers_read() {
        let (tree, overlays) = layered(&["a", "b"], &[remove("a"), insert("c", "x")], &[]);
        overlays.frozen.as_ref().unwrap().apply_to_sled().unwrap();
        assert_eq!(entries(tree.iter()), ["b=sled", "c=x"]);
    }
}
