//! The footprint of a deployment the bench started: each process's resident memory and the size
//! of its data directory, sampled every second of the run. A long run shows whether finished
//! transactions are collected and journals checkpointed — flat after warm-up — or not.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// How often the footprint is sampled.
pub const EVERY: Duration = Duration::from_secs(1);

/// A process to watch: its name, its pid and its data directory.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
    pub dir: PathBuf,
}

/// One process over the run, a sample per [`EVERY`].
#[derive(Clone, Debug, Serialize)]
pub struct Track {
    pub name: String,
    pub rss_mb: Vec<f64>,
    pub disk_mb: Vec<f64>,
}

impl Track {
    fn new(watched: &Watched) -> Self {
        Track {
            name: watched.name.clone(),
            rss_mb: Vec::new(),
            disk_mb: Vec::new(),
        }
    }
}

/// Runs `work`, sampling `watched` every [`EVERY`] meanwhile; its output and a track per process.
pub async fn during<T>(watched: &[Watched], work: impl Future<Output = T>) -> (T, Vec<Track>) {
    let mut tracks: Vec<Track> = watched.iter().map(Track::new).collect();
    let mut tick = tokio::time::interval(EVERY);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return (out, tracks),
            _ = tick.tick() => {
                for (track, process) in tracks.iter_mut().zip(watched) {
                    track.rss_mb.push(rss_mb(process.pid));
                    track.disk_mb.push(disk_mb(&process.dir));
                }
            }
        }
    }
}

const MB: f64 = 1024.0 * 1024.0;

/// Resident memory of `pid` in MB (0 once it is gone).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        });
    kb.unwrap_or(0.0) * 1024.0 / MB
}

/// Bytes of the files under `dir`, in MB.
fn disk_mb(dir: &Path) -> f64 {
    fn bytes(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.metadata() {
                Ok(meta) if meta.is_dir() => bytes(&entry.path()),
                Ok(meta) => meta.len(),
                Err(_) => 0,
            })
            .sum()
    }
    bytes(dir) as f64 / MB
}

/// Three points of a series: its first value, a quarter of the way in, and its last.
pub fn start_quarter_end(series: &[f64]) -> Option<(f64, f64, f64)> {
    let last = *series.last()?;
    Some((series[0], series[series.len() / 4], last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory() {
        assert!(rss_mb(std::process::id()) > 0.0);
    }

    #[test]
    fn a_directory_counts_the_files_under_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![0u8; 1 << 20]).unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 1 << 19]).unwrap();
        assert_eq!(disk_mb(dir.path()), 1.5);
    }

    #[test]
    fn a_series_is_summed_up_by_its_start_a_quarter_in_and_its_end() {
        let series = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        assert_eq!(start_quarter_end(&series), Some((1.0, 3.0, 8.0)));
        assert_eq!(start_quarter_end(&[]), None);
    }
}
