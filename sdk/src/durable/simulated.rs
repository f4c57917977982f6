//! The database's storage in a deterministic simulation: a disk per data directory that keeps
//! what was synced and loses the rest — all of it, or a torn part — when its machine loses
//! power.
//!
//! sled cannot run on a simulated file system, so the seam is here, beneath the database's
//! contract: a simulated database keeps its trees in a temporary sled, in memory, and its redo
//! log on a [`Disk`]. Reopening it after a power loss replays every frame the disk kept,
//! through the same decoder and the same replay as a real restart, so a torn tail is cut where
//! the real one is. Nothing is checkpointed: the log holds every frame since the disk was new.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::redo::{self, Frame};
use super::StorageError;

/// How long a simulated `fdatasync` takes: a power loss meanwhile may tear what it syncs.
const SYNC_TAKES: Duration = Duration::from_millis(1);

/// The disks of one simulation, by data directory.
#[derive(Clone, Default)]
pub struct Disks {
    disks: Arc<Mutex<BTreeMap<PathBuf, Disk>>>,
    /// Whether they acknowledge syncs they never make (see [`Disks::lying`]).
    lying: bool,
}

thread_local! {
    static DISKS: RefCell<Option<Disks>> = const { RefCell::new(None) };
}

/// From now on, on this thread, databases live on `disks` (`None`: on real files).
pub fn simulate(disks: Option<Disks>) {
    DISKS.with(|d| *d.borrow_mut() = disks);
}

/// The simulated disk for a database in `dir`, when this thread simulates.
pub(super) fn disk_for(dir: &Path) -> Option<Disk> {
    let disks = DISKS.with(|d| d.borrow().clone())?;
    let lying = disks.lying;
    let mut disks = disks.disks.lock().expect("lock");
    let disk = disks.entry(dir.to_path_buf()).or_insert_with(|| {
        let image = Image {
            lies: lying,
            ..Image::default()
        };
        Disk(Arc::new(Mutex::new(image)))
    });
    Some(disk.clone())
}

impl Disks {
    /// Disks that acknowledge every sync and make none — as a disk whose volatile write cache
    /// is not flushed: a power loss may take anything written. No database is durable on
    /// them; a simulation that cannot tell is not testing durability.
    pub fn lying() -> Self {
        Disks {
            lying: true,
            ..Disks::default()
        }
    }

    /// The machine holding the data directories under `root` loses power (or its process is
    /// killed, which `kept` models by keeping everything): each disk keeps what was synced and,
    /// of the `n` bytes written after, the first `kept(n)`. Databases open on them now fail
    /// every write; only reopening them reads what is left.
    pub fn power_loss(&self, root: &Path, mut kept: impl FnMut(usize) -> usize) {
        let disks = self.disks.lock().expect("lock");
        for (_, disk) in disks.iter().filter(|(dir, _)| dir.starts_with(root)) {
            let mut image = disk.0.lock().expect("lock");
            let unsynced = image.bytes.len() - image.synced;
            let len = image.synced + kept(unsynced).min(unsynced);
            image.bytes.truncate(len);
            image.synced = len;
            image.power_cycles += 1;
        }
    }
}

/// One simulated disk holding one redo log file.
#[derive(Clone, Default)]
pub(super) struct Disk(Arc<Mutex<Image>>);

#[derive(Default)]
struct Image {
    bytes: Vec<u8>,
    /// How many of the bytes are durable.
    synced: usize,
    /// Power losses so far: a database attached before the last one is dead.
    power_cycles: u64,
    /// Syncs are acknowledged and not made.
    lies: bool,
}

/// A database's hold on its disk, valid until the next power loss.
#[derive(Clone)]
pub(super) struct Attached {
    disk: Disk,
    power_cycles: u64,
}

impl Attached {
    /// Attaches to `disk`: every intact frame it holds, in order. What follows them (a torn
    /// write) is cut off, so that new frames follow on.
    pub fn open(disk: Disk) -> (Self, Vec<Frame>) {
        let mut image = disk.0.lock().expect("lock");
        let (frames, end) = redo::decode_file_to_end(&image.bytes);
        match frames.first() {
            Some(_) => image.bytes.truncate(end),
            None => image.bytes = redo::header(1),
        }
        image.synced = image.bytes.len();
        let power_cycles = image.power_cycles;
        drop(image);
        (Attached { disk, power_cycles }, frames)
    }

    /// Appends encoded frames, not yet durable.
    pub fn write(&self, frames: &[u8]) -> Result<(), StorageError> {
        self.powered(|image| image.bytes.extend_from_slice(frames))
    }

    /// Makes every byte written so far durable, taking the time a sync takes.
    pub async fn sync(self) -> Result<(), StorageError> {
        let written = self.powered(|image| image.bytes.len())?;
        tokio::time::sleep(SYNC_TAKES).await;
        self.sync_now(written)
    }

    /// Makes the first `written` bytes durable at once (a clean shutdown).
    pub fn sync_now(&self, written: usize) -> Result<(), StorageError> {
        self.powered(|image| {
            if !image.lies {
                image.synced = image.synced.max(written);
            }
        })
    }

    pub fn written(&self) -> Result<usize, StorageError> {
        self.powered(|image| image.bytes.len())
    }

    fn powered<T>(&self, f: impl FnOnce(&mut Image) -> T) -> Result<T, StorageError> {
        let mut image = self.disk.0.lock().expect("lock");
        if image.power_cycles != self.power_cycles {
            return Err(StorageError("the machine lost power".into()));
        }
        Ok(f(&mut image))
    }
}
