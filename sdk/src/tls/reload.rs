//! A configuration built from files and rebuilt when they change or on SIGHUP, for a server's
//! certificate and a client's alike. A file that is bad now is logged and the configuration in
//! use stays.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::TlsError;

/// How often the files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// `T`, kept current with the files it is built from.
pub(super) struct Reloading<T> {
    /// What it is, for the log.
    what: &'static str,
    files: Vec<PathBuf>,
    build: Build<T>,
    current: RwLock<T>,
    /// The files' modification times at the last build.
    stamps: Mutex<Vec<Option<SystemTime>>>,
    /// Whether a task keeps it current already.
    watched: AtomicBool,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Reloading<T> {
    /// Builds it once, checking the files.
    pub fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let current = RwLock::new(build()?);
        Ok(Reloading {
            what,
            stamps: Mutex::new(stamps(&files)),
            files,
            build: Box::new(build),
            current,
            watched: AtomicBool::new(false),
        })
    }

    /// What is current.
    pub fn current(&self) -> T {
        self.current.read().expect("lock").clone()
    }

    /// Rebuilds if the files changed since the last build (or, with `always`, anyway).
    pub fn reload(&self, always: bool) {
        let stamps = stamps(&self.files);
        let mut last = self.stamps.lock().expect("lock");
        if !always && *last == stamps {
            return;
        }
        *last = stamps;
        match (self.build)() {
            Ok(built) => {
                *self.current.write().expect("lock") = built;
                tracing::info!("{} reloaded", self.what);
            }
            Err(error) => {
                tracing::error!(%error, "{} not reloaded; the one in use stays", self.what)
            }
        }
    }

    /// Reloads on SIGHUP, and whenever the files change, while `self` lives (one task however
    /// often this is called). Does nothing outside a tokio runtime.
    pub fn keep_current(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.watched.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let reloading = Arc::downgrade(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .expect("SIGHUP handler");
            loop {
                #[cfg(unix)]
                let always = tokio::select! {
                    _ = hangup.recv() => true,
                    _ = tokio::time::sleep(RELOAD_EVERY) => false,
                };
                #[cfg(not(unix))]
                let always = {
                    tokio::time::sleep(RELOAD_EVERY).await;
                    false
                };
                match reloading.upgrade() {
                    Some(reloading) => reloading.reload(always),
                    None => return,
                }
            }
        });
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}
