//! What a participant answers to Prepare, and what the coordinator decides.

/// A participant's vote on Prepare.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Vote {
    /// Prepared: its changes are durable and it will follow the decision.
    Yes,
    /// Cannot commit, with the participant's reason.
    No(String),
    /// Nothing to commit: takes no part in phase 2.
    ReadOnly,
}

/// The decision on a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Committed,
    Aborted,
}
