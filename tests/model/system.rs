//! The system the checker explores: one transaction, its coordinator (one process restarted
//! after crashes, or a cluster whose leader changes), the decision log, the participants, the
//! application, and a network that loses, duplicates, delays and reorders every message.
//!
//! The coordinator's protocol is the production [`Transaction`] itself: every event a real
//! engine would feed it is fed here, and its actions are carried out as the engine carries them
//! out — the record each one writes is [`Status::written_by`], a `Resolve` from the log is
//! [`Status::resolved`], a restart or a new leader is [`Transaction::recover`]. What the model
//! writes by hand is only the engine's plumbing: messages instead of RPCs, a log of two
//! versions (written, durable) instead of sled or Raft.

use std::collections::BTreeSet;

use verdict::core::{Action, Delivery, Event, Outcome, Phase, Policy, Transaction, Vote};
use verdict::log::Status;

use crate::participant::{Choice, Local, Participant};

/// The coordinator's limits in the model: best-effort aborts are sent twice, as by default.
pub const POLICY: Policy = Policy {
    max_participants: 8,
    best_effort_attempts: 2,
};

/// How the coordinator is deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One process with its own log: a crash stops it, a restart recovers from what was forced.
    SingleNode,
    /// A replicated log: a new leader takes over while the old one may still run, deposed;
    /// "durable" means on a majority.
    Cluster,
}

/// A known-wrong variant, switched on to show that the checker finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The application hears COMMITTED once every vote is YES, before the decision is durable.
    AnswerBeforeDurable,
    /// `Resolve` and a retried Commit read a finished, retained commit as "no record": abort.
    PresumeAbortOverRetainedCommit,
    /// Phase 2's COMMIT is sent along with the decision record's write, not after it is durable.
    DeliverBeforeDecisionRecord,
    /// A participant does not force its YES: a crash forgets it.
    ParticipantForgetsYes,
    /// A new leader answers `Resolve` from its log before its first entry commits (before it
    /// holds every entry a majority had).
    ResolveBeforeFirstEntry,
}

impl Bug {
    pub const ALL: [Bug; 5] = [
        Bug::AnswerBeforeDurable,
        Bug::PresumeAbortOverRetainedCommit,
        Bug::DeliverBeforeDecisionRecord,
        Bug::ParticipantForgetsYes,
        Bug::ResolveBeforeFirstEntry,
    ];
}

/// What the checker explores.
#[derive(Clone, Debug)]
pub struct System {
    pub participants: usize,
    /// How many faults one run may suffer: lost or duplicated messages, failed deliveries,
    /// crashes, leader changes. Bounds the state space; timeouts and deadlines are free.
    pub faults: u8,
    pub topology: Topology,
    pub bug: Option<Bug>,
}

/// One state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Every coordinator process there has been, oldest first; the last one leads.
    pub coordinators: Vec<Coordinator>,
    pub log: Log,
    pub participants: Vec<Participant>,
    pub client: Client,
    /// Messages in flight, in the order sent (a copy of one in flight adds nothing).
    pub network: Vec<Message>,
    /// Faults suffered so far.
    pub faults: u8,
}

/// One coordinator process: a restart, or in a cluster each new leader, is a new one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Coordinator {
    pub engine: Engine,
    /// A newer leader took over: nothing it writes reaches a majority, and it cannot confirm
    /// that it leads (so it answers no read).
    pub deposed: bool,
    /// A Commit waits here for the decision.
    pub client_waiting: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Crashed, or stepped down.
    Down,
    /// Elected, its first entry not committed yet: it serves nothing.
    Starting,
    /// Serving: the transaction in memory (`None` once finished, or never known here), and
    /// whether the commit decision's force is under way.
    Running {
        txn: Option<Transaction>,
        forcing: bool,
    },
}

/// The decision log: the latest record written, and the latest that is durable (forced to
/// disk, or on a majority). A single node reads what was written; a cluster node reads what a
/// majority holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Log {
    pub written: Option<Record>,
    pub durable: Option<Record>,
}

/// The transaction's record, as the engine writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub status: Status,
    pub participants: Vec<verdict::core::Participant>,
    pub reason: Option<String>,
    pub commit_requested: bool,
}

/// The application.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Client {
    pub asked: Option<Request>,
    /// Every outcome it was told.
    pub answers: BTreeSet<Outcome>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    Commit,
    Abort,
}

/// A message in flight. Coordinators are numbered by process (see [`State::coordinators`]);
/// requests from the application and `Resolve` go to whichever process receives them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Message {
    /// A participant's staging call enlists it.
    Enlist {
        from: usize,
    },
    Enlisted {
        to: usize,
    },
    Ask(Request),
    Answer(Outcome),
    Prepare {
        to: usize,
        from: usize,
    },
    Voted {
        from: usize,
        to: usize,
        vote: Choice,
    },
    Decision {
        to: usize,
        from: usize,
        outcome: Outcome,
    },
    Ack {
        from: usize,
        to: usize,
    },
    Resolve {
        from: usize,
    },
    Resolved {
        to: usize,
        outcome: Outcome,
    },
}

/// One step of the system. Faults cost from the run's budget (see [`System::is_fault`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The application asks Commit, or Abort.
    Ask(Request),
    /// The application, with no answer yet, asks Commit again.
    RetryCommit,
    /// The message `index` in flight arrives (at coordinator process `at`, when it is for
    /// one); a participant that is asked to prepare votes `vote`. With `duplicate`, it stays
    /// in flight too.
    Receive {
        index: usize,
        message: Message,
        at: usize,
        vote: Option<Choice>,
        duplicate: bool,
    },
    Lose {
        index: usize,
        message: Message,
    },
    /// The force under way at process `at` completes: the decision is durable, and it is told.
    Forced {
        at: usize,
    },
    /// The log makes what was written durable on its own (a background flush; in a cluster, a
    /// majority has it before the leader hears).
    LogSettles,
    PrepareTimesOut {
        at: usize,
        participant: usize,
    },
    DeadlinePasses {
        at: usize,
    },
    DeliveryFails {
        at: usize,
        participant: usize,
    },
    CoordinatorCrashes,
    CoordinatorRestarts,
    /// A new leader is elected; the old one runs on, deposed.
    LeaderChanges,
    /// The new leader's first entry commits: what the old one wrote and a majority may have
    /// had is kept, or lost; then it recovers.
    FirstEntryCommits {
        keeps: bool,
    },
    StepsDown {
        at: usize,
    },
    ParticipantCrashes(usize),
    ParticipantRestarts(usize),
    /// A participant discards work it staged, at its deadline, before any Prepare.
    ParticipantDiscards(usize),
    /// A prepared participant asks `Resolve`.
    ParticipantResolves(usize),
}

impl System {
    /// A system of `participants` (at least 2) that may suffer `faults`, without bugs.
    pub fn new(topology: Topology, participants: usize, faults: u8) -> Self {
        System {
            participants,
            faults,
            topology,
            bug: None,
        }
    }

    pub fn with_bug(self, bug: Bug) -> Self {
        System {
            bug: Some(bug),
            ..self
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// Begun (its record written), every participant with work staged and its Enlist on the
    /// way, nothing asked yet.
    pub fn initial(&self) -> State {
        let mut state = State {
            coordinators: vec![Coordinator::new(Engine::Running {
                txn: Some(Transaction::new(POLICY)),
                forcing: false,
            })],
            log: Log::default(),
            participants: vec![Participant::working(); self.participants],
            client: Client::default(),
            network: (0..self.participants)
                .map(|from| Message::Enlist { from })
                .collect(),
            faults: 0,
        };
        let begun = Transaction::new(POLICY);
        state.log.written = Some(Record::of(&begun, Status::Active));
        state
    }

    /// The choices a participant has when asked to prepare work it holds: the first may
    /// vote NO, the last READ_ONLY, any YES.
    pub fn votes(&self, participant: usize) -> Vec<Choice> {
        let mut votes = vec![Choice::Yes];
        if participant == 0 {
            votes.push(Choice::No);
        }
        if participant + 1 == self.participants {
            votes.push(Choice::ReadOnly);
        }
        votes
    }

    /// Every step enabled in `state`.
    pub fn steps(&self, state: &State, steps: &mut Vec<Step>) {
        self.client_steps(state, steps);
        self.network_steps(state, steps);
        self.coordinator_steps(state, steps);
        self.participant_steps(state, steps);
        if state.faults >= self.faults {
            steps.retain(|step| !step.is_early(state));
        }
    }

    fn client_steps(&self, state: &State, steps: &mut Vec<Step>) {
        match state.client.asked {
            None => {
                // The application commits once every staging call returned: all enlisted.
                if state.participants.iter().all(|p| p.enlisted) {
                    steps.push(Step::Ask(Request::Commit));
                }
                steps.push(Step::Ask(Request::Abort));
            }
            Some(Request::Commit)
                if state.client.answers.is_empty()
                    && !state.network.contains(&Message::Ask(Request::Commit)) =>
            {
                steps.push(Step::RetryCommit)
            }
            Some(_) => {}
        }
    }

    fn network_steps(&self, state: &State, steps: &mut Vec<Step>) {
        let fault = state.faults < self.faults;
        let oldest = state.oldest_deliverable();
        for (index, message) in state.network.iter().enumerate() {
            if fault {
                let message = message.clone();
                steps.push(Step::Lose { index, message });
            }
            // The oldest message that can arrive does so for free; another one overtakes it.
            if Some(index) != oldest && !fault {
                continue;
            }
            let votes = match message {
                Message::Prepare { to, .. } if state.participants[*to].holds_work() => {
                    self.votes(*to).into_iter().map(Some).collect()
                }
                _ => vec![None],
            };
            let copies: &[bool] = if fault { &[false, true] } else { &[false] };
            for at in receivers(state, message) {
                for (&vote, &duplicate) in votes
                    .iter()
                    .flat_map(|v| copies.iter().map(move |d| (v, d)))
                {
                    let message = message.clone();
                    steps.push(Step::Receive {
                        index,
                        message,
                        at,
                        vote,
                        duplicate,
                    });
                }
            }
        }
    }

    fn coordinator_steps(&self, state: &State, steps: &mut Vec<Step>) {
        let fault = state.faults < self.faults;
        let newest = state.coordinators.len() - 1;
        for (at, coordinator) in state.coordinators.iter().enumerate() {
            match &coordinator.engine {
                Engine::Running { txn, forcing } => {
                    if *forcing && !coordinator.deposed {
                        steps.push(Step::Forced { at });
                    }
                    if let Some(txn) = txn {
                        timeouts(txn, at, steps);
                    }
                    if coordinator.deposed {
                        steps.push(Step::StepsDown { at });
                    }
                }
                Engine::Starting => {
                    steps.push(Step::FirstEntryCommits { keeps: true });
                    steps.push(Step::FirstEntryCommits { keeps: false });
                }
                Engine::Down => {}
            }
        }
        if state.log.written != state.log.durable {
            steps.push(Step::LogSettles);
        }
        let leading = state.coordinators[newest].engine != Engine::Down;
        match self.topology {
            Topology::SingleNode if leading && fault => steps.push(Step::CoordinatorCrashes),
            Topology::SingleNode if !leading => steps.push(Step::CoordinatorRestarts),
            Topology::Cluster if leading && fault => steps.push(Step::LeaderChanges),
            _ => {}
        }
    }

    fn participant_steps(&self, state: &State, steps: &mut Vec<Step>) {
        let fault = state.faults < self.faults;
        for (p, participant) in state.participants.iter().enumerate() {
            if !participant.up {
                steps.push(Step::ParticipantRestarts(p));
                continue;
            }
            if fault {
                steps.push(Step::ParticipantCrashes(p));
            }
            match participant.local {
                Local::Working => steps.push(Step::ParticipantDiscards(p)),
                Local::Prepared if !state.network.contains(&Message::Resolve { from: p }) => {
                    steps.push(Step::ParticipantResolves(p))
                }
                _ => {}
            }
        }
    }

    /// The state after `step`.
    pub fn next(&self, state: &State, step: Step) -> State {
        let mut next = state.clone();
        self.take(&mut next, step);
        next
    }

    fn take(&self, state: &mut State, step: Step) {
        if self.is_fault(state, &step) {
            state.faults += 1;
        }
        match step {
            Step::Ask(request) => {
                state.client.asked = Some(request);
                send(&mut state.network, Message::Ask(request));
            }
            Step::RetryCommit => {
                send(&mut state.network, Message::Ask(Request::Commit));
            }
            Step::Receive {
                index,
                message,
                at,
                vote,
                duplicate,
            } => {
                if !duplicate {
                    state.network.remove(index);
                }
                self.receive(state, message, at, vote);
            }
            Step::Lose { index, .. } => {
                state.network.remove(index);
            }
            Step::Forced { at } => {
                state.log.durable = state.log.written.clone();
                if let Engine::Running { forcing, .. } = &mut state.coordinators[at].engine {
                    *forcing = false;
                }
                self.feed(state, at, Event::Persisted);
            }
            Step::LogSettles => state.log.durable = state.log.written.clone(),
            Step::PrepareTimesOut { at, participant } => {
                let vote = Err("timed out".into());
                self.feed_about(state, at, participant, |participant| Event::Voted {
                    participant,
                    vote,
                });
            }
            Step::DeadlinePasses { at } => {
                self.feed(state, at, Event::DeadlinePassed);
            }
            Step::DeliveryFails { at, participant } => {
                let result = Err("timed out".into());
                self.feed_about(state, at, participant, |participant| Event::Delivered {
                    participant,
                    result,
                });
            }
            Step::CoordinatorCrashes => {
                state.coordinators.last_mut().expect("one").engine = Engine::Down;
                state.log.written = state.log.durable.clone();
            }
            Step::CoordinatorRestarts => {
                state.coordinators.push(Coordinator::new(Engine::Starting));
                self.recover(state);
            }
            Step::LeaderChanges => {
                let old = state.coordinators.last_mut().expect("one");
                old.deposed = true;
                match &mut old.engine {
                    // Its force will never be acknowledged: the write reaches no majority now.
                    Engine::Running { forcing, .. } => *forcing = false,
                    // It never served: nothing of it runs on.
                    Engine::Starting => old.engine = Engine::Down,
                    Engine::Down => {}
                }
                state.coordinators.push(Coordinator::new(Engine::Starting));
            }
            Step::FirstEntryCommits { keeps } => {
                match keeps {
                    true => state.log.durable = state.log.written.clone(),
                    false => state.log.written = state.log.durable.clone(),
                }
                self.recover(state);
            }
            Step::StepsDown { at } => state.coordinators[at].engine = Engine::Down,
            Step::ParticipantCrashes(p) => {
                let forgets = self.has(Bug::ParticipantForgetsYes);
                state.participants[p].crash(forgets);
            }
            Step::ParticipantRestarts(p) => state.participants[p].up = true,
            Step::ParticipantDiscards(p) => state.participants[p].local = Local::Lost,
            Step::ParticipantResolves(p) => {
                send(&mut state.network, Message::Resolve { from: p });
            }
        }
    }

    /// A fault: a message lost, duplicated or overtaking an older one, a crash, a leader
    /// change, or a timer that fires while what it waits for is still in flight (it beat a
    /// message: a delay).
    fn is_fault(&self, state: &State, step: &Step) -> bool {
        match step {
            Step::Lose { .. }
            | Step::CoordinatorCrashes
            | Step::LeaderChanges
            | Step::ParticipantCrashes(_) => true,
            Step::Receive {
                index, duplicate, ..
            } => *duplicate || Some(*index) != state.oldest_deliverable(),
            step => step.is_early(state),
        }
    }

    fn receive(&self, state: &mut State, message: Message, at: usize, vote: Option<Choice>) {
        match message {
            Message::Enlist { from } => {
                let enlist = Event::Enlist {
                    name: format!("p{from}"),
                    endpoint: format!("http://p{from}"),
                };
                let held = state.coordinators[at].txn().is_some();
                if held && self.feed(state, at, enlist) {
                    send(&mut state.network, Message::Enlisted { to: from });
                }
            }
            Message::Enlisted { to } => state.participants[to].enlisted = true,
            Message::Ask(request) => self.asked(state, at, request),
            Message::Answer(outcome) => {
                state.client.answers.insert(outcome);
            }
            Message::Prepare { to, from } => {
                if let Some(vote) = state.participants[to].prepare(vote) {
                    let to_coordinator = from;
                    send(
                        &mut state.network,
                        Message::Voted {
                            from: to,
                            to: to_coordinator,
                            vote,
                        },
                    );
                }
            }
            Message::Voted { from, to, vote } => {
                let vote = Ok(vote.into());
                self.feed_about(state, to, from, |participant| Event::Voted {
                    participant,
                    vote,
                });
            }
            Message::Decision { to, from, outcome } => {
                if state.participants[to].decide(outcome) {
                    send(&mut state.network, Message::Ack { from: to, to: from });
                }
            }
            Message::Ack { from, to } => {
                let result = Ok(());
                self.feed_about(state, to, from, |participant| Event::Delivered {
                    participant,
                    result,
                });
            }
            Message::Resolve { from } => {
                if let Some(outcome) = self.resolve(state, at) {
                    send(&mut state.network, Message::Resolved { to: from, outcome });
                }
            }
            Message::Resolved { to, outcome } => {
                state.participants[to].decide(outcome);
            }
        }
    }

    /// The application's request reaches process `at`.
    fn asked(&self, state: &mut State, at: usize, request: Request) {
        let coordinator = &state.coordinators[at];
        let Engine::Running { txn, .. } = &coordinator.engine else {
            return; // not serving: the application hears UNAVAILABLE, and may retry
        };
        let event = match request {
            Request::Commit => Event::Commit,
            Request::Abort => Event::Abort {
                reason: "the application asked".into(),
            },
        };
        if txn.is_some() {
            let refused = !self.feed(state, at, event);
            if request == Request::Commit {
                match refused {
                    true => answer(state, Outcome::Aborted),
                    false => {
                        state.coordinators[at].client_waiting = true;
                        self.answer_waiting(state, at);
                    }
                }
            }
        } else if request == Request::Commit && !coordinator.deposed {
            // A finished (or unknown) transaction's Commit is answered from the log; with no
            // record, NOT_FOUND: nothing was committed.
            let outcome = self.read(state).and_then(Status::outcome);
            answer(state, outcome.unwrap_or(Outcome::Aborted));
        }
    }

    /// What process `at` answers to `Resolve`, if anything.
    fn resolve(&self, state: &State, at: usize) -> Option<Outcome> {
        let coordinator = &state.coordinators[at];
        match &coordinator.engine {
            _ if coordinator.deposed => None,
            Engine::Running { txn: Some(txn), .. } => txn.phase().outcome(),
            Engine::Running { txn: None, .. } => Status::resolved(self.read(state)),
            Engine::Starting if self.has(Bug::ResolveBeforeFirstEntry) => {
                Status::resolved(state.log.durable.as_ref().map(|r| r.status))
            }
            Engine::Starting | Engine::Down => None,
        }
    }

    /// The record's status as the serving process reads it.
    fn read(&self, state: &State) -> Option<Status> {
        let record = match self.topology {
            Topology::SingleNode => &state.log.written,
            Topology::Cluster => &state.log.durable,
        };
        let status = record.as_ref()?.status;
        if self.has(Bug::PresumeAbortOverRetainedCommit)
            && status == Status::Finished(Outcome::Committed)
        {
            return None;
        }
        Some(status)
    }

    /// The newest process, starting, takes over the durable record.
    fn recover(&self, state: &mut State) {
        let at = state.coordinators.len() - 1;
        let unfinished = state
            .log
            .durable
            .clone()
            .filter(|r| !matches!(r.status, Status::Finished(_)));
        let Some(record) = unfinished else {
            state.coordinators[at].engine = Engine::Running {
                txn: None,
                forcing: false,
            };
            return;
        };
        let (txn, actions) = Transaction::recover(
            record.participants,
            record.status.outcome(),
            record.reason,
            record.commit_requested,
            POLICY,
        );
        state.coordinators[at].engine = Engine::Running {
            txn: Some(txn),
            forcing: false,
        };
        self.carry_out(state, at, actions);
    }

    /// Feeds `event` to the transaction at process `at` and carries out what it asks; false if
    /// the core refused it. Nothing happens at a process that does not hold the transaction.
    fn feed(&self, state: &mut State, at: usize, event: Event) -> bool {
        let Engine::Running { txn: Some(txn), .. } = &mut state.coordinators[at].engine else {
            return true;
        };
        match txn.handle(event) {
            Ok(actions) => {
                self.carry_out(state, at, actions);
                self.answer_waiting(state, at);
                true
            }
            Err(_) => false,
        }
    }

    /// Feeds the event `about` makes of participant `p`'s place in the transaction at process
    /// `at` (the core numbers participants in the order they enlisted).
    fn feed_about(
        &self,
        state: &mut State,
        at: usize,
        p: usize,
        about: impl FnOnce(usize) -> Event,
    ) {
        let place = state.coordinators[at].txn().and_then(|txn| place(txn, p));
        if let Some(place) = place {
            self.feed(state, at, about(place));
        }
    }

    /// What the engine does with the core's actions.
    fn carry_out(&self, state: &mut State, at: usize, actions: Vec<Action>) {
        let deposed = state.coordinators[at].deposed;
        let Engine::Running {
            txn: Some(txn),
            forcing,
        } = &mut state.coordinators[at].engine
        else {
            unreachable!("actions come from a transaction in memory");
        };
        let finished = txn.phase().is_finished();
        for action in actions {
            if let Some(status) = Status::written_by(&action, txn.phase()) {
                // A deposed leader's writes reach no majority: they are as good as lost.
                if !deposed {
                    state.log.written = Some(Record::of(txn, status));
                }
            }
            match action {
                Action::Persist => {
                    *forcing = !deposed;
                    if self.has(Bug::DeliverBeforeDecisionRecord) {
                        for participant in txn.participants() {
                            if participant.vote == Some(Vote::Yes) {
                                let p = who(participant);
                                send(&mut state.network, decision(p, at, Outcome::Committed));
                            }
                        }
                    }
                }
                Action::Prepare { participant } => {
                    let to = who(&txn.participants()[participant]);
                    send(&mut state.network, Message::Prepare { to, from: at });
                }
                Action::Deliver {
                    participant,
                    outcome,
                    ..
                } => {
                    let to = who(&txn.participants()[participant]);
                    send(&mut state.network, decision(to, at, outcome));
                }
                Action::Record | Action::Finish => {}
            }
        }
        if finished {
            // The engine answers a waiting Commit before it forgets the transaction.
            self.answer_waiting(state, at);
            if let Engine::Running { txn, .. } = &mut state.coordinators[at].engine {
                *txn = None;
            }
        }
    }

    /// Answers a Commit waiting at process `at`, once the transaction there is decided.
    fn answer_waiting(&self, state: &mut State, at: usize) {
        let coordinator = &state.coordinators[at];
        let Engine::Running { txn: Some(txn), .. } = &coordinator.engine else {
            return;
        };
        let early = self.has(Bug::AnswerBeforeDurable) && txn.phase() == Phase::Deciding;
        let outcome = match early {
            true => Some(Outcome::Committed),
            false => txn.phase().outcome(),
        };
        if let (true, Some(outcome)) = (coordinator.client_waiting, outcome) {
            state.coordinators[at].client_waiting = false;
            answer(state, outcome);
        }
    }
}

/// The coordinator's own timers on `txn` at process `at`.
fn timeouts(txn: &Transaction, at: usize, steps: &mut Vec<Step>) {
    if matches!(txn.phase(), Phase::Active | Phase::Preparing) {
        steps.push(Step::DeadlinePasses { at });
    }
    for enlisted in txn.participants() {
        let participant = who(enlisted);
        if txn.phase() == Phase::Preparing && enlisted.vote.is_none() {
            steps.push(Step::PrepareTimesOut { at, participant });
        }
        let pending = matches!(enlisted.delivery, Delivery::Required | Delivery::BestEffort);
        if pending {
            steps.push(Step::DeliveryFails { at, participant });
        }
    }
}

/// Which participant of the model an enlisted one is (enlisted as `p{N}`).
fn who(enlisted: &verdict::core::Participant) -> usize {
    enlisted.name[1..].parse().expect("enlisted as pN")
}

/// Participant `p`'s place in `txn`, if it enlisted.
fn place(txn: &Transaction, p: usize) -> Option<usize> {
    txn.participants().iter().position(|e| who(e) == p)
}

fn decision(to: usize, from: usize, outcome: Outcome) -> Message {
    Message::Decision { to, from, outcome }
}

/// Puts `message` in flight, unless a copy of it is.
fn send(network: &mut Vec<Message>, message: Message) {
    if !network.contains(&message) {
        network.push(message);
    }
}

fn answer(state: &mut State, outcome: Outcome) {
    send(&mut state.network, Message::Answer(outcome));
}

/// Where `message` can arrive now: the coordinator processes that may receive it (any that
/// is not down, for a request; the one it answers, for a reply), or one entry, unused, for a
/// participant that is up or the application. Empty while its receiver is down: it waits.
fn receivers(state: &State, message: &Message) -> Vec<usize> {
    match *message {
        Message::Ask(_) | Message::Resolve { .. } | Message::Enlist { .. } => {
            (0..state.coordinators.len())
                .filter(|&at| state.coordinators[at].engine != Engine::Down)
                .collect()
        }
        Message::Voted { to, .. } | Message::Ack { to, .. } => vec![to],
        Message::Prepare { to, .. }
        | Message::Decision { to, .. }
        | Message::Resolved { to, .. }
        | Message::Enlisted { to } => match state.participants[to].up {
            true => vec![0],
            false => vec![],
        },
        Message::Answer(_) => vec![0],
    }
}

impl State {
    /// The oldest message in flight that can arrive now.
    pub fn oldest_deliverable(&self) -> Option<usize> {
        (0..self.network.len()).find(|&i| !receivers(self, &self.network[i]).is_empty())
    }

    fn in_flight(&self, wanted: impl Fn(&Message) -> bool) -> bool {
        self.network.iter().any(wanted)
    }
}

impl Step {
    /// Whether a timer fires it while what it waits for is still in flight: a delay fault.
    fn is_early(&self, state: &State) -> bool {
        match *self {
            Step::RetryCommit => {
                state.in_flight(|m| matches!(m, Message::Ask(_) | Message::Answer(_)))
            }
            Step::PrepareTimesOut { at, participant } => state.in_flight(|m| {
                *m == Message::Prepare { to: participant, from: at }
                    || matches!(*m, Message::Voted { from, to, .. } if from == participant && to == at)
            }),
            Step::DeliveryFails { at, participant } => state.in_flight(|m| match *m {
                Message::Decision { to, from, .. } => to == participant && from == at,
                Message::Ack { from, to } => from == participant && to == at,
                _ => false,
            }),
            Step::DeadlinePasses { .. } => !state.network.is_empty(),
            Step::ParticipantDiscards(p) => {
                state.in_flight(|m| matches!(*m, Message::Prepare { to, .. } if to == p))
            }
            Step::ParticipantResolves(p) => state.in_flight(|m| match *m {
                Message::Decision { to, .. } | Message::Resolved { to, .. } => to == p,
                _ => false,
            }),
            _ => false,
        }
    }
}

impl Coordinator {
    fn new(engine: Engine) -> Self {
        Coordinator {
            engine,
            deposed: false,
            client_waiting: false,
        }
    }

    /// The transaction it holds in memory, if any.
    pub fn txn(&self) -> Option<&Transaction> {
        match &self.engine {
            Engine::Running { txn, .. } => txn.as_ref(),
            _ => None,
        }
    }
}

impl Record {
    fn of(txn: &Transaction, status: Status) -> Self {
        Record {
            status,
            participants: txn.participants().to_vec(),
            reason: txn.reason().map(str::to_owned),
            commit_requested: txn.commit_requested(),
        }
    }
}

impl stateright::Model for System {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }

    fn actions(&self, state: &State, steps: &mut Vec<Step>) {
        self.steps(state, steps);
    }

    fn next_state(&self, state: &State, step: Step) -> Option<State> {
        Some(self.next(state, step))
    }

    fn properties(&self) -> Vec<stateright::Property<Self>> {
        crate::properties::all()
    }
}
