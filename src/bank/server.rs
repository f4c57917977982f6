//! A bank participant process: `verdict participant kv`, and the same around any [`Accounts`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::accounts::Accounts;
use super::service::BankService;
use super::store::KvBank;
use crate::client::Client;
use crate::durable::DurableDb;
use crate::participant::server::{self, ParticipantOptions};
use crate::participant::Participant;
use crate::periodic::every;

/// How often staged work past its transaction's deadline is discarded.
const DISCARD_EVERY: Duration = Duration::from_secs(1);

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
    let coordinator = Client::new(&options.coordinator_url, Duration::from_secs(10))?;
    let extend = |participant: &Arc<Participant<A>>, me: &server::Identity, router| {
        let discard = |participant: Arc<Participant<A>>| async move {
            let now = tokio::time::Instant::now();
            let discarded = participant.resource().discard_expired(now);
            if discarded > 0 {
                tracing::info!(
                    discarded,
                    "discarded staged work past its transaction's deadline"
                );
            }
        };
        tokio::spawn(every(DISCARD_EVERY, Arc::downgrade(participant), discard));
        let bank = BankService::new(
            participant.clone(),
            coordinator,
            me.name.clone(),
            me.endpoint.clone(),
        );
        Ok(tonic::transport::server::Router::add_service(
            router,
            bank.into_server(),
        ))
    };
    server::run(options, kind, open, extend, shutdown).await
}
