//! What must hold in every state the checker reaches, and what it must be able to reach.

use stateright::Property;
use verdict::core::Outcome;

use crate::participant::{Choice, Local};
use crate::system::{Engine, Message, Request, State, Step, System};

/// Every property, safety and liveness first, then the reachability checks that show the
/// model is not vacuous.
pub fn all() -> Vec<Property<System>> {
    vec![
        Property::always(ATOMICITY, atomic),
        Property::always(COMMITTED_IS_FINAL, committed_is_final),
        Property::always(YES_HONOURED, commit_has_every_yes),
        Property::always(LIVENESS, finishes_once_faults_stop),
        Property::sometimes("committed everywhere", committed_everywhere),
        Property::sometimes("aborted everywhere", aborted_everywhere),
        Property::sometimes("a new process re-drives a commit", commit_redriven),
    ]
}

pub const ATOMICITY: &str = "atomicity";
pub const COMMITTED_IS_FINAL: &str = "a COMMITTED answer is never followed by an abort";
pub const YES_HONOURED: &str = "a commit has every participant's YES";
pub const LIVENESS: &str = "once faults stop, everything finishes";

/// The properties a seeded bug must break (one of them).
pub const SAFETY: [&str; 4] = [ATOMICITY, COMMITTED_IS_FINAL, YES_HONOURED, LIVENESS];

/// No participant commits while another aborts, and the application is told the truth.
fn atomic(_: &System, state: &State) -> bool {
    let effects: Vec<Outcome> = state
        .participants
        .iter()
        .filter_map(|p| p.effect())
        .collect();
    let told = &state.client.answers;
    let committed = effects.contains(&Outcome::Committed) || told.contains(&Outcome::Committed);
    let aborted = effects.contains(&Outcome::Aborted) || told.contains(&Outcome::Aborted);
    !(committed && aborted)
}

/// Once the application heard COMMITTED, no process decides abort and no record says so.
fn committed_is_final(_: &System, state: &State) -> bool {
    if !state.client.answers.contains(&Outcome::Committed) {
        return true;
    }
    let decided_abort = state
        .coordinators
        .iter()
        .filter_map(|c| c.txn())
        .any(|txn| txn.phase().outcome() == Some(Outcome::Aborted));
    let recorded_abort = [&state.log.written, &state.log.durable]
        .into_iter()
        .flatten()
        .any(|r| r.status.outcome() == Some(Outcome::Aborted));
    !decided_abort && !recorded_abort
}

/// Anything committed — at a participant, to the application, in the log — had every
/// participant's YES (or READ_ONLY), and each YES still stands.
fn commit_has_every_yes(_: &System, state: &State) -> bool {
    let committed = state.client.answers.contains(&Outcome::Committed)
        || state
            .participants
            .iter()
            .any(|p| p.local == Local::Committed)
        || state.log.durable.as_ref().and_then(|r| r.status.outcome()) == Some(Outcome::Committed);
    !committed
        || state.participants.iter().all(|p| {
            matches!(
                p.local,
                Local::Prepared | Local::Committed | Local::ReadOnly
            )
        })
}

/// From this state, with no more faults and every process eventually doing what it may
/// (messages arrive, crashed processes restart, timeouts fire), every participant ends
/// committed or aborted, the coordinator forgets the transaction, and an application that
/// asked Commit hears an outcome — with every safety property kept on the way.
fn finishes_once_faults_stop(system: &System, state: &State) -> bool {
    settle(system, state, |_, _| {}).is_ok()
}

/// The most steps a fault-free run may take to finish.
const SETTLE_STEPS: usize = 400;

/// Runs `state` on with no faults, always taking the step a fair scheduler would, until
/// nothing is left to do, showing `seen` each step; `Err` says why it did not finish.
pub fn settle(
    system: &System,
    state: &State,
    mut seen: impl FnMut(&Step, &State),
) -> Result<(), String> {
    let mut state = state.clone();
    for _ in 0..SETTLE_STEPS {
        let Some(step) = fair_step(system, &state) else {
            return finished(&state);
        };
        state = system.next(&state, step.clone());
        seen(&step, &state);
        let safe = [
            (ATOMICITY, atomic as fn(&System, &State) -> bool),
            (COMMITTED_IS_FINAL, committed_is_final),
            (YES_HONOURED, commit_has_every_yes),
        ];
        if let Some((name, _)) = safe.iter().find(|(_, holds)| !holds(system, &state)) {
            return Err(format!("{name} breaks"));
        }
    }
    Err(format!("still running after {SETTLE_STEPS} steps"))
}

fn finished(state: &State) -> Result<(), String> {
    if let Some(p) = state.participants.iter().position(|p| !p.is_settled()) {
        return Err(format!(
            "participant p{p} is left {:?}",
            state.participants[p].local
        ));
    }
    if state.coordinators.iter().any(|c| c.txn().is_some()) {
        return Err("a coordinator still holds the transaction".into());
    }
    if state.client.asked == Some(Request::Commit) && state.client.answers.is_empty() {
        return Err("the application's Commit is never answered".into());
    }
    Ok(())
}

/// The step a fault-free world takes next: recoveries and the log's writes first, then what
/// is in flight, then
/// timeouts, then retries — each only when nothing before it is left, so that no retry
/// starves the timeouts that move the transaction on.
fn fair_step(system: &System, state: &State) -> Option<Step> {
    let mut enabled = Vec::new();
    system.steps(state, &mut enabled);
    let first = |wanted: &dyn Fn(&Step) -> bool| enabled.iter().find(|s| wanted(s)).cloned();
    first(&|s| {
        matches!(
            s,
            Step::ParticipantRestarts(_)
                | Step::CoordinatorRestarts
                | Step::StepsDown { .. }
                | Step::FirstEntryCommits { keeps: true }
                | Step::Forced { .. }
                | Step::LogSettles
        )
    })
    .or_else(|| first(&|s| arrives(state, s)))
    .or_else(|| {
        first(&|s| {
            matches!(
                s,
                Step::DeliveryFails { .. }
                    | Step::PrepareTimesOut { .. }
                    | Step::DeadlinePasses { .. }
            )
        })
    })
    .or_else(|| first(&|s| matches!(s, Step::RetryCommit | Step::ParticipantResolves(_))))
    .or_else(|| first(&|s| matches!(s, Step::ParticipantDiscards(_))))
}

/// The oldest message's plain arrival, at the newest process for a request; a vote is YES.
fn arrives(state: &State, step: &Step) -> bool {
    let Step::Receive {
        index,
        message,
        at,
        duplicate: false,
        vote,
    } = step
    else {
        return false;
    };
    let to_any = matches!(
        message,
        Message::Ask(_) | Message::Resolve { .. } | Message::Enlist { .. }
    );
    let newest = state.coordinators.len() - 1;
    Some(*index) == state.oldest_deliverable()
        && (!to_any || *at == newest)
        && vote.is_none_or(|v| v == Choice::Yes)
}

fn committed_everywhere(_: &System, state: &State) -> bool {
    state
        .participants
        .iter()
        .all(|p| matches!(p.local, Local::Committed | Local::ReadOnly))
        && state.client.answers.contains(&Outcome::Committed)
}

fn aborted_everywhere(_: &System, state: &State) -> bool {
    state.participants.iter().any(|p| p.local == Local::Aborted)
        && state
            .participants
            .iter()
            .all(|p| p.effect() == Some(Outcome::Aborted))
}

fn commit_redriven(_: &System, state: &State) -> bool {
    state.coordinators.len() > 1
        && matches!(
            state.coordinators.last().map(|c| &c.engine),
            Some(Engine::Running { txn: Some(txn), .. })
                if txn.phase().outcome() == Some(Outcome::Committed)
        )
}
