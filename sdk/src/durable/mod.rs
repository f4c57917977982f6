//! A sled database whose writes are truly durable when asked, many at a time (group commit).
//!
//! Used by the coordinator's decision log and by participants' journals and resources. Every
//! write goes through [`DurableDb::write`] (or a [`Tree`]'s `insert`/`remove`): under one lock it
//! is encoded as a frame of the redo log, with the next sequence number (lsn), and kept in an
//! in-memory overlay that reads consult before sled. A forced write is durable once the redo log
//! is: one `pwrite` + `fdatasync` by the flusher thread, shared by every caller waiting at the
//! time. At checkpoints (about once a second) the overlay is frozen, and a checkpointer thread
//! moves it into sled, records its last lsn in sled's `verdict_redo` tree as applied and flushes
//! sled, while the flusher goes on; then the redo log starts over. Writes that cancelled out in
//! between never reach sled (see [`overlay`]). At open, the frames sled has not applied are
//! applied again, in order; the applied lsn makes that exact.
//!
//! Why not sled's flush: in sled 0.34.7 it hands the write to a thread pool that wakes all its
//! idle threads per job, ends in `sync_file_range` (which does not flush the disk's write cache:
//! sled issue #1452, so an `fdatasync` must follow), and grows the file, so the `fdatasync` also
//! commits metadata. Measured here: 0.26–0.31 ms per sled flush + fdatasync against 0.14 ms for
//! a write + fdatasync into the preallocated redo file. Two more sled facts: `flush` from several
//! threads at once can hang (sled issue #1308), so only the checkpointer flushes it; and sled's
//! periodic flusher is off.
//!
//! In a deterministic simulation ([`simulate`]) the redo log goes to a simulated disk instead,
//! one that loses unsynced bytes when its machine loses power (see [`Disks`]).

mod checkpointer;
mod flusher;
mod overlay;
mod redo;
mod simulated;
mod tree;

pub use overlay::Iter;
pub use simulated::{simulate, Disks};
pub use tree::{Tree, Writes};

/// Fuzzing's way into the redo log's file decoder (built only by `cargo fuzz`): how many
/// frames `contents` holds — or, `as_ops`, a file whose one intact frame carries `contents`.
#[cfg(fuzzing)]
pub fn decode_redo_file(contents: &[u8], as_ops: bool) -> usize {
    match as_ops {
        true => redo::decode_file(&redo::file_of_payload(contents)).len(),
        false => redo::decode_file(contents).len(),
    }
}

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use checkpointer::Checkpointer;
use flusher::{Flusher, Request};
use overlay::Overlays;
use redo::{encode_frame, Frame, Op, RedoLog};
use simulated::Attached;
use tree::apply_op;

/// The tree recording the lsn of the last redo frame applied to sled.
const APPLIED_TREE: &str = "verdict_redo";
const APPLIED_KEY: &[u8] = b"applied";

/// Whether forced writes wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogSync {
    /// A forced write waits for the redo log's fdatasync: durable across power loss.
    Fsync,
    /// A forced write does not wait for the disk. NOT durable: for comparison runs only.
    Off,
}

/// A storage failure, described.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(pub String);

impl StorageError {
    pub fn from_display(e: impl std::fmt::Display) -> Self {
        StorageError(e.to_string())
    }
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::from_display(e)
    }
}

/// Counters of the flusher, to observe group commit.
#[derive(Debug, Default)]
pub struct FlushStats {
    /// Flushes made to answer forced writes.
    pub batches: AtomicU64,
    /// Forced writes answered.
    pub forced: AtomicU64,
    /// `fdatasync` calls made.
    pub syncs: AtomicU64,
    /// Checkpoints made (sled flushed, the redo log started over).
    pub checkpoints: AtomicU64,
}

/// Frames not yet handed to the redo file.
struct Pending {
    next_lsn: u64,
    frames: Vec<u8>,
}

/// What writers, readers and the flusher share.
struct Shared {
    db: sled::Db,
    applied: sled::Tree,
    /// Writers hold it while they stage, so that frames are numbered in the order made.
    pending: Mutex<Pending>,
    /// Taken after `pending` when both are.
    overlays: Mutex<Overlays>,
    stats: FlushStats,
}

impl Shared {
    fn new(db: sled::Db) -> Result<Self, StorageError> {
        Ok(Shared {
            applied: db.open_tree(APPLIED_TREE)?,
            db,
            pending: Mutex::new(Pending {
                next_lsn: 0,
                frames: Vec::new(),
            }),
            overlays: Mutex::new(Overlays::default()),
            stats: FlushStats::default(),
        })
    }

    /// Applies the ops of frame `lsn` straight to sled, then records `lsn` as applied: at open,
    /// for frames the redo log holds beyond sled. A crash part-way leaves the frame in the redo
    /// log, applied again next time; that is exact, as each op sets or removes a key.
    fn apply(&self, lsn: u64, ops: &[(sled::Tree, Op)]) -> Result<(), StorageError> {
        for (tree, op) in ops {
            apply_op(tree, op)?;
        }
        self.record_applied(lsn)
    }

    fn record_applied(&self, lsn: u64) -> Result<(), StorageError> {
        self.applied.insert(APPLIED_KEY, &lsn.to_be_bytes())?;
        Ok(())
    }

    fn applied_lsn(&self) -> Result<u64, StorageError> {
        Ok(self
            .applied
            .get(APPLIED_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Runs `f` under the write lock and stages the writes it makes as the next frame (see
    /// [`DurableDb::write`]).
    fn write<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Writes) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut pending = self.pending.lock().expect("lock");
        let mut writes = Writes::default();
        let value = f(&mut writes)?;
        if writes.ops.is_empty() {
            return Ok(value);
        }
        let lsn = pending.next_lsn;
        let mut overlays = self.overlays.lock().expect("lock");
        for (tree, op) in &writes.ops {
            overlays.active.record(tree, op, lsn);
        }
        drop(overlays);
        encode_frame(
            &mut pending.frames,
            lsn,
            writes.ops.iter().map(|(_, op)| op),
        );
        pending.next_lsn += 1;
        Ok(value)
    }

    /// Takes the frames not yet handed to the redo log, with the lsn of the last frame made;
    /// and, to `freeze`, freezes the overlay: then it holds exactly the writes of these frames
    /// and of those before them that sled has not taken (see [`Shared::settle`]).
    fn take_frames(&self, freeze: bool) -> (Vec<u8>, u64) {
        let mut pending = self.pending.lock().expect("lock");
        if freeze {
            let mut overlays = self.overlays.lock().expect("lock");
            let active = std::mem::take(&mut overlays.active);
            overlays.frozen = Some(Arc::new(active));
        }
        (std::mem::take(&mut pending.frames), pending.next_lsn - 1)
    }

    /// Moves the frozen overlay into sled, once the redo log holds its writes durably, and
    /// records its last lsn as applied. Readers read it until sled has it all. Not durable:
    /// a sled flush makes it so.
    fn settle(&self) -> Result<(), StorageError> {
        let Some(frozen) = self.overlays.lock().expect("lock").frozen.clone() else {
            return Ok(());
        };
        if !frozen.is_empty() {
            frozen.apply_to_sled()?;
            self.record_applied(frozen.last_lsn)?;
        }
        self.overlays.lock().expect("lock").frozen = None;
        Ok(())
    }
}

/// A sled database with a redo log and one flusher thread.
pub struct DurableDb {
    shared: Arc<Shared>,
    sync: LogSync,
    storage: Storage,
}

/// Where the redo log goes.
enum Storage {
    /// Files in the data directory, written by the flusher thread.
    Files {
        requests: Mutex<Option<mpsc::Sender<Request>>>,
        flusher: Mutex<Option<JoinHandle<()>>>,
    },
    /// A simulated disk (see [`simulate`]).
    Simulated(Attached),
}

impl DurableDb {
    /// Opens (or creates) the database in `dir`, applies what the redo log holds beyond sled,
    /// and starts the flusher. Answers to forced writes are handed out by a task on the current
    /// tokio runtime when there is one (one cross-thread wake per flush, not per caller).
    ///
    /// On a thread that [`simulate`]s, the database lives on the simulation's disk for `dir`.
    pub fn open(dir: &Path, sync: LogSync) -> Result<Self, StorageError> {
        if let Some(disk) = simulated::disk_for(dir) {
            return Self::open_simulated(Attached::open(disk), sync);
        }
        let context = |what: &str, e: &dyn std::fmt::Display| {
            StorageError(format!("cannot {what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| context("create", &e))?;
        let db = open_sled(dir).map_err(|e| context("open a database in", &e))?;
        let shared = Arc::new(Shared::new(db)?);
        let data_file =
            File::open(dir.join("db")).map_err(|e| context("open the data file in", &e))?;
        let mut checkpointer = Checkpointer::new(shared.clone(), dir, data_file);
        let (redo, last) = recover(&shared, dir, &mut checkpointer)?;
        let flusher = Flusher::new(shared.clone(), checkpointer.spawn()?, last);
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("verdict-flusher".into())
            .spawn(move || flusher.run(redo, rx))
            .map_err(StorageError::from_display)?;
        Ok(DurableDb {
            shared,
            sync,
            storage: Storage::Files {
                requests: Mutex::new(Some(tx)),
                flusher: Mutex::new(Some(handle)),
            },
        })
    }

    /// Opens the database on a simulated disk: sled in memory, rebuilt from every frame the
    /// disk kept.
    fn open_simulated(
        (disk, frames): (Attached, Vec<Frame>),
        sync: LogSync,
    ) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .flush_every_ms(None)
            .open()?;
        let shared = Arc::new(Shared::new(db)?);
        let last = replay(&shared, frames, "the simulated disk")?;
        shared.pending.lock().expect("lock").next_lsn = last + 1;
        Ok(DurableDb {
            shared,
            sync,
            storage: Storage::Simulated(disk),
        })
    }

    /// A named tree of the database (names are at most 255 bytes).
    pub fn tree(&self, name: &str) -> Result<Tree, StorageError> {
        if name.len() > u8::MAX as usize || name == APPLIED_TREE {
            return Err(StorageError(format!("{name:?} cannot name a tree")));
        }
        Ok(Tree {
            name: name.into(),
            tree: self.shared.db.open_tree(name)?,
            shared: self.shared.clone(),
        })
    }

    /// Runs `f` under the write lock and makes the writes it stages, in order. Reads inside
    /// `f` see every earlier write and no concurrent one; nothing is written if `f` fails. A
    /// crash keeps all of the writes or none; once they are durable (a flush), all.
    pub fn write<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Writes) -> Result<T, E>,
    ) -> Result<T, E> {
        self.shared.write(f)
    }

    /// Resolves once every write made before this call is durable. Concurrent calls share one
    /// flush.
    pub fn flush(&self) -> impl Future<Output = Result<(), StorageError>> + Send + use<> {
        self.flush_with(true)
    }

    /// As [`DurableDb::flush`], for a caller no one is waiting on (a phase-2 acknowledgement):
    /// the flush may wait up to a couple of milliseconds to be shared with the next urgent one,
    /// so that it does not delay it.
    pub fn flush_lazily(&self) -> impl Future<Output = Result<(), StorageError>> + Send + use<> {
        self.flush_with(false)
    }

    fn flush_with(
        &self,
        urgent: bool,
    ) -> impl Future<Output = Result<(), StorageError>> + Send + use<> {
        let queued = self.queue_flush(urgent);
        async move {
            queued?
                .await
                .map_err(|_| StorageError("the flusher stopped before the flush".into()))?
        }
    }

    fn queue_flush(
        &self,
        urgent: bool,
    ) -> Result<oneshot::Receiver<Result<(), StorageError>>, StorageError> {
        let (tx, rx) = oneshot::channel();
        if self.sync == LogSync::Off {
            let _ = tx.send(Ok(()));
            return Ok(rx);
        }
        let requests = match &self.storage {
            Storage::Files { requests, .. } => requests,
            Storage::Simulated(disk) => {
                self.write_pending(disk)?;
                let sync = disk.clone().sync();
                tokio::spawn(async move { tx.send(sync.await) });
                return Ok(rx);
            }
        };
        let requests = requests.lock().expect("lock");
        let requests = requests
            .as_ref()
            .ok_or_else(|| StorageError("the database is closed".into()))?;
        requests
            .send(Request { waiter: tx, urgent })
            .map_err(|_| StorageError("the flusher has stopped".into()))?;
        Ok(rx)
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &FlushStats {
        &self.shared.stats
    }

    /// Whether [`DurableDb::close`] has been called (a simulated disk is never closed).
    pub fn is_closed(&self) -> bool {
        match &self.storage {
            Storage::Files { requests, .. } => requests.lock().expect("lock").is_none(),
            Storage::Simulated(_) => false,
        }
    }

    /// Stops the flusher, which makes every write durable and checkpoints as it ends.
    pub fn close(&self) {
        match &self.storage {
            Storage::Files { requests, flusher } => {
                drop(requests.lock().expect("lock").take());
                if let Some(handle) = flusher.lock().expect("lock").take() {
                    let _ = handle.join();
                }
            }
            // After a power loss this fails, as it should: the machine is gone.
            Storage::Simulated(disk) => {
                let _ = self
                    .write_pending(disk)
                    .and_then(|()| disk.sync_now(disk.written()?));
            }
        }
    }

    /// Hands the frames written since the last flush to the simulated disk, and their writes
    /// to sled (in memory: after a crash, sled is rebuilt from what the disk kept).
    fn write_pending(&self, disk: &Attached) -> Result<(), StorageError> {
        self.shared.settle()?;
        let (frames, _) = self.shared.take_frames(true);
        disk.write(&frames)?;
        self.shared.settle()
    }
}

impl Drop for DurableDb {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens sled in `dir`. A database just closed in this process may hold its file lock for a
/// moment longer (sled's I/O threads let go of it last), so a held lock is retried for a second
/// before it is reported.
fn open_sled(dir: &Path) -> Result<sled::Db, String> {
    let started = std::time::Instant::now();
    loop {
        let error = match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return Ok(db),
            // sled reports a held lock as an `Other` I/O error, told apart only by its text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => e,
            Err(e) => return Err(e.to_string()),
        };
        if started.elapsed() > std::time::Duration::from_secs(1) {
            return Err(format!(
                "{error}: another process is using this data directory; stop it or choose \
                 another --data-dir"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Applies the redo frames sled has not applied and flushes sled; returns the redo log ready
/// for writing and the lsn of the last frame sled holds.
fn recover(
    shared: &Shared,
    dir: &Path,
    checkpointer: &mut Checkpointer,
) -> Result<(RedoLog, u64), StorageError> {
    let (mut redo, frames) = RedoLog::open(dir)?;
    let last = replay(
        shared,
        frames,
        &format!("the redo log in {}", dir.display()),
    )?;
    // Whatever sled read at open may so far be only in the page cache (after a kill): make it
    // durable before the redo log that also holds it is overwritten.
    checkpointer.flush_sled()?;
    shared.pending.lock().expect("lock").next_lsn = last + 1;
    redo.restart(last + 1)?;
    Ok((redo, last))
}

/// Applies to sled, in order, the `frames` (from `log`) it has not applied; returns the lsn of
/// the last frame sled now holds.
fn replay(shared: &Shared, frames: Vec<Frame>, log: &str) -> Result<u64, StorageError> {
    let applied = shared.applied_lsn()?;
    let mut last = applied;
    for frame in frames.into_iter().filter(|f| f.lsn > applied) {
        if frame.lsn != last + 1 {
            return Err(StorageError(format!(
                "{log} skips from lsn {last} to {}: it is damaged, and writes after lsn {last} \
                 may be lost. Restore the data directory from a backup.",
                frame.lsn
            )));
        }
        let mut ops = Vec::with_capacity(frame.ops.len());
        for op in frame.ops {
            ops.push((shared.db.open_tree(op.tree())?, op));
        }
        shared.apply(frame.lsn, &ops)?;
        last = frame.lsn;
    }
    Ok(last)
}

#[cfg(test)]
mod tests;
