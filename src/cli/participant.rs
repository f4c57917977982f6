//! `verdict participant kv|postgres|records|noop`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use verdict::coordinator::validate;
use verdict::log::LogSync;
use verdict::participant::noop::Noop;
use verdict::participant::server::ParticipantOptions;
use verdict::postgres::pool::PgOptions;
use verdict::tls::ServerTlsArgs;
use verdict::{bank, participant, postgres, records, server};

use super::duration;

#[derive(Subcommand)]
pub enum ParticipantCommand {
    /// The reference bank participant: accounts on embedded sled.
    Kv(ParticipantArgs),
    /// The bank with its accounts in PostgreSQL, through PREPARE TRANSACTION.
    Postgres(PostgresArgs),
    /// Records under unique keys, on embedded sled (verdict.v1.Records): an order under its id,
    /// a courier's assignment under the courier's name.
    Records(RecordsArgs),
    /// A participant that journals and votes YES to everything (for benchmarks).
    Noop(ParticipantArgs),
}

#[derive(Args)]
pub struct PostgresArgs {
    #[command(flatten)]
    participant: ParticipantArgs,
    /// The database: "host=HOST port=PORT user=USER dbname=DB" or postgres://USER@HOST:PORT/DB.
    /// Its server needs max_prepared_transactions > 0.
    #[arg(long, env = "VERDICT_PG_DSN")]
    dsn: String,
    /// Connections to the database kept open at most.
    #[arg(long, env = "VERDICT_PG_POOL_SIZE", default_value_t = 32)]
    pool_size: usize,
    /// How long a prepare waits for a row lock before voting NO.
    #[arg(long, env = "VERDICT_PG_LOCK_TIMEOUT", value_parser = duration, default_value = "2s")]
    lock_timeout: Duration,
}

#[derive(Args)]
pub struct RecordsArgs {
    #[command(flatten)]
    participant: ParticipantArgs,
    /// What a key stands for, in the reasons it votes NO with ("no courier is free: …").
    #[arg(long, env = "VERDICT_RECORDS_ITEM", default_value = "key")]
    item: String,
}

#[derive(Args)]
pub struct ParticipantArgs {
    /// Address to listen on (serves verdict.v1.Participant, and verdict.v1.Bank or verdict.v1.Records).
    #[arg(long, env = "VERDICT_KV_LISTEN", default_value = "127.0.0.1:7500")]
    listen: SocketAddr,
    /// Directory of the participant's journal, and of the kv bank's accounts (created if
    /// missing); default ./verdict-KIND-data.
    #[arg(long, env = "VERDICT_KV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The coordinator's URL, or every node of a cluster, comma-separated.
    #[arg(
        long,
        env = "VERDICT_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// This participant's URL as the coordinator reaches it; default http://LISTEN.
    #[arg(long, env = "VERDICT_KV_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// The name it enlists under; default KIND@LISTEN. A PostgreSQL participant's global ids
    /// carry it: keep it stable across restarts and unique per PostgreSQL server.
    #[arg(long, env = "VERDICT_KV_NAME")]
    name: Option<String>,
    /// How long a prepared transaction may go without a decision before asking Resolve.
    #[arg(long, env = "VERDICT_KV_QUIET_PERIOD", value_parser = duration, default_value = "5s")]
    quiet_period: Duration,
    /// How often to look for transactions the resource holds prepared with no vote journaled
    /// (a crash or a lost answer in between), to resolve them.
    #[arg(long, env = "VERDICT_KV_SWEEP_EVERY", value_parser = duration, default_value = "30s")]
    sweep_every: Duration,
    /// How long the journal keeps what it answered for finished transactions (a late duplicate
    /// Prepare or Commit gets the same answer within it); collected every minute.
    #[arg(long, env = "VERDICT_KV_RETENTION", value_parser = duration, default_value = "24h")]
    retention: Duration,
    /// Whether journal writes wait for the disk. "off" is NOT durable: comparison runs only.
    #[arg(long, env = "VERDICT_LOG_SYNC", value_enum, default_value = "fsync")]
    log_sync: LogSync,
    /// Serve Prometheus metrics over HTTP on this address (off by default).
    #[arg(long, env = "VERDICT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

impl ParticipantArgs {
    fn into_options(self, kind: &str) -> anyhow::Result<ParticipantOptions> {
        validate::urls("--coordinator", &self.coordinator)?;
        let tls = self.tls.load()?;
        if let Some(addr) = self.metrics_listen {
            verdict::metrics::serve(addr, tls.clone())?;
        }
        if let Some(url) = &self.advertise_url {
            validate::url("--advertise-url", url)?;
        }
        Ok(ParticipantOptions {
            listen: self.listen,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| format!("./verdict-{kind}-data").into()),
            coordinator_url: self.coordinator,
            advertise_url: self.advertise_url.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            quiet_period: self.quiet_period,
            sweep_every: self.sweep_every,
            retention: self.retention,
            log_sync: self.log_sync,
            tls,
        })
    }
}

/// Runs the participant until SIGTERM or Ctrl-C.
pub async fn run(command: ParticipantCommand) -> anyhow::Result<()> {
    match command {
        ParticipantCommand::Kv(args) => {
            bank::server::run(args.into_options("kv")?, server::shutdown_signal()).await
        }
        ParticipantCommand::Postgres(args) => {
            anyhow::ensure!(args.pool_size > 0, "--pool-size must be at least 1");
            let pg = PgOptions {
                dsn: args.dsn,
                pool_size: args.pool_size,
                lock_timeout: args.lock_timeout,
            };
            let options = args.participant.into_options("pg")?;
            postgres::server::run(options, pg, server::shutdown_signal()).await
        }
        ParticipantCommand::Records(args) => {
            let options = args.participant.into_options("records")?;
            records::run(options, args.item, server::shutdown_signal()).await
        }
        ParticipantCommand::Noop(args) => {
            let open = |_| Ok(Noop);
            let extend = |_: &_, _: &_, router| Ok(router);
            let options = args.into_options("noop")?;
            participant::server::run(options, "noop", open, extend, server::shutdown_signal()).await
        }
    }
}
