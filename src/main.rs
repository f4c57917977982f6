//! The `verdict` command.

mod cli;

use clap::{Parser, Subcommand};
use cli::bank::BankCommand;
use cli::bench::BenchArgs;
use cli::cluster::ClusterCommand;
use cli::conformance::ConformanceArgs;
use cli::demo::DemoArgs;
use cli::health::HealthArgs;
use cli::nemesis::NemesisArgs;
use cli::participant::ParticipantCommand;
use cli::serve::ServeArgs;
use cli::txn::TxnCommand;
use verdict::credentials::TokenArgs;
use verdict::telemetry::{self, LogFormat};
use verdict::tls::ClientTlsArgs;

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
    /// Export Verdict's own spans (every RPC served, every transaction, every Prepare and
    /// decision sent) to this OpenTelemetry collector over OTLP/gRPC, e.g. http://otel:4317.
    /// Off by default.
    #[arg(long, global = true, env = "VERDICT_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Async worker threads (default: one per core). For `bench`, also those of the processes
    /// it starts.
    #[arg(long, global = true, env = "VERDICT_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    /// Whom this process trusts, and what it presents, when it calls an https:// URL.
    #[command(flatten)]
    client_tls: ClientTlsArgs,
    /// The bearer token this process presents to coordinators.
    #[command(flatten)]
    token: TokenArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator: a single node on its embedded log, or with --peers a cluster node.
    Serve(Box<ServeArgs>),
    /// Look at a coordinator cluster and change its members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Look at transactions: what is in flight or in doubt, and one in detail.
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Run a participant.
    #[command(subcommand)]
    Participant(ParticipantCommand),
    /// Talk to bank participants: open accounts, read balances, transfer money.
    #[command(subcommand)]
    Bank(BankCommand),
    /// Start a coordinator and two banks, run a few transfers, print outcomes and balances.
    /// With --coordinator and two --bank URLs, run them through a deployment already running.
    Demo(DemoArgs),
    /// Measure throughput and latency beside the physical limits, in one run.
    Bench(BenchArgs),
    /// Run the randomized fault test: a bank workload while processes are killed and the
    /// network misbehaves, then check every invariant. Exits non-zero on any violation.
    Nemesis(NemesisArgs),
    /// Check that a participant keeps the participant contract, rule by rule: the kit stands in
    /// for the coordinator (point the participant at --listen) and the application.
    Conformance(ConformanceArgs),
    /// Ask a coordinator or participant whether it is serving (a container's health check).
    /// Exits non-zero unless it is.
    Health(HealthArgs),
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(threads as usize);
    }
    // A task woken by another on the same worker runs right after it (the LIFO slot). When a
    // group-commit flush answers many handlers at once, each then drags its connection's task
    // in behind it, and every response goes out in a write of its own; without the slot they
    // run in order and each connection writes them together. Measured with `verdict bench` at
    // concurrency 64: 11 socket writes per transaction → 1.5, throughput +6–8 %.
    #[cfg(tokio_unstable)]
    runtime.disable_lifo_slot();
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(start(cli)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> std::process::ExitCode {
    // Before telemetry: an https:// collector is reached with this process's client TLS.
    let installed = cli.client_tls.install().map_err(|e| e.to_string());
    if let Err(error) = installed.and_then(|()| cli.token.install().map_err(|e| e.to_string())) {
        eprintln!("error: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| cli.command.service());
    let otlp = cli.otlp_endpoint.as_deref();
    let _telemetry = match telemetry::init(cli.log_format, &cli.log_level, otlp, &service) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let inherited = cli.inherited();
    match run(cli.command, inherited).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The service name its traces carry.
    fn service(&self) -> String {
        match self {
            Command::Serve(_) => "verdict-coordinator".into(),
            Command::Participant(_) => "verdict-participant".into(),
            _ => "verdict".into(),
        }
    }
}

impl Cli {
    /// The global flags that the processes this one starts take too, so that they run and
    /// call as it does: worker threads, client TLS, bearer token.
    fn inherited(&self) -> Vec<String> {
        let threads = self.worker_threads.iter();
        let threads = threads.flat_map(|n| ["--worker-threads".to_string(), n.to_string()]);
        threads
            .chain(self.client_tls.flags())
            .chain(self.token.flags())
            .collect()
    }
}

async fn run(command: Command, inherited: Vec<String>) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => cli::serve::run(*args).await,
        Command::Cluster(command) => cli::cluster::run(command).await,
        Command::Participant(command) => cli::participant::run(command).await,
        Command::Txn(command) => cli::txn::run(command).await,
        Command::Bank(command) => cli::bank::run(command).await,
        Command::Demo(args) => cli::demo::run(args).await,
        Command::Nemesis(args) => cli::nemesis::run(args).await,
        Command::Bench(args) => cli::bench::run(args, inherited).await,
        Command::Health(args) => cli::health::run(args).await,
        Command::Conformance(args) => cli::conformance::run(args).await,
    }
}
