//! The durable decision log.
//!
//! [`DecisionLog`] is the seam between the engine and storage: single-node mode uses
//! [`SledLog`]; a replicated log can implement the same trait. The log holds one record per
//! transaction, rewritten as the transaction moves on:
//!
//! | status | written | why |
//! |---|---|---|
//! | `Active` | at Begin and Enlist, not forced | so that recovery can tell known participants of the abort |
//! | `Committed` | the decision, **forced** | presumed abort: the only record that must survive |
//! | `Aborted` | not forced | absence of a commit record already means abort |
//! | `Finished` | the END record, not forced | phase 2 is over; kept for the retention period, then collected |

mod record;
mod sled;
mod timeline;

use std::future::Future;

use crate::core::{Action, Outcome, Participant, Phase, TxnId};

pub use self::record::{decode, encode};
pub use self::sled::SledLog;
pub use self::timeline::{ParticipantTimes, Settlement, Timeline};
pub use crate::durable::{FlushStats, LogSync};

/// What a record says about its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Begun, not decided.
    Active,
    /// The commit decision: phase 2 may be unfinished.
    Committed,
    /// Decided abort: phase 2 may be unfinished.
    Aborted,
    /// Phase 2 is over.
    Finished(Outcome),
}

impl Status {
    /// The decision this status records, if any.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Status::Active => None,
            Status::Committed => Some(Outcome::Committed),
            Status::Aborted => Some(Outcome::Aborted),
            Status::Finished(outcome) => Some(outcome),
        }
    }

    /// The status of the record that `action` writes for a transaction now in `phase` (see the
    /// table above); `None` for an action that writes nothing.
    pub fn written_by(action: &Action, phase: Phase) -> Option<Status> {
        match action {
            Action::Record => Some(match phase.outcome() {
                Some(Outcome::Aborted) => Status::Aborted,
                _ => Status::Active,
            }),
            Action::Persist => Some(Status::Committed),
            Action::Finish => phase.outcome().map(Status::Finished),
            Action::Prepare { .. } | Action::Deliver { .. } => None,
        }
    }

    /// What `Resolve` answers from the log for a transaction no longer in memory, given its
    /// record's status: the recorded decision (`None`: undecided) — or, with no record, abort.
    /// Presumed abort: no record means no commit decision was ever made durable.
    pub fn resolved(recorded: Option<Status>) -> Option<Outcome> {
        recorded.map_or(Some(Outcome::Aborted), Status::outcome)
    }
}

/// One transaction as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    pub txn_id: TxnId,
    pub status: Status,
    /// The transaction's deadline (ms since the Unix epoch).
    pub deadline_unix_ms: u64,
    /// When phase 2 finished (ms since the Unix epoch); 0 before.
    pub finished_unix_ms: u64,
    /// Whether the application asked to commit.
    pub commit_requested: bool,
    /// Why it aborted.
    pub reason: Option<String>,
    pub participants: Vec<Participant>,
    /// Its milestones, and a settlement by hand.
    pub timeline: Timeline,
}

/// A failure of the log.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// The log takes no writes here now (in a cluster: this node no longer leads). Nothing is
    /// known to be lost; the engine writing here must stop and let the leader's take over.
    #[error("the decision log is unavailable here: {0}")]
    Unavailable(String),
    /// The storage failed; the log can no longer be trusted to have written anything.
    #[error("decision log I/O failed: {0}")]
    Io(String),
    /// A record failed its checks (torn or corrupt); it is never interpreted.
    #[error("corrupt decision log record{}: {what}", txn.map(|t| format!(" for transaction {t}")).unwrap_or_default())]
    Corrupt { txn: Option<TxnId>, what: String },
}

/// The durable record of transactions. See the module doc for what is written when.
pub trait DecisionLog: Send + Sync + 'static {
    /// Writes `record` (replacing the transaction's previous one) without waiting for it to be
    /// durable; it becomes durable with the next flush.
    fn write(&self, record: &TxnRecord) -> Result<(), LogError>;

    /// Writes `record` and resolves once it is durable. Concurrent calls share one flush (group
    /// commit).
    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl Future<Output = Result<(), LogError>> + Send + use<Self>;

    /// The transaction's record, if the log has one.
    fn read(&self, txn_id: TxnId) -> Result<Option<TxnRecord>, LogError>;

    /// The transaction a Submit with `request_id` began, while its record is kept.
    fn submitted(&self, request_id: &str) -> Result<Option<TxnId>, LogError>;

    /// Every record whose transaction is not finished, for recovery. Corrupt records are
    /// reported as errors in place, never skipped silently.
    fn unfinished(&self) -> Result<Vec<Result<TxnRecord, LogError>>, LogError>;

    /// Finished records in id order, starting after `after`.
    fn finished(
        &self,
        after: Option<TxnId>,
    ) -> Box<dyn Iterator<Item = Result<TxnRecord, LogError>> + '_>;

    /// Deletes finished records that finished before `before_unix_ms`; resolves to how many.
    fn collect_finished(
        &self,
        before_unix_ms: u64,
    ) -> impl Future<Output = Result<usize, LogError>> + Send + use<Self>;

    /// Makes every write so far durable and stops background work; at shutdown.
    fn close(&self);
}
