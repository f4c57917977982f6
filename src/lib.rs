//! Verdict: a two-phase-commit transaction coordinator.
//!
//! A map of the crate:
//! - [`verdict_sdk`] (re-exported here as [`client`], [`participant`], [`durable`], [`frame`],
//!   [`periodic`], [`tls`], [`net`], [`world`] and the public part of [`proto`]): what a Rust
//!   participant or application depends on, without the coordinator.
//! - [`core`]: the pure protocol — a transaction's state machine. No I/O.
//! - [`log`]: the durable decision log behind the [`log::DecisionLog`] trait, with the sled
//!   implementation and its group commit.
//! - [`coordinator`]: the engine that drives the core with real I/O, the participant client
//!   layer, and the `verdict.v1.Coordinator` gRPC service.
//! - [`cluster`]: cluster mode — the decision log replicated with Raft, and the engine that runs
//!   on the leader only.
//! - [`server`]: `verdict serve` — the listener, health, reflection and graceful shutdown, as a
//!   single node or a cluster node; [`limits`]: what its port accepts, and a per-caller rate
//!   limit; [`auth`]: who is calling, and what each role may call.
//! - [`proto`]: the generated wire contract, with the cluster nodes' own traffic.
//! - [`bank`]: the reference bank participant on embedded sled; [`postgres`]: the PostgreSQL
//!   adapter and the same bank on a PostgreSQL table; [`records`]: records under unique keys
//!   (the food-order demo's order and delivery services); [`kv`]: the embedded resource the KV
//!   bank and the records are work on; [`staging`]: what such participants share — work staged
//!   per transaction, enlisting, discarding at the deadline.
//! - [`metrics`]: every metric's name, and the Prometheus endpoint; [`telemetry`]: logs and the
//!   OTLP span exporter; [`console`]: the web console; [`https`]: the HTTP ports, plain or TLS.
//! - [`chaos`], [`failpoint`], [`bench`]: the fault suite's tools (every crash point named)
//!   and the benchmark.
//! - [`conformance`]: the kit that checks any participant against the participant contract.
//! - [`demo`]: `verdict demo`'s scenarios; [`process`]: servers as child processes.

pub mod auth;
pub mod bank;
pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod conformance;
pub mod console;
pub mod coordinator;
pub mod core;
pub mod demo;
pub mod failpoint;
pub mod https;
pub mod kv;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod postgres;
pub mod process;
pub mod proto;
pub mod records;
pub mod server;
pub mod staging;
pub mod telemetry;

pub use verdict_sdk::{
    client, crash_point, credentials, durable, frame, net, participant, periodic, tls, world,
};
