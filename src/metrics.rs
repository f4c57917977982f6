//! Metrics: every name Verdict exports (the `verdict_` namespace, described here once, so the
//! exporter's HELP lines and the README's table agree), and the Prometheus endpoint
//! (`--metrics-listen`), served by `metrics-exporter-prometheus`. Without that flag no recorder
//! is installed and recording a metric does nothing.

use std::net::SocketAddr;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;

use anyhow::Context;
use axum::http::header;
use verdict_sdk::tls::ServerTls;

// The coordinator.
pub const BEGUN: &str = "verdict_transactions_begun_total";
pub const COMMITTED: &str = "verdict_transactions_committed_total";
pub const ABORTED: &str = "verdict_transactions_aborted_total";
pub const IN_FLIGHT: &str = "verdict_transactions_in_flight";
pub const IN_DOUBT: &str = "verdict_transactions_in_doubt";
pub const COMMIT_SECONDS: &str = "verdict_commit_duration_seconds";
pub const PREPARE_SECONDS: &str = "verdict_prepare_duration_seconds";
pub const PHASE2_SECONDS: &str = "verdict_phase2_duration_seconds";
pub const PHASE2_RETRIES: &str = "verdict_phase2_retries_total";
pub const PHASE2_BATCH: &str = "verdict_phase2_batch_size";
pub const REJECTED: &str = "verdict_requests_rejected_total";
// A cluster node.
pub const IS_LEADER: &str = "verdict_cluster_is_leader";
pub const TERM: &str = "verdict_cluster_term";
pub const APPLIED_INDEX: &str = "verdict_cluster_last_applied_index";
pub const REPLICATION_LAG: &str = "verdict_cluster_replication_lag";
// The decision log and a participant's journal (the same group-commit flusher), and a
// participant: recorded in the SDK.
pub use verdict_sdk::metrics::{
    CHECKPOINT_SECONDS, DECISIONS, FLUSH_BATCH, FLUSH_SECONDS,
    PREPARE_SECONDS as PARTICIPANT_PREPARE_SECONDS, RESOLVE_ASKED, VOTES,
};

/// Why a transaction aborted, as the `reason` label of [`ABORTED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// A participant voted NO.
    VoteNo,
    /// A participant's vote did not come within the prepare timeout.
    PrepareTimeout,
    /// A participant could not be reached to prepare.
    Unreachable,
    /// A participant answered Prepare with an error.
    ParticipantError,
    /// The transaction's deadline passed first.
    Deadline,
    /// The application (or an operator) asked.
    Client,
    /// The coordinator restarted, or leadership moved, before it decided.
    Takeover,
}

impl AbortReason {
    pub fn label(self) -> &'static str {
        match self {
            AbortReason::VoteNo => "vote_no",
            AbortReason::PrepareTimeout => "prepare_timeout",
            AbortReason::Unreachable => "unreachable",
            AbortReason::ParticipantError => "participant_error",
            AbortReason::Deadline => "deadline",
            AbortReason::Client => "client",
            AbortReason::Takeover => "takeover",
        }
    }
}

/// The in-doubt age buckets (`age` label of [`IN_DOUBT`]), by their upper bound in seconds.
pub const IN_DOUBT_AGES: [(&str, u64); 5] = [
    ("lt_1s", 1),
    ("1s_10s", 10),
    ("10s_1m", 60),
    ("1m_10m", 600),
    ("ge_10m", u64::MAX),
];

/// The bucket label for a transaction undecided or undelivered for `age_ms`.
pub fn in_doubt_age(age_ms: u64) -> &'static str {
    let age = age_ms / 1000;
    IN_DOUBT_AGES
        .iter()
        .find(|(_, below)| age < *below)
        .map_or("ge_10m", |(label, _)| label)
}

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Serves the metrics in Prometheus' text format at `http://ADDR/metrics` (any path answers;
/// with `tls`, `https://` only). Must run inside a tokio runtime.
pub fn serve(addr: SocketAddr, tls: Option<Arc<ServerTls>>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let seconds = [
        COMMIT_SECONDS,
        PREPARE_SECONDS,
        PHASE2_SECONDS,
        FLUSH_SECONDS,
        CHECKPOINT_SECONDS,
        PARTICIPANT_PREPARE_SECONDS,
    ];
    let mut builder = PrometheusBuilder::new();
    for name in seconds {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), SECONDS)?;
    }
    for name in [FLUSH_BATCH, PHASE2_BATCH] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), BATCH)?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot record metrics: {e}"))?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    let exposition = move || {
        let body = handle.render();
        async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
    };
    let app = axum::Router::new().fallback(exposition);
    crate::https::spawn(listener, app, tls.clone(), "the metrics port")?;
    tracing::info!(%addr, tls = tls.is_some(), "serving Prometheus metrics");
    Ok(())
}

/// How often the recorder drains what its histograms hold beyond their window.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn describe() {
    describe_counter!(BEGUN, "Transactions begun.");
    describe_counter!(COMMITTED, "Transactions decided COMMIT.");
    describe_counter!(ABORTED, "Transactions decided ABORT, by reason.");
    describe_gauge!(IN_FLIGHT, "Transactions held in memory: not yet finished.");
    describe_gauge!(
        IN_DOUBT,
        "Transactions past Commit (or aborting) and not finished, so participants may hold \
         locks for them, by age since they began."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Commit and Submit calls answered with an outcome, to their answer."
    );
    describe_histogram!(
        PREPARE_SECONDS,
        Unit::Seconds,
        "Prepare calls, by participant endpoint."
    );
    describe_histogram!(
        PHASE2_SECONDS,
        Unit::Seconds,
        "Phase-2 Commit and Abort calls, by participant endpoint and outcome."
    );
    describe_counter!(
        PHASE2_RETRIES,
        "Phase-2 sends that failed, each retried (best-effort ones a bounded number of \
         times), by participant endpoint."
    );
    describe_histogram!(
        PHASE2_BATCH,
        "Decisions sent in one Decide call, by participant endpoint."
    );
    describe_counter!(REJECTED, "Requests refused, by reason.");
    describe_histogram!(
        FLUSH_SECONDS,
        Unit::Seconds,
        "Group-commit flushes (fdatasync)."
    );
    describe_histogram!(FLUSH_BATCH, "Forced writes made durable by one flush.");
    describe_histogram!(
        CHECKPOINT_SECONDS,
        Unit::Seconds,
        "Checkpoints: writes moved into sled and sled flushed, beside the flushes."
    );
    describe_gauge!(IS_LEADER, "1 while this node leads the cluster.");
    describe_gauge!(TERM, "This node's Raft term.");
    describe_gauge!(APPLIED_INDEX, "The last Raft log index this node applied.");
    describe_gauge!(
        REPLICATION_LAG,
        "Entries a follower is behind the leader's log (on the leader), by follower."
    );
    describe_counter!(VOTES, "Votes a participant gave, by vote.");
    describe_histogram!(
        PARTICIPANT_PREPARE_SECONDS,
        Unit::Seconds,
        "How long a participant took to vote: from a Prepare's arrival to its vote recorded."
    );
    describe_counter!(
        DECISIONS,
        "Phase-2 decisions a participant was sent and carried out, by decision."
    );
    describe_counter!(
        RESOLVE_ASKED,
        "Resolve calls a participant made while in doubt."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_doubt_ages_fall_in_their_buckets() {
        assert_eq!(in_doubt_age(0), "lt_1s");
        assert_eq!(in_doubt_age(999), "lt_1s");
        assert_eq!(in_doubt_age(1_000), "1s_10s");
        assert_eq!(in_doubt_age(59_999), "10s_1m");
        assert_eq!(in_doubt_age(600_000), "ge_10m");
    }
}
