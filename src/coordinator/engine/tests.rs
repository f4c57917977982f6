//! Engine units on an in-memory log whose forced writes complete only when the test says so.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_test::{assert_pending, assert_ready};

use super::*;
use crate::core::Backoff;

/// A log in memory whose forced writes wait for a permit, or fail as a deposed leader's do.
struct GatedLog {
    records: Mutex<HashMap<TxnId, TxnRecord>>,
    durable: Arc<Semaphore>,
    deposed: std::sync::atomic::AtomicBool,
}

impl Default for GatedLog {
    fn default() -> Self {
        GatedLog {
            records: Mutex::default(),
            durable: Arc::new(Semaphore::new(0)),
            deposed: Default::default(),
        }
    }
}

impl DecisionLog for GatedLog {
    fn write(&self, record: &TxnRecord) -> Result<(), LogError> {
        self.records
            .lock()
            .unwrap()
            .insert(record.txn_id, record.clone());
        Ok(())
    }

    fn force(
        &self,
        record: &TxnRecord,
    ) -> impl std::future::Future<Output = Result<(), LogError>> + Send + use<> {
        let written = self.write(record);
        let durable = self.durable.clone();
        let deposed = self.deposed.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            if deposed {
                return Err(LogError::Unavailable("deposed".into()));
            }
            durable.acquire().await.expect("open").forget();
            written
        }
    }

    fn read(&self, txn_id: TxnId) -> Result<Option<TxnRecord>, LogError> {
        Ok(self.records.lock().unwrap().get(&txn_id).cloned())
    }

    fn submitted(&self, request_id: &str) -> Result<Option<TxnId>, LogError> {
        let records = self.records.lock().unwrap();
        let found = records
            .values()
            .find(|r| r.timeline.request_id.as_deref() == Some(request_id));
        Ok(found.map(|r| r.txn_id))
    }

    fn unfinished(&self) -> Result<Vec<Result<TxnRecord, LogError>>, LogError> {
        Ok(Vec::new())
    }

    fn finished(
        &self,
        _after: Option<TxnId>,
    ) -> Box<dyn Iterator<Item = Result<TxnRecord, LogError>> + '_> {
        Box::new(std::iter::empty())
    }

    fn collect_finished(
        &self,
        _before_unix_ms: u64,
    ) -> impl std::future::Future<Output = Result<usize, LogError>> + Send + use<> {
        std::future::ready(Ok(0))
    }

    fn close(&self) {}
}

async fn let_tasks_run() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn commit_is_answered_only_once_the_decision_is_durable() {
    let log = GatedLog::default();
    let durable = log.durable.clone();
    let engine = Engine::start(log, Config::default()).unwrap();
    let id = engine.begin(None, vec![], None).await.unwrap().txn_id;

    let mut commit = tokio_test::task::spawn(engine.commit(id, false, Vec::new()));
    assert_pending!(commit.poll());
    let_tasks_run().await;
    assert_pending!(commit.poll());
    assert_eq!(engine.resolve(id).unwrap(), None, "undecided until durable");
    assert_eq!(engine.get(id).unwrap().state, State::Preparing);

    durable.add_permits(1);
    let_tasks_run().await;
    assert!(commit.is_woken());
    let (outcome, reason) = assert_ready!(commit.poll()).unwrap();
    assert_eq!((outcome, reason), (Outcome::Committed, None));
    assert_eq!(engine.resolve(id).unwrap(), Some(Outcome::Committed));
}

#[tokio::test(start_paused = true)]
async fn an_uncommitted_transaction_is_aborted_at_its_deadline() {
    let engine = Engine::start(GatedLog::default(), Config::default()).unwrap();
    let id = engine
        .begin(Some(Duration::from_secs(30)), vec![], None)
        .await
        .unwrap()
        .txn_id;

    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(engine.get(id).unwrap().state, State::Active);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = engine.get(id).unwrap();
    assert_eq!(view.state, State::Aborted);
    assert!(view.reason.unwrap().contains("deadline"));
}

#[tokio::test(start_paused = true)]
async fn a_committed_transaction_outlives_its_deadline() {
    let engine = Engine::start(GatedLog::default(), Config::default()).unwrap();
    engine.log.durable.add_permits(1);
    let id = engine
        .begin(Some(Duration::from_secs(1)), vec![], None)
        .await
        .unwrap()
        .txn_id;
    assert_eq!(
        engine.commit(id, true, Vec::new()).await.unwrap().0,
        Outcome::Committed
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(engine.get(id).unwrap().state, State::Committed);
}

#[tokio::test]
async fn a_log_that_takes_no_more_writes_stops_the_engine_without_an_answer() {
    let log = GatedLog::default();
    log.deposed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let engine = Engine::start(log, Config::default()).unwrap();
    let id = engine.begin(None, vec![], None).await.unwrap().txn_id;

    let refused = engine.commit(id, false, Vec::new()).await.unwrap_err();
    assert!(matches!(refused, EngineError::Unavailable(_)), "{refused}");
    // Nothing is decided here any more: the next leader's engine recovers the transaction.
    assert!(matches!(
        engine.begin(None, vec![], None).await.unwrap_err(),
        EngineError::Unavailable(_)
    ));
    assert_eq!(engine.get(id).unwrap().state, State::Preparing);
}

fn one_in_flight() -> Arc<Engine<GatedLog>> {
    let config = Config {
        max_in_flight: 1,
        admission_wait: Duration::from_millis(100),
        ..Config::default()
    };
    Engine::start(GatedLog::default(), config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn at_the_in_flight_limit_a_begin_waits_for_a_transaction_to_finish() {
    let engine = one_in_flight();
    let first = engine.begin(None, vec![], None).await.unwrap().txn_id;
    let waiting = tokio::spawn({
        let engine = engine.clone();
        async move { engine.begin(None, vec![], None).await }
    });
    let_tasks_run().await;
    assert!(!waiting.is_finished(), "no room yet");
    engine.abort(first, "making room".into()).unwrap();
    let second = waiting
        .await
        .unwrap()
        .expect("admitted once the first finished");
    assert_eq!(engine.get(second.txn_id).unwrap().state, State::Active);
}

#[tokio::test(start_paused = true)]
async fn at_the_in_flight_limit_a_begin_with_no_room_in_time_is_refused_with_a_hint() {
    let engine = one_in_flight();
    engine.begin(None, vec![], None).await.unwrap();
    let started = tokio::time::Instant::now();
    let refused = engine.begin(None, vec![], None).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "waited first"
    );
    let EngineError::Overloaded { retry_after, .. } = refused else {
        panic!("{refused}");
    };
    assert_eq!(retry_after, Duration::from_millis(100));
    assert!(refused.to_string().contains("--max-in-flight"), "{refused}");
}

/// An engine allowing one undecided transaction and `undelivered` owed their phase 2, whose
/// retries of phase 2 wait an hour.
fn owing(undelivered: usize) -> Arc<Engine<GatedLog>> {
    let config = Config {
        max_in_flight: 1,
        max_undelivered: undelivered,
        admission_wait: Duration::ZERO,
        backoff: Backoff {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
        },
        ..Config::default()
    };
    Engine::start(GatedLog::default(), config).unwrap()
}

fn gone() -> NewParticipant {
    NewParticipant {
        name: "gone".into(),
        endpoint: "http://127.0.0.1:1".into(),
    }
}

/// Begins a transaction with a participant that is gone, aborts it, and waits until the abort
/// could not be delivered: it is then owed to the participant (the next try is in an hour).
async fn aborted_and_owed(engine: &Arc<Engine<GatedLog>>) {
    let id = engine.begin(None, vec![gone()], None).await.unwrap().txn_id;
    engine.abort(id, "the customer cancelled".into()).unwrap();
    let undelivered = async {
        while engine.get(id).unwrap().participants[0].last_error.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), undelivered)
        .await
        .expect("the abort's delivery failed");
    assert_eq!(engine.get(id).unwrap().state, State::Aborting);
}

#[tokio::test]
async fn a_transaction_whose_decision_a_participant_did_not_take_counts_against_max_undelivered() {
    // Until a delivery fails, a transaction being decided or delivered is in flight.
    let engine = owing(2);
    engine.begin(None, vec![gone()], None).await.unwrap();
    let refused = engine.begin(None, vec![], None).await.unwrap_err();
    assert!(refused.to_string().contains("--max-in-flight"), "{refused}");

    let engine = owing(2);
    aborted_and_owed(&engine).await;
    engine
        .begin(None, vec![], None)
        .await
        .expect("admitted: the owed transaction waits on its participant");
    let refused = engine.begin(None, vec![], None).await.unwrap_err();
    assert!(refused.to_string().contains("--max-in-flight"), "{refused}");

    let engine = owing(1);
    aborted_and_owed(&engine).await;
    let refused = engine.begin(None, vec![], None).await.unwrap_err();
    let EngineError::Overloaded { full, .. } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(*full, Full::Undelivered(1));
    assert!(
        refused.to_string().contains("bring back the participants"),
        "{refused}"
    );
}
