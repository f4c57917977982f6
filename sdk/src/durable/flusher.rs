//! The one thread that writes the redo log, answers forced writes and starts checkpoints.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use super::checkpointer::Running;
use super::redo::RedoLog;
use super::{Shared, StorageError};

/// How often writes nobody forced are made durable when nothing forces a flush sooner.
const BACKGROUND_FLUSH: Duration = Duration::from_millis(200);

/// How long a lazy flush may wait to share the next urgent one.
const LAZY_WINDOW: Duration = Duration::from_millis(2);

/// How often the writes are moved into sled and sled is flushed, so that the redo log can
/// start over. Unit tests checkpoint when they close, never behind their back.
const CHECKPOINT_EVERY: Duration = match cfg!(test) {
    true => Duration::from_secs(3600),
    false => Duration::from_secs(1),
};

/// How long an urgent flush waits for company when the last one served more than one urgent
/// caller: under load a few
/// hundred microseconds gather many more callers into one flush, and every flush costs the
/// machine a device round trip (measured: 79 % of the unsynced throughput at concurrency 64
/// with 300 µs, 75 % without).
const GATHER: Duration = Duration::from_micros(300);

pub(super) type Waiter = oneshot::Sender<Result<(), StorageError>>;

/// A caller waiting for durability, and whether it is in a hurry.
pub(super) struct Request {
    pub waiter: Waiter,
    pub urgent: bool,
}

/// Callers waiting for the next flush.
#[derive(Default)]
struct Batch {
    waiters: Vec<Waiter>,
    /// How many of the waiters are urgent.
    urgent: usize,
    /// When the oldest lazy caller arrived.
    lazy_since: Option<Instant>,
}

impl Batch {
    fn add(&mut self, request: Request) {
        self.urgent += usize::from(request.urgent);
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
        self.urgent == 0 && self.lazy_deadline().is_some_and(|d| Instant::now() < d)
    }
}

type Answer = (Vec<Waiter>, Result<(), StorageError>);

/// Hands answers to a task on the tokio runtime, which wakes the callers from there: a wake
/// from a worker thread is cheap, one from this thread may have to unpark a worker per caller.
fn dispatcher() -> Option<tokio_mpsc::UnboundedSender<Answer>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (tx, mut rx) = tokio_mpsc::unbounded_channel::<Answer>();
    runtime.spawn(async move {
        while let Some((waiters, result)) = rx.recv().await {
            answer_all(waiters, &result);
        }
    });
    Some(tx)
}

fn answer_all(waiters: Vec<Waiter>, result: &Result<(), StorageError>) {
    for waiter in waiters {
        let _ = waiter.send(result.clone());
    }
}

/// The flusher's state.
pub(super) struct Flusher {
    shared: Arc<Shared>,
    dispatch: Option<tokio_mpsc::UnboundedSender<Answer>>,
    checkpointer: Running,
    /// Appended to the redo log since its last sync.
    unsynced: bool,
    /// The lsn of the last frame appended to the redo log.
    appended_lsn: u64,
    /// The lsn of the last frame sled holds durably.
    checkpointed_lsn: u64,
    /// The lsn of the last frame whose writes the frozen overlay holds, while there is one.
    frozen_lsn: Option<u64>,
    /// Whether the checkpointer is working.
    checkpointing: bool,
    last_checkpoint: Instant,
}

impl Flusher {
    /// A flusher for a database whose sled holds every frame up to `lsn` durably, as recovery
    /// left it.
    pub fn new(shared: Arc<Shared>, checkpointer: Running, lsn: u64) -> Self {
        Flusher {
            shared,
            dispatch: dispatcher(),
            checkpointer,
            unsynced: false,
            appended_lsn: lsn,
            checkpointed_lsn: lsn,
            frozen_lsn: None,
            checkpointing: false,
            last_checkpoint: Instant::now(),
        }
    }

    pub fn run(mut self, mut redo: RedoLog, requests: mpsc::Receiver<Request>) {
        let mut batch = Batch::default();
        let mut last_urgent = 0;
        loop {
            let wait = batch.lazy_deadline().map_or(BACKGROUND_FLUSH, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            match requests.recv_timeout(wait) {
                Ok(request) => batch.add(request),
                Err(mpsc::RecvTimeoutError::Timeout) if batch.is_empty() => {
                    self.background(&mut redo);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if batch.urgent > 0 && last_urgent > 1 {
                std::thread::sleep(GATHER);
            }
            // Everything queued while the last flush ran shares this one.
            for request in requests.try_iter() {
                batch.add(request);
            }
            if batch.can_wait() {
                continue;
            }
            last_urgent = batch.urgent;
            let started = Instant::now();
            let result = self.flush_redo(&mut redo);
            metrics::histogram!(crate::metrics::FLUSH_SECONDS).record(started.elapsed());
            metrics::histogram!(crate::metrics::FLUSH_BATCH).record(batch.waiters.len() as f64);
            self.answer(std::mem::take(&mut batch), result);
            self.checkpoint_when_due(&mut redo);
        }
        let result = self.flush_redo(&mut redo);
        self.answer(std::mem::take(&mut batch), result);
        self.last_checkpoint(&mut redo);
    }

    fn answer(&mut self, batch: Batch, result: Result<(), StorageError>) {
        if batch.is_empty() {
            return;
        }
        let stats = &self.shared.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .forced
            .fetch_add(batch.waiters.len() as u64, Ordering::Relaxed);
        let answer = (batch.waiters, result);
        let answer = match &self.dispatch {
            Some(dispatch) => match dispatch.send(answer) {
                Ok(()) => return,
                // The runtime has shut down: answer from here.
                Err(tokio_mpsc::error::SendError(answer)) => answer,
            },
            None => answer,
        };
        answer_all(answer.0, &answer.1);
    }

    /// Makes writes nobody forced durable, and checkpoints when one is due.
    fn background(&mut self, redo: &mut RedoLog) {
        if let Err(e) = self.flush_redo(redo) {
            tracing::error!(error = %e, "background flush failed");
        }
        self.checkpoint_when_due(redo);
    }

    /// Appends the pending frames to the redo log and syncs it.
    fn flush_redo(&mut self, redo: &mut RedoLog) -> Result<(), StorageError> {
        let (frames, last) = self.shared.take_frames(false);
        self.append(redo, &frames, last)
    }

    fn append(&mut self, redo: &mut RedoLog, frames: &[u8], last: u64) -> Result<(), StorageError> {
        if !frames.is_empty() {
            redo.append(frames)?;
            self.appended_lsn = last;
            self.unsynced = true;
        }
        if self.unsynced {
            redo.sync()?;
            self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
        }
        Ok(())
    }

    /// Collects the checkpoint running, if it has ended, and starts the next when one is due.
    fn checkpoint_when_due(&mut self, redo: &mut RedoLog) {
        let result = self.end_checkpoint(redo, false).and_then(|()| {
            let due = redo.wants_checkpoint() || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
            match due && !self.checkpointing {
                true => self.start_checkpoint(redo),
                false => Ok(()),
            }
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "checkpoint failed; the redo log keeps growing");
        }
    }

    /// At the end: a checkpoint of every write, waited for.
    fn last_checkpoint(&mut self, redo: &mut RedoLog) {
        let result = self
            .end_checkpoint(redo, true)
            .and_then(|()| self.start_checkpoint(redo))
            .and_then(|()| self.end_checkpoint(redo, true));
        if let Err(e) = result {
            tracing::error!(error = %e, "the last checkpoint failed");
        }
    }

    /// Freezes the overlay, makes its frames durable, and has the checkpointer move it into
    /// sled. An overlay still frozen (its checkpoint failed) is tried again instead.
    fn start_checkpoint(&mut self, redo: &mut RedoLog) -> Result<(), StorageError> {
        self.last_checkpoint = Instant::now();
        let freeze = self.frozen_lsn.is_none();
        let (frames, last) = self.shared.take_frames(freeze);
        self.append(redo, &frames, last)?;
        if freeze {
            if self.appended_lsn == self.checkpointed_lsn {
                // Nothing written since: the frozen overlay is empty.
                return self.shared.settle();
            }
            self.frozen_lsn = Some(self.appended_lsn);
        }
        self.checkpointer.request()?;
        self.checkpointing = true;
        Ok(())
    }

    /// Collects the checkpoint running, waiting for it if `wait`. Once sled holds its frames
    /// durably, the redo log starts over in its other file, whose frames are all older than
    /// them; frames appended meanwhile stay readable in the current one.
    fn end_checkpoint(&mut self, redo: &mut RedoLog, wait: bool) -> Result<(), StorageError> {
        if !self.checkpointing {
            return Ok(());
        }
        let Some(result) = self.checkpointer.result(wait) else {
            return Ok(());
        };
        self.checkpointing = false;
        result?;
        let frozen = self
            .frozen_lsn
            .take()
            .expect("a checkpoint has a frozen overlay");
        redo.restart(self.appended_lsn + 1)?;
        crate::crash_point!("storage::after_redo_restart");
        self.checkpointed_lsn = frozen;
        self.shared
            .stats
            .checkpoints
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
