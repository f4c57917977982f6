//! Fault injection for testing Verdict the way users will judge it: real processes killed at
//! random or at named crash points, and a network made slow, lossy or partitioned.
//!
//! - [`proxy`]: a fault-injecting TCP proxy.
//! - [`cluster`]: a coordinator and bank participants as killable child processes, optionally
//!   behind proxies.
//! - [`ledger`]: the bank workload and the invariant checker.
//! - [`crash`]: the crash matrix's rounds until a crash point fires, and its verdict.
//! - [`nemesis`]: the randomized run (`verdict nemesis`).

pub mod cluster;
pub mod crash;
pub mod ledger;
pub mod nemesis;
pub mod proxy;
