//! `verdict participant kv`: a bank participant process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::service::BankService;
use super::store::KvBank;
use crate::client::Client;
use crate::participant::server::{self, ParticipantOptions};
use crate::participant::Participant;
use crate::periodic::every;

/// How often staged work past its transaction's deadline is discarded.
const DISCARD_EVERY: Duration = Duration::from_secs(1);

/// Runs a bank until `shutdown`: the participant service, plus `verdict.v1.Bank`.
pub async fn run(
    options: ParticipantOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let coordinator = Client::new(&options.coordinator_url, Duration::from_secs(10))?;
    let open = |db| Ok(KvBank::open(db)?);
    let extend = |participant: &Arc<Participant<KvBank>>, me: &server::Identity, router| {
        let discard = |participant: Arc<Participant<KvBank>>| async move {
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
    server::run(options, "kv", open, extend, shutdown).await
}
