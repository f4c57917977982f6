//! The physical limits, measured in the same run as the benchmark: a bare tonic unary round trip
//! between two processes, bare unary throughput at the benchmark's concurrency, and the fsync
//! latency of the data directory's disk.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Latencies are recorded in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, 60_000_000) as u64
}

/// Sequential round trips of the health service's `Check` (a trivial unary RPC) to another
/// process: the latency histogram.
pub async fn rpc_round_trips(channel: Channel, calls: usize) -> anyhow::Result<Histogram<u64>> {
    let mut client = HealthClient::new(channel);
    let mut latencies = histogram();
    for _ in 0..calls {
        let started = Instant::now();
        client.check(HealthCheckRequest::default()).await?;
        latencies.record(micros(started.elapsed()))?;
    }
    Ok(latencies)
}

/// Bare unary RPCs per second with `concurrency` in flight on one channel for `duration`.
pub async fn rpc_throughput(
    channel: Channel,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut client = HealthClient::new(channel.clone());
        tasks.spawn(async move {
            let mut calls = 0u64;
            while started.elapsed() < duration {
                client.check(HealthCheckRequest::default()).await?;
                calls += 1;
            }
            Ok::<_, tonic::Status>(calls)
        });
    }
    let mut calls = 0;
    for done in tasks.join_all().await {
        calls += done?;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// Appends of 128 bytes, each followed by `fdatasync`, in `dir`: the latency histogram.
pub fn fsync_latency(dir: &Path, writes: usize) -> anyhow::Result<Histogram<u64>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let mut latencies = histogram();
    for _ in 0..writes {
        let started = Instant::now();
        file.write_all(&[0x5a; 128])?;
        file.sync_data()?;
        latencies.record(micros(started.elapsed()))?;
    }
    drop(file);
    std::fs::remove_file(path)?;
    Ok(latencies)
}
