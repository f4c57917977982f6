//! The participant SDK: wrap a transactional resource and it takes part in Verdict transactions.
//!
//! - [`Resource`]: what a participant author implements — prepare (vote), commit, abort, and the
//!   list of what it has prepared.
//! - [`Participant`]: the runtime around a resource. It keeps the participant's own durable
//!   journal of each transaction (forced before a YES is sent and before a commit is
//!   acknowledged), answers every request idempotently, resolves transactions left in doubt
//!   with the coordinator's `Resolve`, and recovers after a restart.
//! - [`ParticipantService`]: `verdict.v1.Participant` over gRPC around a [`Participant`].
//! - [`Enlister`]: how an application-facing service enlists its participant before staging.
//! - [`server`]: a participant process around any resource.

mod enlist;
mod journal;
pub mod noop;
mod resource;
mod runtime;
mod serial;
pub mod server;
mod service;

pub use enlist::Enlister;
pub use journal::{Journal, Local};
pub use resource::{Resource, ResourceError, TAKES_NO_HANDED_WORK};
pub use runtime::{Participant, ParticipantConfig, ParticipantError};
pub use service::ParticipantService;

/// Fuzzing's way into the journal's entry decoder (built only by `cargo fuzz`).
#[cfg(fuzzing)]
pub fn decode_journal_entry(value: &[u8]) -> Result<Local, crate::durable::StorageError> {
    journal::decode(crate::TxnId::from_bytes([7; 16]), value)
}
