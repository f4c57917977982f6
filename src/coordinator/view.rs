//! What callers see of a transaction, whether it is in memory or only in the log.

use crate::core::{Participant, Phase, Transaction, TxnId};
use crate::log::{Status, TxnRecord};

/// A transaction's state as reported to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Active,
    /// Collecting votes, or making the commit decision durable.
    Preparing,
    /// Decided commit; phase 2 unfinished.
    Committing,
    /// Decided abort; phase 2 unfinished.
    Aborting,
    Committed,
    Aborted,
}

impl State {
    /// Whether the transaction is in memory in this state (as opposed to finished, in the log).
    pub fn is_in_flight(self) -> bool {
        !matches!(self, State::Committed | State::Aborted)
    }
}

impl From<Phase> for State {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Active => State::Active,
            Phase::Preparing | Phase::Deciding => State::Preparing,
            Phase::Committing => State::Committing,
            Phase::Aborting => State::Aborting,
            Phase::Committed => State::Committed,
            Phase::Aborted => State::Aborted,
        }
    }
}

impl From<Status> for State {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => State::Active,
            Status::Committed => State::Committing,
            Status::Aborted => State::Aborting,
            Status::Finished(crate::core::Outcome::Committed) => State::Committed,
            Status::Finished(crate::core::Outcome::Aborted) => State::Aborted,
        }
    }
}

/// One transaction as callers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnView {
    pub txn_id: TxnId,
    pub state: State,
    pub reason: Option<String>,
    pub deadline_unix_ms: u64,
    pub participants: Vec<Participant>,
}

impl TxnView {
    pub fn of_transaction(txn_id: TxnId, deadline_unix_ms: u64, txn: &Transaction) -> Self {
        TxnView {
            txn_id,
            state: txn.phase().into(),
            reason: txn.reason().map(str::to_owned),
            deadline_unix_ms,
            participants: txn.participants().to_vec(),
        }
    }

    pub fn of_record(record: TxnRecord) -> Self {
        TxnView {
            txn_id: record.txn_id,
            state: record.status.into(),
            reason: record.reason,
            deadline_unix_ms: record.deadline_unix_ms,
            participants: record.participants,
        }
    }
}
