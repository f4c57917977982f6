//! Counterexamples in the protocol's own words: each step, then the state it leads to.

use std::fmt::{self, Display, Formatter};

use verdict::core::Outcome;

use crate::participant::{Choice, Participant};
use crate::properties::settle;
use crate::system::{Coordinator, Engine, Message, Record, State, Step, System};

/// A path the checker found, one line per step, each followed by the state after it.
pub fn render(system: &System, path: Vec<(State, Option<Step>)>) -> String {
    let mut out = String::new();
    if let Some((first, _)) = path.first() {
        out += &format!("    start: {}\n", Summary(first));
    }
    for (n, pair) in path.windows(2).enumerate() {
        let step = pair[0]
            .1
            .as_ref()
            .expect("every state but the last has its step");
        out += &format!("{:>4}. {}\n", n + 1, Described(step));
        out += &format!("        → {}\n", Summary(&pair[1].0));
    }
    if let Some((last, _)) = path.last() {
        out += &continuation(system, last);
    }
    out
}

/// What happens from `state` on with no more faults, when that breaks a property.
fn continuation(system: &System, state: &State) -> String {
    let mut steps = Vec::new();
    let Err(why) = settle(system, state, |step, next| {
        steps.push(format!("{}\n        → {}", Described(step), Summary(next)))
    }) else {
        return String::new();
    };
    let mut out = format!("    and from there, with no more faults, {why}:\n");
    for (n, step) in steps.iter().enumerate().take(SHOWN) {
        out += &format!("    +{:<3} {step}\n", n + 1);
    }
    if steps.len() > SHOWN {
        out += &format!("    … and {} more steps\n", steps.len() - SHOWN);
    }
    out
}

/// How many steps of a fault-free continuation a counterexample shows.
const SHOWN: usize = 24;

struct Described<'a>(&'a Step);

impl Display for Described<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Step::Ask(request) => write!(f, "the application asks {request:?}"),
            Step::RetryCommit => write!(f, "the application, with no answer, asks Commit again"),
            Step::Receive {
                index,
                message,
                at,
                vote,
                duplicate,
            } => {
                write!(f, "{}", Arrival(message, *at))?;
                if *index > 0 {
                    write!(f, ", overtaking {index} sent before it")?;
                }
                if let Some(vote) = vote {
                    write!(f, ", and votes {}", VoteName(*vote))?;
                }
                match duplicate {
                    true => write!(f, " (a duplicate stays in flight)"),
                    false => Ok(()),
                }
            }
            Step::Lose { message, .. } => {
                write!(f, "the network loses this: {}", Arrival(message, 0))
            }
            Step::Forced { at } => write!(
                f,
                "coordinator #{at}'s commit decision is durable, and it hears so"
            ),
            Step::LogSettles => write!(
                f,
                "the log makes the latest record durable on its own (flush, or a majority has it)"
            ),
            Step::PrepareTimesOut { at, participant } => write!(
                f,
                "coordinator #{at} times out waiting for p{participant}'s vote"
            ),
            Step::DeadlinePasses { at } => {
                write!(f, "the transaction's deadline passes at coordinator #{at}")
            }
            Step::DeliveryFails { at, participant } => write!(
                f,
                "coordinator #{at}'s delivery to p{participant} fails (timeout)"
            ),
            Step::CoordinatorCrashes => write!(
                f,
                "the coordinator crashes (power loss: what was not forced is gone)"
            ),
            Step::CoordinatorRestarts => write!(f, "the coordinator restarts and recovers"),
            Step::LeaderChanges => {
                write!(f, "a new leader is elected; the old one runs on, deposed")
            }
            Step::FirstEntryCommits { keeps } => write!(
                f,
                "the new leader's first entry commits, {} the old leader's last write; it recovers",
                if *keeps { "keeping" } else { "dropping" }
            ),
            Step::StepsDown { at } => write!(f, "coordinator #{at} steps down"),
            Step::ParticipantCrashes(p) => write!(f, "p{p} crashes"),
            Step::ParticipantRestarts(p) => write!(f, "p{p} restarts"),
            Step::ParticipantDiscards(p) => {
                write!(f, "p{p} discards its staged work at its deadline")
            }
            Step::ParticipantResolves(p) => write!(f, "p{p}, in doubt, asks Resolve"),
        }
    }
}

/// A message arriving (for one to any coordinator process, at process `at`).
struct Arrival<'a>(&'a Message, usize);

impl Display for Arrival<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let at = self.1;
        match *self.0 {
            Message::Enlist { from } => write!(f, "coordinator #{at} receives p{from}'s Enlist"),
            Message::Enlisted { to } => write!(f, "p{to} hears it is enlisted"),
            Message::Ask(request) => write!(f, "coordinator #{at} receives {request:?}"),
            Message::Answer(outcome) => write!(f, "the application hears {}", Said(outcome)),
            Message::Prepare { to, from } => {
                write!(f, "p{to} receives Prepare from coordinator #{from}")
            }
            Message::Voted { from, to, vote } => write!(
                f,
                "coordinator #{to} receives p{from}'s vote {}",
                VoteName(vote)
            ),
            Message::Decision { to, from, outcome } => write!(
                f,
                "p{to} receives {} from coordinator #{from}",
                Said(outcome)
            ),
            Message::Ack { from, to } => {
                write!(f, "coordinator #{to} receives p{from}'s acknowledgement")
            }
            Message::Resolve { from } => write!(f, "coordinator #{at} receives p{from}'s Resolve"),
            Message::Resolved { to, outcome } => {
                write!(f, "p{to} hears Resolve's answer {}", Said(outcome))
            }
        }
    }
}

/// One line: every coordinator process, the log, every participant, the application.
struct Summary<'a>(&'a State);

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let state = self.0;
        for (at, coordinator) in state.coordinators.iter().enumerate() {
            write!(f, "#{at} {} | ", Process(coordinator))?;
        }
        write!(
            f,
            "log written {} durable {} | ",
            Recorded(&state.log.written),
            Recorded(&state.log.durable)
        )?;
        for (p, participant) in state.participants.iter().enumerate() {
            write!(f, "p{p} {} ", Local(participant))?;
        }
        match state.client.asked {
            None => write!(f, "| app idle"),
            Some(request) => {
                let told: Vec<String> = state
                    .client
                    .answers
                    .iter()
                    .map(|o| Said(*o).to_string())
                    .collect();
                let told = if told.is_empty() {
                    "nothing".to_string()
                } else {
                    told.join(" and ")
                };
                write!(f, "| app asked {request:?}, told {told}")
            }
        }
    }
}

struct Process<'a>(&'a Coordinator);

impl Display for Process<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let coordinator = self.0;
        if coordinator.deposed {
            write!(f, "deposed ")?;
        }
        match &coordinator.engine {
            Engine::Down => write!(f, "down"),
            Engine::Starting => write!(f, "starting"),
            Engine::Running { txn: None, .. } => write!(f, "running, txn forgotten"),
            Engine::Running {
                txn: Some(txn),
                forcing,
            } => {
                write!(f, "{:?}", txn.phase())?;
                match forcing {
                    true => write!(f, " (forcing)"),
                    false => Ok(()),
                }
            }
        }
    }
}

struct Recorded<'a>(&'a Option<Record>);

impl Display for Recorded<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "none"),
            Some(record) => write!(f, "{:?}", record.status),
        }
    }
}

struct Local<'a>(&'a Participant);

impl Display for Local<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.local)?;
        match self.0.up {
            true => Ok(()),
            false => write!(f, "(down)"),
        }
    }
}

struct Said(Outcome);

impl Display for Said {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Outcome::Committed => write!(f, "COMMITTED"),
            Outcome::Aborted => write!(f, "ABORTED"),
        }
    }
}

struct VoteName(Choice);

impl Display for VoteName {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            Choice::Yes => write!(f, "YES"),
            Choice::No => write!(f, "NO"),
            Choice::ReadOnly => write!(f, "READ_ONLY"),
        }
    }
}
