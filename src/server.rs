//! `verdict serve`: binds the listener, opens the log, recovers, and serves
//! `verdict.v1.Coordinator`, `grpc.health.v1.Health` and server reflection until shutdown —
//! as a single node on its own sled log, or as a cluster node (with `verdict.internal.Raft`
//! beside them) on the replicated log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::auth::{Guarded, Identities};
use crate::cluster::network::RaftService;
use crate::cluster::{ClusterNode, ClusterOptions, NodeId, Peers};
use crate::coordinator::service::CoordinatorService;
use crate::coordinator::Leadership;
use crate::coordinator::{Config, Engine};
use crate::limits::{Limits, RateLimiter};
use crate::log::{LogSync, SledLog};
use crate::net::Listener;
use crate::proto::coordinator_server::CoordinatorServer;
pub use verdict_sdk::serve::{own_url, serve, shutdown_signal, with_reflection};
use verdict_sdk::tls::ServerTls;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_sync: LogSync,
    /// The engine's configuration. An empty `advertise_url` means `http://` + the bound address.
    pub engine: Config,
    /// Cluster mode, when given `--peers`.
    pub cluster: Option<ClusterSettings>,
    /// Where to serve the web console, if anywhere.
    pub console: Option<SocketAddr>,
    /// What the gRPC port accepts, and the per-caller rate limit.
    pub limits: Limits,
    /// Serve TLS only, with this certificate.
    pub tls: Option<Arc<ServerTls>>,
    /// Authenticate callers as these identities, and hold each to its roles (`--auth`).
    pub auth: Option<Arc<Identities>>,
}

/// A cluster node's settings (`--node-id`, `--peers`, …).
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    pub peers: Peers,
    pub join: bool,
    pub snapshot_every: u64,
    pub raft_via: Option<Peers>,
}

/// Runs the coordinator until `shutdown` completes, then drains requests and closes the log.
/// Prints `listening on ADDR` to stdout once it serves (tools and tests wait for that line).
pub async fn run(options: ServeOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listener = Listener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    if options.auth.is_some() && options.tls.is_none() {
        tracing::warn!("--auth without --tls-cert: bearer tokens cross the network in plaintext");
    }
    if options.log_sync == LogSync::Off {
        tracing::warn!("--log-sync off: commit decisions are NOT durable; use only to compare");
    }
    if let Some(addr) = options.console {
        let nodes = options
            .cluster
            .as_ref()
            .map(|c| c.peers.urls())
            .unwrap_or_default();
        let url = own_url(listener.local_addr()?, options.tls.is_some());
        let sign_in = options.auth.is_some();
        crate::console::serve(addr, &url, nodes, options.tls.clone(), sign_in).await?;
    }
    match options.cluster.clone() {
        None => run_single(options, listener, shutdown).await,
        Some(cluster) => run_node(options, cluster, listener, shutdown).await,
    }
}

async fn run_single(
    options: ServeOptions,
    listener: Listener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let log = SledLog::open(&options.data_dir, options.log_sync).with_context(|| {
        format!(
            "cannot open the decision log in {} (is another verdict using it?)",
            options.data_dir.display()
        )
    })?;
    let mut config = options.engine;
    if config.advertise_url.is_empty() {
        config.advertise_url = own_url(local, options.tls.is_some());
    }
    let engine = Engine::start(log, config)?;
    let (health, router) = base_router(&options.limits).await?;
    health.set_serving::<CoordinatorServer<()>>().await;
    let router = with_coordinator(
        router,
        CoordinatorService::new(engine.clone()),
        &options.limits,
        options.auth.clone(),
    );
    tracing::info!(%local, data_dir = %options.data_dir.display(), tls = options.tls.is_some(), "serving");
    serve(router, listener, options.tls, shutdown).await?;
    tracing::info!("shut down; closing the decision log");
    engine.close();
    Ok(())
}

async fn run_node(
    options: ServeOptions,
    cluster: ClusterSettings,
    listener: Listener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let url = cluster.peers.get(cluster.node_id).unwrap_or_default();
    let port = url
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .and_then(|u| u.port_u16());
    if port.is_some_and(|port| port != local.port()) {
        // Legitimate behind a port mapping (containers); otherwise the peers cannot reach it.
        tracing::warn!(%url, %local, "this node's URL in --peers names another port than it listens on");
    }
    let node = ClusterNode::start(ClusterOptions {
        node_id: cluster.node_id,
        peers: cluster.peers,
        join: cluster.join,
        data_dir: options.data_dir.clone(),
        log_sync: options.log_sync,
        snapshot_every: cluster.snapshot_every,
        raft_via: cluster.raft_via,
        engine: options.engine,
    })
    .await?;
    let (health, router) = base_router(&options.limits).await?;
    tokio::spawn(report_readiness(health, Arc::downgrade(&node)));
    let service = CoordinatorService::new(node.clone());
    let router =
        with_coordinator(router, service, &options.limits, options.auth.clone()).add_service(
            Guarded::new(RaftService::new(node.clone()), options.auth.clone()),
        );
    tracing::info!(%local, node_id = node.id(), data_dir = %options.data_dir.display(), tls = options.tls.is_some(), "serving as a cluster node");
    serve(router, listener, options.tls, shutdown).await?;
    tracing::info!("shut down; stopping Raft and closing the log");
    node.shutdown().await;
    Ok(())
}

/// Health and reflection, which every node serves. The overall status ("") is SERVING while
/// the process serves (liveness); `verdict.v1.Coordinator` starts NOT_SERVING and is the
/// caller's to set (readiness).
async fn base_router(limits: &Limits) -> anyhow::Result<(HealthReporter, Router)> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<CoordinatorServer<()>>().await;
    let mut server = Server::builder()
        .http2_max_header_list_size(limits.max_metadata_bytes)
        .max_concurrent_streams(limits.max_streams_per_connection);
    let router = with_reflection(server.add_service(health_service))?;
    Ok((health, router))
}

/// `router` serving `verdict.v1.Coordinator` within `limits`, to the callers `auth` admits.
fn with_coordinator<N: Leadership>(
    router: Router,
    service: CoordinatorService<N>,
    limits: &Limits,
    auth: Option<Arc<Identities>>,
) -> Router {
    let server = service
        .into_server()
        .max_decoding_message_size(limits.max_message_bytes);
    match limits.rate {
        None => router.add_service(Guarded::new(server, auth)),
        Some(rate) => {
            let limiter = Arc::new(RateLimiter::new(rate)).interceptor();
            router.add_service(InterceptedService::new(Guarded::new(server, auth), limiter))
        }
    }
}

/// How often a cluster node's readiness is looked at: its leader's contact with the majority
/// ages without any event to watch.
const READINESS_EVERY: Duration = Duration::from_millis(250);

/// Reports a cluster node's readiness (see [`ClusterNode::ready`]) as the status of
/// `verdict.v1.Coordinator`, until the node is gone.
async fn report_readiness(health: HealthReporter, node: Weak<ClusterNode>) {
    let mut reported = false;
    while let Some(node) = node.upgrade() {
        let ready = node.ready();
        drop(node);
        if reported != ready {
            let status = match ready {
                true => ServingStatus::Serving,
                false => ServingStatus::NotServing,
            };
            health
                .set_service_status(<CoordinatorServer<()> as NamedService>::NAME, status)
                .await;
            reported = ready;
        }
        tokio::time::sleep(READINESS_EVERY).await;
    }
}
