//! One transaction's state machine.
//!
//! Life of a transaction (presumed abort):
//!
//! ```text
//!  Active ──Commit──► Preparing ──all YES/READ_ONLY──► Deciding ──Persisted──► Committing ──acks──► Committed
//!    │                   │ NO, no vote, deadline, Abort
//!    └───────────────────┴──────────────────────────► Aborting ──acks (or gave up)──► Aborted
//! ```
//!
//! Only the commit decision is forced to the log. Abort decisions are recorded without forcing:
//! a transaction with no commit record is aborted, whatever else the log holds.

use std::fmt;

pub use verdict_sdk::{Outcome, Vote};

/// Where a transaction is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Begun; participants may enlist.
    Active,
    /// Prepares sent; collecting votes.
    Preparing,
    /// Every vote is YES or READ_ONLY; the commit decision is being forced to the log.
    Deciding,
    /// The commit decision is durable; delivering it.
    Committing,
    /// Decided abort; delivering it.
    Aborting,
    /// Every YES voter acknowledged the commit.
    Committed,
    /// Every participant that could hold work was told of the abort (or gave up on, see
    /// [`Delivery::GaveUp`]).
    Aborted,
}

impl Phase {
    /// The decision, once there is one.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Phase::Committing | Phase::Committed => Some(Outcome::Committed),
            Phase::Aborting | Phase::Aborted => Some(Outcome::Aborted),
            Phase::Active | Phase::Preparing | Phase::Deciding => None,
        }
    }

    /// True once phase 2 is over: nothing more will happen to the transaction.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Committed | Phase::Aborted)
    }
}

/// How the decision reaches one participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// The participant takes no part in phase 2 (voted NO or READ_ONLY, or nothing decided).
    NotNeeded,
    /// Must be delivered until acknowledged: the participant voted YES.
    Required,
    /// May hold staged or prepared work we never heard about (no vote, or never asked): told a
    /// bounded number of times. Correct without it: such a participant that is prepared asks
    /// `Resolve`, and presumed abort answers ABORTED.
    BestEffort,
    /// The participant acknowledged.
    Acked,
    /// Best-effort delivery ran out of attempts.
    GaveUp,
    /// An operator settled the transaction by hand while the decision was still owed here (the
    /// participant gone for good): it is no longer sent.
    SettledByHand,
}

impl Delivery {
    fn is_pending(self) -> bool {
        matches!(self, Delivery::Required | Delivery::BestEffort)
    }
}

/// One participant of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Participant {
    /// Unique within the transaction.
    pub name: String,
    /// Its `verdict.v1.Participant` endpoint.
    pub endpoint: String,
    /// Its vote, once received.
    pub vote: Option<Vote>,
    /// How the decision reaches it.
    pub delivery: Delivery,
    /// How many times the decision was sent to it.
    pub attempts: u32,
    /// The last failure talking to it.
    pub last_error: Option<String>,
}

impl Participant {
    /// A participant as enlisted: no vote, nothing to deliver yet.
    pub fn new(name: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Participant {
            name: name.into(),
            endpoint: endpoint.into(),
            vote: None,
            delivery: Delivery::NotNeeded,
            attempts: 0,
            last_error: None,
        }
    }
}

/// Limits the driver configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Most participants one transaction may have.
    pub max_participants: usize,
    /// How many times an abort is sent to a participant whose vote we do not know.
    pub best_effort_attempts: u32,
}

/// Something that happened to a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A participant asks to join.
    Enlist { name: String, endpoint: String },
    /// The application asks to commit.
    Commit,
    /// The application (or an operator) asks to abort.
    Abort { reason: String },
    /// The transaction's deadline passed.
    DeadlinePassed,
    /// Participant `participant` answered Prepare, or could not (`Err`: timeout, unreachable,
    /// error).
    Voted {
        participant: usize,
        vote: Result<Vote, String>,
    },
    /// The commit decision asked for by [`Action::Persist`] is durable.
    Persisted,
    /// Participant `participant` acknowledged the decision, or the send failed.
    Delivered {
        participant: usize,
        result: Result<(), String>,
    },
    /// An operator settles the transaction by hand, for what no protocol step can settle (a
    /// participant gone for good): an undecided transaction is decided `outcome` — a commit
    /// only with every participant's YES — and a decided one stops being delivered to the
    /// participants still owed it. Never contradicts a decision.
    SettleByHand { outcome: Outcome, reason: String },
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record the transaction's current state in the log, not forced (it was enlisted into, or
    /// aborted).
    Record,
    /// Send Prepare to participant `participant`.
    Prepare { participant: usize },
    /// Force the commit decision to the log, then report [`Event::Persisted`].
    Persist,
    /// Send the decision to participant `participant`, after the backoff for send number
    /// `attempt` (0 is the first send), then report [`Event::Delivered`].
    Deliver {
        participant: usize,
        outcome: Outcome,
        attempt: u32,
    },
    /// Phase 2 is over: write the END record and forget the transaction.
    Finish,
}

/// Why a request was refused. The transaction is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Enlist after Commit or Abort started.
    NotActive(Phase),
    /// The name is taken by a participant with another endpoint.
    NameTaken { name: String, endpoint: String },
    /// Enlist beyond [`Policy::max_participants`].
    TooManyParticipants(usize),
    /// Commit of a transaction aborted before Commit was asked (by Abort or its deadline).
    AbortedBeforeCommit(String),
    /// Abort while the commit decision is being made durable.
    Deciding,
    /// Abort of a committed transaction.
    Committed,
    /// A commit by hand of an aborted transaction, with why it aborted.
    Aborted(String),
    /// A commit by hand without every participant's YES: these participants voted otherwise,
    /// or not yet.
    NotAllYes(Vec<String>),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotActive(phase) => write!(
                f,
                "the transaction is no longer active (it is {phase:?}): participants can only \
                 enlist before Commit or Abort; begin a new transaction"
            ),
            Rejection::NameTaken { name, endpoint } => write!(
                f,
                "participant {name:?} is already enlisted with endpoint {endpoint:?}; \
                 use another name for another endpoint"
            ),
            Rejection::TooManyParticipants(max) => write!(
                f,
                "the transaction already has the maximum of {max} participants"
            ),
            Rejection::AbortedBeforeCommit(reason) => write!(
                f,
                "the transaction was aborted before Commit ({reason}); begin a new transaction"
            ),
            Rejection::Deciding => write!(
                f,
                "the commit decision is being made durable; it can no longer be aborted \
                 (call Commit or GetTransaction for the outcome)"
            ),
            Rejection::Committed => {
                write!(
                    f,
                    "the transaction is committed; it can no longer be aborted"
                )
            }
            Rejection::Aborted(reason) => write!(
                f,
                "the transaction is aborted ({reason}); it can no longer be committed"
            ),
            Rejection::NotAllYes(names) => write!(
                f,
                "a commit needs every participant's YES, and {} did not vote YES (NO, or no vote \
                 yet): settle it as an abort",
                names.join(", ")
            ),
        }
    }
}

/// One transaction's protocol state. See the module doc for its life.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    participants: Vec<Participant>,
    phase: Phase,
    reason: Option<String>,
    commit_requested: bool,
    policy: Policy,
}

impl Transaction {
    /// A new, active transaction with no participants.
    pub fn new(policy: Policy) -> Self {
        Transaction {
            participants: Vec::new(),
            phase: Phase::Active,
            reason: None,
            commit_requested: false,
            policy,
        }
    }

    /// A transaction read back from the log after a restart, with the actions that finish it:
    /// a durable commit decision is delivered again; anything else is aborted.
    pub fn recover(
        participants: Vec<Participant>,
        decision: Option<Outcome>,
        reason: Option<String>,
        commit_requested: bool,
        policy: Policy,
    ) -> (Self, Vec<Action>) {
        let mut txn = Transaction {
            participants,
            phase: Phase::Active,
            reason,
            commit_requested,
            policy,
        };
        let actions = match decision {
            Some(Outcome::Committed) => {
                txn.phase = Phase::Deciding;
                txn.persisted()
            }
            Some(Outcome::Aborted) => {
                let reason = txn.reason.clone().unwrap_or_default();
                txn.abort(reason)
            }
            None => {
                // A Commit may have been under way when the coordinator went down: the client
                // that retries it hears this abort as its outcome, not a refusal.
                txn.commit_requested = true;
                txn.abort(
                    "the coordinator restarted (or its leader changed) before deciding".into(),
                )
            }
        };
        (txn, actions)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    /// Why the transaction aborted.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Whether an abort is the answer to a Commit: the application asked to commit, or may have
    /// (undecided when the coordinator went down).
    pub fn commit_requested(&self) -> bool {
        self.commit_requested
    }

    /// Feeds one event; returns what the driver must do, or why a request is refused (then the
    /// transaction is unchanged). Duplicate and late events are accepted and change nothing.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Action>, Rejection> {
        match event {
            Event::Enlist { name, endpoint } => self.enlist(name, endpoint),
            Event::Commit => self.request_commit(),
            Event::Abort { reason } => self.request_abort(reason),
            Event::DeadlinePassed => Ok(self.deadline_passed()),
            Event::Voted { participant, vote } => Ok(self.voted(participant, vote)),
            Event::Persisted if self.phase == Phase::Deciding => Ok(self.persisted()),
            Event::Persisted => Ok(Vec::new()),
            Event::Delivered {
                participant,
                result,
            } => Ok(self.delivered(participant, result)),
            Event::SettleByHand { outcome, reason } => self.settle_by_hand(outcome, reason),
        }
    }

    fn enlist(&mut self, name: String, endpoint: String) -> Result<Vec<Action>, Rejection> {
        if self.phase != Phase::Active {
            return Err(Rejection::NotActive(self.phase));
        }
        if let Some(existing) = self.participants.iter().find(|p| p.name == name) {
            return if existing.endpoint == endpoint {
                Ok(Vec::new())
            } else {
                Err(Rejection::NameTaken {
                    name,
                    endpoint: existing.endpoint.clone(),
                })
            };
        }
        if self.participants.len() >= self.policy.max_participants {
            return Err(Rejection::TooManyParticipants(self.policy.max_participants));
        }
        self.participants.push(Participant::new(name, endpoint));
        Ok(vec![Action::Record])
    }

    fn request_commit(&mut self) -> Result<Vec<Action>, Rejection> {
        match self.phase {
            Phase::Active => {
                self.commit_requested = true;
                if self.participants.is_empty() {
                    self.phase = Phase::Deciding;
                    return Ok(vec![Action::Persist]);
                }
                self.phase = Phase::Preparing;
                Ok((0..self.participants.len())
                    .map(|participant| Action::Prepare { participant })
                    .collect())
            }
            Phase::Aborting | Phase::Aborted if !self.commit_requested => Err(
                Rejection::AbortedBeforeCommit(self.reason.clone().unwrap_or_default()),
            ),
            _ => Ok(Vec::new()),
        }
    }

    fn request_abort(&mut self, reason: String) -> Result<Vec<Action>, Rejection> {
        match self.phase {
            Phase::Active | Phase::Preparing => Ok(self.abort(reason)),
            Phase::Deciding => Err(Rejection::Deciding),
            Phase::Committing | Phase::Committed => Err(Rejection::Committed),
            Phase::Aborting | Phase::Aborted => Ok(Vec::new()),
        }
    }

    fn settle_by_hand(
        &mut self,
        outcome: Outcome,
        reason: String,
    ) -> Result<Vec<Action>, Rejection> {
        match (self.phase, outcome) {
            (Phase::Active | Phase::Preparing, Outcome::Aborted) => {
                Ok(self.abort(format!("settled by hand: {reason}")))
            }
            (Phase::Active | Phase::Preparing, Outcome::Committed) => {
                let not_yes: Vec<String> = self
                    .participants
                    .iter()
                    .filter(|p| !matches!(p.vote, Some(Vote::Yes | Vote::ReadOnly)))
                    .map(|p| p.name.clone())
                    .collect();
                if !not_yes.is_empty() {
                    return Err(Rejection::NotAllYes(not_yes));
                }
                self.commit_requested = true;
                self.phase = Phase::Deciding;
                Ok(vec![Action::Persist])
            }
            (Phase::Deciding, Outcome::Committed) => Ok(Vec::new()),
            (Phase::Deciding, Outcome::Aborted) => Err(Rejection::Deciding),
            (Phase::Committing | Phase::Aborting, _) if self.phase.outcome() == Some(outcome) => {
                for participant in &mut self.participants {
                    if participant.delivery.is_pending() {
                        participant.delivery = Delivery::SettledByHand;
                    }
                }
                Ok(self.finish())
            }
            (Phase::Committed, Outcome::Committed) | (Phase::Aborted, Outcome::Aborted) => {
                Ok(Vec::new())
            }
            (Phase::Committing | Phase::Committed, _) => Err(Rejection::Committed),
            (Phase::Aborting | Phase::Aborted, _) => {
                Err(Rejection::Aborted(self.reason.clone().unwrap_or_default()))
            }
        }
    }

    fn deadline_passed(&mut self) -> Vec<Action> {
        match self.phase {
            Phase::Active | Phase::Preparing => {
                self.abort("the transaction's deadline passed before it committed".into())
            }
            _ => Vec::new(),
        }
    }

    fn voted(&mut self, index: usize, vote: Result<Vote, String>) -> Vec<Action> {
        let Some(participant) = self.participants.get_mut(index) else {
            return Vec::new();
        };
        if participant.vote.is_some() {
            return Vec::new();
        }
        if self.phase != Phase::Preparing {
            // A late vote changes nothing, but an operator should see it.
            participant.vote = vote.ok();
            return Vec::new();
        }
        let name = participant.name.clone();
        match vote {
            Ok(Vote::No(why)) => {
                participant.vote = Some(Vote::No(why.clone()));
                self.abort(format!("participant {name:?} voted no: {why}"))
            }
            Err(error) => {
                participant.last_error = Some(error.clone());
                self.abort(format!("participant {name:?} did not vote: {error}"))
            }
            Ok(vote) => {
                participant.vote = Some(vote);
                if self.participants.iter().all(|p| p.vote.is_some()) {
                    self.phase = Phase::Deciding;
                    vec![Action::Persist]
                } else {
                    Vec::new()
                }
            }
        }
    }

    fn persisted(&mut self) -> Vec<Action> {
        self.phase = Phase::Committing;
        for participant in &mut self.participants {
            if participant.vote == Some(Vote::Yes) {
                participant.delivery = Delivery::Required;
            }
        }
        self.start_delivery(Outcome::Committed)
    }

    /// Decides abort: every participant that may hold work is told.
    fn abort(&mut self, reason: String) -> Vec<Action> {
        self.phase = Phase::Aborting;
        self.reason = Some(reason);
        for participant in &mut self.participants {
            participant.delivery = match participant.vote {
                Some(Vote::Yes) => Delivery::Required,
                Some(Vote::No(_)) | Some(Vote::ReadOnly) => Delivery::NotNeeded,
                None => Delivery::BestEffort,
            };
        }
        let mut actions = vec![Action::Record];
        actions.extend(self.start_delivery(Outcome::Aborted));
        actions
    }

    fn start_delivery(&mut self, outcome: Outcome) -> Vec<Action> {
        let actions: Vec<Action> = self
            .participants
            .iter()
            .enumerate()
            .filter(|(_, p)| p.delivery.is_pending())
            .map(|(participant, _)| Action::Deliver {
                participant,
                outcome,
                attempt: 0,
            })
            .collect();
        if actions.is_empty() {
            return self.finish();
        }
        actions
    }

    fn delivered(&mut self, index: usize, result: Result<(), String>) -> Vec<Action> {
        let Some(outcome) = self.phase.outcome().filter(|_| !self.phase.is_finished()) else {
            return Vec::new();
        };
        let best_effort_attempts = self.policy.best_effort_attempts;
        let Some(participant) = self
            .participants
            .get_mut(index)
            .filter(|p| p.delivery.is_pending())
        else {
            return Vec::new();
        };
        participant.attempts += 1;
        match result {
            Ok(()) => participant.delivery = Delivery::Acked,
            Err(error) => {
                participant.last_error = Some(error);
                let exhausted = participant.delivery == Delivery::BestEffort
                    && participant.attempts >= best_effort_attempts;
                if !exhausted {
                    return vec![Action::Deliver {
                        participant: index,
                        outcome,
                        attempt: participant.attempts,
                    }];
                }
                participant.delivery = Delivery::GaveUp;
            }
        }
        if self.participants.iter().any(|p| p.delivery.is_pending()) {
            return Vec::new();
        }
        self.finish()
    }

    fn finish(&mut self) -> Vec<Action> {
        self.phase = match self.phase {
            Phase::Committing => Phase::Committed,
            _ => Phase::Aborted,
        };
        vec![Action::Finish]
    }
}

#[cfg(test)]
mod tests;
