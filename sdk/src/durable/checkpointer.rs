//! The thread that moves the frozen overlay into sled and flushes sled, so that the flusher goes
//! on answering forced writes meanwhile (a checkpoint takes tens of milliseconds under load).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Shared, StorageError};

/// Moves writes into sled and makes sled durable.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    dir: PathBuf,
    data_file: File,
    synced_blobs: HashSet<OsString>,
}

impl Checkpointer {
    pub fn new(shared: Arc<Shared>, dir: &Path, data_file: File) -> Self {
        Checkpointer {
            shared,
            dir: dir.to_path_buf(),
            data_file,
            synced_blobs: HashSet::new(),
        }
    }

    /// Runs on a thread of its own: each request moves the frozen overlay into sled and
    /// flushes sled.
    pub fn spawn(mut self) -> Result<Running, StorageError> {
        let (requests, jobs) = mpsc::channel::<()>();
        let (done, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("verdict-checkpointer".into())
            .spawn(move || {
                for () in jobs {
                    if done.send(self.checkpoint()).is_err() {
                        break;
                    }
                }
            })
            .map_err(StorageError::from_display)?;
        Ok(Running {
            requests: Some(requests),
            results,
            thread: Some(thread),
        })
    }

    fn checkpoint(&mut self) -> Result<(), StorageError> {
        let started = Instant::now();
        self.shared.settle()?;
        crate::crash_point!("storage::before_checkpoint_flush");
        self.flush_sled()?;
        metrics::histogram!(crate::metrics::CHECKPOINT_SECONDS).record(started.elapsed());
        Ok(())
    }

    /// Flushes sled and `fdatasync`s its files: sled's flush alone does not reach the disk.
    pub fn flush_sled(&mut self) -> Result<(), StorageError> {
        self.shared.db.flush()?;
        self.data_file
            .sync_data()
            .map_err(StorageError::from_display)?;
        self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
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
            self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.synced_blobs.insert(entry.file_name());
        }
        Ok(())
    }
}

/// The checkpointer's thread: requests for checkpoints go in, their results come back.
pub(super) struct Running {
    requests: Option<mpsc::Sender<()>>,
    results: mpsc::Receiver<Result<(), StorageError>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Asks for a checkpoint; collect its result with [`Running::result`].
    pub fn request(&self) -> Result<(), StorageError> {
        self.requests
            .as_ref()
            .and_then(|requests| requests.send(()).ok())
            .ok_or_else(|| StorageError("the checkpointer has stopped".into()))
    }

    /// The result of the checkpoint asked for, waiting for it if `wait`; `None` if it has not
    /// ended.
    pub fn result(&self, wait: bool) -> Option<Result<(), StorageError>> {
        let stopped = || Err(StorageError("the checkpointer has stopped".into()));
        match wait {
            true => Some(self.results.recv().unwrap_or_else(|_| stopped())),
            false => match self.results.try_recv() {
                Ok(result) => Some(result),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => Some(stopped()),
            },
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
