//! `verdict participant postgres`: a bank whose accounts live in PostgreSQL.

use std::future::Future;

use super::bank;
use super::pool::PgOptions;
use crate::bank::server::run_bank;
use crate::participant::server::ParticipantOptions;

/// Runs a PostgreSQL bank until `shutdown`. Its name (default `postgres@LISTEN`) also prefixes
/// the global ids of the transactions it prepares in PostgreSQL.
pub async fn run(
    mut options: ParticipantOptions,
    pg: PgOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if options.name.is_empty() {
        options.name = format!("postgres@{}", options.listen);
    }
    let bank = bank::open(&pg, &options.name).await?;
    tracing::info!(name = %options.name, pool_size = pg.pool_size, "connected to PostgreSQL");
    run_bank(options, "postgres", |_| Ok(bank), shutdown).await
}
