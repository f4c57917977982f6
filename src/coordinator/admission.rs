//! Admission of new transactions at the coordinator's limits (`--max-in-flight`,
//! `--max-undelivered`).
//!
//! A Begin that finds the coordinator full waits a little, in a bounded queue, for room (a
//! transaction decided or finished) rather than being refused at once: a refusal answered at
//! once is asked again at once, and answering the same Begin over and over eats the CPU that
//! finishing transactions needs. A Begin not admitted in time is refused with a hint of when to
//! come back, which the client SDK follows with jitter.
//!
//! The hint follows the pressure. Callers turned away come back after the hint, so the fewer
//! of them there are, or the longer they stay away, the fewer refusals a second: while
//! refusals outnumber a quarter of the Begins admitted, the hint doubles each period (up to
//! 2 s); once they fall under a sixteenth, it halves each period back to the admission wait.
//! Without it, ten times the clients the coordinator can serve bounced every 100 ms — some
//! 10,000 refused Begins a second, a quarter of two cores spent saying no.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest a refused Begin is told to stay away.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The shortest.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(10);

/// How often the hint is weighed against the refusals and admissions since.
const PERIOD: Duration = Duration::from_millis(250);

/// The waiting room in front of the in-flight limit.
pub struct Admission {
    /// The longest a Begin waits for room.
    wait: Duration,
    /// The most Begins waiting at once; more are refused at once.
    queue: usize,
    waiting: AtomicUsize,
    freed: Notify,
    /// Begins admitted and refused in the current period.
    admitted: AtomicU64,
    refused: AtomicU64,
    hint: Mutex<Hint>,
}

/// The retry-after hint refusals carry, and when it was last weighed.
struct Hint {
    retry_after: Duration,
    weighed: Instant,
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
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            hint: Mutex::new(Hint {
                retry_after: Self::floor(wait),
                weighed: Instant::now(),
            }),
        }
    }

    /// The hint when there is no pressure: come back once the wait could have found room.
    fn floor(wait: Duration) -> Duration {
        wait.max(MIN_RETRY_AFTER)
    }

    /// The longest a Begin waits for room.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether `has_room` says so now or, waiting in the queue, before the wait runs out.
    pub async fn room(&self, has_room: impl Fn() -> bool) -> bool {
        let admitted = self.look_for_room(has_room).await;
        let counter = if admitted {
            &self.admitted
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        admitted
    }

    async fn look_for_room(&self, has_room: impl Fn() -> bool) -> bool {
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

    /// How long a Begin refused now should stay away: the hint, weighed again once a period
    /// has passed.
    pub fn retry_after(&self) -> Duration {
        let mut hint = self.hint.lock().expect("lock");
        let periods = hint.weighed.elapsed().as_nanos() / PERIOD.as_nanos();
        if periods == 0 {
            return hint.retry_after;
        }
        hint.weighed = Instant::now();
        let admitted = self.admitted.swap(0, Ordering::Relaxed);
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if refused * 4 > admitted {
            hint.retry_after = (hint.retry_after * 2).min(MAX_RETRY_AFTER);
        } else if refused * 16 < admitted {
            // Quiet periods in which nobody was refused count too.
            let halved = hint.retry_after / 2u32.saturating_pow(periods.min(31) as u32);
            hint.retry_after = halved.max(Self::floor(self.wait));
        }
        hint.retry_after
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

    #[tokio::test(start_paused = true)]
    async fn the_hint_grows_while_refusals_outnumber_admissions_and_falls_back_when_they_stop() {
        let admission = Admission::new(Duration::ZERO, 10);
        let hints = |admitted: usize, refused: usize| {
            let admission = &admission;
            async move {
                for _ in 0..admitted {
                    assert!(admission.room(|| true).await);
                }
                for _ in 0..refused {
                    assert!(!admission.room(|| false).await);
                }
                tokio::time::advance(PERIOD).await;
                admission.retry_after()
            }
        };
        assert_eq!(admission.retry_after(), MIN_RETRY_AFTER, "no pressure yet");
        assert_eq!(hints(100, 30).await, MIN_RETRY_AFTER * 2);
        assert_eq!(hints(100, 30).await, MIN_RETRY_AFTER * 4);
        assert_eq!(
            hints(100, 10).await,
            MIN_RETRY_AFTER * 4,
            "held between the bounds"
        );
        for _ in 0..10 {
            hints(0, 1).await;
        }
        assert_eq!(admission.retry_after(), MAX_RETRY_AFTER, "capped");
        assert_eq!(hints(100, 0).await, MAX_RETRY_AFTER / 2);
        tokio::time::advance(PERIOD * 20).await;
        assert_eq!(hints(100, 0).await, MIN_RETRY_AFTER, "quiet periods count");
    }
}
