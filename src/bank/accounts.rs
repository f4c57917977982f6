//! What a bank keeps, whatever it keeps it in: accounts, and changes staged per transaction.
//! `verdict.v1.Bank` serves any [`Accounts`]; the embedded [`KvBank`](super::store::KvBank)
//! and the PostgreSQL bank are the two kinds.

use std::future::Future;

use tokio::time::Instant;

use crate::core::TxnId;
use crate::durable::StorageError;
use crate::staging::Staging;

/// The longest account id.
pub const MAX_ACCOUNT_BYTES: usize = 64;

/// An account id must be 1 to [`MAX_ACCOUNT_BYTES`] bytes without control characters.
pub fn check_account(text: &str) -> Result<&str, String> {
    if text.is_empty() || text.len() > MAX_ACCOUNT_BYTES || text.chars().any(char::is_control) {
        return Err(format!(
            "account {:?} must be 1 to {MAX_ACCOUNT_BYTES} bytes without control characters",
            text.chars().take(80).collect::<String>()
        ));
    }
    Ok(text)
}

/// Why a bank request failed.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("account {0:?} does not exist; open it first")]
    NoSuchAccount(String),
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("transaction {0} is already prepared here; it can no longer change")]
    AlreadyPrepared(TxnId),
    #[error("the bank's storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("the bank's database failed: {0}; check that it is up and reachable, then retry")]
    Database(String),
}

impl From<sled::Error> for BankError {
    fn from(e: sled::Error) -> Self {
        BankError::Storage(e.into())
    }
}

/// Accounts as a participant resource: changes are staged per transaction, checked when it
/// prepares (an overdraft votes NO) and applied when it commits.
pub trait Accounts: Staging {
    /// Opens an account, durably.
    fn open_account(
        &self,
        account: &str,
        balance: i64,
    ) -> impl Future<Output = Result<(), BankError>> + Send;

    /// The committed balance of an account and what prepared transactions hold of it.
    fn balance(&self, account: &str) -> impl Future<Output = Result<(i64, i64), BankError>> + Send;

    /// Succeeds if `account` exists, else [`BankError::NoSuchAccount`].
    fn exists(&self, account: &str) -> impl Future<Output = Result<(), BankError>> + Send {
        async move { self.balance(account).await.map(drop) }
    }

    /// Stages `delta` as the change `txn` makes to `account` (replacing an earlier one), to be
    /// discarded at `expires` unless prepared by then.
    fn stage(
        &self,
        txn: TxnId,
        account: &str,
        delta: i64,
        expires: Instant,
    ) -> impl Future<Output = Result<(), BankError>> + Send;
}
