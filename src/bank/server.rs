//! `verdict participant kv`: a bank participant process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Server;

use super::service::BankService;
use super::store::KvBank;
use crate::client::Client;
use crate::durable::{DurableDb, LogSync};
use crate::participant::{Journal, Participant, ParticipantConfig, ParticipantService};
use crate::proto::participant_server::ParticipantServer;
use crate::server::{reflection, serve};

/// Where and how to run a bank.
#[derive(Clone, Debug)]
pub struct BankOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The coordinator to enlist with (and to ask `Resolve` after a restart).
    pub coordinator_url: String,
    /// This bank's URL as the coordinator reaches it; empty means `http://` + the bound address.
    pub advertise_url: String,
    /// The name it enlists under; empty means `kv@` + the bound address.
    pub name: String,
    pub quiet_period: Duration,
    pub log_sync: LogSync,
}

/// How often staged work past its transaction's deadline is discarded.
const DISCARD_EVERY: Duration = Duration::from_secs(1);

/// Runs a bank until `shutdown`. Health reports SERVING once every transaction found prepared
/// at start is resolved.
pub async fn run(options: BankOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let local = listener.local_addr()?;
    let endpoint = match options.advertise_url.is_empty() {
        true => format!("http://{local}"),
        false => options.advertise_url.clone(),
    };
    let name = match options.name.is_empty() {
        true => format!("kv@{local}"),
        false => options.name.clone(),
    };
    let db = Arc::new(
        DurableDb::open(&options.data_dir, options.log_sync)
            .context("cannot open the bank's database (is another process using it?)")?,
    );
    let bank = KvBank::open(db.clone())?;
    let config = ParticipantConfig {
        coordinator_url: options.coordinator_url.clone(),
        quiet_period: options.quiet_period,
        ..ParticipantConfig::default()
    };
    let participant = Participant::start(bank, Journal::open(db.clone())?, config).await?;
    let coordinator = Client::new(&options.coordinator_url, Duration::from_secs(10))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<ParticipantServer<ParticipantService<KvBank>>>()
        .await;
    tokio::spawn({
        let participant = participant.clone();
        async move {
            participant.recovered().await;
            health
                .set_serving::<ParticipantServer<ParticipantService<KvBank>>>()
                .await;
            tracing::info!("recovery done: serving");
        }
    });
    tokio::spawn(discard_expired(Arc::downgrade(&participant)));

    let router = Server::builder()
        .add_service(health_service)
        .add_service(reflection()?)
        .add_service(ParticipantService::new(participant.clone()).into_server())
        .add_service(
            BankService::new(participant, coordinator, name.clone(), endpoint).into_server(),
        );
    tracing::info!(%local, %name, data_dir = %options.data_dir.display(), "bank serving");
    serve(router, listener, shutdown).await?;
    db.close();
    Ok(())
}

async fn discard_expired(participant: std::sync::Weak<Participant<KvBank>>) {
    loop {
        tokio::time::sleep(DISCARD_EVERY).await;
        let Some(participant) = participant.upgrade() else {
            return;
        };
        let discarded = participant
            .resource()
            .discard_expired(tokio::time::Instant::now());
        if discarded > 0 {
            tracing::info!(
                discarded,
                "discarded staged work of transactions past their deadline"
            );
        }
    }
}
