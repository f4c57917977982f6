//! The pure protocol core: presumed-abort two-phase commit as a state machine.
//!
//! Nothing here does I/O, owns a clock, or knows about gRPC or the log's storage. A driver
//! (the coordinator engine) feeds a [`Transaction`] events — client requests, votes, the log's
//! report that a decision is durable, deliveries, a deadline passing — and carries out the
//! [`Action`]s it returns. Durability is an explicit step: nothing that depends on the commit
//! decision (the answer to the client, phase 2) is emitted until the driver reports
//! [`Event::Persisted`].

mod txn;

// The protocol's shared vocabulary — ids, votes, outcomes, backoff — is defined in the SDK, which
// participants and applications build on too; it is as pure as this module.
pub use txn::{
    Action, Delivery, Event, Outcome, Participant, Phase, Policy, Rejection, Transaction, Vote,
};
pub use verdict_sdk::{id, Backoff, TxnId};
