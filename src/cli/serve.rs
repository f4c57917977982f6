//! `verdict serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use verdict::auth::Identities;
use verdict::cluster::{NodeId, Peers};
use verdict::coordinator::{validate, AllowedParticipants, Config};
use verdict::core::{Backoff, Policy};
use verdict::limits::{Limits, Rate};
use verdict::log::LogSync;
use verdict::server::{self, ClusterSettings, ServeOptions};
use verdict::tls::ServerTlsArgs;

use super::duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "VERDICT_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Serve Prometheus metrics over HTTP on this address (off by default).
    #[arg(long, env = "VERDICT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    tls: ServerTlsArgs,
    /// Authenticate every caller as one of the identities in this file (JSON) and hold each
    /// to its roles (see README, Security). Off by default.
    #[arg(long, env = "VERDICT_AUTH", value_name = "FILE")]
    auth: Option<std::path::PathBuf>,
    /// The largest request the gRPC port decodes, in bytes.
    #[arg(long, env = "VERDICT_MAX_MESSAGE_BYTES", default_value_t = 4 << 20)]
    max_message_bytes: usize,
    /// The most metadata (headers) one gRPC request may carry, in bytes.
    #[arg(long, env = "VERDICT_MAX_METADATA_BYTES", default_value_t = 16 << 10)]
    max_metadata_bytes: u32,
    /// The most requests one connection may have open at once.
    #[arg(
        long,
        env = "VERDICT_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 1024
    )]
    max_streams_per_connection: u32,
    /// Requests a second each caller (client address) may make to verdict.v1.Coordinator; more
    /// are refused with RESOURCE_EXHAUSTED and a retry-after-ms hint. 0: no limit.
    #[arg(long, env = "VERDICT_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// How many requests a caller may save up under --rate-limit; default: one second's worth.
    #[arg(long, env = "VERDICT_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Serve the web console over HTTP on this address (off by default). It has no login of
    /// its own: bind it where only operators reach.
    #[arg(long, env = "VERDICT_CONSOLE_LISTEN")]
    console_listen: Option<SocketAddr>,
    /// Directory of the decision log (created if missing).
    #[arg(long, env = "VERDICT_DATA_DIR", default_value = "./verdict-data")]
    data_dir: PathBuf,
    /// This coordinator's URL as participants reach it (for Resolve); default http://LISTEN.
    #[arg(long, env = "VERDICT_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Deadline of a transaction whose Begin gives none.
    #[arg(long, env = "VERDICT_TXN_TIMEOUT", value_parser = duration, default_value = "30s")]
    txn_timeout: Duration,
    /// Longest deadline Begin may ask for.
    #[arg(long, env = "VERDICT_MAX_TXN_TIMEOUT", value_parser = duration, default_value = "1h")]
    max_txn_timeout: Duration,
    /// How long to wait for each participant's vote; no vote by then aborts.
    #[arg(long, env = "VERDICT_PREPARE_TIMEOUT", value_parser = duration, default_value = "5s")]
    prepare_timeout: Duration,
    /// How long to wait for each phase-2 acknowledgement before retrying.
    #[arg(long, env = "VERDICT_DECISION_TIMEOUT", value_parser = duration, default_value = "5s")]
    decision_timeout: Duration,
    /// First phase-2 retry delay (doubles per retry, with jitter).
    #[arg(long, env = "VERDICT_RETRY_INITIAL", value_parser = duration, default_value = "50ms")]
    retry_initial: Duration,
    /// Cap on the phase-2 retry delay.
    #[arg(long, env = "VERDICT_RETRY_MAX", value_parser = duration, default_value = "10s")]
    retry_max: Duration,
    /// Sends of an abort to a participant whose vote is unknown before relying on its Resolve.
    #[arg(long, env = "VERDICT_ABORT_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    abort_attempts: u32,
    /// Most participants in one transaction.
    #[arg(long, env = "VERDICT_MAX_PARTICIPANTS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_participants: u32,
    /// Only these participant endpoints may be named in Begin and Enlist (others are refused
    /// with PERMISSION_DENIED), as HOST[:PORT] comma-separated; HOST may be *.DOMAIN, PORT *.
    /// E.g. payments.internal:7500,*.svc.cluster.local. Default: any endpoint.
    #[arg(long, env = "VERDICT_ALLOW_PARTICIPANTS")]
    allow_participants: Option<AllowedParticipants>,
    /// Most transactions not decided yet; a Begin beyond it waits up to --admission-wait for one
    /// to be decided, then answers RESOURCE_EXHAUSTED with a retry-after-ms hint.
    #[arg(long, env = "VERDICT_MAX_IN_FLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// Most decided transactions held until their participants acknowledge the decision (a few
    /// KB each, in memory); beyond it Begins wait, then are refused likewise — a participant
    /// down for long stops new transactions only once this many are owed.
    #[arg(long, env = "VERDICT_MAX_UNDELIVERED", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_undelivered: u64,
    /// The most decisions (phase-2 Commit/Abort) being delivered to one participant at once; more
    /// wait their turn, so a participant returning after an outage is not sent all it is owed at
    /// once.
    #[arg(long, env = "VERDICT_DELIVERIES_PER_PARTICIPANT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    deliveries_per_participant: u64,
    /// How long a Begin at --max-in-flight waits for room (0: refused at once).
    #[arg(long, env = "VERDICT_ADMISSION_WAIT", value_parser = duration, default_value = "100ms")]
    admission_wait: Duration,
    /// How long finished transactions stay queryable (Commit retries get the true outcome).
    #[arg(long, env = "VERDICT_RETENTION", value_parser = duration, default_value = "24h")]
    retention: Duration,
    /// How often finished transactions past retention are collected.
    #[arg(long, env = "VERDICT_GC_INTERVAL", value_parser = duration, default_value = "1m")]
    gc_interval: Duration,
    /// Whether commit decisions wait for the disk. "off" is NOT durable: comparison runs only.
    #[arg(long, env = "VERDICT_LOG_SYNC", value_enum, default_value = "fsync")]
    log_sync: LogSync,
    /// Cluster mode: this node's id among --peers.
    #[arg(long, env = "VERDICT_NODE_ID", requires = "peers")]
    node_id: Option<NodeId>,
    /// Cluster mode: every node as ID=URL, comma-separated, the same on every node
    /// (e.g. 1=http://10.0.0.1:7400,2=http://10.0.0.2:7400,3=http://10.0.0.3:7400).
    #[arg(long, env = "VERDICT_PEERS", requires = "node_id")]
    peers: Option<Peers>,
    /// Cluster mode: start as a new node that waits for `verdict cluster add-node` instead of
    /// forming a cluster from --peers (which then needs to name only this node).
    #[arg(long, env = "VERDICT_JOIN", requires = "peers")]
    join: bool,
    /// Cluster mode: Raft log entries between snapshots (the log is purged behind each).
    #[arg(long, env = "VERDICT_SNAPSHOT_EVERY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
    /// Cluster mode: reach these peers' Raft traffic at another URL than their --peers entry
    /// (a private network, or a proxy), as ID=URL comma-separated. Clients are still told
    /// the --peers URLs.
    #[arg(long, env = "VERDICT_RAFT_VIA", requires = "peers")]
    raft_via: Option<Peers>,
}

impl ServeArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        anyhow::ensure!(
            self.max_message_bytes >= 1024,
            "--max-message-bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.max_metadata_bytes >= 1024,
            "--max-metadata-bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.max_streams_per_connection > 0,
            "--max-streams-per-connection must be at least 1"
        );
        let burst = self.rate_burst.unwrap_or(self.rate_limit);
        anyhow::ensure!(
            self.rate_limit == 0 || burst > 0,
            "--rate-burst must be at least 1 (or leave --rate-limit at 0 for no limit)"
        );
        let rate = (self.rate_limit > 0).then_some(Rate {
            per_second: self.rate_limit,
            burst,
        });
        Ok(Limits {
            max_message_bytes: self.max_message_bytes,
            max_metadata_bytes: self.max_metadata_bytes,
            max_streams_per_connection: self.max_streams_per_connection,
            rate,
        })
    }

    fn into_options(self) -> anyhow::Result<ServeOptions> {
        anyhow::ensure!(
            self.txn_timeout <= self.max_txn_timeout,
            "--txn-timeout ({}) is longer than --max-txn-timeout ({})",
            humantime::format_duration(self.txn_timeout),
            humantime::format_duration(self.max_txn_timeout)
        );
        anyhow::ensure!(
            self.retry_initial <= self.retry_max && !self.retry_initial.is_zero(),
            "--retry-initial must be above zero and at most --retry-max"
        );
        anyhow::ensure!(
            !self.gc_interval.is_zero(),
            "--gc-interval must be above zero"
        );
        if let Some(url) = &self.advertise_url {
            validate::url("--advertise-url", url)?;
        }
        let cluster = self.cluster()?;
        let limits = self.limits()?;
        Ok(ServeOptions {
            listen: self.listen,
            data_dir: self.data_dir,
            log_sync: self.log_sync,
            cluster,
            console: self.console_listen,
            limits,
            tls: self.tls.load()?,
            auth: match &self.auth {
                Some(path) => Some(std::sync::Arc::new(Identities::load(path)?)),
                None => None,
            },
            engine: Config {
                advertise_url: self.advertise_url.unwrap_or_default(),
                cluster_urls: Vec::new(),
                default_txn_timeout: self.txn_timeout,
                max_txn_timeout: self.max_txn_timeout,
                prepare_timeout: self.prepare_timeout,
                decision_timeout: self.decision_timeout,
                backoff: Backoff {
                    initial: self.retry_initial,
                    max: self.retry_max,
                },
                policy: Policy {
                    max_participants: self.max_participants as usize,
                    best_effort_attempts: self.abort_attempts,
                },
                max_in_flight: self.max_in_flight as usize,
                max_undelivered: self.max_undelivered as usize,
                admission_wait: self.admission_wait,
                deliveries_per_participant: self.deliveries_per_participant as usize,
                retention: self.retention,
                gc_interval: self.gc_interval,
                allowed_participants: self.allow_participants.unwrap_or_default(),
            },
        })
    }
}

impl ServeArgs {
    fn cluster(&self) -> anyhow::Result<Option<ClusterSettings>> {
        let (Some(node_id), Some(peers)) = (self.node_id, self.peers.clone()) else {
            return Ok(None);
        };
        anyhow::ensure!(
            peers.get(node_id).is_some(),
            "--node-id {node_id} is not in --peers ({peers}): list every node, this one too"
        );
        anyhow::ensure!(
            self.advertise_url.is_none(),
            "--advertise-url does not apply to a cluster node: its URL is its entry in --peers"
        );
        Ok(Some(ClusterSettings {
            node_id,
            peers,
            join: self.join,
            snapshot_every: self.snapshot_every,
            raft_via: self.raft_via.clone(),
        }))
    }
}

/// Many small allocations per transaction across threads: mimalloc handles them with less
/// contention than the system allocator.
/// Runs the coordinator until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = args.metrics_listen;
    let options = args.into_options()?;
    if let Some(addr) = metrics {
        verdict::metrics::serve(addr, options.tls.clone())?;
    }
    server::run(options, server::shutdown_signal()).await
}
