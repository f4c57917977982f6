//! A bank's part of a transaction handed to the coordinator in Commit (`CommitRequest.work`)
//! rather than staged with `Apply`: a `verdict.v1.BankWork`, written by the application and read
//! by either bank when the coordinator's Prepare brings it.

use prost::Message;

use super::accounts::check_account;
use crate::proto::{AccountChange, BankWork};

/// The work that sets each `(account, delta)`, for `CommitRequest.work`.
pub fn encode<'a>(changes: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<u8> {
    let changes = changes
        .into_iter()
        .map(|(account, delta)| AccountChange {
            account: account.to_owned(),
            delta,
        })
        .collect();
    BankWork { changes }.encode_to_vec()
}

/// The changes in handed work, each checked as `Apply` checks its own; or the reason to vote NO.
pub fn decode(work: &[u8]) -> Result<Vec<(String, i64)>, String> {
    let work = BankWork::decode(work)
        .map_err(|e| format!("the work handed to this bank is not a verdict.v1.BankWork ({e})"))?;
    if work.changes.is_empty() {
        return Err("the work handed to this bank names no change".into());
    }
    work.changes
        .into_iter()
        .map(|change| {
            check_account(&change.account)?;
            match change.delta {
                0 => Err(format!(
                    "the change to account {:?} is zero; give the (non-zero) change",
                    change.account
                )),
                delta => Ok((change.account, delta)),
            }
        })
        .collect()
}
