//! PostgreSQL as a participant, through its own two-phase commit (`PREPARE TRANSACTION`,
//! `COMMIT PREPARED`, `ROLLBACK PREPARED`, `pg_prepared_xacts`).
//!
//! - [`pool`]: connecting, with the checks a two-phase participant needs.
//! - [`resource`]: [`PgResource`], the participant resource any service can stage work on.
//! - [`bank`]: the bank's accounts in a PostgreSQL table.
//! - [`server`]: `verdict participant postgres`.

pub mod bank;
pub mod pool;
pub mod resource;
pub mod server;

pub use resource::{describe, PgResource, Refusal, Work};
