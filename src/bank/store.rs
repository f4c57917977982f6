//! The bank's accounts on sled, as a participant [`Resource`].
//!
//! Changes are staged per transaction in memory and touch nothing until prepared. Prepare
//! checks every withdrawal against the balance less what other prepared transactions hold
//! (escrow: two transfers out of one account both prepare only if both fit), records the
//! changes in the `prepared` tree (made durable by the journal's forced flush, same database)
//! and holds the withdrawn amounts. Commit applies the changes and drops the prepared record in
//! one sled transaction. Staged work that is never prepared is discarded at the transaction's
//! deadline, so a crashed client or coordinator leaves no holds behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::time::Instant;

use super::accounts::{Accounts, BankError};
use crate::core::{TxnId, Vote};
use crate::durable::{DurableDb, StorageError, Tree};
use crate::frame;
use crate::participant::{Resource, ResourceError};
use crate::staging::Staging;

const MAGIC: &[u8; 2] = b"VB";

/// The changes one transaction makes: account → delta.
type Changes = BTreeMap<String, i64>;

struct Staged {
    changes: Changes,
    expires: Instant,
}

#[derive(Default)]
struct Books {
    staged: HashMap<TxnId, Staged>,
    prepared: HashMap<TxnId, Changes>,
    /// Per account, what prepared transactions would take out of it.
    held: HashMap<String, i64>,
}

impl Books {
    fn hold(&mut self, changes: &Changes, sign: i64) {
        for (account, delta) in changes.iter().filter(|(_, d)| **d < 0) {
            let held = self.held.entry(account.clone()).or_default();
            *held += sign * -delta;
            if *held == 0 {
                self.held.remove(account);
            }
        }
    }
}

/// The bank: accounts, staged and prepared changes.
pub struct KvBank {
    db: Arc<DurableDb>,
    accounts: Tree,
    prepared: Tree,
    books: Mutex<Books>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ChangesBody {
    #[prost(string, repeated, tag = "1")]
    accounts: Vec<String>,
    #[prost(sint64, repeated, tag = "2")]
    deltas: Vec<i64>,
}

fn encode(changes: &Changes) -> Vec<u8> {
    let body = ChangesBody {
        accounts: changes.keys().cloned().collect(),
        deltas: changes.values().copied().collect(),
    };
    frame::seal(MAGIC, &body.encode_to_vec())
}

fn decode(value: &[u8]) -> Result<Changes, StorageError> {
    let corrupt = |what: String| StorageError(format!("corrupt prepared record: {what}"));
    let body = ChangesBody::decode(frame::open(MAGIC, value).map_err(corrupt)?)
        .map_err(|e| corrupt(e.to_string()))?;
    if body.accounts.len() != body.deltas.len() {
        return Err(corrupt("accounts and deltas differ in number".into()));
    }
    Ok(body.accounts.into_iter().zip(body.deltas).collect())
}

fn balance_of(value: &[u8]) -> i64 {
    i64::from_be_bytes(value.try_into().unwrap_or([0; 8]))
}

impl KvBank {
    /// Opens the bank in `db`, reloading what was prepared before a restart.
    pub fn open(db: Arc<DurableDb>) -> Result<Self, BankError> {
        let bank = KvBank {
            accounts: db.tree("accounts")?,
            prepared: db.tree("prepared")?,
            db,
            books: Mutex::new(Books::default()),
        };
        {
            let mut books = bank.books.lock().expect("lock");
            for entry in bank.prepared.iter() {
                let (key, value) = entry?;
                let Ok(id) = <[u8; 16]>::try_from(key.as_ref()) else {
                    continue;
                };
                let changes = decode(&value)?;
                books.hold(&changes, 1);
                books.prepared.insert(TxnId::from_bytes(id), changes);
            }
        }
        Ok(bank)
    }

    /// Every account and its committed balance.
    pub fn accounts(&self) -> Result<Vec<(String, i64)>, BankError> {
        self.accounts
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    balance_of(&value),
                ))
            })
            .collect()
    }

    fn check_funds(&self, books: &Books, changes: &Changes) -> Result<Option<String>, BankError> {
        for (account, delta) in changes.iter().filter(|(_, d)| **d < 0) {
            let Some(value) = self.accounts.get(account.as_bytes())? else {
                return Ok(Some(format!("account {account:?} does not exist")));
            };
            let balance = balance_of(&value);
            let held = books.held.get(account).copied().unwrap_or(0);
            if balance - held + delta < 0 {
                return Ok(Some(format!(
                    "insufficient funds in account {account:?}: balance {balance}, held by \
                     other transactions {held}, change {delta}"
                )));
            }
        }
        Ok(None)
    }

    fn prepare_now(&self, txn: TxnId) -> Result<Vote, BankError> {
        let mut books = self.books.lock().expect("lock");
        let Some(staged) = books.staged.remove(&txn) else {
            return Ok(Vote::No(
                "no changes are staged here for this transaction (they expired, or were lost \
                 in a restart)"
                    .into(),
            ));
        };
        if let Some(reason) = self.check_funds(&books, &staged.changes)? {
            return Ok(Vote::No(reason));
        }
        self.prepared
            .insert(txn.to_bytes(), encode(&staged.changes))?;
        books.hold(&staged.changes, 1);
        books.prepared.insert(txn, staged.changes);
        Ok(Vote::Yes)
    }

    fn commit_now(&self, txn: TxnId) -> Result<(), BankError> {
        let mut books = self.books.lock().expect("lock");
        let Some(changes) = books.prepared.get(&txn).cloned() else {
            return Ok(());
        };
        // Atomic: were the prepared entry kept without a balance (or the reverse), recovery would
        // apply the changes twice (or never).
        self.db.write_atomically(|w| {
            for (account, delta) in &changes {
                let balance = self
                    .accounts
                    .get(account.as_bytes())?
                    .map_or(0, |v| balance_of(&v));
                w.insert(
                    &self.accounts,
                    account.as_bytes(),
                    (balance + delta).to_be_bytes(),
                );
            }
            w.remove(&self.prepared, txn.to_bytes());
            Ok::<_, StorageError>(())
        })?;
        books.hold(&changes, -1);
        books.prepared.remove(&txn);
        Ok(())
    }

    fn abort_now(&self, txn: TxnId) -> Result<(), BankError> {
        let mut books = self.books.lock().expect("lock");
        books.staged.remove(&txn);
        if let Some(changes) = books.prepared.remove(&txn) {
            self.prepared.remove(txn.to_bytes())?;
            books.hold(&changes, -1);
        }
        Ok(())
    }
}

fn resource_error(e: BankError) -> ResourceError {
    ResourceError(e.to_string())
}

impl Resource for KvBank {
    async fn prepare(&self, txn: TxnId) -> Result<Vote, ResourceError> {
        self.prepare_now(txn).map_err(resource_error)
    }

    async fn commit(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.commit_now(txn).map_err(resource_error)
    }

    async fn abort(&self, txn: TxnId) -> Result<(), ResourceError> {
        self.abort_now(txn).map_err(resource_error)
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        Ok(self
            .books
            .lock()
            .expect("lock")
            .prepared
            .keys()
            .copied()
            .collect())
    }
}

impl Accounts for KvBank {
    async fn open_account(&self, account: &str, balance: i64) -> Result<(), BankError> {
        self.db.write(|w| {
            if self.accounts.contains_key(account.as_bytes())? {
                return Err(BankError::AccountExists(account.into()));
            }
            w.insert(&self.accounts, account.as_bytes(), balance.to_be_bytes());
            Ok(())
        })?;
        self.db.flush().await?;
        Ok(())
    }

    async fn balance(&self, account: &str) -> Result<(i64, i64), BankError> {
        let books = self.books.lock().expect("lock");
        let balance = self
            .accounts
            .get(account.as_bytes())?
            .map(|v| balance_of(&v))
            .ok_or_else(|| BankError::NoSuchAccount(account.into()))?;
        Ok((balance, books.held.get(account).copied().unwrap_or(0)))
    }

    async fn stage(
        &self,
        txn: TxnId,
        account: &str,
        delta: i64,
        expires: Instant,
    ) -> Result<(), BankError> {
        let mut books = self.books.lock().expect("lock");
        if books.prepared.contains_key(&txn) {
            return Err(BankError::AlreadyPrepared(txn));
        }
        if !self.accounts.contains_key(account.as_bytes())? {
            return Err(BankError::NoSuchAccount(account.into()));
        }
        let staged = books.staged.entry(txn).or_insert_with(|| Staged {
            changes: Changes::new(),
            expires,
        });
        staged.changes.insert(account.into(), delta);
        staged.expires = staged.expires.max(expires);
        Ok(())
    }
}

impl Staging for KvBank {
    fn discard_expired(&self, now: Instant) -> usize {
        let mut books = self.books.lock().expect("lock");
        let before = books.staged.len();
        books.staged.retain(|_, staged| staged.expires > now);
        before - books.staged.len()
    }
}

#[cfg(test)]
mod tests;
