//! What callers see of a transaction, whether it is in memory or only in the log.

use crate::core::{Participant, Phase, Transaction, TxnId, Vote};
use crate::log::{Status, Timeline, TxnRecord};

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
    /// When phase 2 finished; 0 before.
    pub finished_unix_ms: u64,
    pub participants: Vec<Participant>,
    pub timeline: Timeline,
}

impl TxnView {
    pub fn of_transaction(
        txn_id: TxnId,
        deadline_unix_ms: u64,
        txn: &Transaction,
        timeline: Timeline,
    ) -> Self {
        TxnView {
            txn_id,
            state: txn.phase().into(),
            reason: txn.reason().map(str::to_owned),
            deadline_unix_ms,
            finished_unix_ms: 0,
            participants: txn.participants().to_vec(),
            timeline,
        }
    }

    pub fn of_record(record: TxnRecord) -> Self {
        TxnView {
            txn_id: record.txn_id,
            state: record.status.into(),
            reason: record.reason,
            deadline_unix_ms: record.deadline_unix_ms,
            finished_unix_ms: record.finished_unix_ms,
            participants: record.participants,
            timeline: record.timeline,
        }
    }

    /// What happened to the transaction, oldest first, in words: the operator's timeline.
    pub fn events(&self) -> Vec<(u64, String)> {
        let timeline = &self.timeline;
        let decision = match self.state {
            State::Committing | State::Committed => "COMMIT",
            State::Aborting | State::Aborted => "ABORT",
            // Decided to commit, the decision being made durable.
            State::Active | State::Preparing => "COMMIT (being made durable)",
        };
        // In the order things happen, so that a stable sort keeps it for equal times.
        let mut events = vec![
            (
                self.txn_id.begun_unix_ms(),
                begun(timeline.begun_by.as_deref()),
            ),
            (timeline.commit_requested_unix_ms, "commit requested".into()),
        ];
        let participants = || self.participants.iter().zip(&timeline.participants);
        for (p, times) in participants() {
            let vote = match &p.vote {
                Some(Vote::Yes) => "YES".to_string(),
                Some(Vote::No(why)) => format!("NO: {why}"),
                Some(Vote::ReadOnly) => "READ-ONLY".into(),
                None => "(lost)".into(),
            };
            events.push((times.voted_unix_ms, format!("{:?} voted {vote}", p.name)));
        }
        events.push((timeline.decided_unix_ms, format!("decided {decision}")));
        for (p, times) in participants() {
            let acked = format!("{:?} acknowledged the {decision}", p.name);
            events.push((times.acked_unix_ms, acked));
        }
        if let Some(s) = &timeline.settlement {
            let outcome = match s.outcome {
                crate::core::Outcome::Committed => "COMMIT",
                crate::core::Outcome::Aborted => "ABORT",
            };
            let text = format!("resolved by hand as {outcome} by {}: {}", s.by, s.reason);
            events.push((s.at_unix_ms, text));
        }
        events.push((self.finished_unix_ms, "finished".into()));
        events.retain(|(at, _)| *at > 0);
        events.sort_by_key(|(at, _)| *at);
        events
    }
}

fn begun(by: Option<&str>) -> String {
    match by {
        Some(identity) => format!("begun by {identity}"),
        None => "begun".into(),
    }
}
