//! Moving money between accounts on two banks in one Verdict transaction.

use tonic::transport::Channel;
use tonic::Status;

use crate::client::Client;
use crate::core::{Outcome, TxnId};
use crate::proto::bank_client::BankClient;
use crate::proto::{ApplyRequest, DescribeRequest, ParticipantRef, ParticipantWork};

/// An account at a bank.
#[derive(Clone)]
pub struct AccountAt {
    pub bank: BankClient<Channel>,
    pub account: String,
}

impl AccountAt {
    async fn apply(&self, txn: TxnId, delta: i64, enlisted_until: u64) -> Result<(), Status> {
        let request = ApplyRequest {
            txn_id: txn.to_string(),
            account: self.account.clone(),
            delta,
            deadline_unix_ms: enlisted_until,
        };
        self.bank.clone().apply(request).await.map(drop)
    }
}

/// An account at a bank, named by the participant the bank takes part as (`Bank.Describe`): for
/// handing the account's change to the coordinator in Commit.
#[derive(Clone)]
pub struct AccountOf {
    pub bank: ParticipantRef,
    pub account: String,
}

impl AccountOf {
    /// `account` at `bank`, asking the bank which participant it is.
    pub async fn at(bank: &BankClient<Channel>, account: String) -> Result<Self, Status> {
        let bank = participant_of(bank).await?;
        Ok(AccountOf { bank, account })
    }
}

/// The participant `bank` takes part in transactions as (its `Describe`).
pub async fn participant_of(bank: &BankClient<Channel>) -> Result<ParticipantRef, Status> {
    let described = bank
        .clone()
        .describe(DescribeRequest {})
        .await?
        .into_inner();
    Ok(ParticipantRef {
        name: described.name,
        endpoint: described.endpoint,
    })
}

fn positive(amount: i64) -> Result<(), Status> {
    match amount > 0 {
        true => Ok(()),
        false => Err(Status::invalid_argument(format!(
            "amount {amount} is not positive"
        ))),
    }
}

/// Transfers `amount` from `from` to `to`: begins a transaction, stages both changes (which
/// enlists both banks) and commits. Returns the transaction, its outcome and the abort reason.
/// If staging fails the transaction is aborted and the error returned.
pub async fn transfer(
    coordinator: &Client,
    from: &AccountAt,
    to: &AccountAt,
    amount: i64,
) -> Result<(TxnId, Outcome, String), Status> {
    positive(amount)?;
    let txn = coordinator.begin(None).await?.txn_id;
    let (outcome, reason) = transfer_in(coordinator, txn, 0, from, to, amount).await?;
    Ok((txn, outcome, reason))
}

/// The transfer in a transaction already begun: stages both changes (at once) and commits.
/// `enlisted_until` is 0 for banks to enlist themselves, or the transaction's deadline if both
/// were named at Begin. If staging fails the transaction is aborted (best effort) and the error
/// returned.
pub async fn transfer_in(
    coordinator: &Client,
    txn: TxnId,
    enlisted_until: u64,
    from: &AccountAt,
    to: &AccountAt,
    amount: i64,
) -> Result<(Outcome, String), Status> {
    let staged = tokio::try_join!(
        from.apply(txn, -amount, enlisted_until),
        to.apply(txn, amount, enlisted_until)
    );
    if let Err(status) = staged {
        let _ = coordinator
            .abort(txn, &format!("staging failed: {}", status.message()))
            .await;
        return Err(status);
    }
    coordinator.commit(txn).await
}

/// The transfer in a transaction already begun, without a call to either bank: each bank's
/// change is handed to the coordinator in Commit (a `BankWork`), which enlists the bank and
/// brings the change with its Prepare.
pub async fn transfer_handing(
    coordinator: &Client,
    txn: TxnId,
    from: &AccountOf,
    to: &AccountOf,
    amount: i64,
) -> Result<(Outcome, String), Status> {
    let work = work_of(from, to, amount)?;
    coordinator.commit_handing(txn, work).await
}

/// The transfer as one Submit to the coordinator, which begins the transaction and hands each
/// bank its change with its Prepare: one call in all. `request_id` names the transfer, so a
/// retry of it never moves the money twice. Returns the transaction, its outcome and reason.
pub async fn transfer_submitting(
    coordinator: &Client,
    request_id: &str,
    from: &AccountOf,
    to: &AccountOf,
    amount: i64,
) -> Result<(TxnId, Outcome, String), Status> {
    let work = work_of(from, to, amount)?;
    coordinator.submit(request_id, work).await
}

/// Each bank's change in the transfer, as the work to hand it.
fn work_of(from: &AccountOf, to: &AccountOf, amount: i64) -> Result<Vec<ParticipantWork>, Status> {
    positive(amount)?;
    // One entry per bank, should both accounts be at one.
    let mut banks: Vec<(&ParticipantRef, Vec<(&str, i64)>)> = Vec::new();
    for (side, delta) in [(from, -amount), (to, amount)] {
        match banks
            .iter_mut()
            .find(|(bank, _)| bank.name == side.bank.name)
        {
            Some((_, changes)) => changes.push((&side.account, delta)),
            None => banks.push((&side.bank, vec![(&side.account, delta)])),
        }
    }
    let work = banks
        .into_iter()
        .map(|(bank, changes)| ParticipantWork {
            participant: Some(bank.clone()),
            work: super::work::encode(changes),
        })
        .collect();
    Ok(work)
}
