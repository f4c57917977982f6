//! Admission of new transactions at the coordinator's limits (`--max-in-flight`,
//! `--max-undelivered`).
//!
//! A Begin that finds the coordinator full waits a little, in a bounded queue, for room (a
//! transaction decided or finished) rather than being refused at once: a refusal answered at
//! once is asked again at once, and answering the same Begin over and over eats the CPU that
//! finishing transactions needs. A Begin not admitted in time is refused with a hint of when to come back, which the
//! client SDK follows with jitter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The waiting room in front of the in-flight limit.
pub struct Admission {
    /// The longest a Begin waits for room.
    wait: Duration,
    /// The most Begins waiting at once; more are refused at once.
    queue: usize,
    waiting: AtomicUsize,
    freed: Notify,
}

/// Leaves the queue when dropped, however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    pub fn new(wait: Duration, queue: usize) -> Self {
        Admission {
            wait,
            queue,
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// The longest a Begin waits for room.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether `has_room` says so now or, waiting in the queue, before the wait runs out.
    pub async fn room(&self, has_room: impl Fn() -> bool) -> bool {
        if has_room() {
            return true;
        }
        if self.wait.is_zero() {
            return false;
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.queue {
            return false;
        }
        let until = Instant::now() + self.wait;
        loop {
            // Registered before looking, so a transaction finishing in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if has_room() {
                return true;
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return has_room();
            }
        }
    }

    /// Room was made (a transaction decided, or finished): one waiting Begin may look again.
    pub fn freed(&self) {
        // Cheap when nobody waits; a Begin joining the queue after this load looks for room
        // itself before it waits.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_begin_waits_for_a_transaction_to_finish() {
        let admission = Arc::new(Admission::new(Duration::from_millis(100), 10));
        let room = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (admission, room) = (admission.clone(), room.clone());
            async move { admission.room(|| room.load(Ordering::SeqCst)).await }
        });
        tokio::time::sleep(Duration::from_millis(40)).await;
        room.store(true, Ordering::SeqCst);
        admission.freed();
        assert!(waiter.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_begin_with_no_room_in_time_is_refused_after_the_wait() {
        let admission = Admission::new(Duration::from_millis(100), 10);
        let started = Instant::now();
        assert!(!admission.room(|| false).await);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(
            admission.waiting.load(Ordering::SeqCst),
            0,
            "left the queue"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_queue_a_begin_is_refused_at_once() {
        let admission = Arc::new(Admission::new(Duration::from_secs(1), 1));
        let first = tokio::spawn({
            let admission = admission.clone();
            async move { admission.room(|| false).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(admission.waiting.load(Ordering::SeqCst), 1);
        let started = Instant::now();
        assert!(!admission.room(|| false).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(!first.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_wait_a_full_coordinator_refuses_at_once() {
        let admission = Admission::new(Duration::ZERO, 10);
        assert!(admission.room(|| true).await);
        assert!(!admission.room(|| false).await);
        assert_eq!(admission.waiting.load(Ordering::SeqCst), 0);
    }
}
