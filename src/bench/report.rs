//! What a benchmark run measured, as a table for people, JSON for machines, and an SVG plot.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::footprint::{self, Track};

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }
}

/// The baseline measured in the same run.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// Sequential bare tonic unary round trip between two processes.
    pub rpc_round_trip_ms: Percentiles,
    /// Bare tonic unary RPCs per second at the benchmark's concurrency, one channel.
    pub rpc_per_sec: f64,
    /// 128-byte append + fdatasync on the data directory's disk.
    pub fsync_ms: Percentiles,
}

/// The bank workload's transfers driven straight through PostgreSQL's two-phase commit.
#[derive(Clone, Debug, Serialize)]
pub struct PgDirect {
    pub committed: u64,
    pub failed: u64,
    /// Committed transfers per second.
    pub throughput: f64,
    /// Latency of a whole transfer.
    pub latency_ms: Percentiles,
}

/// A single-node deployment measured the same way in the same run, beside a cluster.
#[derive(Clone, Debug, Serialize)]
pub struct SingleNode {
    pub committed: u64,
    pub throughput: f64,
    pub commit_latency_ms: Percentiles,
}

/// One benchmark run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub workload: String,
    /// Coordinator nodes of the deployment the bench started (1: a single node).
    pub coordinator_nodes: usize,
    pub participants_per_txn: usize,
    pub concurrency: usize,
    pub log_sync: String,
    pub duration_secs: f64,
    pub committed: u64,
    pub aborted: u64,
    pub failed: u64,
    /// What made the first failed transaction fail.
    pub first_failure: Option<String>,
    /// Committed transactions per second.
    pub throughput: f64,
    /// Latency of the Commit call.
    pub commit_latency_ms: Percentiles,
    pub rpcs_per_txn: usize,
    pub baseline: Baseline,
    /// throughput ÷ (bare RPC/s ÷ RPCs per transaction).
    pub throughput_ratio: f64,
    /// commit p50 ÷ (bare round trip p50 + 2 × fsync p50).
    pub latency_ratio: f64,
    /// With PostgreSQL banks: the same transfers without Verdict, at the same concurrency.
    pub pg_direct: Option<PgDirect>,
    /// With a cluster the bench started: a single node measured right after it.
    pub single_node: Option<SingleNode>,
    /// Committed transactions in each second of the run.
    pub committed_per_second: Vec<u64>,
    /// (percentile, latency ms) points of the commit latency distribution.
    pub latency_distribution: Vec<(f64, f64)>,
    /// Of a deployment the bench started: each process's RSS and data directory, a sample per
    /// second from the start of the warm-up.
    pub footprint: Vec<Track>,
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn row(p: &Percentiles) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms",
        p.p50, p.p90, p.p99, p.p99_9, p.max
    )
}

impl Report {
    /// The human table.
    pub fn table(&self) -> String {
        let b = &self.baseline;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verdict bench: {} workload, {}, {} participants/txn, concurrency {}, {:.1} s, log sync {}",
            self.workload,
            match self.coordinator_nodes {
                1 => "single-node coordinator".to_string(),
                n => format!("{n}-node cluster"),
            },
            self.participants_per_txn,
            self.concurrency,
            self.duration_secs,
            self.log_sync
        );
        let _ = writeln!(
            out,
            "  committed        {:>10}  ({} txn/s)",
            thousands(self.committed as f64),
            thousands(self.throughput)
        );
        let _ = writeln!(
            out,
            "  aborted          {:>10}",
            thousands(self.aborted as f64)
        );
        let _ = writeln!(
            out,
            "  failed           {:>10}",
            thousands(self.failed as f64)
        );
        if let Some(why) = &self.first_failure {
            let _ = writeln!(out, "    the first: {why}");
        }
        let _ = writeln!(out, "  commit latency   {}", row(&self.commit_latency_ms));
        let _ = writeln!(out, "  RPCs per txn     {:>10}", self.rpcs_per_txn);
        let _ = writeln!(out, "baseline, measured in this run");
        let _ = writeln!(
            out,
            "  tonic unary round trip, sequential   {}",
            row(&b.rpc_round_trip_ms)
        );
        let _ = writeln!(
            out,
            "  tonic unary at concurrency {:<3}       {} RPC/s",
            self.concurrency,
            thousands(b.rpc_per_sec)
        );
        let _ = writeln!(
            out,
            "  append + fdatasync, data dir disk    {}",
            row(&b.fsync_ms)
        );
        let _ = writeln!(out, "ratios");
        let _ = writeln!(
            out,
            "  throughput / (bare RPC/s / RPCs per txn)      {:.2}  (ceiling {} txn/s)",
            self.throughput_ratio,
            thousands(b.rpc_per_sec / self.rpcs_per_txn as f64)
        );
        let _ = writeln!(
            out,
            "  commit p50 / (round trip p50 + 2 x fsync p50) {:.2}  (floor {:.3} ms)",
            self.latency_ratio,
            b.rpc_round_trip_ms.p50 + 2.0 * b.fsync_ms.p50
        );
        if let Some(single) = &self.single_node {
            let _ = writeln!(out, "single-node coordinator, same workload, measured next");
            let _ = writeln!(
                out,
                "  committed        {:>10}  ({} txn/s)",
                thousands(single.committed as f64),
                thousands(single.throughput)
            );
            let _ = writeln!(out, "  commit latency   {}", row(&single.commit_latency_ms));
            let _ = writeln!(
                out,
                "  cluster throughput / single-node throughput    {:.2}",
                self.throughput / single.throughput
            );
        }
        if let Some(direct) = &self.pg_direct {
            let _ = writeln!(
                out,
                "PostgreSQL two-phase commit driven by the client, no coordinator, concurrency {}",
                self.concurrency
            );
            let _ = writeln!(
                out,
                "  committed        {:>10}  ({} txn/s), failed {}",
                thousands(direct.committed as f64),
                thousands(direct.throughput),
                direct.failed
            );
            let _ = writeln!(out, "  transfer latency {}", row(&direct.latency_ms));
            let _ = writeln!(
                out,
                "  Verdict throughput / direct throughput         {:.2}",
                self.throughput / direct.throughput
            );
        }
        self.footprint_table(&mut out);
        out
    }

    /// Each process's RSS and data directory at the start, a quarter of the way in and at the
    /// end of the run: flat after warm-up means nothing piles up.
    fn footprint_table(&self, out: &mut String) {
        if self.footprint.is_empty() {
            return;
        }
        let every = footprint::EVERY.as_secs_f64();
        let _ = writeln!(
            out,
            "footprint: start / a quarter in / end (sampled every {every:.0} s, warm-up included)"
        );
        for track in &self.footprint {
            let three = |series: &[f64]| match footprint::start_quarter_end(series) {
                Some((a, b, c)) => format!("{a:.1} / {b:.1} / {c:.1} MB"),
                None => "not sampled".into(),
            };
            let _ = writeln!(
                out,
                "  {:<16} RSS {:<26} data {}",
                track.name,
                three(&track.rss_mb),
                three(&track.disk_mb)
            );
        }
    }

    /// An SVG with throughput over time (left) and the latency distribution (right); below,
    /// for a deployment the bench started, the processes' RSS and data directories over time.
    pub fn svg(&self) -> String {
        const W: f64 = 420.0;
        const H: f64 = 260.0;
        let rows = if self.footprint.is_empty() { 1.0 } else { 2.0 };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
             font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
             fill=\"white\"/>\n",
            2.0 * W + 40.0,
            rows * (H + 30.0) + 30.0
        );
        let per_second: Vec<(f64, f64)> = self
            .committed_per_second
            .iter()
            .enumerate()
            .map(|(s, n)| (s as f64 + 1.0, *n as f64))
            .collect();
        // Percentiles on a "nines" axis: 0 = p0, 1 = p90, 2 = p99, 3 = p99.9 …
        let nines: Vec<(f64, f64)> = self
            .latency_distribution
            .iter()
            .map(|(p, ms)| (-(1.0 - p / 100.0).max(1e-5).log10(), *ms))
            .collect();
        panel(
            &mut svg,
            20.0,
            "committed txn/s over time (s)",
            &per_second,
            W,
            H,
        );
        panel(
            &mut svg,
            W + 20.0,
            "commit latency (ms) by percentile: 1 = p90, 2 = p99, 3 = p99.9",
            &nines,
            W,
            H,
        );
        if !self.footprint.is_empty() {
            let summed = |series: fn(&Track) -> &Vec<f64>| {
                let longest = self.footprint.iter().map(|t| series(t).len()).max();
                (0..longest.unwrap_or(0))
                    .map(|i| {
                        let total = self.footprint.iter().filter_map(|t| series(t).get(i)).sum();
                        (i as f64 + 1.0, total)
                    })
                    .collect::<Vec<_>>()
            };
            let below = H + 30.0;
            let rss = summed(|t| &t.rss_mb);
            let disk = summed(|t| &t.disk_mb);
            svg.push_str(&format!("<g transform=\"translate(0,{below})\">\n"));
            panel(
                &mut svg,
                20.0,
                "RSS of its processes, MB, over time (s)",
                &rss,
                W,
                H,
            );
            panel(
                &mut svg,
                W + 20.0,
                "their data directories, MB, over time (s)",
                &disk,
                W,
                H,
            );
            svg.push_str("</g>\n");
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// One line chart at horizontal offset `x0`.
fn panel(svg: &mut String, x0: f64, title: &str, points: &[(f64, f64)], w: f64, h: f64) {
    let (top, left, plot_w, plot_h) = (30.0, x0 + 50.0, w - 70.0, h - 40.0);
    let max_x = points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.1;
    let _ = writeln!(svg, "<text x=\"{}\" y=\"18\">{title}</text>", x0 + 10.0);
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" \
         stroke=\"#888\"/>"
    );
    for i in 0..=4 {
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.1}</text>",
            left - 4.0,
            y + 4.0,
            max_y * i as f64 / 4.0
        );
        let x = left + plot_w * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{:.1}</text>",
            top + plot_h + 14.0,
            max_x * i as f64 / 4.0
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            format!(
                "{:.1},{:.1}",
                left + plot_w * x / max_x,
                top + plot_h * (1.0 - y / max_y)
            )
        })
        .collect();
    let _ = writeln!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    );
}
