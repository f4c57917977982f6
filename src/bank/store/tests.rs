use std::time::Duration;

use super::*;
use crate::bank::Accounts;
use crate::core::Vote;
use crate::durable::{DurableDb, LogSync};
use crate::participant::Resource;
use crate::staging::Staging;
use std::sync::Arc;

fn bank() -> (tempfile::TempDir, Arc<DurableDb>, KvBank) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(DurableDb::open(dir.path(), LogSync::Fsync).unwrap());
    (dir, db.clone(), KvBank::open(db).unwrap())
}

fn txn(n: u8) -> TxnId {
    TxnId::from_bytes([n; 16])
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn with_accounts(bank: &KvBank) {
    bank.open_account("alice", 100).await.unwrap();
    bank.open_account("bob", 10).await.unwrap();
}

#[tokio::test]
async fn a_committed_transfer_moves_the_money() {
    let (_dir, _db, bank) = bank();
    with_accounts(&bank).await;
    bank.stage(txn(1), "alice", -30, later()).await.unwrap();
    bank.stage(txn(1), "bob", 30, later()).await.unwrap();
    assert_eq!(bank.prepare(txn(1)).await, Ok(Vote::Yes));
    assert_eq!(
        bank.balance("alice").await.unwrap(),
        (100, 30),
        "held, not yet taken"
    );
    bank.commit(txn(1)).await.unwrap();
    bank.commit(txn(1)).await.unwrap();
    assert_eq!(bank.balance("alice").await.unwrap(), (70, 0));
    assert_eq!(bank.balance("bob").await.unwrap(), (40, 0));
}

#[tokio::test]
async fn an_overdraft_votes_no_and_changes_nothing() {
    let (_dir, _db, bank) = bank();
    with_accounts(&bank).await;
    bank.stage(txn(1), "bob", -11, later()).await.unwrap();
    let Vote::No(reason) = bank.prepare(txn(1)).await.unwrap() else {
        panic!("an overdraft must vote no");
    };
    assert!(
        reason.contains("insufficient funds in account \"bob\""),
        "{reason}"
    );
    assert_eq!(bank.balance("bob").await.unwrap(), (10, 0));
}

#[tokio::test]
async fn prepared_withdrawals_hold_money_from_later_ones() {
    let (_dir, _db, bank) = bank();
    with_accounts(&bank).await;
    for n in 1..=3 {
        bank.stage(txn(n), "alice", -40, later()).await.unwrap();
    }
    assert_eq!(bank.prepare(txn(1)).await, Ok(Vote::Yes));
    assert_eq!(bank.prepare(txn(2)).await, Ok(Vote::Yes));
    assert!(
        matches!(bank.prepare(txn(3)).await, Ok(Vote::No(_))),
        "80 held of 100"
    );
    bank.abort(txn(2)).await.unwrap();
    assert_eq!(
        bank.balance("alice").await.unwrap(),
        (100, 40),
        "abort releases its hold"
    );
}

#[tokio::test]
async fn nothing_staged_votes_no() {
    let (_dir, _db, bank) = bank();
    assert!(matches!(bank.prepare(txn(9)).await, Ok(Vote::No(_))));
}

#[tokio::test]
async fn a_prepared_transaction_cannot_change() {
    let (_dir, _db, bank) = bank();
    with_accounts(&bank).await;
    bank.stage(txn(1), "alice", -1, later()).await.unwrap();
    bank.prepare(txn(1)).await.unwrap();
    assert!(matches!(
        bank.stage(txn(1), "alice", -50, later()).await,
        Err(BankError::AlreadyPrepared(_))
    ));
    assert!(matches!(
        bank.stage(txn(2), "carol", 5, later()).await,
        Err(BankError::NoSuchAccount(_))
    ));
}

#[tokio::test]
async fn prepared_changes_and_holds_survive_reopening() {
    let (dir, db, bank) = bank();
    with_accounts(&bank).await;
    bank.stage(txn(1), "alice", -60, later()).await.unwrap();
    bank.prepare(txn(1)).await.unwrap();
    db.flush().await.unwrap();
    drop(bank);
    drop(db);
    let db = Arc::new(DurableDb::open(dir.path(), LogSync::Fsync).unwrap());
    let bank = KvBank::open(db).unwrap();
    assert_eq!(bank.prepared().await.unwrap(), vec![txn(1)]);
    assert_eq!(bank.balance("alice").await.unwrap(), (100, 60));
    bank.commit(txn(1)).await.unwrap();
    assert_eq!(bank.balance("alice").await.unwrap(), (40, 0));
}

#[tokio::test]
async fn staged_work_expires_at_the_deadline() {
    let (_dir, _db, bank) = bank();
    with_accounts(&bank).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    bank.stage(txn(1), "alice", -5, deadline).await.unwrap();
    assert_eq!(bank.discard_expired(deadline - Duration::from_secs(1)), 0);
    assert_eq!(bank.discard_expired(deadline), 1);
    assert!(matches!(bank.prepare(txn(1)).await, Ok(Vote::No(_))));
}

#[tokio::test]
async fn an_account_opens_once() {
    let (_dir, _db, bank) = bank();
    bank.open_account("alice", 5).await.unwrap();
    assert!(matches!(
        bank.open_account("alice", 7).await,
        Err(BankError::AccountExists(_))
    ));
    assert_eq!(bank.balance("alice").await.unwrap(), (5, 0));
}
