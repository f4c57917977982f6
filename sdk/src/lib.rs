//! The Verdict SDK: what a Rust service needs to take part in Verdict transactions, without the
//! coordinator, its consensus, the PostgreSQL driver or the fault tools.
//!
//! A map of the crate:
//! - [`proto`]: the generated public wire contract, `verdict.v1`.
//! - [`client`]: the application client — Begin, Enlist, Commit, Abort — which follows a
//!   cluster's leader.
//! - [`participant`]: the participant SDK — a runtime with its own journal around any
//!   transactional resource, and a participant process around it.
//! - [`durable`]: a sled database with one flusher: group commit made truly durable (the
//!   participant's journal lives here).
//! - The protocol's vocabulary: [`TxnId`], [`Vote`], [`Outcome`], and the retry [`Backoff`].
//! - [`validate`]: the wire's argument rules, shared by every server of the contract.
//! - [`serve`]: the listener loop, reflection and shutdown signal of a gRPC process.
//! - [`tls`]: TLS and mutual TLS for servers and clients (certificates reloaded as they change);
//!   [`credentials`]: the bearer token a client presents.
//! - [`net`] and [`world`]: where a process meets the network, the clock and chance — the seams
//!   a deterministic simulation replaces.
//! - [`frame`], [`periodic`], [`metrics`], [`failpoint`]: small shared parts.
//!
//! # An application
//!
//! One business action is one transaction: begin it, have each service stage its part and enlist
//! (the service does, with the id it is given), then commit.
//!
//! ```no_run
//! # async fn place_order() -> Result<(), tonic::Status> {
//! use std::time::Duration;
//! use verdict_sdk::client::Client;
//! use verdict_sdk::Outcome;
//!
//! let coordinator = Client::new("http://127.0.0.1:7100", Duration::from_secs(10))?;
//! let txn = coordinator.begin(None).await?.txn_id;
//! // … call each service with `txn`; each stages its work and enlists …
//! match coordinator.commit(txn).await? {
//!     (Outcome::Committed, _) => println!("{txn} committed everywhere (delivered in the background)"),
//!     (Outcome::Aborted, reason) => println!("{txn} aborted everywhere: {reason}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # A participant
//!
//! Implement [`participant::Resource`] over the service's own store; the runtime journals each
//! vote and decision, answers the coordinator idempotently, and resolves what a crash left in
//! doubt.
//!
//! ```no_run
//! use std::time::Duration;
//! use verdict_sdk::durable::LogSync;
//! use verdict_sdk::participant::server::{run, ParticipantOptions};
//! use verdict_sdk::participant::{Resource, ResourceError};
//! use verdict_sdk::{TxnId, Vote};
//!
//! /// Dishes in stock; a real one stages each order's change and makes it durable in prepare.
//! struct Kitchen;
//!
//! impl Resource for Kitchen {
//!     async fn prepare(&self, _txn: TxnId) -> Result<Vote, ResourceError> {
//!         Ok(Vote::No("sold out".into()))
//!     }
//!     async fn commit(&self, _txn: TxnId) -> Result<(), ResourceError> {
//!         Ok(())
//!     }
//!     async fn abort(&self, _txn: TxnId) -> Result<(), ResourceError> {
//!         Ok(())
//!     }
//!     async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
//!         Ok(Vec::new())
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let options = ParticipantOptions {
//!         listen: "127.0.0.1:7300".parse()?,
//!         data_dir: "kitchen-data".into(),
//!         coordinator_url: "http://127.0.0.1:7100".into(),
//!         advertise_url: String::new(),
//!         name: "kitchen".into(),
//!         quiet_period: Duration::from_secs(2),
//!         sweep_every: Duration::from_secs(10),
//!         retention: Duration::from_secs(24 * 3600),
//!         log_sync: LogSync::Fsync,
//!         tls: None,
//!     };
//!     let shutdown = verdict_sdk::serve::shutdown_signal();
//!     run(options, "kitchen", |_db| Ok(Kitchen), |_, _, router| Ok(router), shutdown).await
//! }
//! ```

mod backoff;
pub mod client;
pub mod credentials;
pub mod durable;
pub mod failpoint;
pub mod frame;
pub mod id;
pub mod metrics;
pub mod net;
pub mod participant;
pub mod periodic;
pub mod proto;
pub mod serve;
pub mod tls;
pub mod validate;
mod vote;
pub mod world;

pub use backoff::Backoff;
pub use id::TxnId;
pub use vote::{Outcome, Vote};
