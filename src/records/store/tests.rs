use std::time::Duration;

use std::sync::Arc;

use super::*;
use crate::core::Vote;
use crate::durable::{DurableDb, LogSync};
use crate::participant::Resource;
use crate::staging::Staging;

fn open(dir: &std::path::Path) -> RecordStore {
    let db = Arc::new(DurableDb::open(dir, LogSync::Fsync).unwrap());
    RecordStore::open(db).unwrap()
}

fn wanted(names: &[&str], value: &str) -> Wanted {
    Wanted {
        keys: names.iter().map(|k| k.to_string()).collect(),
        value: value.into(),
        item: "courier".into(),
    }
}

fn txn(n: u8) -> TxnId {
    TxnId::from_bytes([n; 16])
}

fn stage(store: &RecordStore, n: u8, names: &[&str], value: &str) {
    let later = Instant::now() + Duration::from_secs(60);
    store.insert(txn(n), wanted(names, value), later).unwrap();
}

fn committed(store: &RecordStore) -> Vec<(String, String)> {
    let records = store.list().unwrap().into_iter();
    records
        .filter(|r| r.pending.is_none())
        .map(|r| (r.key, r.value))
        .collect()
}

#[tokio::test]
async fn a_committed_insertion_takes_the_first_free_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    stage(&store, 1, &["ana", "ben"], "order-1");
    assert_eq!(store.prepare(txn(1)).await, Ok(Vote::Yes));
    store.commit(txn(1)).await.unwrap();
    stage(&store, 2, &["ana", "ben"], "order-2");
    assert_eq!(store.prepare(txn(2)).await, Ok(Vote::Yes));
    store.commit(txn(2)).await.unwrap();
    store.commit(txn(2)).await.unwrap();
    let expected = vec![
        ("ana".into(), "order-1".into()),
        ("ben".into(), "order-2".into()),
    ];
    assert_eq!(committed(&store), expected);
}

#[tokio::test]
async fn no_free_key_votes_no_with_what_holds_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    stage(&store, 1, &["ana"], "order-1");
    store.prepare(txn(1)).await.unwrap();
    store.commit(txn(1)).await.unwrap();
    stage(&store, 2, &["ben"], "order-2");
    store.prepare(txn(2)).await.unwrap();

    stage(&store, 3, &["ana", "ben"], "order-3");
    let Vote::No(reason) = store.prepare(txn(3)).await.unwrap() else {
        panic!("every key is taken: the insertion must vote no");
    };
    assert!(
        reason
            .starts_with("no courier is free: ana is taken by order-1, ben is held by transaction"),
        "{reason}"
    );
    stage(&store, 4, &["ana"], "order-4");
    assert_eq!(
        store.prepare(txn(4)).await,
        Ok(Vote::No("courier ana is taken by order-1".into()))
    );
}

#[tokio::test]
async fn an_abort_frees_the_key_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    stage(&store, 1, &["ana"], "order-1");
    store.prepare(txn(1)).await.unwrap();
    store.abort(txn(1)).await.unwrap();
    assert_eq!(committed(&store), vec![]);
    stage(&store, 2, &["ana"], "order-2");
    assert_eq!(store.prepare(txn(2)).await, Ok(Vote::Yes));
}

#[tokio::test]
async fn a_prepared_insertion_survives_a_reopen_and_still_holds_its_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        stage(&store, 1, &["ana"], "order-1");
        store.prepare(txn(1)).await.unwrap();
        store.db().flush().await.unwrap();
        store.db().close();
    }
    let store = open(dir.path());
    assert_eq!(store.prepared().await, Ok(vec![txn(1)]));
    let pending = store.list().unwrap();
    assert_eq!(pending[0].pending, Some(txn(1)));
    stage(&store, 2, &["ana"], "order-2");
    assert!(matches!(store.prepare(txn(2)).await, Ok(Vote::No(_))));
    store.commit(txn(1)).await.unwrap();
    assert_eq!(committed(&store), vec![("ana".into(), "order-1".into())]);
}

#[tokio::test]
async fn staged_work_is_discarded_at_its_deadline_and_then_votes_no() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let deadline = Instant::now() + Duration::from_secs(5);
    store
        .insert(txn(1), wanted(&["ana"], "order-1"), deadline)
        .unwrap();
    assert_eq!(store.discard_expired(deadline - Duration::from_secs(1)), 0);
    assert_eq!(store.discard_expired(deadline), 1);
    assert!(matches!(store.prepare(txn(1)).await, Ok(Vote::No(_))));
}
