//! The engine: in-flight transactions, and the driver that carries out the core's actions.
//!
//! Every change to a transaction goes through [`Engine::apply`]: under the transaction's lock
//! the core handles the event and the log writes it asks for are made (so records reach the log
//! in the order the state changed); after the lock is released, network I/O and the forced
//! write are spawned, and each reports back with another event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::admission::Admission;
use super::clients::{Coordinator, Failure, ParticipantClients};
use super::view::{State, TxnView};
use super::{Config, EngineError, Full};
use crate::core::{Action, Event, Outcome, Phase, Rejection, Transaction, TxnId};
use crate::log::{DecisionLog, LogError, Settlement, Status, Timeline, TxnRecord};
use crate::metrics::{self as names, AbortReason};
use crate::periodic::every;
use crate::world::{self, now_unix_ms};

/// A participant named in Begin or Enlist (already validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewParticipant {
    pub name: String,
    pub endpoint: String,
}

/// Work an application handed over in Commit, for a participant to run at Prepare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandedWork {
    pub participant: NewParticipant,
    /// Opaque here: its format is the participant's.
    pub work: Vec<u8>,
}

/// A Submit's request, beside its work (already validated).
#[derive(Clone, Debug)]
pub struct Submission {
    /// The client's request id.
    pub id: String,
    pub timeout: Option<Duration>,
    pub wait_for_acks: bool,
    /// The identity that submitted it, when callers are authenticated.
    pub begun_by: Option<String>,
    /// The caller's W3C `traceparent`, sent on to participants.
    pub trace: Option<String>,
}

/// A transaction just begun.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    pub txn_id: TxnId,
    pub deadline_unix_ms: u64,
}

/// One in-flight transaction.
struct Entry {
    id: TxnId,
    deadline_unix_ms: u64,
    txn: Mutex<Transaction>,
    /// The phase after every change, for callers waiting on the outcome.
    phase: watch::Sender<Phase>,
    /// The deadline timer, cancelled once the transaction is decided.
    expiry: Mutex<Option<AbortHandle>>,
    /// Work handed over in Commit, by participant index, until its Prepare takes it.
    work: Mutex<HashMap<usize, Vec<u8>>>,
    /// The application's W3C `traceparent` (from Begin, or Commit), sent on to participants.
    trace: Mutex<Option<String>>,
    /// Bumped by an operator's retry: phase-2 sends waiting out their backoff go at once.
    retry_now: watch::Sender<u64>,
    /// Per participant, the `retry_now` count when its latest phase-2 send went out: a retry
    /// asked while that send was under way still cuts the next backoff short.
    retries_at_send: Mutex<HashMap<usize, u64>>,
    /// Its milestones and a settlement by hand, for operators; locked inside `txn`'s lock.
    timeline: Mutex<Timeline>,
    span: tracing::Span,
    /// Whether it waits on a participant that did not take its decision (or was recovered
    /// owing phase 2), and so counts against `--max-undelivered` rather than `--max-in-flight`.
    /// Set once, by whoever takes it out of `Engine::in_flight`.
    owed: AtomicBool,
}

impl Entry {
    /// Waits out the backoff before `participant`'s next phase-2 send, unless an operator asks
    /// for a retry meanwhile or asked since its previous send went out.
    async fn back_off(&self, participant: usize, delay: Duration) {
        let mut retry_now = self.retry_now.subscribe();
        let asked = *retry_now.borrow_and_update();
        let at_last_send = self
            .retries_at_send
            .lock()
            .expect("lock")
            .get(&participant)
            .copied();
        if at_last_send.unwrap_or(0) == asked {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = retry_now.changed() => {}
            }
        }
        let asked = *self.retry_now.borrow();
        self.retries_at_send
            .lock()
            .expect("lock")
            .insert(participant, asked);
    }
}

/// Network I/O and forced writes asked for by the core, carried out after the lock is released.
enum Io {
    Prepare {
        participant: usize,
        endpoint: String,
        work: Vec<u8>,
    },
    Persist(std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LogError>> + Send>>),
    Deliver {
        participant: usize,
        endpoint: String,
        outcome: Outcome,
        attempt: u32,
    },
}

/// What an engine has done and holds, for operators (see [`Engine::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub begun: u64,
    pub committed: u64,
    pub aborted: u64,
    pub in_flight: u64,
    pub in_doubt: u64,
}

/// The engine's running totals, beside the metrics (which may not be recorded at all).
#[derive(Default)]
struct Totals {
    begun: AtomicU64,
    committed: AtomicU64,
    aborted: AtomicU64,
}

/// The coordinator engine.
pub struct Engine<L> {
    config: Config,
    log: L,
    txns: Mutex<HashMap<TxnId, Arc<Entry>>>,
    /// The transactions of `txns` begun by Submit, by request id. Locked before `txns`.
    requests: Mutex<HashMap<String, TxnId>>,
    /// How many of `txns` are being worked on: what `config.max_in_flight` limits. The rest
    /// are owed their phase 2 by a participant that did not take it (see [`Entry::owed`]),
    /// limited by `config.max_undelivered`, so that a participant down for long does not keep
    /// every new transaction out.
    in_flight: AtomicUsize,
    /// Begins waiting for room under the limits.
    admission: Admission,
    clients: ParticipantClients,
    /// How participants reach this coordinator.
    coordinator: Coordinator,
    /// Transactions whose record failed its checks at start: their outcome is unknown.
    corrupt: HashSet<TxnId>,
    /// Set once the engine stops (its log took no more writes): nothing more is sent or
    /// written, and waiting callers are answered UNAVAILABLE.
    stopped: watch::Sender<bool>,
    totals: Totals,
}

/// How often the in-flight and in-doubt gauges are set.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// What callers of a stopped engine are told.
const STOPPED: &str = "this coordinator stopped running transactions (in a cluster: it is no \
                       longer the leader); retry the call: it is idempotent, and the client \
                       follows the leader";

/// The span of one call to a participant, exported (with `--otlp-endpoint`) as `method`.
fn client_span(method: &'static str, endpoint: &str) -> tracing::Span {
    tracing::debug_span!("call", otel.name = method, otel.kind = "client", participant = %endpoint)
}

/// A log that failed cannot be trusted to hold what was written: stop, and let recovery at the
/// next start decide from what is on disk.
fn fail_stop(error: &LogError) -> ! {
    tracing::error!(%error, "the decision log failed; stopping so recovery can take over");
    std::process::exit(70)
}

impl<L: DecisionLog> Engine<L> {
    /// Starts the engine on `log`: recovers unfinished transactions and starts collection of
    /// finished ones. Must run inside a tokio runtime.
    pub fn start(log: L, config: Config) -> Result<Arc<Self>, LogError> {
        let mut corrupt = HashSet::new();
        let mut recovered = Vec::new();
        for record in log.unfinished()? {
            match record {
                Ok(record) => recovered.push(record),
                Err(LogError::Corrupt { txn, what }) => {
                    tracing::error!(txn_id = ?txn, %what, "corrupt record in the decision log");
                    corrupt.extend(txn);
                }
                Err(e) => return Err(e),
            }
        }
        let coordinator = Coordinator {
            url: config.advertise_url.clone(),
            cluster_urls: config.cluster_urls.clone(),
        };
        let engine = Arc::new(Engine {
            coordinator,
            admission: Admission::new(config.admission_wait, config.max_in_flight),
            clients: ParticipantClients::new(config.deliveries_per_participant),
            config,
            log,
            txns: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            corrupt,
            stopped: watch::Sender::new(false),
            totals: Totals::default(),
        });
        engine.recover(recovered);
        tokio::spawn(every(
            GAUGES_EVERY,
            Arc::downgrade(&engine),
            |engine| async move { engine.report_gauges() },
        ));
        let gc_interval = engine.config.gc_interval;
        tokio::spawn(every(
            gc_interval,
            Arc::downgrade(&engine),
            |engine| async move {
                engine.collect_finished().await;
            },
        ));
        Ok(engine)
    }

    fn recover(self: &Arc<Self>, records: Vec<TxnRecord>) {
        let mut counts: HashMap<Status, usize> = HashMap::new();
        for record in records {
            *counts.entry(record.status).or_default() += 1;
            let (txn, actions) = Transaction::recover(
                record.participants,
                record.status.outcome(),
                record.reason,
                record.commit_requested,
                self.config.policy,
            );
            if record.status.outcome().is_none() {
                metrics::counter!(names::ABORTED, "reason" => AbortReason::Takeover.label())
                    .increment(1);
            }
            if let Some(request) = &record.timeline.request_id {
                let mut requests = self.requests.lock().expect("lock");
                requests.insert(request.clone(), record.txn_id);
            }
            let entry = self
                .insert(
                    record.txn_id,
                    record.deadline_unix_ms,
                    txn,
                    record.timeline,
                    false,
                )
                .expect("recovery is not limited");
            self.apply(&entry, AbortReason::Takeover, |_| Ok(actions))
                .expect("recovery actions are not a request");
        }
        let count = |status| counts.get(&status).copied().unwrap_or(0);
        tracing::info!(
            commits_redriven = count(Status::Committed),
            undecided_aborted = count(Status::Active),
            aborts_redriven = count(Status::Aborted),
            corrupt = self.corrupt.len(),
            "recovered the decision log"
        );
    }

    /// Adds a new transaction to the in-flight table within the limits, or (not `new`) one
    /// recovered, which is owed its phase 2.
    fn insert(
        &self,
        id: TxnId,
        deadline_unix_ms: u64,
        txn: Transaction,
        timeline: Timeline,
        new: bool,
    ) -> Result<Arc<Entry>, EngineError> {
        let (phase, _) = watch::channel(txn.phase());
        let entry = Arc::new(Entry {
            id,
            deadline_unix_ms,
            txn: Mutex::new(txn),
            phase,
            expiry: Mutex::new(None),
            work: Mutex::default(),
            trace: Mutex::new(None),
            retry_now: watch::Sender::new(0),
            retries_at_send: Mutex::default(),
            timeline: Mutex::new(timeline),
            // A debug span: building one per transaction costs throughput; events that matter
            // at info level and above name the transaction themselves.
            span: tracing::debug_span!("txn", otel.name = "transaction", txn_id = %id),
            owed: AtomicBool::new(!new),
        });
        if new {
            // Exactly within --max-in-flight however many Begins race here. --max-undelivered
            // was looked at on admission: it bounds memory, and a few over it do no harm.
            let max = self.config.max_in_flight;
            let taken = self
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_err() {
                return Err(self.overloaded());
            }
        }
        self.txns.lock().expect("lock").insert(id, entry.clone());
        Ok(entry)
    }

    /// Sets the gauges: transactions in flight, and those in doubt — past Commit (or aborting)
    /// and not finished, so participants may hold locks for them — by age. None once stopped.
    fn report_gauges(&self) {
        let (in_flight, in_doubt) = self.held();
        metrics::gauge!(names::IN_FLIGHT).set(in_flight as f64);
        for (age, _) in names::IN_DOUBT_AGES {
            let count = in_doubt.get(age).copied().unwrap_or(0);
            metrics::gauge!(names::IN_DOUBT, "age" => age).set(count as f64);
        }
    }

    /// How many transactions are held, and of them how many are in doubt by age bucket. None
    /// once stopped.
    fn held(&self) -> (usize, HashMap<&'static str, u64>) {
        let mut in_doubt: HashMap<&str, u64> = HashMap::new();
        if self.is_stopped() {
            return (0, in_doubt);
        }
        let now = now_unix_ms();
        let txns = self.txns.lock().expect("lock");
        for entry in txns.values() {
            let phase = *entry.phase.borrow();
            if phase != Phase::Active && !phase.is_finished() {
                let age = now.saturating_sub(entry.id.begun_unix_ms());
                *in_doubt.entry(names::in_doubt_age(age)).or_default() += 1;
            }
        }
        (txns.len(), in_doubt)
    }

    /// What this engine has begun and decided since it started, and what it holds now.
    pub fn stats(&self) -> Stats {
        let (in_flight, in_doubt) = self.held();
        Stats {
            begun: self.totals.begun.load(Ordering::Relaxed),
            committed: self.totals.committed.load(Ordering::Relaxed),
            aborted: self.totals.aborted.load(Ordering::Relaxed),
            in_flight: in_flight as u64,
            in_doubt: in_doubt.values().sum(),
        }
    }

    /// Whether `--allow-participants` lets this coordinator call `endpoint`.
    fn allowed(&self, endpoint: &str) -> Result<(), EngineError> {
        let allowed = &self.config.allowed_participants;
        allowed.check(endpoint).map_err(EngineError::NotAllowed)
    }

    fn entry(&self, id: TxnId) -> Option<Arc<Entry>> {
        self.txns.lock().expect("lock").get(&id).cloned()
    }

    /// Makes every log write durable and stops the log's background work; at shutdown.
    pub fn close(&self) {
        self.log.close();
    }

    /// Stops running transactions: nothing more is sent to participants or written to the log,
    /// and callers waiting on an outcome are answered UNAVAILABLE. What is in flight is left to
    /// whoever recovers the log next (in a cluster, the new leader).
    pub fn stop(&self) {
        if !self.stopped.send_replace(true) {
            tracing::info!(
                in_flight = self.txns.lock().expect("lock").len(),
                "engine stopped"
            );
            // A node that no longer leads holds no transactions: its gauges say so.
            self.report_gauges();
        }
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Deletes finished transactions past the retention period from the log.
    async fn collect_finished(&self) {
        if self.is_stopped() {
            return;
        }
        let cutoff = now_unix_ms().saturating_sub(self.config.retention.as_millis() as u64);
        match self.log.collect_finished(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                collected = n,
                "collected finished transactions past retention"
            ),
            Err(e) => tracing::error!(error = %e, "collecting finished transactions failed"),
        }
    }

    /// The longest transaction timeout Begin may ask for.
    pub fn max_txn_timeout(&self) -> Duration {
        self.config.max_txn_timeout
    }

    /// Takes `entry` out of the transactions in flight, once: it finished, or it waits on a
    /// participant that did not take its decision. Whether it was in flight until now.
    fn owe(&self, entry: &Entry) -> bool {
        let was_in_flight = !entry.owed.swap(true, Ordering::SeqCst);
        if was_in_flight {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        was_in_flight
    }

    /// The limit a new transaction would go past now, if any.
    fn full(&self) -> Option<Full> {
        let config = &self.config;
        if self.in_flight.load(Ordering::SeqCst) >= config.max_in_flight {
            return Some(Full::InFlight(config.max_in_flight));
        }
        let held = self.txns.lock().expect("lock").len();
        let undelivered = held.saturating_sub(self.in_flight.load(Ordering::SeqCst));
        (undelivered >= config.max_undelivered).then_some(Full::Undelivered(config.max_undelivered))
    }

    /// A Begin refused for want of room.
    fn overloaded(&self) -> EngineError {
        metrics::counter!(names::REJECTED, "reason" => "resource_exhausted").increment(1);
        EngineError::Overloaded {
            full: self
                .full()
                .unwrap_or(Full::InFlight(self.config.max_in_flight)),
            waited: self.admission.wait(),
            retry_after: self.admission.retry_after(),
        }
    }

    /// Begins a transaction with `participants` enlisted; at the in-flight limit, waits briefly
    /// for room.
    pub async fn begin(
        self: &Arc<Self>,
        timeout: Option<Duration>,
        participants: Vec<NewParticipant>,
        begun_by: Option<String>,
    ) -> Result<Begun, EngineError> {
        let txn = self.enlisted(&participants)?;
        self.admit().await?;
        let timeline = Timeline {
            begun_by,
            ..Timeline::default()
        };
        self.open(timeout, txn, timeline)
    }

    /// Begins a transaction for Submit request `request.id` and commits it with `work`, or
    /// answers as a retried Commit of the transaction that request began already. Returns the
    /// transaction, its outcome and, for an abort, its reason.
    pub async fn submit(
        self: &Arc<Self>,
        request: Submission,
        work: Vec<HandedWork>,
    ) -> Result<(TxnId, Outcome, Option<String>), EngineError> {
        let Submission {
            id: request_id,
            timeout,
            wait_for_acks,
            begun_by,
            trace,
        } = request;
        let participants: Vec<NewParticipant> =
            work.iter().map(|w| w.participant.clone()).collect();
        let begun = match self.submitted(&request_id)? {
            Some(id) => Err(id),
            None => {
                let txn = self.enlisted(&participants)?;
                self.admit().await?;
                // Checked again: a retry may have begun it while this one waited for room.
                let mut requests = self.requests.lock().expect("lock");
                match self.submitted_in(&requests, &request_id)? {
                    Some(id) => Err(id),
                    None => {
                        let timeline = Timeline {
                            begun_by,
                            request_id: Some(request_id.clone()),
                            ..Timeline::default()
                        };
                        let begun = self.open(timeout, txn, timeline)?;
                        requests.insert(request_id, begun.txn_id);
                        Ok(begun.txn_id)
                    }
                }
            }
        };
        // A retry's work is ignored, as a retried Commit's is.
        let (id, work) = match begun {
            Ok(id) => (id, work),
            Err(id) => (id, Vec::new()),
        };
        if let Some(trace) = trace {
            self.trace(id, trace);
        }
        match self.commit(id, wait_for_acks, work).await {
            Ok((outcome, reason)) => Ok((id, outcome, reason)),
            // Begun, then aborted before its Commit ran (the coordinator restarted between).
            Err(EngineError::Rejected(_, Rejection::AbortedBeforeCommit(reason))) => {
                Ok((id, Outcome::Aborted, Some(reason)))
            }
            Err(e) => Err(e),
        }
    }

    /// The transaction Submit request `request_id` began, if this coordinator knows it.
    pub fn submitted(&self, request_id: &str) -> Result<Option<TxnId>, EngineError> {
        let requests = self.requests.lock().expect("lock");
        self.submitted_in(&requests, request_id)
    }

    fn submitted_in(
        &self,
        requests: &HashMap<String, TxnId>,
        request_id: &str,
    ) -> Result<Option<TxnId>, EngineError> {
        match requests.get(request_id) {
            Some(id) => Ok(Some(*id)),
            None => Ok(self.log.submitted(request_id)?),
        }
    }

    /// A new transaction with `participants` enlisted.
    fn enlisted(&self, participants: &[NewParticipant]) -> Result<Transaction, EngineError> {
        let mut txn = Transaction::new(self.config.policy);
        for p in participants {
            self.allowed(&p.endpoint)?;
            txn.handle(Event::Enlist {
                name: p.name.clone(),
                endpoint: p.endpoint.clone(),
            })
            .map_err(|rejection| EngineError::InvalidArgument(rejection.to_string()))?;
        }
        Ok(txn)
    }

    /// Waits briefly for room under the limits; refuses if none was made.
    async fn admit(&self) -> Result<(), EngineError> {
        match self.admission.room(|| self.full().is_none()).await {
            true => Ok(()),
            false => Err(self.overloaded()),
        }
    }

    /// Puts `txn` in flight under a new id, records it and starts its deadline.
    fn open(
        self: &Arc<Self>,
        timeout: Option<Duration>,
        txn: Transaction,
        timeline: Timeline,
    ) -> Result<Begun, EngineError> {
        let timeout = timeout.unwrap_or(self.config.default_txn_timeout);
        let id = TxnId::from_uuid(world::uuid_v7());
        let deadline_unix_ms = now_unix_ms() + timeout.as_millis() as u64;
        let entry = self.insert(id, deadline_unix_ms, txn, timeline, true)?;
        metrics::counter!(names::BEGUN).increment(1);
        self.totals.begun.fetch_add(1, Ordering::Relaxed);
        self.apply(&entry, AbortReason::Client, |_| Ok(vec![Action::Record]))?;
        crate::crash_point!("coordinator::after_begin");
        let engine = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(engine) = engine.upgrade() {
                engine.event(id, Event::DeadlinePassed);
            }
        });
        *entry.expiry.lock().expect("lock") = Some(timer.abort_handle());
        entry.span.in_scope(|| tracing::debug!(?timeout, "begun"));
        Ok(Begun {
            txn_id: id,
            deadline_unix_ms,
        })
    }

    /// Enlists a participant. Returns whether it is new, and the transaction's deadline.
    pub fn enlist(
        self: &Arc<Self>,
        id: TxnId,
        participant: NewParticipant,
    ) -> Result<(bool, u64), EngineError> {
        self.allowed(&participant.endpoint)?;
        let Some(entry) = self.entry(id) else {
            let record = self.finished_record(id)?;
            let phase = match record.status {
                Status::Finished(Outcome::Committed) => Phase::Committed,
                _ => Phase::Aborted,
            };
            return Err(EngineError::Rejected(id, Rejection::NotActive(phase)));
        };
        let mut newly_enlisted = false;
        self.apply(&entry, AbortReason::Client, |txn| {
            let event = Event::Enlist {
                name: participant.name,
                endpoint: participant.endpoint,
            };
            let actions = txn.handle(event)?;
            // The core asks to record the transaction only when the participant is new.
            newly_enlisted = !actions.is_empty();
            Ok(actions)
        })?;
        crate::crash_point!("coordinator::after_enlist");
        Ok((newly_enlisted, entry.deadline_unix_ms))
    }

    /// Runs two-phase commit; answers once the decision is durable (or, with `wait_for_acks`,
    /// once phase 2 is over). Returns the outcome and, for an abort, its reason. `work`'s
    /// participants are enlisted and sent their work with their Prepare, unless this Commit is a
    /// retry (two-phase commit has started), whose work is ignored.
    pub async fn commit(
        self: &Arc<Self>,
        id: TxnId,
        wait_for_acks: bool,
        work: Vec<HandedWork>,
    ) -> Result<(Outcome, Option<String>), EngineError> {
        for handed in &work {
            self.allowed(&handed.participant.endpoint)?;
        }
        let Some(entry) = self.entry(id) else {
            let record = self.finished_record(id)?;
            let outcome = record.status.outcome().unwrap_or(Outcome::Aborted);
            if outcome == Outcome::Aborted && !record.commit_requested {
                let reason = record.reason.unwrap_or_default();
                return Err(EngineError::Rejected(
                    id,
                    Rejection::AbortedBeforeCommit(reason),
                ));
            }
            return Ok((outcome, record.reason));
        };
        let mut phase = entry.phase.subscribe();
        let mut stopped = self.stopped.subscribe();
        self.apply(&entry, AbortReason::Client, |txn| {
            // A plain Commit skips handing over: it would copy the transaction for nothing.
            let mut actions = match txn.phase() {
                Phase::Active if !work.is_empty() => Self::hand_over(&entry, txn, work)?,
                _ => Vec::new(),
            };
            actions.extend(Self::handle(&entry, txn, Event::Commit)?);
            actions.dedup();
            Ok(actions)
        })?;
        let done = |p: &Phase| match wait_for_acks {
            true => p.is_finished(),
            false => p.outcome().is_some(),
        };
        let outcome = tokio::select! {
            phase = phase.wait_for(done) => phase
                .ok()
                .and_then(|p| p.outcome())
                .expect("the entry, and so the sender, outlives this wait"),
            _ = stopped.wait_for(|stopped| *stopped) => {
                return Err(EngineError::Unavailable(STOPPED.into()));
            }
        };
        let reason = entry.txn.lock().expect("lock").reason().map(str::to_owned);
        Ok((outcome, reason))
    }

    /// Enlists the participants of work handed over in Commit and keeps their work for their
    /// Prepare; returns the actions enlisting asks for. All of it or nothing: a participant
    /// that cannot be enlisted leaves the transaction as it was.
    fn hand_over(
        entry: &Entry,
        txn: &mut Transaction,
        work: Vec<HandedWork>,
    ) -> Result<Vec<Action>, Rejection> {
        let mut trial = txn.clone();
        let mut actions = Vec::new();
        let mut kept = HashMap::new();
        for HandedWork { participant, work } in work {
            let name = participant.name.clone();
            actions.extend(trial.handle(Event::Enlist {
                name: participant.name,
                endpoint: participant.endpoint,
            })?);
            let index = trial.participants().iter().position(|p| p.name == name);
            kept.insert(index.expect("just enlisted"), work);
        }
        *txn = trial;
        entry.work.lock().expect("lock").extend(kept);
        Ok(actions)
    }

    /// Aborts a transaction that is not decided yet.
    pub fn abort(self: &Arc<Self>, id: TxnId, reason: String) -> Result<(), EngineError> {
        let Some(entry) = self.entry(id) else {
            return match self.finished_record(id)?.status {
                Status::Finished(Outcome::Committed) => {
                    Err(EngineError::Rejected(id, Rejection::Committed))
                }
                _ => Ok(()),
            };
        };
        self.apply(&entry, AbortReason::Client, |txn| {
            txn.handle(Event::Abort { reason })
        })
    }

    /// Carries `traceparent` (the application's trace context) into every call to the
    /// transaction's participants from now on. Does nothing for a finished transaction.
    pub fn trace(&self, id: TxnId, traceparent: String) {
        if let Some(entry) = self.entry(id) {
            *entry.trace.lock().expect("lock") = Some(traceparent);
        }
    }

    /// Sends the decision now to every participant still owed it, instead of after the backoff.
    pub fn retry_delivery(&self, id: TxnId) -> Result<(), EngineError> {
        let Some(entry) = self.entry(id) else {
            self.finished_record(id)?;
            return Err(EngineError::NothingToDo(format!(
                "transaction {id} is finished: every participant has its decision"
            )));
        };
        let phase = *entry.phase.borrow();
        if !matches!(phase, Phase::Committing | Phase::Aborting) {
            return Err(EngineError::NothingToDo(format!(
                "transaction {id} is not decided yet ({phase:?}): there is nothing to deliver"
            )));
        }
        entry.retry_now.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Settles a transaction by hand, for what no protocol step can settle (a participant gone
    /// for good): see [`Event::SettleByHand`]. Recorded in the log with who, why and when,
    /// durably before it returns. Refused where it would contradict a decision; repeating a
    /// settlement that was made succeeds.
    pub async fn settle_by_hand(
        self: &Arc<Self>,
        id: TxnId,
        outcome: Outcome,
        by: String,
        reason: String,
    ) -> Result<TxnView, EngineError> {
        let Some(entry) = self.entry(id) else {
            return Self::settled_already(self.finished_record(id)?, outcome);
        };
        let settlement = Settlement {
            outcome,
            by,
            reason: reason.clone(),
            at_unix_ms: now_unix_ms(),
        };
        let mut forced = None;
        self.apply(&entry, AbortReason::Client, |txn| {
            let actions = txn.handle(Event::SettleByHand { outcome, reason })?;
            entry.timeline.lock().expect("lock").settlement = Some(settlement);
            let status = match (txn.phase(), txn.phase().outcome()) {
                (phase, Some(outcome)) if phase.is_finished() => Status::Finished(outcome),
                (_, Some(Outcome::Committed)) => Status::Committed,
                (_, Some(Outcome::Aborted)) => Status::Aborted,
                // A commit by hand: its decision is forced by the core's own Persist.
                (_, None) => Status::Active,
            };
            forced = Some(self.log.force(&self.record(&entry, txn, status)));
            Ok(actions)
        })?;
        if let Some(forced) = forced {
            forced.await?;
        }
        tracing::warn!(txn_id = %id, ?outcome, "transaction settled by hand");
        Ok(Self::view(&entry))
    }

    /// A settlement by hand of a transaction that is over: a repeat of the one it had succeeds;
    /// anything else is refused.
    fn settled_already(record: TxnRecord, outcome: Outcome) -> Result<TxnView, EngineError> {
        let id = record.txn_id;
        let same = |s: &Settlement| s.outcome == outcome;
        if record.timeline.settlement.as_ref().is_some_and(same) {
            return Ok(TxnView::of_record(record));
        }
        Err(match record.status.outcome() {
            Some(Outcome::Committed) if outcome == Outcome::Aborted => {
                EngineError::Rejected(id, Rejection::Committed)
            }
            Some(Outcome::Aborted) if outcome == Outcome::Committed => {
                EngineError::Rejected(id, Rejection::Aborted(record.reason.unwrap_or_default()))
            }
            _ => EngineError::NothingToDo(format!(
                "transaction {id} is finished: every participant has its decision; there is \
                 nothing to settle"
            )),
        })
    }

    /// The state of one transaction.
    pub fn get(&self, id: TxnId) -> Result<TxnView, EngineError> {
        match self.entry(id) {
            Some(entry) => Ok(Self::view(&entry)),
            None => self.finished_record(id).map(TxnView::of_record),
        }
    }

    /// Whether a participant named `name` takes part in transaction `id`; `None` when the
    /// coordinator holds no record of it.
    pub fn takes_part(&self, id: TxnId, name: &str) -> Result<Option<bool>, EngineError> {
        self.check(id, |view| view.participants.iter().any(|p| p.name == name))
    }

    /// Whether the identity `name` began the transaction; `None` if it has no record.
    pub fn begun_by(&self, id: TxnId, name: &str) -> Result<Option<bool>, EngineError> {
        self.check(id, |view| view.timeline.begun_by.as_deref() == Some(name))
    }

    /// `test` of the transaction's view; `None` if it has no record.
    fn check(
        &self,
        id: TxnId,
        test: impl FnOnce(&TxnView) -> bool,
    ) -> Result<Option<bool>, EngineError> {
        match self.get(id) {
            Ok(view) => Ok(Some(test(&view))),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The outcome a participant in doubt must act on; `None` while undecided.
    pub fn resolve(&self, id: TxnId) -> Result<Option<Outcome>, EngineError> {
        if let Some(entry) = self.entry(id) {
            return Ok(entry.phase.borrow().outcome());
        }
        if self.corrupt.contains(&id) {
            return Ok(None);
        }
        match self.log.read(id) {
            Ok(record) => Ok(Status::resolved(record.map(|r| r.status))),
            Err(LogError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` transactions in id order after `after`, in `state` (any when `None`), and
    /// whether more follow.
    pub fn list(
        &self,
        state: Option<State>,
        after: Option<TxnId>,
        limit: usize,
    ) -> Result<(Vec<TxnView>, bool), EngineError> {
        let wanted = |view: &TxnView| state.is_none_or(|s| s == view.state);
        let entries: Vec<Arc<Entry>> = self.txns.lock().expect("lock").values().cloned().collect();
        let mut views: Vec<TxnView> = entries
            .iter()
            .filter(|e| after.is_none_or(|a| e.id > a))
            .map(|e| Self::view(e))
            .filter(wanted)
            .collect();
        if !state.is_some_and(State::is_in_flight) {
            for record in self.log.finished(after) {
                let view = TxnView::of_record(record?);
                if wanted(&view) {
                    views.push(view);
                    if views.len() > limit + entries.len() {
                        break;
                    }
                }
            }
        }
        views.sort_by_key(|v| v.txn_id);
        // A transaction finishing during the scan can show twice; the first (in memory) stays.
        views.dedup_by_key(|v| v.txn_id);
        let more = views.len() > limit;
        views.truncate(limit);
        Ok((views, more))
    }

    /// The log's record of a transaction no longer in memory.
    fn finished_record(&self, id: TxnId) -> Result<TxnRecord, EngineError> {
        if self.corrupt.contains(&id) {
            return Err(EngineError::Corrupt(id));
        }
        match self.log.read(id) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(EngineError::NotFound(id)),
            Err(LogError::Corrupt { .. }) => Err(EngineError::Corrupt(id)),
            Err(e) => Err(e.into()),
        }
    }

    fn view(entry: &Entry) -> TxnView {
        let txn = entry.txn.lock().expect("lock");
        let timeline = entry.timeline.lock().expect("lock").clone();
        TxnView::of_transaction(entry.id, entry.deadline_unix_ms, &txn, timeline)
    }

    fn record(&self, entry: &Entry, txn: &Transaction, status: Status) -> TxnRecord {
        TxnRecord {
            txn_id: entry.id,
            status,
            deadline_unix_ms: entry.deadline_unix_ms,
            finished_unix_ms: if let Status::Finished(_) = status {
                now_unix_ms()
            } else {
                0
            },
            commit_requested: txn.commit_requested(),
            reason: txn.reason().map(str::to_owned),
            participants: txn.participants().to_vec(),
            timeline: entry.timeline.lock().expect("lock").clone(),
        }
    }

    /// Feeds an event that is not a request (its rejection cannot happen, and nobody awaits it).
    fn event(self: &Arc<Self>, id: TxnId, event: Event) {
        let reason = match event {
            Event::DeadlinePassed => AbortReason::Deadline,
            _ => AbortReason::Client,
        };
        if let Some(entry) = self.entry(id) {
            let _ = self.apply(&entry, reason, |txn| txn.handle(event));
        }
    }

    /// Changes a transaction through the core and carries out what it asks for. `reason` is
    /// why, should the change decide an abort (for the metrics).
    fn apply(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        reason: AbortReason,
        change: impl FnOnce(&mut Transaction) -> Result<Vec<Action>, Rejection>,
    ) -> Result<(), EngineError> {
        let mut txn = entry.txn.lock().expect("lock");
        if self.is_stopped() {
            return Err(EngineError::Unavailable(STOPPED.into()));
        }
        let undecided = txn.phase().outcome().is_none();
        let actions = change(&mut txn).map_err(|r| EngineError::Rejected(entry.id, r))?;
        if txn.phase() == Phase::Deciding || txn.phase().outcome().is_some() {
            let mut timeline = entry.timeline.lock().expect("lock");
            if timeline.decided_unix_ms == 0 {
                timeline.decided_unix_ms = now_unix_ms();
            }
        }
        match txn.phase().outcome() {
            Some(Outcome::Committed) if undecided => {
                metrics::counter!(names::COMMITTED).increment(1);
                self.totals.committed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Outcome::Aborted) if undecided => {
                metrics::counter!(names::ABORTED, "reason" => reason.label()).increment(1);
                self.totals.aborted.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if actions.contains(&Action::Persist) {
            crate::crash_point!("coordinator::after_all_votes");
        }
        let io: Vec<Io> = actions
            .into_iter()
            .filter_map(|action| self.execute_locked(entry, &txn, action))
            .collect();
        let phase = txn.phase();
        drop(txn);
        if phase.is_finished() {
            let request = entry.timeline.lock().expect("lock").request_id.clone();
            if let Some(request) = request {
                self.requests.lock().expect("lock").remove(&request);
            }
            self.txns.lock().expect("lock").remove(&entry.id);
            self.owe(entry);
            self.admission.freed();
        }
        if !matches!(phase, Phase::Active | Phase::Preparing) {
            if let Some(timer) = entry.expiry.lock().expect("lock").take() {
                timer.abort();
            }
        }
        entry.phase.send_if_modified(|current| {
            let changed = *current != phase;
            *current = phase;
            changed
        });
        for io in io {
            tokio::spawn(
                self.clone()
                    .perform(entry.clone(), io)
                    .instrument(entry.span.clone()),
            );
        }
        Ok(())
    }

    /// Makes the log writes an action asks for (under the transaction's lock); returns the I/O
    /// to run after the lock is released.
    fn execute_locked(&self, entry: &Entry, txn: &Transaction, action: Action) -> Option<Io> {
        let endpoint = |i: usize| txn.participants()[i].endpoint.clone();
        let status = Status::written_by(&action, txn.phase());
        match action {
            Action::Record => {
                self.write(&self.record(entry, txn, status?));
                None
            }
            Action::Persist => {
                crate::crash_point!("coordinator::before_decision_write");
                let record = self.record(entry, txn, status?);
                Some(Io::Persist(Box::pin(self.log.force(&record))))
            }
            Action::Finish => {
                crate::crash_point!("coordinator::before_end_record");
                self.write(&self.record(entry, txn, status?));
                tracing::debug!(parent: &entry.span, phase = ?txn.phase(), "finished");
                None
            }
            Action::Prepare { participant } => Some(Io::Prepare {
                participant,
                endpoint: endpoint(participant),
                work: entry
                    .work
                    .lock()
                    .expect("lock")
                    .remove(&participant)
                    .unwrap_or_default(),
            }),
            Action::Deliver {
                participant,
                outcome,
                attempt,
            } => Some(Io::Deliver {
                participant,
                endpoint: endpoint(participant),
                outcome,
                attempt,
            }),
        }
    }

    fn write(&self, record: &TxnRecord) {
        if let Err(e) = self.log.write(record) {
            self.log_failed(&e);
        }
    }

    /// A log that takes no more writes here stops the engine; one that failed stops the process.
    fn log_failed(&self, error: &LogError) {
        match error {
            LogError::Unavailable(why) => {
                tracing::warn!(%why, "the decision log takes no more writes here");
                self.stop();
            }
            _ => fail_stop(error),
        }
    }

    async fn perform(self: Arc<Self>, entry: Arc<Entry>, io: Io) {
        if self.is_stopped() {
            return;
        }
        let id = entry.id;
        let trace = entry.trace.lock().expect("lock").clone();
        let trace = trace.as_deref();
        let mut reason = AbortReason::Client;
        let event = match io {
            Io::Prepare {
                participant,
                endpoint,
                work,
            } => {
                let timeout = self.config.prepare_timeout;
                crate::crash_point!("coordinator::before_prepare_send");
                let vote = self
                    .clients
                    .prepare(&endpoint, id, &self.coordinator, timeout, trace, work)
                    .instrument(client_span("Prepare", &endpoint))
                    .await;
                crate::crash_point!("coordinator::after_prepare_send");
                tracing::debug!(participant = %endpoint, ?vote, "vote");
                reason = match &vote {
                    Err(error) => match error.failure {
                        Failure::TimedOut => AbortReason::PrepareTimeout,
                        Failure::Unreachable => AbortReason::Unreachable,
                        Failure::Refused => AbortReason::ParticipantError,
                    },
                    Ok(_) => AbortReason::VoteNo,
                };
                let vote = vote.map_err(|error| error.message);
                Event::Voted { participant, vote }
            }
            Io::Persist(forced) => match forced.await {
                Ok(()) => {
                    crate::crash_point!("coordinator::after_decision_durable");
                    Event::Persisted
                }
                Err(e) => return self.log_failed(&e),
            },
            Io::Deliver {
                participant,
                endpoint,
                outcome,
                attempt,
            } => {
                let delay = self.config.backoff.delay(attempt, world::jitter());
                entry.back_off(participant, delay).await;
                if self.is_stopped() {
                    return;
                }
                let timeout = self.config.decision_timeout;
                crate::crash_point!("coordinator::before_phase2_send");
                let method = match outcome {
                    Outcome::Committed => "Commit",
                    Outcome::Aborted => "Abort",
                };
                let result = self
                    .clients
                    .deliver(&endpoint, id, outcome, timeout, trace)
                    .instrument(client_span(method, &endpoint))
                    .await;
                crate::crash_point!("coordinator::after_phase2_send");
                if let Err(error) = &result {
                    // Waiting on that participant now, it makes room for new work.
                    if self.owe(&entry) {
                        self.admission.freed();
                    }
                    metrics::counter!(names::PHASE2_RETRIES, "participant" => endpoint.clone())
                        .increment(1);
                    tracing::warn!(txn_id = %id, participant = %endpoint, attempt, %error, "decision not delivered");
                }
                let result = result.map_err(|error| error.message);
                Event::Delivered {
                    participant,
                    result,
                }
            }
        };
        let _ = self.apply(&entry, reason, |txn| Self::handle(&entry, txn, event));
    }

    /// Feeds `event` to the core, noting the milestone it marks in the timeline.
    fn handle(
        entry: &Entry,
        txn: &mut Transaction,
        event: Event,
    ) -> Result<Vec<Action>, Rejection> {
        let now = now_unix_ms();
        let mut timeline = entry.timeline.lock().expect("lock");
        let first = |at: &mut u64| *at = if *at == 0 { now } else { *at };
        match &event {
            Event::Commit => first(&mut timeline.commit_requested_unix_ms),
            Event::Voted {
                participant,
                vote: Ok(_),
            } => first(&mut timeline.participant(*participant).voted_unix_ms),
            Event::Delivered {
                participant,
                result: Ok(()),
            } => first(&mut timeline.participant(*participant).acked_unix_ms),
            _ => {}
        }
        drop(timeline);
        txn.handle(event)
    }
}

#[cfg(test)]
mod tests;
