//! A participant resource on PostgreSQL's own two-phase commit.
//!
//! A service's request handlers stage a transaction's [`Work`] under its global id
//! ([`PgResource::stage`]). At prepare the work's SQL runs in one database transaction on a
//! pooled connection, which ends with `PREPARE TRANSACTION '<gid>'`: from then on the changes
//! are on PostgreSQL's disk with their locks kept, and no connection is held. Any failure on
//! the way (a constraint, a serialization failure, a lock timeout, a lost connection) votes NO
//! with PostgreSQL's message. Commit and abort are `COMMIT PREPARED` / `ROLLBACK PREPARED` from
//! any connection; an id PostgreSQL no longer knows counts as finished.
//!
//! Prepares take at most three quarters of the pool's connections: a prepare may wait for a row
//! lock that a prepared transaction holds until its `COMMIT PREPARED`, and that must always find
//! a connection, or both wait out the lock timeout.
//!
//! The global id is `verdict:<participant name>:<txn id>`. The `pg_prepared_xacts` rows of this
//! database carrying that prefix are what [`Resource::prepared`] reports, so the participant
//! runtime resolves them after a restart or when a PREPARE's answer was lost.

use std::collections::HashMap;
use std::sync::Mutex;

use deadpool_postgres::{Object, Pool};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use crate::core::{TxnId, Vote};
use crate::participant::{Resource, ResourceError};

/// The longest participant name a global id can carry within PostgreSQL's 200 bytes.
pub const MAX_NAME_BYTES: usize = 120;

/// A transaction's work on the database, staged by request handlers and run at prepare.
pub trait Work: Default + Send + Sync + 'static {
    /// The work's statements as SQL text, values written with [`literal`]: they go to the
    /// database between `BEGIN` and `PREPARE TRANSACTION` in one round trip, because on a
    /// shared machine the round trips, not the statements, are what a prepare costs.
    fn statements(&self) -> Vec<Statement>;
}

/// One statement of a transaction's work.
pub struct Statement {
    pub sql: String,
    /// The reason to vote NO with when the statement changes no row.
    pub if_no_row: Option<String>,
}

/// `text` as an SQL string literal. Safe because every connection sets
/// `standard_conforming_strings` (backslashes are plain characters) and the client encoding is
/// UTF-8; text with a NUL byte, which PostgreSQL cannot store, fails the statement.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Why work could not be prepared: the NO vote's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl From<tokio_postgres::Error> for Refusal {
    fn from(e: tokio_postgres::Error) -> Self {
        Refusal(format!("PostgreSQL: {}", describe(&e)))
    }
}

/// PostgreSQL's own words for an error: its message, SQLSTATE and detail when the server
/// answered, else what went wrong with the connection.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text = format!("{text}: {detail}");
    }
    text
}

const NOTHING_STAGED: &str = "nothing is staged here for this transaction: its work was \
     discarded at the transaction's deadline, or this participant restarted since";

/// Where a transaction's work is.
enum State<W> {
    Staged {
        work: W,
        expires: Instant,
    },
    /// Its SQL is running; it can no longer change.
    Preparing,
    Prepared(W),
}

/// Staging was refused: the transaction is already prepared (or preparing) here.
#[derive(Debug)]
pub struct AlreadyPrepared;

/// The resource: a pool, this participant's global-id prefix, and the staged and prepared work.
pub struct PgResource<W> {
    pool: Pool,
    /// Connections prepares may hold at once; the rest of the pool is for decisions.
    preparing: Semaphore,
    prefix: String,
    txns: Mutex<HashMap<TxnId, State<W>>>,
}

impl<W: Work> PgResource<W> {
    /// A resource for participant `name` (at most [`MAX_NAME_BYTES`], no quotes or control
    /// characters; keep it stable across restarts, since it prefixes the global ids recovery
    /// looks for, and unique among the participants of one PostgreSQL server, whose global ids
    /// share one namespace).
    pub fn new(pool: Pool, name: &str) -> Result<Self, String> {
        let usable = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && !name
                .chars()
                .any(|c| c.is_control() || c == '\'' || c == '\\');
        if !usable {
            return Err(format!(
                "participant name {name:?} cannot prefix PostgreSQL global ids: give 1 to \
                 {MAX_NAME_BYTES} bytes without quotes, backslashes or control characters"
            ));
        }
        // Three quarters of the pool, and one connection at least.
        let connections = pool.status().max_size;
        let preparing = Semaphore::new((connections - connections / 4).max(1));
        Ok(PgResource {
            pool,
            preparing,
            prefix: format!("verdict:{name}:"),
            txns: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Changes the work `txn` stages here (empty at first), to be discarded at `expires` unless
    /// prepared by then.
    pub fn stage<T>(
        &self,
        txn: TxnId,
        expires: Instant,
        change: impl FnOnce(&mut W) -> T,
    ) -> Result<T, AlreadyPrepared> {
        let mut txns = self.txns.lock().expect("lock");
        let state = txns.entry(txn).or_insert_with(|| State::Staged {
            work: W::default(),
            expires,
        });
        match state {
            State::Staged {
                work,
                expires: until,
            } => {
                *until = (*until).max(expires);
                Ok(change(work))
            }
            State::Preparing | State::Prepared(_) => Err(AlreadyPrepared),
        }
    }

    /// Discards staged work whose transaction's deadline has passed; returns how many.
    pub fn discard_expired(&self, now: Instant) -> usize {
        let mut txns = self.txns.lock().expect("lock");
        let before = txns.len();
        txns.retain(|_, state| !matches!(state, State::Staged { expires, .. } if *expires <= now));
        before - txns.len()
    }

    /// Folds over the work of every transaction prepared by this process.
    pub fn fold_prepared<T>(&self, init: T, mut f: impl FnMut(T, &W) -> T) -> T {
        let txns = self.txns.lock().expect("lock");
        txns.values().fold(init, |acc, state| match state {
            State::Prepared(work) => f(acc, work),
            _ => acc,
        })
    }

    fn gid(&self, txn: TxnId) -> String {
        format!("{}{txn}", self.prefix)
    }

    async fn connection(&self) -> Result<Object, String> {
        super::pool::get(&self.pool)
            .await
            .map_err(|e| format!("no PostgreSQL connection: {e}"))
    }

    /// Takes the staged work to run it, so it can no longer change; or the vote to give at once.
    fn start_preparing(&self, txn: TxnId) -> Result<W, Vote> {
        let mut txns = self.txns.lock().expect("lock");
        match txns.remove(&txn) {
            Some(State::Staged { work, .. }) => {
                txns.insert(txn, State::Preparing);
                Ok(work)
            }
            Some(other) => {
                let vote = match other {
                    State::Prepared(_) => Vote::Yes,
                    _ => Vote::No("a prepare of it is already running here".into()),
                };
                txns.insert(txn, other);
                Err(vote)
            }
            None => Err(Vote::No(NOTHING_STAGED.into())),
        }
    }

    /// Runs the work and `PREPARE TRANSACTION` in one round trip; on failure the database
    /// transaction is rolled back, or the connection dropped if even that fails.
    async fn prepare_work(&self, txn: TxnId, work: &W) -> Result<(), Refusal> {
        let _turn = self.preparing.acquire().await.expect("never closed");
        let db = self.connection().await.map_err(Refusal)?;
        let statements = work.statements();
        let mut sql = String::from("BEGIN");
        for statement in &statements {
            sql = sql + "; " + &statement.sql;
        }
        sql = sql + &format!("; PREPARE TRANSACTION '{}'", self.gid(txn));
        let answers = match db.simple_query(&sql).await {
            Ok(answers) => answers,
            Err(e) => {
                if db.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(db));
                }
                return Err(e.into());
            }
        };
        // One count per statement, `BEGIN`'s first.
        let counts = answers.iter().filter_map(|answer| match answer {
            SimpleQueryMessage::CommandComplete(rows) => Some(*rows),
            _ => None,
        });
        let unchanged = statements
            .iter()
            .zip(counts.skip(1))
            .find_map(|(statement, rows)| statement.if_no_row.clone().filter(|_| rows == 0));
        match unchanged {
            None => Ok(()),
            Some(reason) => {
                let _ = self.finish_prepared(txn, "ROLLBACK").await;
                Err(Refusal(reason))
            }
        }
    }

    /// `COMMIT PREPARED` or `ROLLBACK PREPARED`; an id PostgreSQL does not know is finished.
    async fn finish_prepared(&self, txn: TxnId, verb: &str) -> Result<(), ResourceError> {
        let db = self.connection().await.map_err(ResourceError)?;
        let gid = self.gid(txn);
        match db.batch_execute(&format!("{verb} PREPARED '{gid}'")).await {
            Err(e) if e.code() != Some(&SqlState::UNDEFINED_OBJECT) => Err(ResourceError(format!(
                "{verb} PREPARED of {txn} failed: {}",
                describe(&e)
            ))),
            _ => Ok(()),
        }
    }
}

impl<W: Work> Resource for PgResource<W> {
    async fn prepare(&self, txn: TxnId) -> Result<Vote, ResourceError> {
        let work = match self.start_preparing(txn) {
            Ok(work) => work,
            Err(vote) => return Ok(vote),
        };
        let result = self.prepare_work(txn, &work).await;
        let mut txns = self.txns.lock().expect("lock");
        match result {
            Ok(()) => {
                txns.insert(txn, State::Prepared(work));
                Ok(Vote::Yes)
            }
            Err(Refusal(reason)) => {
                txns.remove(&txn);
                Ok(Vote::No(reason))
            }
        }
    }

    async fn commit(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.finish_prepared(txn, "COMMIT").await?;
        self.txns.lock().expect("lock").remove(&txn);
        Ok(())
    }

    async fn abort(&self, txn: TxnId) -> Result<(), ResourceError> {
        let state = self.txns.lock().expect("lock").remove(&txn);
        match state {
            // Never reached the database.
            Some(State::Staged { .. }) => Ok(()),
            // Prepared, or perhaps prepared: a PREPARE whose answer was lost, or one from
            // before a restart.
            _ => self.finish_prepared(txn, "ROLLBACK").await,
        }
    }

    /// `PREPARE TRANSACTION` and `COMMIT PREPARED` are on PostgreSQL's disk when they return,
    /// and `pg_prepared_xacts` lists what is prepared.
    fn prepares_durably(&self) -> bool {
        true
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        let db = self.connection().await.map_err(ResourceError)?;
        let rows = db
            .query(
                "SELECT gid FROM pg_prepared_xacts \
                 WHERE database = current_database() AND starts_with(gid, $1)",
                &[&self.prefix],
            )
            .await
            .map_err(|e| ResourceError(format!("reading pg_prepared_xacts: {}", describe(&e))))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                row.get::<_, &str>(0)
                    .strip_prefix(&self.prefix)?
                    .parse()
                    .ok()
            })
            .collect())
    }
}
