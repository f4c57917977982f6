//! The bank's accounts on sled: a kind of [`Work`] on the embedded [`KvResource`].
//!
//! A transaction's changes (account → delta) are staged per transaction. Prepare checks every
//! withdrawal against the balance less what other prepared transactions hold (escrow: two
//! transfers out of one account both prepare only if both fit), and holds the withdrawn
//! amounts until the transaction is decided. Commit adds the changes to the balances.

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use super::accounts::{Accounts, BankError};
use crate::core::TxnId;
use crate::durable::{StorageError, Tree, Writes};
use crate::kv::{AlreadyPrepared, KvResource, Work};

/// The embedded bank.
pub type KvBank = KvResource<Changes>;

/// The changes one transaction makes: account → delta.
#[derive(Debug, Default)]
pub struct Changes(BTreeMap<String, i64>);

/// Prepared changes, as kept in the `prepared` tree.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangesBody {
    #[prost(string, repeated, tag = "1")]
    accounts: Vec<String>,
    #[prost(sint64, repeated, tag = "2")]
    deltas: Vec<i64>,
}

impl ChangesBody {
    fn changes(&self) -> impl Iterator<Item = (&String, i64)> {
        self.accounts.iter().zip(self.deltas.iter().copied())
    }
}

fn balance_of(value: &[u8]) -> i64 {
    i64::from_be_bytes(value.try_into().unwrap_or([0; 8]))
}

impl Work for Changes {
    type Prepared = ChangesBody;
    /// Per account, what prepared transactions would take out of it.
    type Holds = HashMap<String, i64>;
    const DATA: &'static str = "accounts";
    const MAGIC: &'static [u8; 2] = b"VB";

    fn prepare(
        self,
        accounts: &Tree,
        held: &Self::Holds,
    ) -> Result<Result<ChangesBody, String>, StorageError> {
        for (account, delta) in self.0.iter().filter(|(_, d)| **d < 0) {
            let Some(value) = accounts.get(account.as_bytes())? else {
                return Ok(Err(format!("account {account:?} does not exist")));
            };
            let balance = balance_of(&value);
            let held = held.get(account).copied().unwrap_or(0);
            if balance - held + delta < 0 {
                return Ok(Err(format!(
                    "insufficient funds in account {account:?}: balance {balance}, held by \
                     other transactions {held}, change {delta}"
                )));
            }
        }
        Ok(Ok(ChangesBody {
            accounts: self.0.keys().cloned().collect(),
            deltas: self.0.values().copied().collect(),
        }))
    }

    fn stage_handed(
        &mut self,
        work: &[u8],
        accounts: &Tree,
    ) -> Result<Result<(), String>, StorageError> {
        let changes = match super::work::decode(work) {
            Ok(changes) => changes,
            Err(reason) => return Ok(Err(reason)),
        };
        for (account, _) in &changes {
            if !accounts.contains_key(account.as_bytes())? {
                return Ok(Err(BankError::NoSuchAccount(account.clone()).to_string()));
            }
        }
        self.0.extend(changes);
        Ok(Ok(()))
    }

    fn hold(held: &mut Self::Holds, _txn: TxnId, prepared: &ChangesBody, take: bool) {
        let sign = if take { 1 } else { -1 };
        for (account, delta) in prepared.changes().filter(|(_, d)| *d < 0) {
            let amount = held.entry(account.clone()).or_default();
            *amount += sign * -delta;
            if *amount == 0 {
                held.remove(account);
            }
        }
    }

    fn apply(
        prepared: &ChangesBody,
        accounts: &Tree,
        writes: &mut Writes,
    ) -> Result<(), StorageError> {
        for (account, delta) in prepared.changes() {
            let balance = accounts
                .get(account.as_bytes())?
                .map_or(0, |v| balance_of(&v));
            writes.insert(
                accounts,
                account.as_bytes(),
                (balance + delta).to_be_bytes(),
            );
        }
        Ok(())
    }
}

impl KvBank {
    /// Every account and its committed balance.
    pub fn accounts(&self) -> Result<Vec<(String, i64)>, BankError> {
        self.data()
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
}

impl Accounts for KvBank {
    async fn open_account(&self, account: &str, balance: i64) -> Result<(), BankError> {
        let accounts = self.data();
        self.db().write(|w| {
            if accounts.contains_key(account.as_bytes())? {
                return Err(BankError::AccountExists(account.into()));
            }
            w.insert(accounts, account.as_bytes(), balance.to_be_bytes());
            Ok(())
        })?;
        self.db().flush().await?;
        Ok(())
    }

    async fn balance(&self, account: &str) -> Result<(i64, i64), BankError> {
        let balance = self
            .data()
            .get(account.as_bytes())?
            .map(|v| balance_of(&v))
            .ok_or_else(|| BankError::NoSuchAccount(account.into()))?;
        let held = self.holds(|held, _| held.get(account).copied().unwrap_or(0));
        Ok((balance, held))
    }

    async fn stage(
        &self,
        txn: TxnId,
        account: &str,
        delta: i64,
        expires: Instant,
    ) -> Result<(), BankError> {
        if !self.data().contains_key(account.as_bytes())? {
            return Err(BankError::NoSuchAccount(account.into()));
        }
        self.stage_work(txn, expires, |changes| {
            changes.0.insert(account.into(), delta);
        })
        .map_err(|AlreadyPrepared| BankError::AlreadyPrepared(txn))
    }
}

#[cfg(test)]
mod tests;
