//! A participant process: binds, opens its database, starts the runtime around a resource,
//! and serves `verdict.v1.Participant` (plus whatever the resource adds), health and
//! reflection until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tonic::transport::server::Router;
use tonic::transport::Server;

use super::{Journal, Participant, ParticipantConfig, ParticipantService, Resource};
use crate::durable::{DurableDb, LogSync};
use crate::net::Listener;
use crate::proto::participant_server::ParticipantServer;
use crate::serve::{own_url, serve, with_reflection};
use crate::tls::ServerTls;

/// Where and how to run a participant.
#[derive(Clone, Debug)]
pub struct ParticipantOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The coordinator to enlist with, and to ask `Resolve` about what was prepared before a
    /// restart when the journal names none.
    pub coordinator_url: String,
    /// Its URL as the coordinator reaches it; empty means `http://` + the bound address.
    pub advertise_url: String,
    /// The name it enlists under; empty means KIND@ + the bound address.
    pub name: String,
    pub quiet_period: Duration,
    /// How often the resource's prepared transactions are checked against the journal.
    pub sweep_every: Duration,
    /// How long final journal entries are kept, to answer late duplicate requests.
    pub retention: Duration,
    pub log_sync: LogSync,
    /// Serve TLS only, with this certificate.
    pub tls: Option<Arc<ServerTls>>,
}

/// Who a running participant is.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// Its `verdict.v1.Participant` endpoint.
    pub endpoint: String,
}

/// Runs a participant of kind `kind` (used in its default name) until `shutdown`. `open` builds
/// the resource on the participant's database; `extend` may add services (and spawn tasks).
/// Health reports SERVING once every transaction found prepared at start is resolved.
pub async fn run<R: Resource>(
    options: ParticipantOptions,
    kind: &str,
    open: impl FnOnce(Arc<DurableDb>) -> anyhow::Result<R>,
    extend: impl FnOnce(&Arc<Participant<R>>, &Identity, Router) -> anyhow::Result<Router>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = Listener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let local = listener.local_addr()?;
    let identity = Identity {
        name: match options.name.is_empty() {
            true => format!("{kind}@{local}"),
            false => options.name.clone(),
        },
        endpoint: match options.advertise_url.is_empty() {
            true => own_url(local, options.tls.is_some()),
            false => options.advertise_url.clone(),
        },
    };
    let db = Arc::new(
        DurableDb::open(&options.data_dir, options.log_sync)
            .context("cannot open the participant's database (is another process using it?)")?,
    );
    let resource = open(db.clone())?;
    let config = ParticipantConfig {
        coordinator_url: options.coordinator_url.clone(),
        quiet_period: options.quiet_period,
        sweep_every: options.sweep_every,
        retention: options.retention,
        ..ParticipantConfig::default()
    };
    let participant = Participant::start(resource, Journal::open(db.clone())?, config).await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<ParticipantServer<ParticipantService<R>>>()
        .await;
    tokio::spawn({
        let participant = participant.clone();
        async move {
            participant.recovered().await;
            health
                .set_serving::<ParticipantServer<ParticipantService<R>>>()
                .await;
            tracing::info!("recovery done: serving");
        }
    });
    let (closing, streams_end) = watch::channel(false);
    let service = ParticipantService::new(participant.clone()).ending_streams_on(streams_end);
    let router = with_reflection(Server::builder().add_service(health_service))?
        .add_service(service.into_server());
    let router = extend(&participant, &identity, router)?;
    tracing::info!(%local, name = %identity.name, data_dir = %options.data_dir.display(), "participant serving");
    let shutdown = async move {
        shutdown.await;
        let _ = closing.send(true);
    };
    serve(router, listener, options.tls.clone(), shutdown).await?;
    db.close();
    Ok(())
}
