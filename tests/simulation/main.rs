//! Deterministic simulation: the real coordinator and two real bank participants — the same
//! `verdict serve` and `verdict participant kv` code, over tonic — run under turmoil on one
//! thread, with simulated time, network and disks. A seed draws the faults (machines losing
//! power, processes killed, links cut and slowed) and every other choice, so a failing seed
//! replays exactly. An application moves money between the banks meanwhile; once the faults
//! end, the ledger checker (`verdict::chaos::ledger`) judges every transfer.
//!
//! What is simulated, and where: the network through `verdict::net`, the clock and chance
//! through `verdict::world`, the disks beneath the durable database (`verdict::durable::Disks`:
//! sled cannot run on a simulated file system).
//!
//! Each seed runs in a process of its own: tokio numbers tasks process-wide and a crashed
//! host's tasks are dropped in an order that follows those numbers, so only a fresh process
//! replays a seed exactly.
//!
//! `cargo test --test simulation` runs `SIM_SEEDS` seeds (default 6) from `SIM_SEED`
//! (default 1); `SIM_SEED=N SIM_SEEDS=1` replays seed N, `SIM_LOG=debug` with its logs.

mod faults;
mod network;

use std::cell::{Cell, RefCell};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use libtest_mimic::{Arguments, Failed, Trial};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use verdict::chaos::ledger::{self, Attempt, Deployment, Endpoints, Ledger, Report};
use verdict::client::Client;
use verdict::coordinator::Config;
use verdict::durable::{self, Disks, LogSync};
use verdict::limits::Limits;
use verdict::participant::server::ParticipantOptions;
use verdict::server::ServeOptions;
use verdict::{net, tls, world};

use faults::{Nemesis, LATENCY};
use network::{boxed, Turmoil};

const COORDINATOR: &str = "http://coordinator:7100";
const BANKS: [&str; 2] = ["bank-a", "bank-b"];
/// Faults start once the application has opened its accounts, and stop after this.
const WORKLOAD: Duration = Duration::from_secs(20);
/// Transfer loops at once.
const WORKERS: usize = 4;
/// How long the checker waits for everything to settle once the faults are over.
const PATIENCE: Duration = Duration::from_secs(60);

/// Set in a child process: the one seed it runs.
const CHILD_SEED: &str = "SIM_CHILD_SEED";
/// Set in a child process: its disks lie about syncs.
const CHILD_LYING: &str = "SIM_CHILD_LYING_DISKS";
/// What a child prints before its run.
const RUN_FOLLOWS: &str = "--- run ---";

fn main() {
    if let Ok(seed) = std::env::var(CHILD_SEED) {
        let seed = seed.parse().expect("a seed");
        let disks = match std::env::var_os(CHILD_LYING) {
            Some(_) => Disks::lying(),
            None => Disks::default(),
        };
        print!("{RUN_FOLLOWS}\n{}", simulate(seed, disks));
        return;
    }
    let arguments = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "transfers_stay_atomic_through_power_loss_kills_partitions_and_delays",
            seeds_keep_the_ledger,
        ),
        Trial::test("a_seed_replays_exactly", a_seed_replays_exactly),
        Trial::test(
            "disks_that_ignore_fsync_are_caught_losing_commits",
            lying_disks_are_caught,
        ),
    ];
    libtest_mimic::run(&arguments, trials).exit();
}

fn seeds_keep_the_ledger() -> Result<(), Failed> {
    let first = env_u64("SIM_SEED", 1)?;
    let count = env_u64("SIM_SEEDS", 6)?;
    let started = std::time::Instant::now();
    for seed in first..first + count {
        let run = in_child(seed, false)?;
        let summary = run.lines().last().unwrap_or_default();
        println!("seed {seed}: {summary}");
        if !summary.contains("violations 0") || summary.contains("committed 0,") {
            return Err(format!(
                "seed {seed} broke the ledger or committed nothing (replay: SIM_SEED={seed} \
                 SIM_SEEDS=1 cargo test --test simulation -- --nocapture):\n{run}"
            )
            .into());
        }
    }
    println!("{count} seeds in {:?}", started.elapsed());
    Ok(())
}

fn a_seed_replays_exactly() -> Result<(), Failed> {
    let seed = env_u64("SIM_SEED", 1)? + 1_000;
    let (first, second) = (in_child(seed, false)?, in_child(seed, false)?);
    if !first.contains("fault: ") || !first.contains("attempt: ") {
        return Err(format!("seed {seed} ran no faults or no transfers:\n{first}").into());
    }
    match first.lines().zip(second.lines()).position(|(a, b)| a != b) {
        None if first.lines().count() == second.lines().count() => Ok(()),
        at => Err(format!(
            "seed {seed} ran differently the second time, from line {}:\n{}\n{}",
            at.unwrap_or(first.lines().count().min(second.lines().count())) + 1,
            first
                .lines()
                .nth(at.unwrap_or(usize::MAX))
                .unwrap_or("(nothing)"),
            second
                .lines()
                .nth(at.unwrap_or(usize::MAX))
                .unwrap_or("(nothing)"),
        )
        .into()),
    }
}

/// The checker must notice when durability is a lie: on disks that drop syncs, power losses
/// take commit decisions and votes that were acknowledged, and some seed among the first few
/// must show it in the ledger — a COMMITTED answer later aborted, or money moved on one side
/// only.
fn lying_disks_are_caught() -> Result<(), Failed> {
    let first = env_u64("SIM_SEED", 1)? + 2_000;
    for seed in first..first + LYING_SEEDS {
        let run = in_child(seed, true)?;
        let lost = |line: &&str| line.starts_with("VIOLATION") && !line.contains("not settled");
        if let Some(violation) = run.lines().find(lost) {
            println!("seed {seed} on lying disks: {violation}");
            return Ok(());
        }
    }
    Err(format!("{LYING_SEEDS} seeds on disks that ignore fsync, and no violation found").into())
}

/// How many seeds may run on lying disks before one must show the loss.
const LYING_SEEDS: u64 = 5;

/// Runs `seed` in a fresh process of this test binary, on `lying` disks or not; its run.
fn in_child(seed: u64, lying: bool) -> Result<String, Failed> {
    let mut child = Command::new(std::env::current_exe()?);
    child.env(CHILD_SEED, seed.to_string());
    if lying {
        child.env(CHILD_LYING, "1");
    }
    // Its logs (SIM_LOG) and any panic go straight to this process's stderr.
    let output = child.stderr(Stdio::inherit()).output()?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let run = printed.split_once(RUN_FOLLOWS).map_or("", |(_, run)| run);
    match output.status.success() {
        true => Ok(run.trim_start().to_owned()),
        false => Err(format!("seed {seed} failed ({}):\n{printed}", output.status).into()),
    }
}

fn env_u64(name: &str, default: u64) -> Result<u64, Failed> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number").into()),
    }
}

/// What one seed did: every transfer attempted and what its client was told, every fault,
/// and the checker's verdict — one per line, the verdict last.
struct Run {
    attempts: Vec<Attempt>,
    faults: Vec<String>,
    report: Report,
    /// Simulated time until the check ended.
    elapsed: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for attempt in &self.attempts {
            writeln!(f, "attempt: {attempt:?}")?;
        }
        for fault in &self.faults {
            writeln!(f, "fault: {fault}")?;
        }
        for violation in &self.report.violations {
            writeln!(f, "VIOLATION: {violation}")?;
        }
        let r = &self.report;
        writeln!(
            f,
            "committed {}, aborted {}, indeterminate {}, faults {}, violations {}, simulated {:?}",
            r.committed,
            r.aborted,
            r.indeterminate,
            self.faults.len(),
            r.violations.len(),
            self.elapsed
        )
    }
}

/// Runs seed `seed` to the end of its check.
fn simulate(seed: u64, disks: Disks) -> Run {
    let _logs = logs();
    durable::simulate(Some(disks.clone()));
    net::simulate(Some(Arc::new(Turmoil)));
    world::simulate(simulated_clock, seed);
    let run = run(seed, &disks);
    world::stop_simulating();
    net::simulate(None);
    durable::simulate(None);
    run
}

/// With `SIM_LOG` (a `RUST_LOG` filter), every server's logs on stderr, stamped with simulated time.
fn logs() -> Option<tracing::subscriber::DefaultGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIM_LOG").ok()?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SimulatedTime)
        .with_writer(std::io::stderr)
        .finish();
    Some(tracing::subscriber::set_default(subscriber))
}

struct SimulatedTime;

impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:?}", turmoil::sim_elapsed().unwrap_or_default())
    }
}

fn simulated_clock() -> Duration {
    turmoil::since_epoch().unwrap_or_default()
}

fn run(seed: u64, disks: &Disks) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .simulation_duration(WORKLOAD + PATIENCE * 3)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(LATENCY)
        .build();
    sim.host("coordinator", || async {
        verdict::server::run(coordinator_options(), std::future::pending())
            .await
            .map_err(boxed)
    });
    for bank in BANKS {
        sim.host(bank, move || async move {
            verdict::bank::server::run(bank_options(bank), std::future::pending())
                .await
                .map_err(boxed)
        });
    }
    let healed = Rc::new(Cell::new(false));
    let outcome = Rc::new(RefCell::new(None));
    sim.client("app", app(seed, healed.clone(), outcome.clone()));

    let mut nemesis = None;
    let ended = loop {
        let now = sim.elapsed();
        // The faults start once the accounts are open, so that the workload has a ledger.
        if let Some(opened) = outcome
            .borrow()
            .as_ref()
            .and_then(|o: &AppState| o.opened_at)
        {
            let nemesis = nemesis.get_or_insert_with(|| {
                Nemesis::new(faults::schedule(&mut rng, opened, opened + WORKLOAD))
            });
            if nemesis.tick(now, &mut sim, disks, &mut rng) {
                healed.set(true);
            }
        }
        match sim.step() {
            Ok(false) => continue,
            Ok(true) => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
    };
    let mut state = outcome.take().unwrap_or_default();
    let failed = ended.err().map(|e| format!("the simulation failed: {e}"));
    state.report.violations.extend(failed);
    Run {
        attempts: state.attempts,
        faults: nemesis.map(|n| n.log).unwrap_or_default(),
        report: state.report,
        elapsed: sim.elapsed(),
    }
}

fn coordinator_options() -> ServeOptions {
    ServeOptions {
        listen: "0.0.0.0:7100".parse().expect("address"),
        data_dir: faults::root("coordinator").join("data"),
        log_sync: LogSync::Fsync,
        engine: Config {
            advertise_url: COORDINATOR.into(),
            default_txn_timeout: Duration::from_secs(10),
            ..Config::default()
        },
        cluster: None,
        console: None,
        limits: Limits::default(),
        tls: None,
        auth: None,
    }
}

fn bank_options(bank: &str) -> ParticipantOptions {
    ParticipantOptions {
        listen: "0.0.0.0:7200".parse().expect("address"),
        data_dir: faults::root(bank).join("data"),
        coordinator_url: COORDINATOR.into(),
        advertise_url: bank_url(bank),
        name: bank.into(),
        quiet_period: Duration::from_secs(5),
        sweep_every: Duration::from_secs(30),
        retention: Duration::from_secs(24 * 3600),
        log_sync: LogSync::Fsync,
        tls: None,
    }
}

fn bank_url(bank: &str) -> String {
    format!("http://{bank}:7200")
}

/// What the application did and found.
#[derive(Default)]
struct AppState {
    /// When its accounts were open (simulated time).
    opened_at: Option<Duration>,
    attempts: Vec<Attempt>,
    report: Report,
}

/// The application: opens the accounts, transfers money for [`WORKLOAD`], waits for the faults
/// to end, then checks the ledger.
async fn app(
    seed: u64,
    healed: Rc<Cell<bool>>,
    state: Rc<RefCell<Option<AppState>>>,
) -> turmoil::Result {
    let banks: Vec<String> = BANKS.iter().map(|b| bank_url(b)).collect();
    let deployment = Endpoints::new(COORDINATOR, &banks).map_err(boxed)?;
    for url in banks.iter().map(String::as_str).chain([COORDINATOR]) {
        serving(url).await?;
    }
    let ledger = Ledger::open(&deployment, 3, 1_000).await.map_err(boxed)?;
    *state.borrow_mut() = Some(AppState {
        opened_at: Some(turmoil::elapsed()),
        ..AppState::default()
    });
    let client = Client::new(COORDINATOR, Duration::from_secs(5))?;
    let banks: Vec<_> = (0..BANKS.len())
        .map(|b| deployment.bank_client(b))
        .collect();
    let stop_at = tokio::time::Instant::now() + WORKLOAD;
    let attempts = ledger::run_transfers(&ledger, &banks, &client, WORKERS, seed, stop_at)
        .await
        .map_err(boxed)?;
    tracing::info!(attempts = attempts.len(), "transfers done");
    while !healed.get() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("faults over: checking");
    let report = ledger::check(&deployment, &ledger, &attempts, PATIENCE)
        .await
        .map_err(boxed)?;
    let mut state = state.borrow_mut();
    let state = state.get_or_insert_with(AppState::default);
    state.attempts = attempts;
    state.report = report;
    Ok(())
}

/// Waits until the server at `url` reports SERVING.
async fn serving(url: &str) -> turmoil::Result {
    let mut health = HealthClient::new(net::channel(tls::endpoint(url)?));
    loop {
        let request = HealthCheckRequest::default();
        if let Ok(response) = health.check(request).await {
            if response.into_inner().status() == ServingStatus::Serving {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
