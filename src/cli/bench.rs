//! `verdict bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use verdict::bench::{BenchOptions, Staging, Workload};
use verdict::coordinator::validate;
use verdict::log::LogSync;
use verdict::tls::ServerTlsArgs;

use super::duration;

#[derive(Args)]
pub struct BenchArgs {
    /// Target this running coordinator (with --participant) instead of starting a deployment.
    #[arg(long, requires = "participant")]
    coordinator: Option<String>,
    /// A running participant's URL (repeat); noop participants, or KV banks for --workload bank.
    #[arg(long)]
    participant: Vec<String>,
    /// Participants per transaction.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=32))]
    participants: u64,
    /// Transactions in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// How long to measure.
    #[arg(long, value_parser = duration, default_value = "10s")]
    duration: Duration,
    /// Measure this many transactions instead of a duration.
    #[arg(long)]
    transactions: Option<u64>,
    /// Load before measuring.
    #[arg(long, value_parser = duration, default_value = "2s")]
    warmup: Duration,
    #[arg(long, value_enum, default_value = "noop")]
    workload: Workload,
    /// Share of bank transfers that overdraw and vote NO (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    overdraft_share: f64,
    /// How the bank workload gives each bank its change: handed to the coordinator in one
    /// Submit (Begin and Commit in one call) or in Commit after a Begin, either way brought
    /// with the bank's Prepare; or with an Apply call to each bank after Begin.
    #[arg(long, value_enum, default_value = "submit")]
    staging: Staging,
    /// "off" runs the started deployment without waiting for the disk: for comparison only.
    #[arg(long, value_enum, default_value = "fsync")]
    log_sync: LogSync,
    /// The databases of the two PostgreSQL banks given with --participant (bank workload):
    /// also measure the same transfers driven straight through PostgreSQL's two-phase commit,
    /// with no coordinator, at the same concurrency and for the same duration, in five slices
    /// alternating with Verdict's so that both see the machine in the same state.
    #[arg(
        long,
        num_args = 2,
        value_names = ["DSN_A", "DSN_B"],
        requires = "coordinator",
        conflicts_with = "transactions"
    )]
    pg_direct: Vec<String>,
    /// How long the coordinator and participants it starts keep finished transactions (their
    /// --retention): a long run with the default 24 h grows the decision log and journals by
    /// design; a short one shows whether anything else piles up.
    #[arg(long, value_parser = duration, conflicts_with = "coordinator")]
    retention: Option<Duration>,
    /// Start a cluster of this many coordinator nodes instead of a single node.
    #[arg(long, conflicts_with = "coordinator", value_parser = clap::value_parser!(u64).range(1..=7))]
    cluster: Option<u64>,
    /// The TLS the processes it starts serve (--tls-cert, --tls-key, --tls-client-ca; one
    /// certificate for all, naming 127.0.0.1): their URLs are then https://, and the bench and
    /// its processes call them with the global --tls-ca (and, for mutual TLS,
    /// --tls-client-cert and --tls-client-key, a certificate for both server and client use).
    #[command(flatten)]
    tls: ServerTlsArgs,
    /// The coordinator it starts authenticates callers as the identities of this file (serve
    /// --auth); the bench and its processes call as the identity of their client certificate
    /// or of the global --token-file, which needs the application and operator roles (and node,
    /// for --cluster).
    #[arg(long, value_name = "FILE", conflicts_with = "coordinator")]
    auth: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw throughput over time, the latency distribution and (for a deployment it
    /// started) its processes' RSS and data directories over time to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub async fn run(args: BenchArgs, inherited: Vec<String>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.overdraft_share),
        "--overdraft-share must be between 0 and 1"
    );
    anyhow::ensure!(
        args.workload == Workload::Noop || args.participants == 2,
        "the bank workload transfers between 2 participants: use --participants 2"
    );
    anyhow::ensure!(
        args.pg_direct.is_empty() || args.workload == Workload::Bank,
        "--pg-direct compares bank transfers: add --workload bank"
    );
    if let Some(url) = &args.coordinator {
        validate::urls("--coordinator", url)?;
    }
    for url in &args.participant {
        validate::url("--participant", url)?;
    }
    let nodes = match (&args.coordinator, args.cluster) {
        (Some(urls), _) => urls.split(',').count(),
        (None, cluster) => cluster.unwrap_or(1) as usize,
    };
    let options = BenchOptions {
        exe: std::env::current_exe()?,
        coordinator: args.coordinator,
        participant_urls: args.participant,
        participants: args.participants as usize,
        concurrency: args.concurrency as usize,
        duration: args.duration,
        transactions: args.transactions,
        warmup: args.warmup,
        workload: args.workload,
        overdraft_share: args.overdraft_share,
        staging: args.staging,
        log_sync: args.log_sync,
        child_flags: inherited.into_iter().chain(args.tls.flags()).collect(),
        tls: args.tls.tls_cert.is_some(),
        coordinator_flags: args
            .auth
            .iter()
            .flat_map(|file| ["--auth".to_string(), file.display().to_string()])
            .collect(),
        progress: !args.json,
        pg_direct: args.pg_direct,
        nodes,
        retention: args.retention,
    };
    let report = verdict::bench::run(&options).await?;
    if let Some(path) = &args.plot {
        std::fs::write(path, report.svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&report)?),
        false => print!("{}", report.table()),
    }
    Ok(())
}
