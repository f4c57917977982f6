//! One lock per transaction, so requests about the same transaction run one at a time while
//! requests about different transactions never wait on each other — which matters when a
//! resource's prepare can wait on a lock that only another transaction's commit releases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::TxnId;

type Gate = Arc<tokio::sync::Mutex<()>>;

/// The locks of the transactions that have a request running or waiting.
#[derive(Default)]
pub struct TxnLocks {
    gates: Mutex<HashMap<TxnId, Gate>>,
}

/// Held while a request about one transaction runs.
pub struct Serial<'a> {
    locks: &'a TxnLocks,
    txn: TxnId,
    _held: OwnedMutexGuard<()>,
}

impl TxnLocks {
    /// Waits until no other request about `txn` runs.
    pub async fn lock(&self, txn: TxnId) -> Serial<'_> {
        let gate = self
            .gates
            .lock()
            .expect("lock")
            .entry(txn)
            .or_default()
            .clone();
        Serial {
            locks: self,
            txn,
            _held: gate.lock_owned().await,
        }
    }
}

impl Drop for Serial<'_> {
    fn drop(&mut self) {
        let mut gates = self.locks.gates.lock().expect("lock");
        // Only the map and this guard know the gate: nobody waits, so it can go.
        if gates
            .get(&self.txn)
            .is_some_and(|gate| Arc::strong_count(gate) == 2)
        {
            gates.remove(&self.txn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn() -> TxnId {
        TxnId::from_uuid(uuid::Uuid::now_v7())
    }

    #[tokio::test]
    async fn the_same_transaction_waits_and_others_do_not() {
        let locks = TxnLocks::default();
        let (a, b) = (txn(), txn());
        let held = locks.lock(a).await;
        assert!(
            tokio::time::timeout(std::time::Duration::ZERO, locks.lock(b))
                .await
                .is_ok()
        );
        let mut waiting = tokio_test::task::spawn(locks.lock(a));
        assert!(waiting.poll().is_pending());
        drop(held);
        assert!(waiting.poll().is_ready());
    }

    #[tokio::test]
    async fn a_released_lock_leaves_nothing_behind() {
        let locks = TxnLocks::default();
        drop(locks.lock(txn()).await);
        assert!(locks.gates.lock().unwrap().is_empty());
    }
}
