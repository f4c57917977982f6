//! A bank participant process: `verdict participant kv`, and the same around any [`Accounts`].

use std::future::Future;
use std::sync::Arc;

use super::accounts::Accounts;
use super::service::BankService;
use super::store::KvBank;
use crate::durable::DurableDb;
use crate::participant::server::ParticipantOptions;
use crate::staging;

/// Runs the embedded bank until `shutdown`.
pub async fn run(
    options: ParticipantOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_bank(options, "kv", |db| Ok(KvBank::open(db)?), shutdown).await
}

/// Runs a bank of kind `kind` until `shutdown`: the participant service around the accounts
/// `open` builds on the participant's database, plus `verdict.v1.Bank`.
pub async fn run_bank<A: Accounts>(
    options: ParticipantOptions,
    kind: &str,
    open: impl FnOnce(Arc<DurableDb>) -> anyhow::Result<A>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let add = |participant, enlister, router: tonic::transport::server::Router| {
        router.add_service(BankService::new(participant, enlister).into_server())
    };
    staging::run(options, kind, open, add, shutdown).await
}
