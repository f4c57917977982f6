//! The engine's errors, in domain terms. `service` turns them into gRPC statuses, in one place.

use crate::core::{Rejection, TxnId};
use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such transaction (never begun here, or collected after the retention period).
    #[error(
        "transaction {0} is unknown: it was never begun on this coordinator, or it finished \
         longer ago than the retention period"
    )]
    NotFound(TxnId),
    /// The transaction is in the wrong state for the request.
    #[error("transaction {0}: {1}")]
    Rejected(TxnId, Rejection),
    /// A participant endpoint outside `--allow-participants`.
    #[error("{0}")]
    NotAllowed(String),
    /// An operator's request with nothing to act on: a retry of phase 2 with nothing to deliver,
    /// a settlement of a transaction already over.
    #[error("{0}")]
    NothingToDo(String),
    /// A limit is reached, and no room was made while the Begin waited.
    #[error(
        "{full}, and no room was made within {} ms (--admission-wait); retry after {} ms with \
         jitter (the client SDK does)",
        waited.as_millis(),
        retry_after.as_millis()
    )]
    Overloaded {
        full: Full,
        waited: std::time::Duration,
        retry_after: std::time::Duration,
    },
    /// The log's record of the transaction cannot be read.
    #[error(
        "transaction {0}: its record in the decision log is corrupt; an operator must inspect it"
    )]
    Corrupt(TxnId),
    /// This engine no longer runs transactions (in a cluster: its node stopped leading).
    #[error("{0}")]
    Unavailable(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<verdict_sdk::validate::Invalid> for EngineError {
    fn from(invalid: verdict_sdk::validate::Invalid) -> Self {
        EngineError::InvalidArgument(invalid.0)
    }
}

/// Which limit keeps a new transaction out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// Transactions not decided yet.
    #[error("too many transactions in flight ({0}, the --max-in-flight limit)")]
    InFlight(usize),
    /// Decided transactions whose participants have not all acknowledged the decision.
    #[error(
        "too many decided transactions wait for participants to acknowledge the decision ({0}, \
         the --max-undelivered limit): bring back the participants that do not answer \
         (verdict txn list --state committing), or settle their transactions by hand"
    )]
    Undelivered(usize),
}
