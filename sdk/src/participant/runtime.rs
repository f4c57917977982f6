//! The participant runtime: the protocol rules a participant must keep, around any
//! [`Resource`].
//!
//! | request | journal says | does |
//! |---|---|---|
//! | Prepare | nothing | asks the resource; YES is journaled **forced** before it is answered |
//! | Prepare | a vote or an end | answers the same vote again (aborted here: NO) |
//! | Commit | prepared | commits the resource, journals COMMITTED **forced**, acknowledges |
//! | Commit | committed / read-only | acknowledges |
//! | Commit | nothing / aborted | `FAILED_PRECONDITION` |
//! | Abort | committed | `FAILED_PRECONDITION` |
//! | Abort | anything else | aborts the resource (staged work too), journals ABORTED |
//!
//! For a resource whose own prepare and commit are durable
//! ([`Resource::prepares_durably`]), the journal is not waited for before a YES to the
//! configured coordinator or after a commit; recovery finds what it lost in the resource.
//!
//! A transaction prepared here that hears no decision for the quiet period is resolved with
//! the coordinator's `Resolve`, with backoff, until COMMITTED or ABORTED. On start, everything
//! the journal holds prepared is resolved the same way at once. What the resource holds prepared
//! without a journaled YES (checked at start and every `sweep_every`) is taken in and resolved
//! with the configured coordinator too, so nothing stays prepared unnoticed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::journal::{Journal, Local};
use super::resource::{Resource, ResourceError};
use super::serial::TxnLocks;
use crate::durable::StorageError;
use crate::periodic::every;
use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{self, ResolveRequest};
use crate::world::now_unix_ms;
use crate::{Backoff, Outcome, TxnId, Vote};

/// How a participant runtime behaves.
#[derive(Clone, Debug)]
pub struct ParticipantConfig {
    /// The coordinator to ask about transactions the resource holds prepared but the journal
    /// does not name a coordinator for.
    pub coordinator_url: String,
    /// How long a prepared transaction may go without a decision before asking `Resolve`.
    pub quiet_period: Duration,
    /// How often what the resource holds prepared is checked against the journal.
    pub sweep_every: Duration,
    /// Delays between `Resolve` attempts that get no decision.
    pub resolve_backoff: Backoff,
    /// How long one `Resolve` call may take.
    pub resolve_timeout: Duration,
    /// How long final journal entries are kept (answers to late duplicate requests).
    pub retention: Duration,
}

impl Default for ParticipantConfig {
    fn default() -> Self {
        ParticipantConfig {
            coordinator_url: "http://127.0.0.1:7400".into(),
            quiet_period: Duration::from_secs(5),
            sweep_every: Duration::from_secs(30),
            resolve_backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            resolve_timeout: Duration::from_secs(5),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a participant request failed.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The request cannot be honoured in the transaction's state here.
    #[error("transaction {0}: {1}")]
    Conflict(TxnId, String),
    #[error("the resource failed: {0}")]
    Resource(#[from] ResourceError),
    #[error("the participant's journal failed: {0}")]
    Storage(#[from] StorageError),
}

/// A transaction prepared here, waiting for its decision.
struct InDoubt {
    coordinator: String,
    /// When to ask `Resolve` next.
    next_check: Instant,
    attempts: u32,
}

/// The runtime around a resource. See the module doc for its rules.
pub struct Participant<R> {
    resource: R,
    journal: Journal,
    config: ParticipantConfig,
    /// Serialises requests per transaction.
    serial: TxnLocks,
    in_doubt: Mutex<HashMap<TxnId, InDoubt>>,
    /// Prepared transactions found at start and not yet resolved.
    recovering: Mutex<HashSet<TxnId>>,
    finished: Notify,
    coordinators: Mutex<HashMap<String, CoordinatorClient<Channel>>>,
}

impl<R: Resource> Participant<R> {
    /// Starts the runtime: finds what was prepared before a restart, and starts resolving it.
    /// Must run inside a tokio runtime. [`Participant::recovered`] tells when recovery is done.
    pub async fn start(
        resource: R,
        journal: Journal,
        config: ParticipantConfig,
    ) -> Result<Arc<Self>, ParticipantError> {
        let participant = Arc::new(Participant {
            resource,
            journal,
            config,
            serial: TxnLocks::default(),
            in_doubt: Mutex::new(HashMap::new()),
            recovering: Mutex::new(HashSet::new()),
            finished: Notify::new(),
            coordinators: Mutex::new(HashMap::new()),
        });
        participant.recover().await?;
        let weak = Arc::downgrade(&participant);
        tokio::spawn(every(RESOLVE_TICK, weak.clone(), |p| async move {
            p.resolve_due().await
        }));
        tokio::spawn(every(COLLECT_EVERY, weak.clone(), |p| async move {
            // A minute's finished transactions can take seconds to delete: off the async
            // workers, which keep answering calls — and the coordinator's HTTP/2 pings.
            let _ = tokio::task::spawn_blocking(move || p.collect()).await;
        }));
        if participant.resource.prepares_durably() {
            tokio::spawn(every(JOURNAL_FLUSH_EVERY, weak.clone(), |p| async move {
                // Closing at shutdown flushed it already.
                match p.journal.flush().await {
                    Err(_) if p.journal.is_closed() => {}
                    Err(error) => {
                        tracing::error!(%error, "flushing the participant journal failed")
                    }
                    Ok(()) => {}
                }
            }));
        }
        let sweep_every = participant.config.sweep_every;
        tokio::spawn(every(sweep_every, weak, |p| async move {
            p.sweep_orphans().await
        }));
        Ok(participant)
    }

    async fn recover(&self) -> Result<(), ParticipantError> {
        let journaled = self.journal.prepared()?;
        {
            let mut recovering = self.recovering.lock().expect("lock");
            for (txn, coordinator) in journaled {
                recovering.insert(txn);
                self.await_decision_now(txn, coordinator);
            }
        }
        let adopted = self.adopt_orphans().await?;
        let mut recovering = self.recovering.lock().expect("lock");
        recovering.extend(&adopted);
        tracing::info!(
            in_doubt = recovering.len(),
            adopted = adopted.len(),
            "participant recovery: resolving transactions prepared before the restart"
        );
        Ok(())
    }

    /// Takes in what the resource holds prepared but the journal does not name: a PREPARE that
    /// succeeded while its YES was never journaled (a crash in between, or an answer lost on
    /// the way back). Each is journaled as prepared under the configured coordinator and
    /// resolved with it like any transaction in doubt — presumed abort answers ABORTED unless
    /// a commit was decided. Returns the transactions taken in.
    async fn adopt_orphans(&self) -> Result<Vec<TxnId>, ParticipantError> {
        let mut adopted = Vec::new();
        let mut prepared = self.resource.prepared().await?;
        // In id order, not the resource's: the same state recovers the same way every time.
        prepared.sort_unstable();
        for txn in prepared {
            // Under the transaction's lock no prepare of it is half done: a journal entry
            // missing now is missing for good.
            let _serial = self.serial.lock(txn).await;
            match self.journal.get(txn)? {
                None => {}
                Some(Local::Prepared { .. }) => continue,
                // Finished here, yet still prepared there (an answer lost on the way back):
                // finish it the same way again.
                Some(Local::Committed) => {
                    self.resource.commit(txn).await?;
                    continue;
                }
                Some(_) => {
                    self.resource.abort(txn).await?;
                    continue;
                }
            }
            let coordinator = self.config.coordinator_url.clone();
            // Unforced: if it is lost, the next sweep adopts the transaction again.
            let local = Local::Prepared {
                coordinator: coordinator.clone(),
            };
            self.journal.put(txn, &local, now_unix_ms())?;
            tracing::info!(txn_id = %txn, %coordinator, "adopted a prepared transaction with no vote journaled");
            self.await_decision_now(txn, coordinator);
            adopted.push(txn);
        }
        Ok(adopted)
    }

    /// The periodic form of [`Self::adopt_orphans`], so nothing stays prepared unnoticed.
    async fn sweep_orphans(&self) {
        if let Err(error) = self.adopt_orphans().await {
            tracing::warn!(%error, "looking for orphaned prepared transactions failed");
        }
    }

    /// Completes once every transaction found prepared at start has its decision applied.
    pub async fn recovered(&self) {
        loop {
            let finished = self.finished.notified();
            if self.recovering.lock().expect("lock").is_empty() {
                return;
            }
            finished.await;
        }
    }

    /// The resource this runtime drives.
    pub fn resource(&self) -> &R {
        &self.resource
    }

    /// Phase 1: stages `work` if the coordinator sent any, and votes, once; a repeated Prepare
    /// gets the same vote.
    pub async fn prepare(
        &self,
        txn: TxnId,
        coordinator: &str,
        work: Vec<u8>,
    ) -> Result<Vote, ParticipantError> {
        let started = std::time::Instant::now();
        let _serial = self.serial.lock(txn).await;
        if let Some(local) = self.journal.get(txn)? {
            return Ok(match local {
                Local::Prepared { .. } | Local::Committed => Vote::Yes,
                Local::VotedNo(reason) => Vote::No(reason),
                Local::ReadOnly => Vote::ReadOnly,
                Local::Aborted => Vote::No("the transaction was already aborted here".into()),
            });
        }
        let staged = match work.is_empty() {
            true => Ok(()),
            false => self.resource.stage_handed(txn, work).await,
        };
        let vote = match staged {
            Ok(()) => self.resource.prepare(txn).await?,
            Err(reason) => Vote::No(reason),
        };
        let label = match &vote {
            Vote::Yes => "yes",
            Vote::No(_) => "no",
            Vote::ReadOnly => "read_only",
        };
        metrics::counter!(crate::metrics::VOTES, "vote" => label).increment(1);
        let now = now_unix_ms();
        match &vote {
            Vote::Yes => {
                let local = Local::Prepared {
                    coordinator: coordinator.to_owned(),
                };
                crate::crash_point!("participant::before_prepared_record");
                if self.resource.prepares_durably() && coordinator == self.config.coordinator_url {
                    // A lost record is found again by adopting what the resource holds.
                    self.journal.put(txn, &local, now)?;
                } else {
                    self.journal.put_forced(txn, &local, now, false).await?;
                }
                crate::crash_point!("participant::after_prepared_record");
                self.await_decision(txn, coordinator);
            }
            Vote::No(reason) => {
                self.resource.abort(txn).await?;
                self.journal
                    .put(txn, &Local::VotedNo(reason.clone()), now)?;
            }
            Vote::ReadOnly => self.journal.put(txn, &Local::ReadOnly, now)?,
        }
        metrics::histogram!(crate::metrics::PREPARE_SECONDS).record(started.elapsed());
        Ok(vote)
    }

    /// Phase 2 from the coordinator.
    pub async fn decide(&self, txn: TxnId, outcome: Outcome) -> Result<(), ParticipantError> {
        self.finish(txn, outcome).await?;
        let label = match outcome {
            Outcome::Committed => "commit",
            Outcome::Aborted => "abort",
        };
        metrics::counter!(crate::metrics::DECISIONS, "decision" => label).increment(1);
        Ok(())
    }

    /// Starts waiting for the decision: `Resolve` is asked after the quiet period.
    fn await_decision(&self, txn: TxnId, coordinator: &str) {
        let next_check = Instant::now() + self.config.quiet_period;
        self.in_doubt(txn, coordinator.to_owned(), next_check);
    }

    /// Puts a transaction in doubt with `Resolve` due at once.
    fn await_decision_now(&self, txn: TxnId, coordinator: String) {
        self.in_doubt(txn, coordinator, Instant::now());
    }

    fn in_doubt(&self, txn: TxnId, coordinator: String, next_check: Instant) {
        let entry = InDoubt {
            coordinator,
            next_check,
            attempts: 0,
        };
        self.in_doubt.lock().expect("lock").insert(txn, entry);
    }

    /// Applies a decision, from the coordinator or from `Resolve`.
    async fn finish(&self, txn: TxnId, outcome: Outcome) -> Result<(), ParticipantError> {
        let _serial = self.serial.lock(txn).await;
        let local = self.journal.get(txn)?;
        let now = now_unix_ms();
        match (outcome, local) {
            (Outcome::Committed, Some(Local::Prepared { .. })) => {
                crate::crash_point!("participant::before_commit_applied");
                self.resource.commit(txn).await?;
                crate::crash_point!("participant::after_commit_applied");
                if self.resource.prepares_durably() {
                    self.journal.put(txn, &Local::Committed, now)?;
                } else {
                    // Forced before the acknowledgement, but no one waits on it: let it share
                    // the next prepare's flush rather than delay it.
                    self.journal
                        .put_forced(txn, &Local::Committed, now, true)
                        .await?;
                }
            }
            (Outcome::Committed, Some(Local::Committed | Local::ReadOnly)) => {}
            (Outcome::Committed, None) => {
                return Err(ParticipantError::Conflict(
                    txn,
                    "cannot commit: this participant never prepared it".into(),
                ))
            }
            (Outcome::Committed, Some(Local::Aborted | Local::VotedNo(_))) => {
                return Err(ParticipantError::Conflict(
                    txn,
                    "cannot commit: it was aborted here".into(),
                ))
            }
            (Outcome::Aborted, Some(Local::Committed)) => {
                return Err(ParticipantError::Conflict(
                    txn,
                    "cannot abort: it was committed here".into(),
                ))
            }
            (Outcome::Aborted, Some(Local::Aborted | Local::VotedNo(_) | Local::ReadOnly)) => {}
            (Outcome::Aborted, Some(Local::Prepared { .. }) | None) => {
                self.resource.abort(txn).await?;
                self.journal.put(txn, &Local::Aborted, now)?;
            }
        }
        self.in_doubt.lock().expect("lock").remove(&txn);
        self.recovering.lock().expect("lock").remove(&txn);
        self.finished.notify_waiters();
        Ok(())
    }

    /// Deletes final journal entries past the retention period.
    fn collect(&self) {
        let retention = self.config.retention.as_millis() as u64;
        let cutoff = now_unix_ms().saturating_sub(retention);
        if let Err(error) = self.journal.collect(cutoff) {
            tracing::error!(%error, "collecting the participant journal failed");
        }
    }

    /// Asks `Resolve` about every transaction in doubt whose time has come.
    async fn resolve_due(self: &Arc<Self>) {
        let now = Instant::now();
        let mut due: Vec<(TxnId, String)> = {
            let mut in_doubt = self.in_doubt.lock().expect("lock");
            in_doubt
                .iter_mut()
                .filter(|(_, d)| d.next_check <= now)
                .map(|(txn, d)| {
                    // Not due again while this attempt runs.
                    d.next_check = now + self.config.resolve_timeout * 2;
                    (*txn, d.coordinator.clone())
                })
                .collect()
        };
        // In id order, not the map's: the same state asks in the same order every time.
        due.sort_unstable();
        for (txn, coordinator) in due {
            let participant = self.clone();
            tokio::spawn(async move { participant.resolve_one(txn, &coordinator).await });
        }
    }

    async fn resolve_one(&self, txn: TxnId, coordinator: &str) {
        let answer = self.ask_resolve(txn, coordinator).await;
        let outcome = match answer {
            Ok(proto::Outcome::Committed) => Some(Outcome::Committed),
            Ok(proto::Outcome::Aborted) => Some(Outcome::Aborted),
            Ok(_) => None,
            Err(ref error) => {
                tracing::warn!(txn_id = %txn, %coordinator, %error, "Resolve failed");
                None
            }
        };
        if let Some(outcome) = outcome {
            tracing::info!(txn_id = %txn, ?outcome, "resolved a transaction in doubt");
            // A decision that arrived meanwhile wins; this answer then changes nothing.
            if let Err(error) = self.finish(txn, outcome).await {
                tracing::warn!(txn_id = %txn, %error, "applying the resolved outcome failed");
            } else {
                return;
            }
        }
        if let Some(entry) = self.in_doubt.lock().expect("lock").get_mut(&txn) {
            entry.attempts += 1;
            let delay = self
                .config
                .resolve_backoff
                .delay(entry.attempts, crate::world::jitter());
            entry.next_check = Instant::now() + delay;
        }
    }

    /// Asks the coordinator, or each node of a coordinator cluster in turn (`coordinator` is
    /// then their comma-separated URLs), until one answers.
    async fn ask_resolve(&self, txn: TxnId, coordinator: &str) -> Result<proto::Outcome, String> {
        metrics::counter!(crate::metrics::RESOLVE_ASKED).increment(1);
        let mut errors = Vec::new();
        for url in coordinator.split(',') {
            match self.ask_resolve_one(txn, url).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => errors.push(format!("{url}: {error}")),
            }
        }
        Err(errors.join("; "))
    }

    async fn ask_resolve_one(
        &self,
        txn: TxnId,
        coordinator: &str,
    ) -> Result<proto::Outcome, String> {
        let mut client = self.coordinator(coordinator)?;
        let mut request = crate::credentials::request(ResolveRequest {
            txn_id: txn.to_string(),
        });
        request.set_timeout(self.config.resolve_timeout);
        match tokio::time::timeout(self.config.resolve_timeout, client.resolve(request)).await {
            Err(_) => Err("no answer in time".into()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Ok(Ok(response)) => Ok(response.into_inner().outcome()),
        }
    }

    fn coordinator(&self, url: &str) -> Result<CoordinatorClient<Channel>, String> {
        let mut clients = self.coordinators.lock().expect("lock");
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let endpoint = crate::tls::endpoint(url)
            .map_err(|e| format!("the coordinator URL is not usable: {e}"))?;
        let channel = crate::net::channel(
            crate::net::watched(endpoint)
                .connect_timeout(self.config.resolve_timeout)
                .tcp_nodelay(true),
        );
        let client = CoordinatorClient::new(channel);
        clients.insert(url.to_owned(), client.clone());
        Ok(client)
    }
}

/// How often transactions in doubt are looked at.
const RESOLVE_TICK: Duration = Duration::from_millis(50);

/// How often a journal that no one waits for is written out (see
/// [`Resource::prepares_durably`]).
const JOURNAL_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How often final journal entries past retention are collected.
const COLLECT_EVERY: Duration = Duration::from_secs(60);
