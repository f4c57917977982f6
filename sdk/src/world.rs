//! What the code takes from the world around it that a deterministic simulation must supply
//! instead: the wall clock, and chance (retry jitter, the random part of transaction ids).
//!
//! Normally these read the system clock and the thread's random generator. A simulation that
//! runs the real servers on one thread (see `tests/simulation`) calls [`simulate`] on that
//! thread first: time then comes from its clock and chance from a generator seeded by it, so
//! that a seed replays exactly.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A simulation's clock and chance.
struct Simulated {
    /// The simulated time since the Unix epoch.
    clock: fn() -> Duration,
    rng: StdRng,
}

thread_local! {
    static SIMULATED: RefCell<Option<Simulated>> = const { RefCell::new(None) };
}

/// From now on, on this thread, the wall clock is `clock` and chance follows `seed`.
pub fn simulate(clock: fn() -> Duration, seed: u64) {
    let rng = StdRng::seed_from_u64(seed);
    SIMULATED.with(|s| *s.borrow_mut() = Some(Simulated { clock, rng }));
}

/// Back to the system clock and the thread's random generator, on this thread.
pub fn stop_simulating() {
    SIMULATED.with(|s| *s.borrow_mut() = None);
}

/// The time since the Unix epoch.
pub fn since_epoch() -> Duration {
    let clock = SIMULATED.with(|s| s.borrow().as_ref().map(|s| s.clock));
    match clock {
        Some(clock) => clock(),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    }
}

/// Milliseconds since the Unix epoch: the protocol's deadlines and timestamps.
pub fn now_unix_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// A random sample in `[0, 1)`: a retry's jitter.
pub fn jitter() -> f64 {
    with_rng(|rng| rng.random())
}

/// A new version-7 UUID: the current millisecond, then random bits (outside a simulation,
/// uuid's own, ordered within the millisecond too).
pub fn uuid_v7() -> uuid::Uuid {
    if SIMULATED.with(|s| s.borrow().is_none()) {
        return uuid::Uuid::now_v7();
    }
    let random: [u8; 10] = with_rng(|rng| rng.random());
    uuid::Builder::from_unix_timestamp_millis(now_unix_ms(), &random).into_uuid()
}

fn with_rng<T>(f: impl FnOnce(&mut dyn rand::RngCore) -> T) -> T {
    SIMULATED.with(|s| match s.borrow_mut().as_mut() {
        Some(simulated) => f(&mut simulated.rng),
        None => f(&mut rand::rng()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ten_seconds() -> Duration {
        Duration::from_secs(10)
    }

    #[test]
    fn a_simulation_supplies_the_clock_and_replays_its_chance() {
        let draw = || (jitter(), uuid_v7());
        simulate(ten_seconds, 7);
        assert_eq!(now_unix_ms(), 10_000);
        let first = draw();
        simulate(ten_seconds, 7);
        assert_eq!(draw(), first, "the same seed draws the same");
        simulate(ten_seconds, 8);
        assert_ne!(draw(), first, "another seed draws otherwise");
        stop_simulating();
        assert!(now_unix_ms() > 1_700_000_000_000, "the system clock again");
    }

    #[test]
    fn ids_carry_their_millisecond() {
        simulate(ten_seconds, 1);
        assert_eq!(uuid_v7().get_timestamp().map(|t| t.to_unix().0), Some(10));
        stop_simulating();
    }
}
