//! What the log keeps of a transaction's history beyond the protocol state: when it passed each
//! milestone, who began it (and by which Submit request), and how an operator settled it by
//! hand. Operators read it as a timeline; the protocol never does. Times are ms since the Unix
//! epoch, 0 for not (yet); when the transaction began is in its id.

use crate::core::Outcome;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The identity that began it, when the coordinator authenticates callers: an
    /// application may act only on the transactions it began.
    pub begun_by: Option<String>,
    /// The client's request id when it was begun by Submit: a retried Submit finds it by this.
    pub request_id: Option<String>,
    pub commit_requested_unix_ms: u64,
    pub decided_unix_ms: u64,
    /// Per participant, in enlistment order.
    pub participants: Vec<ParticipantTimes>,
    pub settlement: Option<Settlement>,
}

/// When one participant's vote came, and when it acknowledged the decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParticipantTimes {
    pub voted_unix_ms: u64,
    pub acked_unix_ms: u64,
}

/// An operator's settlement by hand: what, who, why, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: Outcome,
    pub by: String,
    pub reason: String,
    pub at_unix_ms: u64,
}

impl Timeline {
    /// Participant `index`'s times, made room for (participants enlist over time).
    pub fn participant(&mut self, index: usize) -> &mut ParticipantTimes {
        if self.participants.len() <= index {
            self.participants
                .resize(index + 1, ParticipantTimes::default());
        }
        &mut self.participants[index]
    }
}
