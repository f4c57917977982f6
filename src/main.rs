//! The `verdict` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tonic::transport::Channel;
use verdict::bank::{self, transfer, AccountAt};
use verdict::bench::{BenchOptions, Workload};
use verdict::chaos::nemesis::NemesisConfig;
use verdict::client::Client;
use verdict::coordinator::{validate, Config};
use verdict::core::{Backoff, Policy};
use verdict::demo;
use verdict::log::LogSync;
use verdict::participant;
use verdict::participant::noop::Noop;
use verdict::participant::server::ParticipantOptions;
use verdict::proto::bank_client::BankClient;
use verdict::proto::{GetBalanceRequest, OpenAccountRequest};
use verdict::server::{self, ServeOptions};
use verdict::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "verdict",
    version,
    about = "Verdict: a two-phase-commit transaction coordinator"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        env = "VERDICT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log level (or a tracing filter such as "verdict=debug"); RUST_LOG overrides it.
    #[arg(long, global = true, env = "VERDICT_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Async worker threads (default: one per core). For `bench`, also those of the processes
    /// it starts.
    #[arg(long, global = true, env = "VERDICT_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator (single node, embedded sled log).
    Serve(ServeArgs),
    /// Run a participant.
    #[command(subcommand)]
    Participant(ParticipantCommand),
    /// Talk to bank participants: open accounts, read balances, transfer money.
    #[command(subcommand)]
    Bank(BankCommand),
    /// Start a coordinator and two banks, run a few transfers, print outcomes and balances.
    Demo,
    /// Measure throughput and latency beside the physical limits, in one run.
    Bench(BenchArgs),
    /// Run the randomized fault test: a bank workload while processes are killed and the
    /// network misbehaves, then check every invariant. Exits non-zero on any violation.
    Nemesis(NemesisArgs),
}

#[derive(Args)]
struct BenchArgs {
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
    /// "off" runs the started deployment without waiting for the disk: for comparison only.
    #[arg(long, value_enum, default_value = "fsync")]
    log_sync: LogSync,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw throughput over time and the latency distribution to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

async fn bench(args: BenchArgs, worker_threads: Option<u16>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.overdraft_share),
        "--overdraft-share must be between 0 and 1"
    );
    anyhow::ensure!(
        args.workload == Workload::Noop || args.participants == 2,
        "the bank workload transfers between 2 participants: use --participants 2"
    );
    if let Some(url) = &args.coordinator {
        validate::url("--coordinator", url)?;
    }
    for url in &args.participant {
        validate::url("--participant", url)?;
    }
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
        log_sync: args.log_sync,
        worker_threads,
        progress: !args.json,
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

#[derive(Args)]
struct NemesisArgs {
    /// How long to inject faults.
    #[arg(long, value_parser = duration, default_value = "3m")]
    duration: Duration,
    /// Seed of every random choice; random if not given (it is printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Bank participants.
    #[arg(long, default_value_t = 3)]
    banks: usize,
    /// Accounts per bank.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
    /// Concurrent transfers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Where the processes keep data and logs (kept after a failing run); default a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
}

async fn nemesis(args: NemesisArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("verdict-nemesis-{seed}")));
    let config = NemesisConfig {
        exe: std::env::current_exe()?,
        dir: dir.clone(),
        duration: args.duration,
        seed,
        banks: args.banks,
        accounts_per_bank: args.accounts,
        workers: args.workers,
        patience: Duration::from_secs(60),
    };
    println!(
        "nemesis: seed {seed}, {:?} of faults, logs in {}",
        args.duration,
        dir.display()
    );
    let summary = verdict::chaos::nemesis::run(&config).await?;
    for violation in &summary.report.violations {
        println!("VIOLATION: {violation}");
    }
    println!("{summary}");
    anyhow::ensure!(
        summary.report.violations.is_empty(),
        "{} violations; replay with --seed {seed}; logs in {}",
        summary.report.violations.len(),
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[derive(Subcommand)]
enum ParticipantCommand {
    /// The reference bank participant: accounts on embedded sled.
    Kv(ParticipantArgs),
    /// A participant that journals and votes YES to everything (for benchmarks).
    Noop(ParticipantArgs),
}

#[derive(Args)]
struct ParticipantArgs {
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

#[derive(Subcommand)]
enum BankCommand {
    /// Open an account.
    Open {
        /// The bank's URL.
        #[arg(long)]
        bank: String,
        account: String,
        balance: i64,
    },
    /// Print an account's balance (and what prepared transactions hold of it).
    Balance {
        #[arg(long)]
        bank: String,
        account: String,
    },
    /// Move money between accounts (possibly on two banks) in one Verdict transaction.
    Transfer {
        /// The coordinator's URL.
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        coordinator: String,
        /// The paying bank's URL.
        #[arg(long)]
        from_bank: String,
        /// The paying account.
        #[arg(long)]
        from: String,
        /// The receiving bank's URL.
        #[arg(long)]
        to_bank: String,
        /// The receiving account.
        #[arg(long)]
        to: String,
        /// How much, in the smallest unit; positive.
        #[arg(long)]
        amount: i64,
    },
}

fn bank_client(url: &str) -> anyhow::Result<BankClient<Channel>> {
    validate::url("bank URL", url)?;
    Ok(BankClient::new(
        Channel::from_shared(url.to_owned())?.connect_lazy(),
    ))
}

/// A failed call, said plainly: what the server answered, or that it could not be reached.
fn said(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the server cannot be reached ({}); is it running at that address?",
            status.message()
        ),
        code => anyhow::anyhow!("{code:?}: {}", status.message()),
    }
}

async fn bank(command: BankCommand) -> anyhow::Result<()> {
    bank_call(command)
        .await
        .map_err(|e| match e.downcast::<tonic::Status>() {
            Ok(status) => said(status),
            Err(other) => other,
        })
}

async fn bank_call(command: BankCommand) -> anyhow::Result<()> {
    match command {
        BankCommand::Open {
            bank,
            account,
            balance,
        } => {
            let request = OpenAccountRequest { account, balance };
            bank_client(&bank)?.open_account(request).await?;
            println!("opened");
        }
        BankCommand::Balance { bank, account } => {
            let request = GetBalanceRequest { account };
            let response = bank_client(&bank)?.get_balance(request).await?.into_inner();
            println!("balance {} (held {})", response.balance, response.held);
        }
        BankCommand::Transfer {
            coordinator,
            from_bank,
            from,
            to_bank,
            to,
            amount,
        } => {
            let client = Client::new(&coordinator, Duration::from_secs(30))?;
            let from = AccountAt {
                bank: bank_client(&from_bank)?,
                account: from,
            };
            let to = AccountAt {
                bank: bank_client(&to_bank)?,
                account: to,
            };
            let (txn, outcome, reason) = transfer(&client, &from, &to, amount).await?;
            println!("{txn} {outcome:?} {reason}");
        }
    }
    Ok(())
}

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "VERDICT_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
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
    /// Most transactions in flight; Begin beyond it answers RESOURCE_EXHAUSTED.
    #[arg(long, env = "VERDICT_MAX_IN_FLIGHT", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// How long finished transactions stay queryable (Commit retries get the true outcome).
    #[arg(long, env = "VERDICT_RETENTION", value_parser = duration, default_value = "24h")]
    retention: Duration,
    /// How often finished transactions past retention are collected.
    #[arg(long, env = "VERDICT_GC_INTERVAL", value_parser = duration, default_value = "1m")]
    gc_interval: Duration,
    /// Whether commit decisions wait for the disk. "off" is NOT durable: comparison runs only.
    #[arg(long, env = "VERDICT_LOG_SYNC", value_enum, default_value = "fsync")]
    log_sync: LogSync,
}

impl ServeArgs {
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
        Ok(ServeOptions {
            listen: self.listen,
            data_dir: self.data_dir,
            log_sync: self.log_sync,
            engine: Config {
                advertise_url: self.advertise_url.unwrap_or_default(),
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
                retention: self.retention,
                gc_interval: self.gc_interval,
            },
        })
    }
}

/// Many small allocations per transaction across threads: mimalloc handles them with less
/// contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(threads as usize);
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(start(cli)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> std::process::ExitCode {
    telemetry::init(cli.log_format, &cli.log_level);
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match run(cli.command, cli.worker_threads).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, worker_threads: Option<u16>) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => server::run(args.into_options()?, server::shutdown_signal()).await,
        Command::Participant(ParticipantCommand::Kv(args)) => {
            bank::server::run(args.into_options()?, server::shutdown_signal()).await
        }
        Command::Participant(ParticipantCommand::Noop(args)) => {
            let open = |_| Ok(Noop);
            let extend = |_: &_, _: &_, router| Ok(router);
            let options = args.into_options()?;
            participant::server::run(options, "noop", open, extend, server::shutdown_signal()).await
        }
        Command::Bank(command) => bank(command).await,
        Command::Demo => demo::run().await,
        Command::Nemesis(args) => nemesis(args).await,
        Command::Bench(args) => bench(args, worker_threads).await,
    }
}
