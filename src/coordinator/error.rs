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
    /// Too many transactions in flight, and none finished while the Begin waited.
    #[error(
        "too many transactions in flight ({limit}, the --max-in-flight limit) and none \
         finished within {} ms (--admission-wait); retry after {} ms with jitter (the client SDK \
         does)",
        waited.as_millis(),
        retry_after.as_millis()
    )]
    Overloaded {
        limit: usize,
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
