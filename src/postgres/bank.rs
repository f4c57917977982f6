//! The bank's accounts in a PostgreSQL table, `verdict_accounts`, whose
//! `CHECK (balance >= 0)` makes an overdraft fail at prepare, so the transaction votes NO.
//!
//! A transfer's changes are staged in memory (a retried `Apply` replaces its change rather than
//! adding to it) and become one `UPDATE` per account at prepare, in account order so two
//! transactions never take the same rows' locks in opposite orders. What prepared
//! transactions hold back is counted from the ones this process prepared. Accounts are never
//! closed, so the ones seen to exist are remembered and `Apply` checks them without a query.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use deadpool_postgres::Object;
use tokio::time::Instant;

use super::pool::PgOptions;
use super::resource::{describe, literal, PgResource, Statement, Work};
use crate::bank::{Accounts, BankError};
use crate::core::{TxnId, Vote};
use crate::participant::{Resource, ResourceError};
use crate::staging::Staging;

/// A PostgreSQL bank: the accounts' resource, and the accounts known to exist.
pub struct PgBank {
    resource: PgResource<Changes>,
    known: Mutex<HashSet<String>>,
}

/// One transaction's changes: account → delta.
#[derive(Debug, Default)]
pub struct Changes(BTreeMap<String, i64>);

/// Each connection's setup: the table if it is missing (the first connection is made alone, at
/// start), and the update a transfer runs, prepared so that PostgreSQL plans it once per
/// connection rather than once per transfer.
const SETUP: &str = "CREATE TABLE IF NOT EXISTS verdict_accounts (
    id text PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);
PREPARE verdict_add(text, bigint) AS
    UPDATE verdict_accounts SET balance = balance + $2 WHERE id = $1";

impl Work for Changes {
    fn statements(&self) -> Vec<Statement> {
        let update = |(account, delta): (&String, &i64)| Statement {
            sql: format!("EXECUTE verdict_add({}, {delta})", literal(account)),
            if_no_row: Some(format!("account {account:?} does not exist")),
        };
        self.0.iter().map(update).collect()
    }
}

/// Connects to the bank's database, creating its table if missing.
pub async fn open(options: &PgOptions, name: &str) -> anyhow::Result<PgBank> {
    let pool = super::pool::connect(options, SETUP).await?;
    Ok(PgBank {
        resource: PgResource::new(pool, name).map_err(anyhow::Error::msg)?,
        known: Mutex::new(HashSet::new()),
    })
}

impl PgBank {
    async fn connection(&self) -> Result<Object, BankError> {
        super::pool::get(self.resource.pool())
            .await
            .map_err(BankError::Database)
    }

    fn is_known(&self, account: &str) -> bool {
        self.known.lock().expect("lock").contains(account)
    }

    fn remember(&self, account: &str) {
        self.known.lock().expect("lock").insert(account.to_owned());
    }
}

fn query_failed(e: tokio_postgres::Error) -> BankError {
    BankError::Database(describe(&e))
}

impl Accounts for PgBank {
    async fn open_account(&self, account: &str, balance: i64) -> Result<(), BankError> {
        let db = self.connection().await?;
        let inserted = db
            .execute(
                "INSERT INTO verdict_accounts (id, balance) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
                &[&account, &balance],
            )
            .await
            .map_err(query_failed)?;
        self.remember(account);
        match inserted {
            0 => Err(BankError::AccountExists(account.into())),
            _ => Ok(()),
        }
    }

    async fn balance(&self, account: &str) -> Result<(i64, i64), BankError> {
        let db = self.connection().await?;
        let select = db
            .prepare_cached("SELECT balance FROM verdict_accounts WHERE id = $1")
            .await
            .map_err(query_failed)?;
        let row = db
            .query_opt(&select, &[&account])
            .await
            .map_err(query_failed)?
            .ok_or_else(|| BankError::NoSuchAccount(account.into()))?;
        self.remember(account);
        let held = self.resource.fold_prepared(0, |held, changes| {
            held + changes.0.get(account).map_or(0, |delta| (-delta).max(0))
        });
        Ok((row.get(0), held))
    }

    async fn stage(
        &self,
        txn: TxnId,
        account: &str,
        delta: i64,
        expires: Instant,
    ) -> Result<(), BankError> {
        self.resource
            .stage(txn, expires, |changes| {
                changes.0.insert(account.to_owned(), delta);
            })
            .map_err(|_| BankError::AlreadyPrepared(txn))
    }

    async fn exists(&self, account: &str) -> Result<(), BankError> {
        match self.is_known(account) {
            true => Ok(()),
            false => self.balance(account).await.map(drop),
        }
    }
}

impl Staging for PgBank {
    fn discard_expired(&self, now: Instant) -> usize {
        self.resource.discard_expired(now)
    }
}

impl Resource for PgBank {
    async fn prepare(&self, txn: TxnId) -> Result<Vote, ResourceError> {
        self.resource.prepare(txn).await
    }

    /// Checks handed changes as `Apply` does, then stages them all.
    async fn stage_handed(&self, txn: TxnId, work: Vec<u8>) -> Result<(), String> {
        let changes = crate::bank::work::decode(&work)?;
        for (account, _) in &changes {
            self.exists(account).await.map_err(|e| e.to_string())?;
        }
        let expires = Instant::now() + crate::staging::HANDED_WORK_KEPT_FOR;
        self.resource
            .stage(txn, expires, |staged| staged.0.extend(changes))
            .map_err(|_| BankError::AlreadyPrepared(txn).to_string())
    }

    async fn commit(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.resource.commit(txn).await
    }

    async fn abort(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.resource.abort(txn).await
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        self.resource.prepared().await
    }

    fn prepares_durably(&self) -> bool {
        self.resource.prepares_durably()
    }
}
