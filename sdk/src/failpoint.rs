//! Named crash points, for Verdict's crash suite.
//!
//! With the `failpoints` feature, `crash_point!("participant::after_prepared_record")` is a
//! [`fail`](https://docs.rs/fail) point: arming it with the action `return` (for example
//! `FAILPOINTS="participant::after_prepared_record=return"`, read at start) makes the process
//! abort there — as SIGKILL would: no destructors, no flush. Without the feature it compiles to
//! nothing.

/// Aborts the process here when the named point is armed (see the module doc).
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            if ::fail::eval($name, |_| ()).is_some() {
                ::tracing::error!(point = $name, "crash point reached: aborting");
                ::std::process::abort();
            }
        }
    };
}
