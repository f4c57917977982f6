//! Cluster mode: the decision log replicated with Raft ([openraft]) among 3 or 5 nodes, so that
//! no single machine's death blocks a transaction.
//!
//! - [`types`]: what a Raft entry carries — a batch of decision-log writes, stamped with the
//!   leader that proposed it.
//! - [`store`]: the Raft log and vote on a [`DurableDb`](crate::durable::DurableDb), forced
//!   before openraft is told; [`state`]: the state machine — the same record store the
//!   single-node log uses — and its snapshots.
//! - [`network`]: Raft RPCs over tonic on the node's own gRPC port (`verdict.internal.Raft`).
//! - [`log`]: [`ReplicatedLog`], the [`DecisionLog`](crate::log::DecisionLog) the leader's
//!   engine writes through: writes are grouped into one Raft entry per round, a forced write
//!   resolves once a majority has it on disk.
//! - [`admin`]: each node's view of the cluster, membership changes (`verdict cluster`).
//! - [`node`]: one node — storage, Raft, forming the cluster from `--peers`, and the engine
//!   that runs only while this node leads.
//!
//! The safety rules of DESIGN §5 live here: a batch counts only if it is committed in the term
//! of the leader that proposed it (the state machine drops it otherwise, on every node alike),
//! and a new leader starts its engine only after an entry of its own is committed and applied,
//! so the engine recovers every decision a majority ever held.

pub mod admin;
pub mod log;
pub mod network;
pub mod node;
pub mod peers;
pub mod state;
pub mod store;
pub mod types;

pub use self::log::ReplicatedLog;
pub use node::{ClusterNode, ClusterOptions};
pub use peers::Peers;
pub use types::{NodeId, Raft, TypeConfig};
