//! The reference participant: a bank of accounts on embedded sled, reached by applications
//! through `verdict.v1.Bank` and by the coordinator through `verdict.v1.Participant`.
//!
//! - [`accounts`]: what any bank keeps, as a participant
//!   [`Resource`](crate::participant::Resource).
//! - [`store`]: the embedded bank: accounts on sled.
//! - [`service`]: `verdict.v1.Bank` over gRPC; `Apply` enlists the bank in the transaction.
//! - [`server`]: `verdict participant kv`.
//! - [`transfer`]: moving money between two banks in one Verdict transaction.
//! - [`work`]: a bank's changes handed to the coordinator in Commit, for it to bring with
//!   Prepare instead of the application calling `Apply`.

pub mod accounts;
pub mod server;
pub mod service;
pub mod store;
mod transfer;
pub mod work;

pub use accounts::{Accounts, BankError};
pub use transfer::{
    participant_of, transfer, transfer_handing, transfer_in, transfer_submitting, AccountAt,
    AccountOf,
};
