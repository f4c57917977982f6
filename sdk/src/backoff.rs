//! Retry delays for phase-2 delivery: exponential, capped, with jitter.

use std::time::Duration;

/// Exponential backoff with "equal jitter": the delay before retry `n` is half of
/// `min(max, initial · 2^(n-1))` plus a random share of the other half, so that retries to a
/// participant that comes back do not arrive in lock step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Cap on any delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before send number `attempt` (0 is the first send: no delay). `jitter` is a
    /// random sample in `[0, 1]`, supplied by the driver so that this stays deterministic.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let doublings = (attempt - 1).min(32);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };

    #[test]
    fn first_send_has_no_delay() {
        assert_eq!(POLICY.delay(0, 1.0), Duration::ZERO);
    }

    #[test]
    fn delays_double_until_the_cap() {
        assert_eq!(POLICY.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(POLICY.delay(2, 1.0), Duration::from_millis(200));
        assert_eq!(POLICY.delay(5, 1.0), Duration::from_millis(1600));
        assert_eq!(POLICY.delay(20, 1.0), Duration::from_secs(10));
        assert_eq!(POLICY.delay(u32::MAX, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn jitter_spans_the_upper_half() {
        assert_eq!(POLICY.delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(POLICY.delay(2, 0.5), Duration::from_millis(150));
        assert_eq!(POLICY.delay(2, 7.0), Duration::from_millis(200));
    }
}
