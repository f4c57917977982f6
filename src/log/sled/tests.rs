use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;
use crate::core::{Outcome, Participant};

fn record(n: u8, status: Status) -> TxnRecord {
    TxnRecord {
        txn_id: TxnId::from_bytes([n; 16]),
        status,
        deadline_unix_ms: 1_000,
        finished_unix_ms: 0,
        commit_requested: true,
        reason: None,
        participants: vec![Participant::new("a", "http://127.0.0.1:1")],
        timeline: Default::default(),
    }
}

fn finished(n: u8, at_ms: u64) -> TxnRecord {
    TxnRecord {
        finished_unix_ms: at_ms,
        ..record(n, Status::Finished(Outcome::Committed))
    }
}

#[tokio::test]
async fn a_forced_record_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record(1, Status::Committed);
    {
        let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
        log.force(&rec).await.unwrap();
        assert!(log.stats().syncs.load(Ordering::Relaxed) >= 1);
    }
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    assert_eq!(log.read(rec.txn_id), Ok(Some(rec.clone())));
    assert_eq!(log.unfinished().unwrap(), vec![Ok(rec)]);
}

#[tokio::test]
async fn concurrent_forces_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledLog::open(dir.path(), LogSync::Fsync).unwrap());
    let writers: Vec<_> = (0..64u8)
        .map(|n| log.force(&record(n, Status::Committed)))
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let stats = log.stats();
    let batches = stats.batches.load(Ordering::Relaxed);
    let syncs = stats.syncs.load(Ordering::Relaxed);
    eprintln!("64 concurrent forced writes: {batches} flushes, {syncs} fdatasyncs");
    assert_eq!(stats.forced.load(Ordering::Relaxed), 64);
    assert!(
        batches < 64,
        "64 concurrent forced writes took {batches} flushes"
    );
    // At most one fdatasync per batch (none when an earlier one already covered its writes),
    // besides background flushes.
    assert!((1..64).contains(&syncs), "{syncs} fdatasyncs");
    assert_eq!(log.unfinished().unwrap().len(), 64);
}

#[tokio::test]
async fn finishing_moves_a_record_out_of_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    log.write(&record(1, Status::Active)).unwrap();
    log.write(&record(2, Status::Aborted)).unwrap();
    let done = finished(1, 500);
    log.write(&done).unwrap();
    let unfinished: Vec<_> = log
        .unfinished()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(unfinished, vec![record(2, Status::Aborted)]);
    assert_eq!(log.read(done.txn_id), Ok(Some(done)));
}

#[test]
fn recovery_drops_an_open_record_left_beside_its_end_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    let done = finished(1, 500);
    log.write(&done).unwrap();
    // As if the process died between writing END and removing the open record.
    log.open
        .insert(
            SledLog::key(done.txn_id),
            encode(&record(1, Status::Committed)),
        )
        .unwrap();
    assert_eq!(log.unfinished().unwrap(), vec![]);
    assert_eq!(log.read(done.txn_id), Ok(Some(done)));
}

#[test]
fn finished_records_page_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    for n in [3, 1, 2] {
        log.write(&finished(n, 100)).unwrap();
    }
    let ids = |after| -> Vec<u8> {
        log.finished(after)
            .map(|r| r.unwrap().txn_id.to_bytes()[0])
            .collect()
    };
    assert_eq!(ids(None), vec![1, 2, 3]);
    assert_eq!(ids(Some(TxnId::from_bytes([1; 16]))), vec![2, 3]);
}

#[test]
fn collection_deletes_only_records_finished_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    log.write(&finished(1, 100)).unwrap();
    log.write(&finished(2, 200)).unwrap();
    log.write(&finished(3, 300)).unwrap();
    assert_eq!(log.collect(250), Ok(2));
    assert_eq!(log.read(TxnId::from_bytes([1; 16])), Ok(None));
    assert_eq!(log.read(TxnId::from_bytes([2; 16])), Ok(None));
    assert!(log.read(TxnId::from_bytes([3; 16])).unwrap().is_some());
    assert_eq!(log.collect(250), Ok(0));
}

#[test]
fn a_submitted_transaction_is_found_by_its_request_until_collected() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    let submitted = |n: u8, status| {
        let mut record = record(n, status);
        record.timeline.request_id = Some(format!("order-{n}"));
        record
    };
    let (one, two) = (TxnId::from_bytes([1; 16]), TxnId::from_bytes([2; 16]));
    log.write(&submitted(1, Status::Active)).unwrap();
    log.write(&submitted(2, Status::Committed)).unwrap();
    log.write(&record(3, Status::Committed)).unwrap();
    assert_eq!(log.submitted("order-1"), Ok(Some(one)));
    assert_eq!(log.submitted("order-2"), Ok(Some(two)));
    assert_eq!(log.submitted("order-3"), Ok(None));

    // Finished: still found, until collection takes the record and its index entry.
    log.write(&TxnRecord {
        finished_unix_ms: 100,
        ..submitted(1, Status::Finished(Outcome::Aborted))
    })
    .unwrap();
    assert_eq!(log.submitted("order-1"), Ok(Some(one)));
    assert_eq!(log.collect(200), Ok(1));
    assert_eq!(log.submitted("order-1"), Ok(None));
    assert_eq!(log.requests.iter().count(), 1);
    log.clear().unwrap();
    assert_eq!(log.submitted("order-2"), Ok(None));
}

#[test]
fn a_corrupt_record_is_reported_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    let id = TxnId::from_bytes([5; 16]);
    let mut frame = encode(&record(5, Status::Committed));
    frame.truncate(frame.len() - 3);
    log.open.insert(SledLog::key(id), frame).unwrap();
    let err = log.read(id).unwrap_err();
    assert!(
        matches!(err, LogError::Corrupt { txn: Some(t), .. } if t == id),
        "{err}"
    );
    assert!(matches!(
        log.unfinished().unwrap()[..],
        [Err(LogError::Corrupt { .. })]
    ));
}

#[tokio::test]
async fn collection_deletes_exactly_the_records_finished_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(dir.path(), LogSync::Fsync).unwrap();
    // More than one collection batch, finished at 0, 1, 2 … ms.
    let count = 3 * COLLECT_BATCH as u64 + 7;
    for at_ms in 0..count {
        let mut id = [0; 16];
        id[..8].copy_from_slice(&at_ms.to_be_bytes());
        let done = TxnRecord {
            txn_id: TxnId::from_bytes(id),
            ..finished(0, at_ms)
        };
        log.write(&done).unwrap();
    }
    let cutoff = count - 10;
    assert_eq!(log.collect_finished(cutoff).await, Ok(cutoff as usize));
    let kept: Vec<u64> = log
        .finished(None)
        .map(|r| r.unwrap().finished_unix_ms)
        .collect();
    assert_eq!(kept, (cutoff..count).collect::<Vec<_>>());
    assert_eq!(log.collect_finished(cutoff).await, Ok(0));
}
