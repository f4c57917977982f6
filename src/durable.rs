//! A sled database whose writes can be made truly durable, many at a time (group commit).
//!
//! Used by the coordinator's decision log and by participants' journals and resources. Two facts
//! about sled 0.34.7 shape it:
//! - `flush` from several threads at once can hang (sled issue #1308), so exactly one thread
//!   flushes: the flusher. Sled's own periodic flusher is turned off; ours also flushes unforced
//!   writes in the background.
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
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How often unforced writes are flushed when nothing forces a flush sooner.
const BACKGROUND_FLUSH: Duration = Duration::from_millis(200);

/// How long a lazy flush may wait to share the next urgent one.
const LAZY_WINDOW: Duration = Duration::from_millis(2);

/// Whether forced writes wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogSync {
    /// A forced write waits for sled's flush and an fdatasync: durable across power loss.
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
}

type Waiter = oneshot::Sender<Result<(), StorageError>>;

/// A caller waiting for durability, and whether it is in a hurry.
struct Request {
    waiter: Waiter,
    urgent: bool,
}

/// A sled database with one flusher thread.
pub struct DurableDb {
    db: sled::Db,
    sync: LogSync,
    dirty: Arc<AtomicBool>,
    stats: Arc<FlushStats>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl DurableDb {
    /// Opens (or creates) the database in `dir` and starts its flusher.
    pub fn open(dir: &Path, sync: LogSync) -> Result<Self, StorageError> {
        let context = |what: &str, e: &dyn std::fmt::Display| {
            StorageError(format!("cannot {what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| context("create", &e))?;
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| context("open a database in", &e))?;
        let dirty = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FlushStats::default());
        let (tx, rx) = mpsc::channel();
        let flusher = Flusher {
            db: db.clone(),
            dir: dir.to_path_buf(),
            data_file: File::open(dir.join("db"))
                .map_err(|e| context("open the data file in", &e))?,
            synced_blobs: HashSet::new(),
            dirty: dirty.clone(),
            stats: stats.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("verdict-flusher".into())
            .spawn(move || flusher.run(rx))
            .map_err(StorageError::from_display)?;
        Ok(DurableDb {
            db,
            sync,
            dirty,
            stats,
            requests: Mutex::new(Some(tx)),
            flusher: Mutex::new(Some(handle)),
        })
    }

    /// A named tree of the database.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        Ok(self.db.open_tree(name)?)
    }

    /// The database, for multi-tree transactions.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Notes that there are unforced writes for the background flush.
    pub fn written(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Resolves once every write made before this call is durable. Concurrent calls share one
    /// flush, which starts at once.
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
        self.written();
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
        let requests = self.requests.lock().expect("lock");
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
        &self.stats
    }

    /// Stops the flusher, which flushes once more as it ends.
    pub fn close(&self) {
        drop(self.requests.lock().expect("lock").take());
        if let Some(handle) = self.flusher.lock().expect("lock").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for DurableDb {
    fn drop(&mut self) {
        self.close();
    }
}

/// Callers waiting for the next flush.
#[derive(Default)]
struct Batch {
    waiters: Vec<Waiter>,
    urgent: bool,
    /// When the oldest lazy caller arrived.
    lazy_since: Option<Instant>,
}

impl Batch {
    fn add(&mut self, request: Request) {
        self.urgent |= request.urgent;
        if !request.urgent {
            self.lazy_since.get_or_insert_with(Instant::now);
        }
        self.waiters.push(request.waiter);
    }

    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    fn lazy_deadline(&self) -> Option<Instant> {
        self.lazy_since.map(|since| since + LAZY_WINDOW)
    }

    /// Only lazy callers, none waiting past the window.
    fn can_wait(&self) -> bool {
        !self.urgent && self.lazy_deadline().is_some_and(|d| Instant::now() < d)
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
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        let mut batch = Batch::default();
        loop {
            let wait = batch.lazy_deadline().map_or(BACKGROUND_FLUSH, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            match requests.recv_timeout(wait) {
                Ok(request) => batch.add(request),
                Err(mpsc::RecvTimeoutError::Timeout) if batch.is_empty() => {
                    self.background_flush();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Everything queued while the last flush ran shares this one.
            for request in requests.try_iter() {
                batch.add(request);
            }
            if batch.can_wait() {
                continue;
            }
            self.answer(&mut batch);
        }
        self.background_flush();
        self.answer(&mut batch);
    }

    /// Flushes and answers everyone in `batch`.
    fn answer(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let result = self.flush();
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .forced
            .fetch_add(batch.waiters.len() as u64, Ordering::Relaxed);
        for waiter in batch.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
        *batch = Batch::default();
    }

    fn background_flush(&mut self) {
        if self.dirty.load(Ordering::Acquire) {
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "background flush failed");
            }
        }
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        self.dirty.store(false, Ordering::Release);
        self.db.flush()?;
        self.data_file
            .sync_data()
            .map_err(StorageError::from_display)?;
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_new_blobs()
    }

    /// Sled writes values too large for its segments to blob files without syncing them.
    fn sync_new_blobs(&mut self) -> Result<(), StorageError> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("blobs")) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if self.synced_blobs.contains(&entry.file_name()) {
                continue;
            }
            File::open(entry.path())
                .and_then(|f| f.sync_data())
                .map_err(StorageError::from_display)?;
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced_blobs.insert(entry.file_name());
        }
        Ok(())
    }
}
