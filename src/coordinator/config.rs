//! The engine's knobs.

use std::time::Duration;

use super::AllowedParticipants;
use crate::core::{Backoff, Policy};

/// How the engine behaves; `verdict serve` fills it from flags.
#[derive(Clone, Debug)]
pub struct Config {
    /// This coordinator's URL as participants reach it (sent with Prepare, for Resolve).
    pub advertise_url: String,
    /// Every node's URL in cluster mode (sent with Prepare too); empty on a single node.
    pub cluster_urls: Vec<String>,
    /// A transaction's deadline when Begin gives none.
    pub default_txn_timeout: Duration,
    /// The longest deadline Begin may ask for.
    pub max_txn_timeout: Duration,
    /// How long to wait for one participant's vote.
    pub prepare_timeout: Duration,
    /// How long to wait for one phase-2 acknowledgement before retrying.
    pub decision_timeout: Duration,
    /// Delays between phase-2 retries.
    pub backoff: Backoff,
    /// Per-transaction limits.
    pub policy: Policy,
    /// Most transactions not decided yet at once; Begin beyond it waits (see
    /// `admission_wait`), then is refused with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Most decided transactions held in memory until their participants acknowledge the
    /// decision (each a few KB); Begin beyond it waits, then is refused likewise.
    pub max_undelivered: usize,
    /// How long a Begin at the in-flight limit waits for a transaction to finish; at most
    /// `max_in_flight` Begins wait at once.
    pub admission_wait: Duration,
    /// The most decisions being delivered to one participant endpoint at once; more wait their
    /// turn.
    pub deliveries_per_participant: usize,
    /// How long a finished transaction stays queryable.
    pub retention: Duration,
    /// How often finished transactions past retention are collected.
    pub gc_interval: Duration,
    /// The participant endpoints Begin and Enlist may name (any, when empty).
    pub allowed_participants: AllowedParticipants,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            advertise_url: "http://127.0.0.1:7400".into(),
            cluster_urls: Vec::new(),
            default_txn_timeout: Duration::from_secs(30),
            max_txn_timeout: Duration::from_secs(3600),
            prepare_timeout: Duration::from_secs(5),
            decision_timeout: Duration::from_secs(5),
            backoff: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(10),
            },
            policy: Policy {
                max_participants: 32,
                best_effort_attempts: 10,
            },
            max_in_flight: 10_000,
            max_undelivered: 100_000,
            admission_wait: Duration::from_millis(100),
            deliveries_per_participant: 64,
            retention: Duration::from_secs(24 * 3600),
            gc_interval: Duration::from_secs(60),
            allowed_participants: AllowedParticipants::default(),
        }
    }
}
