//! The names of the metrics the SDK records (the `verdict_` namespace). Recording does nothing
//! until the program installs a `metrics` recorder, such as a Prometheus exporter.

/// How long a forced write to a durable database took.
pub const FLUSH_SECONDS: &str = "verdict_log_flush_duration_seconds";
/// How many forced writes one flush carried.
pub const FLUSH_BATCH: &str = "verdict_log_flush_batch_size";
/// How long a checkpoint took (writes moved into sled, sled flushed), beside the flushes.
pub const CHECKPOINT_SECONDS: &str = "verdict_log_checkpoint_duration_seconds";

/// A participant's votes, by vote.
pub const VOTES: &str = "verdict_participant_votes_total";
/// How long a participant took to vote: from a Prepare's arrival to its vote recorded.
pub const PREPARE_SECONDS: &str = "verdict_participant_prepare_duration_seconds";
/// A participant's decisions applied, by decision.
pub const DECISIONS: &str = "verdict_participant_decisions_total";
/// A participant's `Resolve` calls for transactions it holds in doubt.
pub const RESOLVE_ASKED: &str = "verdict_participant_resolve_asked_total";
