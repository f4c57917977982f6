//! Background work that runs on a schedule for as long as its owner lives.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Calls `tick` with the owner every `period`, until the owner is dropped.
pub async fn every<T, F, Fut>(period: Duration, owner: Weak<T>, tick: F)
where
    F: Fn(Arc<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::time::sleep(period).await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        tick(owner).await;
    }
}
