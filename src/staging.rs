//! Participants whose applications stage work per transaction before the coordinator prepares
//! it — the banks, the records service. Such a participant enlists itself when work is staged,
//! and discards staged work that was never prepared once its transaction's deadline has passed,
//! so a crashed application or coordinator leaves nothing behind. Its process serves the
//! application-facing service beside `verdict.v1.Participant`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::server::Router;

use crate::client::Client;
use crate::durable::DurableDb;
use crate::participant::server::{self, ParticipantOptions};
use crate::participant::{Enlister, Participant, Resource};
use crate::periodic::every;

/// How often staged work past its transaction's deadline is discarded.
const DISCARD_EVERY: Duration = Duration::from_secs(1);

/// How long work that arrived with a Prepare (handed over in Commit) stays staged, should that
/// prepare fail without a vote: it runs right after the work is staged, and a NO discards it.
pub const HANDED_WORK_KEPT_FOR: Duration = Duration::from_secs(60);

/// A resource holding work staged per transaction until it prepares.
pub trait Staging: Resource {
    /// Discards staged work whose transaction's deadline has passed; returns how many.
    fn discard_expired(&self, now: Instant) -> usize;
}

/// Runs a participant of kind `kind` around the resource `open` builds on the participant's
/// database until `shutdown`; `add` adds its application-facing service, given the enlister.
pub async fn run<R: Staging>(
    options: ParticipantOptions,
    kind: &str,
    open: impl FnOnce(Arc<DurableDb>) -> anyhow::Result<R>,
    add: impl FnOnce(Arc<Participant<R>>, Enlister, Router) -> Router,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let coordinator = Client::new(&options.coordinator_url, Duration::from_secs(10))?;
    let extend = |participant: &Arc<Participant<R>>, me: &server::Identity, router| {
        tokio::spawn(every(DISCARD_EVERY, Arc::downgrade(participant), discard));
        let enlister = Enlister::new(coordinator, me.name.clone(), me.endpoint.clone());
        Ok(add(participant.clone(), enlister, router))
    };
    server::run(options, kind, open, extend, shutdown).await
}

async fn discard<R: Staging>(participant: Arc<Participant<R>>) {
    let discarded = participant.resource().discard_expired(Instant::now());
    if discarded > 0 {
        tracing::info!(
            discarded,
            "discarded staged work past its transaction's deadline"
        );
    }
}
