//! A participant as the participant contract says it behaves (the SDK runtime's table): what
//! it journals, what it answers, what a crash takes from it.

use verdict::core::{Outcome, Vote};

/// A vote, as it travels (a NO's reason does not matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Choice {
    Yes,
    No,
    ReadOnly,
}

impl From<Choice> for Vote {
    fn from(choice: Choice) -> Vote {
        match choice {
            Choice::Yes => Vote::Yes,
            Choice::No => Vote::No("voted no".into()),
            Choice::ReadOnly => Vote::ReadOnly,
        }
    }
}

/// Where the transaction is at one participant. All but `Working` are journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Local {
    /// Work staged, in memory only.
    Working,
    /// The work is gone — discarded at its deadline, or lost in a crash — and nothing was
    /// journaled: a Prepare is answered NO.
    Lost,
    VotedNo,
    /// Voted YES: the work is prepared and the YES journaled, forced.
    Prepared,
    ReadOnly,
    Committed,
    Aborted,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Participant {
    pub local: Local,
    pub up: bool,
    /// Its staging call's Enlist was answered (the application may commit once all are).
    pub enlisted: bool,
}

impl Participant {
    pub fn working() -> Self {
        Participant {
            local: Local::Working,
            up: true,
            enlisted: false,
        }
    }

    /// Whether a Prepare finds work to vote on.
    pub fn holds_work(&self) -> bool {
        self.up && self.local == Local::Working
    }

    /// The effect the transaction had here: committed, aborted (its work undone or never
    /// applied), or none yet (or none at all: read-only).
    pub fn effect(&self) -> Option<Outcome> {
        match self.local {
            Local::Committed => Some(Outcome::Committed),
            Local::Lost | Local::VotedNo | Local::Aborted => Some(Outcome::Aborted),
            Local::Working | Local::Prepared | Local::ReadOnly => None,
        }
    }

    /// Whether nothing more happens here: not holding work, not in doubt.
    pub fn is_settled(&self) -> bool {
        !matches!(self.local, Local::Working | Local::Prepared)
    }

    /// Answers Prepare (`vote` is its choice when it holds work); `None` when down.
    pub fn prepare(&mut self, vote: Option<Choice>) -> Option<Choice> {
        if !self.up {
            return None;
        }
        let answer = match self.local {
            Local::Working => vote.expect("a participant holding work chooses its vote"),
            Local::Prepared | Local::Committed => Choice::Yes,
            Local::ReadOnly => Choice::ReadOnly,
            Local::Lost | Local::VotedNo | Local::Aborted => Choice::No,
        };
        if self.local == Local::Working || self.local == Local::Lost {
            self.local = match answer {
                Choice::Yes => Local::Prepared,
                Choice::No => Local::VotedNo,
                Choice::ReadOnly => Local::ReadOnly,
            };
        }
        Some(answer)
    }

    /// Applies a decision (phase 2, or `Resolve`'s answer); true if it acknowledges. A commit
    /// of work never prepared, and an abort of a commit, are refused (`FAILED_PRECONDITION`).
    pub fn decide(&mut self, outcome: Outcome) -> bool {
        if !self.up {
            return false;
        }
        match (outcome, self.local) {
            (Outcome::Committed, Local::Prepared) => self.local = Local::Committed,
            (Outcome::Committed, Local::Committed | Local::ReadOnly) => {}
            (Outcome::Committed, _) => return false,
            (Outcome::Aborted, Local::Committed) => return false,
            (Outcome::Aborted, _) => self.local = Local::Aborted,
        }
        true
    }

    /// Loses what is only in memory (`forgets_yes`: and, wrongly, its YES too).
    pub fn crash(&mut self, forgets_yes: bool) {
        self.up = false;
        if self.local == Local::Working || (forgets_yes && self.local == Local::Prepared) {
            self.local = Local::Lost;
        }
    }
}
