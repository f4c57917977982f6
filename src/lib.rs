//! Verdict: a two-phase-commit transaction coordinator.
//!
//! A map of the crate:
//! - [`core`]: the pure protocol — a transaction's state machine, ids, backoff. No I/O.
//! - [`durable`]: a sled database with one flusher: group commit made truly durable.
//! - [`log`]: the durable decision log behind the [`log::DecisionLog`] trait, with the sled
//!   implementation and its group commit.
//! - [`coordinator`]: the engine that drives the core with real I/O, the participant client
//!   layer, and the `verdict.v1.Coordinator` gRPC service.
//! - [`cluster`]: cluster mode — the decision log replicated with Raft, and the engine that runs
//!   on the leader only.
//! - [`server`]: `verdict serve` — the listener, health, reflection and graceful shutdown, as a
//!   single node or a cluster node.
//! - [`client`]: the application client, which follows a cluster's leader.
//! - [`proto`]: the generated wire contract.
//! - [`participant`]: the participant SDK — a runtime with its own journal around any resource.
//! - [`bank`]: the reference bank participant on embedded sled; [`postgres`]: the PostgreSQL
//!   adapter and the same bank on a PostgreSQL table.
//! - [`metrics`]: every metric's name, and the Prometheus endpoint.
//! - [`chaos`], [`failpoint`], [`bench`]: the fault suite's tools and the benchmark.
//! - [`conformance`]: the kit that checks any participant against the participant contract.

pub mod bank;
pub mod bench;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod conformance;
pub mod coordinator;
pub mod core;
pub mod demo;
pub mod durable;
pub mod failpoint;
pub mod frame;
pub mod log;
pub mod metrics;
pub mod participant;
pub mod periodic;
pub mod postgres;
pub mod process;
pub mod proto;
pub mod server;
pub mod telemetry;
