//! The coordinator: drives the pure protocol core with real I/O.
//!
//! - [`Engine`]: owns in-flight transactions, carries out the core's actions (log writes,
//!   prepares, phase-2 delivery with backoff, deadlines), recovers from the log at start and
//!   collects finished transactions after the retention period.
//! - [`clients`]: the one pooled client layer through which participants are reached, with
//!   [`decisions`] going several to a call; [`allow`]: which participant endpoints it may
//!   reach at all.
//! - [`service`]: `verdict.v1.Coordinator` over gRPC: validation and the mapping of errors to
//!   status codes; on a cluster node that does not lead, writes are redirected to the leader
//!   and reads forwarded to it.
//! - [`leadership`]: which engine serves this node's requests (single node: always its own).
//! - [`admission`]: the short wait of a Begin at the in-flight limit.

pub mod admission;
pub mod allow;
pub mod clients;
mod config;
mod decisions;
mod engine;
mod error;
pub mod leadership;
mod prepares;
pub mod service;
pub mod validate;
mod view;

pub use allow::AllowedParticipants;
pub use config::Config;
pub use engine::{Begun, Engine, HandedWork, NewParticipant, Stats, Submission};
pub use error::{EngineError, Full};
pub use leadership::{Leadership, NotLeader};
pub use view::{State, TxnView};
