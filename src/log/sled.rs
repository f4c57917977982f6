//! The single-node decision log on sled, with group commit.
//!
//! Three trees: `open` holds records of unfinished transactions (what recovery reads),
//! `finished` the END records kept for the retention period, and `finished_at` indexes them by
//! finish time (8-byte big-endian ms ++ id) so collection is a range scan.
//!
//! Two facts about sled 0.34.7 shape the flusher:
//! - `flush` from several threads at once can hang (sled issue #1308), so exactly one thread
//!   flushes: the flusher. Sled's own periodic flusher is turned off; ours also flushes
//!   unforced writes in the background.
//! - sled's flush ends in `sync_file_range`, which does not flush the disk's write cache
//!   (sled issue #1452). After each sled flush the flusher `fdatasync`s sled's data file (and any
//!   blob file it has not synced yet), and only then answers the waiting callers.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{decode, encode, DecisionLog, LogError, Status, TxnRecord};
use crate::core::TxnId;

/// How often unforced writes are flushed when nothing forces a flush sooner.
const BACKGROUND_FLUSH: Duration = Duration::from_millis(200);

/// Whether forced writes wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogSync {
    /// A forced write waits for sled's flush and an fdatasync: durable across power loss.
    Fsync,
    /// A forced write does not wait for the disk. NOT durable: for comparison runs only.
    Off,
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
}

type Waiter = oneshot::Sender<Result<(), LogError>>;

/// The sled-backed [`DecisionLog`].
pub struct SledLog {
    open: sled::Tree,
    finished: sled::Tree,
    finished_at: sled::Tree,
    sync: LogSync,
    dirty: Arc<AtomicBool>,
    stats: Arc<FlushStats>,
    flush_requests: Mutex<Option<mpsc::Sender<Waiter>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

fn io_error(e: impl std::fmt::Display) -> LogError {
    LogError::Io(e.to_string())
}

impl SledLog {
    /// Opens (or creates) the log in `dir` and starts its flusher.
    pub fn open(dir: &Path, sync: LogSync) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error(format!("cannot create data dir {}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| io_error(format!("cannot open the log in {}: {e}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(io_error);
        let (open, finished, finished_at) =
            (tree("open")?, tree("finished")?, tree("finished_at")?);
        let dirty = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FlushStats::default());
        let (tx, rx) = mpsc::channel();
        let flusher = Flusher {
            db: db.clone(),
            dir: dir.to_path_buf(),
            data_file: File::open(dir.join("db")).map_err(io_error)?,
            synced_blobs: HashSet::new(),
            dirty: dirty.clone(),
            stats: stats.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("verdict-log-flusher".into())
            .spawn(move || flusher.run(rx))
            .map_err(io_error)?;
        Ok(SledLog {
            open,
            finished,
            finished_at,
            sync,
            dirty,
            stats,
            flush_requests: Mutex::new(Some(tx)),
            flusher: Mutex::new(Some(handle)),
        })
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &FlushStats {
        &self.stats
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

    fn store(&self, record: &TxnRecord) -> Result<(), LogError> {
        let key = Self::key(record.txn_id);
        let frame = encode(record);
        if let Status::Finished(_) = record.status {
            // Finished before open is removed: a crash between leaves both, and recovery drops
            // the open one.
            self.finished.insert(key, frame).map_err(io_error)?;
            self.finished_at
                .insert(Self::finished_key(record), &[])
                .map_err(io_error)?;
            self.open.remove(key).map_err(io_error)?;
        } else {
            self.open.insert(key, frame).map_err(io_error)?;
        }
        self.dirty.store(true, Ordering::Release);
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

impl Drop for SledLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl DecisionLog for SledLog {
    /// Stops the flusher, which flushes once more as it ends.
    fn close(&self) {
        drop(self.flush_requests.lock().expect("lock").take());
        if let Some(handle) = self.flusher.lock().expect("lock").take() {
            let _ = handle.join();
        }
    }

    fn write(&self, record: &TxnRecord) -> Result<(), LogError> {
        self.store(record)
    }

    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl Future<Output = Result<(), LogError>> + Send + use<> {
        let queued = self.store(record).and_then(|()| {
            let (tx, rx) = oneshot::channel();
            if self.sync == LogSync::Off {
                let _ = tx.send(Ok(()));
                return Ok(rx);
            }
            let requests = self.flush_requests.lock().expect("lock");
            let requests = requests
                .as_ref()
                .ok_or_else(|| io_error("the decision log is closed"))?;
            requests
                .send(tx)
                .map_err(|_| io_error("the log flusher has stopped"))?;
            Ok(rx)
        });
        async move {
            queued?
                .await
                .map_err(|_| io_error("the log flusher stopped before the flush"))?
        }
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

    fn collect_finished(&self, before_unix_ms: u64) -> Result<usize, LogError> {
        let mut collected = 0;
        for entry in self
            .finished_at
            .range(..before_unix_ms.to_be_bytes().to_vec())
        {
            let (key, _) = entry.map_err(io_error)?;
            self.finished.remove(&key[8..]).map_err(io_error)?;
            self.finished_at.remove(&key).map_err(io_error)?;
            collected += 1;
        }
        if collected > 0 {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(collected)
    }
}

/// The one thread that flushes sled.
struct Flusher {
    db: sled::Db,
    dir: PathBuf,
    data_file: File,
    synced_blobs: HashSet<OsString>,
    dirty: Arc<AtomicBool>,
    stats: Arc<FlushStats>,
}

impl Flusher {
    fn run(mut self, requests: mpsc::Receiver<Waiter>) {
        let mut batch = Vec::new();
        loop {
            match requests.recv_timeout(BACKGROUND_FLUSH) {
                Ok(waiter) => batch.push(waiter),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.background_flush();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Everything queued while the last flush ran shares this one.
            batch.extend(requests.try_iter());
            let result = self.flush();
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats
                .forced
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for waiter in batch.drain(..) {
                let _ = waiter.send(result.clone());
            }
        }
        self.background_flush();
    }

    fn background_flush(&mut self) {
        if self.dirty.load(Ordering::Acquire) {
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "background flush of the decision log failed");
            }
        }
    }

    fn flush(&mut self) -> Result<(), LogError> {
        self.dirty.store(false, Ordering::Release);
        self.db.flush().map_err(io_error)?;
        self.data_file.sync_data().map_err(io_error)?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_new_blobs()
    }

    /// Sled writes values too large for its segments to blob files without syncing them.
    fn sync_new_blobs(&mut self) -> Result<(), LogError> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs")) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if self.synced_blobs.contains(&entry.file_name()) {
                continue;
            }
            File::open(entry.path())
                .and_then(|f| f.sync_data())
                .map_err(io_error)?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced_blobs.insert(entry.file_name());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
