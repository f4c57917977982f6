//! `verdict participant kv|noop`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use verdict::coordinator::validate;
use verdict::log::LogSync;
use verdict::participant::noop::Noop;
use verdict::participant::server::ParticipantOptions;
use verdict::{bank, participant, server};

use super::duration;

#[derive(Subcommand)]
pub enum ParticipantCommand {
    /// The reference bank participant: accounts on embedded sled.
    Kv(ParticipantArgs),
    /// A participant that journals and votes YES to everything (for benchmarks).
    Noop(ParticipantArgs),
}

#[derive(Args)]
pub struct ParticipantArgs {
    /// Address to listen on (serves verdict.v1.Participant and verdict.v1.Bank).
    #[arg(long, env = "VERDICT_KV_LISTEN", default_value = "127.0.0.1:7500")]
    listen: SocketAddr,
    /// Directory of the bank's accounts and journal (created if missing).
    #[arg(long, env = "VERDICT_KV_DATA_DIR", default_value = "./verdict-kv-data")]
    data_dir: PathBuf,
    /// The coordinator's URL.
    #[arg(
        long,
        env = "VERDICT_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// This participant's URL as the coordinator reaches it; default http://LISTEN.
    #[arg(long, env = "VERDICT_KV_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// The name it enlists under; default kv@LISTEN.
    #[arg(long, env = "VERDICT_KV_NAME")]
    name: Option<String>,
    /// How long a prepared transaction may go without a decision before asking Resolve.
    #[arg(long, env = "VERDICT_KV_QUIET_PERIOD", value_parser = duration, default_value = "5s")]
    quiet_period: Duration,
    /// Whether journal writes wait for the disk. "off" is NOT durable: comparison runs only.
    #[arg(long, env = "VERDICT_LOG_SYNC", value_enum, default_value = "fsync")]
    log_sync: LogSync,
}

impl ParticipantArgs {
    fn into_options(self) -> anyhow::Result<ParticipantOptions> {
        validate::url("--coordinator", &self.coordinator)?;
        if let Some(url) = &self.advertise_url {
            validate::url("--advertise-url", url)?;
        }
        Ok(ParticipantOptions {
            listen: self.listen,
            data_dir: self.data_dir,
            coordinator_url: self.coordinator,
            advertise_url: self.advertise_url.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            quiet_period: self.quiet_period,
            log_sync: self.log_sync,
        })
    }
}

/// Runs the participant until SIGTERM or Ctrl-C.
pub async fn run(command: ParticipantCommand) -> anyhow::Result<()> {
    match command {
        ParticipantCommand::Kv(args) => {
            bank::server::run(args.into_options()?, server::shutdown_signal()).await
        }
        ParticipantCommand::Noop(args) => {
            let open = |_| Ok(Noop);
            let extend = |_: &_, _: &_, router| Ok(router);
            let options = args.into_options()?;
            participant::server::run(options, "noop", open, extend, server::shutdown_signal()).await
        }
    }
}
