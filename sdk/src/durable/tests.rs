use super::redo::{encode_frame, Op, RedoLog};
use super::*;
use std::sync::atomic::Ordering;

fn insert(tree: &str, key: &str, value: &str) -> Op {
    Op::Insert {
        tree: tree.into(),
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

/// Writes frames into the redo log of the (closed) database in `dir`, as a crash would leave
/// them: appended and synced, never applied to sled.
fn leave_in_redo_log(dir: &Path, first_lsn: u64, frames: &[Vec<Op>]) {
    let (mut redo, _) = RedoLog::open(dir).unwrap();
    redo.restart(first_lsn).unwrap();
    let mut bytes = Vec::new();
    for (lsn, ops) in (first_lsn..).zip(frames) {
        encode_frame(&mut bytes, lsn, ops);
    }
    redo.append(&bytes).unwrap();
    redo.sync().unwrap();
}

/// The lsn sled has applied, after a clean close.
fn applied_lsn(dir: &Path) -> u64 {
    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    db.shared.applied_lsn().unwrap()
}

fn value(db: &DurableDb, tree: &str, key: &str) -> Option<String> {
    db.tree(tree)
        .unwrap()
        .get(key)
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

#[tokio::test]
async fn a_forced_write_is_durable_in_the_redo_log_and_reads_back_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
        let tree = db.tree("t").unwrap();
        tree.insert("k", "v").unwrap();
        db.flush().await.unwrap();
        assert!(db.stats().syncs.load(Ordering::Relaxed) >= 1);
    }
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "k").as_deref(), Some("v"));
}

#[test]
fn frames_sled_has_not_applied_are_applied_in_order_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
        db.tree("t").unwrap().insert("a", "old").unwrap();
    }
    let applied = applied_lsn(dir.path());
    leave_in_redo_log(
        dir.path(),
        applied + 1,
        &[
            vec![insert("t", "a", "new"), insert("u", "b", "1")],
            vec![Op::Remove {
                tree: "u".into(),
                key: b"b".to_vec(),
            }],
            vec![insert("u", "c", "2")],
        ],
    );
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "a").as_deref(), Some("new"));
    assert_eq!(value(&db, "u", "b"), None);
    assert_eq!(value(&db, "u", "c").as_deref(), Some("2"));
    assert_eq!(db.shared.applied_lsn().unwrap(), applied + 3);
}

#[test]
fn frames_sled_already_applied_are_not_applied_again() {
    // Sled got further than the redo log (its own writes reached the disk first): replaying an
    // older frame would undo a newer write.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
        let tree = db.tree("t").unwrap();
        tree.insert("a", "first").unwrap();
        tree.insert("a", "second").unwrap();
    }
    let applied = applied_lsn(dir.path());
    leave_in_redo_log(dir.path(), applied, &[vec![insert("t", "a", "first")]]);
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "a").as_deref(), Some("second"));
}

#[test]
fn a_gap_between_sled_and_the_redo_log_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(DurableDb::open(dir.path(), LogSync::Fsync).unwrap());
    let applied = applied_lsn(dir.path());
    leave_in_redo_log(dir.path(), applied + 2, &[vec![insert("t", "a", "x")]]);
    let error = DurableDb::open(dir.path(), LogSync::Fsync)
        .err()
        .expect("a gap must not open");
    assert!(error.0.contains("skips from lsn"), "{error}");
    assert!(error.0.contains("Restore"), "{error}");
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    let tree = db.tree("t").unwrap();
    let result: Result<(), StorageError> = db.write(|w| {
        w.insert(&tree, "a", "1");
        Err(StorageError("refused".into()))
    });
    assert!(result.is_err());
    assert_eq!(value(&db, "t", "a"), None);
    assert_eq!(db.shared.pending.lock().unwrap().frames.len(), 0);
}

#[tokio::test]
async fn concurrent_forces_share_flushes_and_checkpoints_restart_the_redo_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(DurableDb::open(dir.path(), LogSync::Fsync).unwrap());
    let tree = db.tree("t").unwrap();
    let writers: Vec<_> = (0..64)
        .map(|n| {
            tree.insert(format!("k{n}"), "v").unwrap();
            db.flush()
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let stats = db.stats();
    let batches = stats.batches.load(Ordering::Relaxed);
    assert_eq!(stats.forced.load(Ordering::Relaxed), 64);
    assert!(batches < 64, "64 concurrent forces took {batches} flushes");
    db.close();
    assert!(stats.checkpoints.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_simulated_power_loss_keeps_what_was_synced_and_cuts_a_torn_tail() {
    let disks = Disks::default();
    simulate(Some(disks.clone()));
    let dir = Path::new("/simulated/node-1/data");
    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    let tree = db.tree("t").unwrap();
    tree.insert("synced", "1").unwrap();
    db.flush().await.unwrap();
    tree.insert("torn", "2").unwrap();
    let interrupted = db.flush();
    disks.power_loss(Path::new("/simulated/node-1"), |written| written - 1);
    assert!(interrupted.await.is_err(), "the sync never finished");
    assert!(tree.insert("late", "3").is_ok(), "sled takes it, in memory");
    assert!(db.flush().await.is_err(), "but the machine is gone");
    drop(db);

    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "synced").as_deref(), Some("1"));
    assert_eq!(
        value(&db, "t", "torn"),
        None,
        "its frame lost its last byte"
    );
    assert_eq!(value(&db, "t", "late"), None);
    db.tree("t").unwrap().insert("after", "4").unwrap();
    db.flush().await.unwrap();
    disks.power_loss(dir, |_| 0);
    drop(db);

    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    assert_eq!(
        value(&db, "t", "after").as_deref(),
        Some("4"),
        "written after the cut"
    );
    let other = DurableDb::open(Path::new("/simulated/node-2/data"), LogSync::Fsync).unwrap();
    assert_eq!(
        value(&other, "t", "synced"),
        None,
        "each directory has its own disk"
    );
    simulate(None);
}

#[tokio::test(start_paused = true)]
async fn a_simulated_kill_keeps_what_was_written_but_not_what_was_only_in_memory() {
    let disks = Disks::default();
    simulate(Some(disks.clone()));
    let dir = Path::new("/simulated/killed");
    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    let tree = db.tree("t").unwrap();
    tree.insert("written", "1").unwrap();
    let interrupted = db.flush();
    tree.insert("in memory", "2").unwrap();
    disks.power_loss(dir, |written| written);
    assert!(interrupted.await.is_err());
    drop(db);

    let db = DurableDb::open(dir, LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "written").as_deref(), Some("1"));
    assert_eq!(value(&db, "t", "in memory"), None);
    simulate(None);
}

#[tokio::test]
async fn writes_are_read_at_once_but_reach_sled_only_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    let tree = db.tree("t").unwrap();
    tree.insert("kept", "1").unwrap();
    tree.insert("short-lived", "2").unwrap();
    db.flush().await.unwrap();
    assert_eq!(value(&db, "t", "short-lived").as_deref(), Some("2"));
    assert_eq!(tree.tree.get("kept").unwrap(), None, "not in sled yet");
    tree.remove("short-lived").unwrap();
    let keys: Vec<_> = tree.iter().keys().map(Result::unwrap).collect();
    assert_eq!(keys, [sled::IVec::from("kept")]);
    db.close();
    assert_eq!(db.stats().checkpoints.load(Ordering::Relaxed), 1);
    assert_eq!(tree.tree.get("kept").unwrap(), Some("1".into()));
    assert_eq!(tree.tree.get("short-lived").unwrap(), None);
    drop((tree, db));
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    assert_eq!(value(&db, "t", "kept").as_deref(), Some("1"));
    assert_eq!(value(&db, "t", "short-lived"), None);
}

#[tokio::test]
async fn reads_see_sled_and_the_writes_since_the_last_checkpoint_as_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
        for key in ["a", "b", "c"] {
            db.tree("t").unwrap().insert(key, "old").unwrap();
        }
    }
    let db = DurableDb::open(dir.path(), LogSync::Fsync).unwrap();
    let tree = db.tree("t").unwrap();
    assert_eq!(
        tree.tree.len(),
        3,
        "the checkpoint at close moved them into sled"
    );
    tree.insert("b", "new").unwrap();
    tree.remove("c").unwrap();
    tree.insert("d", "new").unwrap();
    let entries: Vec<_> = tree
        .range("b".."z")
        .map(|e| {
            let (k, v) = e.unwrap();
            format!(
                "{}={}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect();
    assert_eq!(entries, ["b=new", "d=new"]);
    assert!(!tree.contains_key("c").unwrap());
    assert!(tree.contains_key("a").unwrap());
}
