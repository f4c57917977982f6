//! `verdict bench`: throughput and latency of committed transactions, beside the physical limits
//! measured in the same run.
//!
//! By default it starts its own deployment — a coordinator and N participants as child processes
//! on free local ports with fresh temporary data directories — so that one command measures.
//! With a coordinator URL and participant URLs it drives a running deployment instead.
//!
//! - [`baseline`]: bare RPC round trip and throughput, fsync latency.
//! - [`pg_direct`]: with PostgreSQL banks, the same transfers without Verdict.
//! - [`footprint`]: the started processes' memory and data directories over the run.
//! - [`report`]: the table, JSON and SVG.

pub mod baseline;
pub mod footprint;
pub mod pg_direct;
pub mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use tonic::transport::Channel;

use self::baseline::{fsync_latency, histogram, micros, rpc_round_trips, rpc_throughput};
use self::footprint::Watched;
use self::report::{Baseline, Percentiles, Report, SingleNode};
use crate::bank::{
    participant_of, transfer_handing, transfer_in, transfer_submitting, AccountAt, AccountOf,
};
use crate::client::Client;
use crate::core::Outcome;
use crate::durable::LogSync;
use crate::process::ChildServer;
use crate::proto::bank_client::BankClient;
use crate::proto::{BeginRequest, OpenAccountRequest, ParticipantRef};
use crate::{net, tls};

/// What the transactions do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Participants that journal (forced) and vote YES: the protocol's own cost.
    Noop,
    /// Transfers between KV banks; a chosen share overdraws and votes NO.
    Bank,
}

/// How the bank workload gives each bank its change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Staging {
    /// Handed to the coordinator in one Submit (Begin and Commit in one call), which brings
    /// it with the bank's Prepare.
    Submit,
    /// Handed to the coordinator in Commit, which brings it with the bank's Prepare.
    Commit,
    /// An `Apply` call to each bank before Commit.
    Apply,
}

/// How to run the benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The `verdict` binary, for the deployment it starts.
    pub exe: PathBuf,
    /// A running coordinator to target, with `participants` (none: start a deployment).
    pub coordinator: Option<String>,
    pub participant_urls: Vec<String>,
    pub participants: usize,
    pub concurrency: usize,
    pub duration: Duration,
    /// Stop after this many transactions instead of `duration`.
    pub transactions: Option<u64>,
    pub warmup: Duration,
    pub workload: Workload,
    /// Share of bank transfers that overdraw (vote NO).
    pub overdraft_share: f64,
    pub staging: Staging,
    pub log_sync: LogSync,
    /// Flags every process it starts takes (worker threads, TLS, bearer token).
    pub child_flags: Vec<String>,
    /// Whether the processes it starts serve TLS (`child_flags` say how): their URLs are
    /// `https://`.
    pub tls: bool,
    /// Flags only the coordinator nodes it starts take (`--auth`).
    pub coordinator_flags: Vec<String>,
    /// Draw a progress line on stderr (when it is a terminal).
    pub progress: bool,
    /// The PostgreSQL banks' databases: also measure the transfers driven directly on them.
    pub pg_direct: Vec<String>,
    /// Coordinator nodes: of the deployment it starts (1 is a single node, more a cluster), or
    /// named in `coordinator`.
    pub nodes: usize,
    /// The `--retention` of the coordinator and participants it starts (their default if none).
    pub retention: Option<Duration>,
}

/// The processes of a deployment started for the run.
struct Deployment {
    coordinator: String,
    participants: Vec<String>,
    processes: Vec<ChildServer>,
    /// Each process's name, pid and data directory, for its footprint.
    watched: Vec<Watched>,
    dir: PathBuf,
}

impl Deployment {
    async fn start(options: &BenchOptions) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("verdict-bench-{}", std::process::id()));
        let sync = match options.log_sync {
            LogSync::Fsync => "fsync",
            LogSync::Off => "off",
        };
        let scheme = if options.tls { "https" } else { "http" };
        let url = |process: &ChildServer| format!("{scheme}://{}", process.addr());
        let spawn = |args: Vec<String>, listen: String, data: PathBuf| {
            let mut args = args;
            args.extend(options.child_flags.iter().cloned());
            args.extend(["--listen".into(), listen]);
            args.extend(["--log-level", "warn", "--log-sync", sync].map(String::from));
            args.push("--data-dir".into());
            args.push(data.display().to_string());
            let exe = options.exe.clone();
            async move { ChildServer::spawn(&exe, args, Stdio::inherit()).await }
        };
        let retention: Vec<String> = match options.retention {
            Some(retention) => vec!["--retention".into(), format!("{}ms", retention.as_millis())],
            None => Vec::new(),
        };
        // Finished transactions past a short retention are collected often enough to see.
        let collected = match options.retention {
            Some(_) => vec!["--gc-interval".into(), "10s".into()],
            None => Vec::new(),
        };
        let mut processes = Vec::new();
        let mut watched = Vec::new();
        let mut watch = |name: String, process: &ChildServer, dir: PathBuf| {
            watched.extend(process.pid().map(|pid| Watched { name, pid, dir }));
        };
        if options.nodes == 1 {
            let any_port = "127.0.0.1:0".to_string();
            let data = dir.join("coordinator");
            let args = ["serve".to_string()]
                .into_iter()
                .chain(options.coordinator_flags.clone())
                .chain(retention.clone())
                .chain(collected.clone());
            let process = spawn(args.collect(), any_port, data.clone()).await?;
            watch("coordinator".into(), &process, data);
            processes.push(process);
        } else {
            let ports = crate::process::free_local_ports(options.nodes)?;
            let peers: Vec<String> = (1..)
                .zip(&ports)
                .map(|(id, port)| format!("{id}={scheme}://127.0.0.1:{port}"))
                .collect();
            for (id, port) in (1..).zip(&ports) {
                let args = [
                    "serve",
                    "--node-id",
                    &id.to_string(),
                    "--peers",
                    &peers.join(","),
                ]
                .map(String::from)
                .into_iter()
                .chain(options.coordinator_flags.clone())
                .chain(retention.clone())
                .chain(collected.clone())
                .collect();
                let data = dir.join(format!("node-{id}"));
                let process = spawn(args, format!("127.0.0.1:{port}"), data.clone()).await?;
                watch(format!("node {id}"), &process, data);
                processes.push(process);
            }
        }
        let urls: Vec<String> = processes.iter().map(url).collect();
        let coordinator_url = urls.join(",");
        let kind = match options.workload {
            Workload::Noop => "noop",
            Workload::Bank => "kv",
        };
        let mut participants = Vec::new();
        for i in 0..options.participants {
            let args = [
                "participant",
                kind,
                "--coordinator",
                &coordinator_url,
                "--name",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("p{i}")])
            .chain(retention.clone())
            .collect();
            let listen = "127.0.0.1:0".to_string();
            let data = dir.join(format!("participant-{i}"));
            let process = spawn(args, listen, data.clone()).await?;
            watch(format!("participant p{i}"), &process, data);
            participants.push(url(&process));
            processes.push(process);
        }
        Ok(Deployment {
            coordinator: coordinator_url,
            participants,
            processes,
            watched,
            dir,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        for process in self.processes {
            process.stop().await?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(net::channel(tls::endpoint(url)?.tcp_nodelay(true)))
}

/// Runs the benchmark and returns what it measured. A cluster it starts itself is measured
/// beside a single node run the same way right after, in the same run.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let deployment = match &options.coordinator {
        Some(_) => None,
        None => Some(Deployment::start(options).await?),
    };
    let (coordinator, participants) = match &deployment {
        Some(d) => (d.coordinator.clone(), d.participants.clone()),
        None => (
            options.coordinator.clone().expect("targeted"),
            options.participant_urls.clone(),
        ),
    };
    anyhow::ensure!(
        participants.len() >= options.participants.max(1),
        "{} participants per transaction need as many --participant URLs",
        options.participants
    );
    let fsync_dir = deployment
        .as_ref()
        .map_or_else(std::env::temp_dir, |d| d.dir.clone());
    let baseline = measure_baseline(options, &participants[0], &fsync_dir).await?;
    let watched = deployment.as_ref().map_or(&[][..], |d| &d.watched[..]);
    let mut direct = match options.pg_direct.is_empty() {
        true => None,
        false => Some(pg_direct::Direct::connect(&options.pg_direct, options.concurrency).await?),
    };
    let driving = drive(
        options,
        &coordinator,
        &participants,
        baseline.clone(),
        direct.as_mut(),
    );
    let (mut report, footprint) = footprint::during(watched, driving).await;
    if let Ok(report) = &mut report {
        report.footprint = footprint;
    }
    if let Some(deployment) = deployment {
        deployment.stop().await?;
    }
    let started_a_cluster = options.nodes > 1 && options.coordinator.is_none();
    if let (Ok(report), true) = (&mut report, started_a_cluster) {
        report.single_node = Some(single_node(options, baseline).await?);
    }
    if let (Ok(report), Some(direct)) = (&mut report, direct) {
        report.pg_direct = Some(direct.report()?);
    }
    report
}

/// The same workload on a single-node deployment, for comparison with a cluster.
async fn single_node(options: &BenchOptions, baseline: Baseline) -> anyhow::Result<SingleNode> {
    let single = BenchOptions {
        nodes: 1,
        ..options.clone()
    };
    let deployment = Deployment::start(&single).await?;
    let report = drive(
        &single,
        &deployment.coordinator,
        &deployment.participants,
        baseline,
        None,
    )
    .await;
    deployment.stop().await?;
    let report = report?;
    Ok(SingleNode {
        committed: report.committed,
        throughput: report.throughput,
        commit_latency_ms: report.commit_latency_ms,
    })
}

async fn measure_baseline(
    options: &BenchOptions,
    participant: &str,
    fsync_dir: &std::path::Path,
) -> anyhow::Result<Baseline> {
    let fsync = fsync_latency(&fsync_dir.join("baseline"), 500)?;
    let channel = channel(participant)?;
    rpc_round_trips(channel.clone(), 200).await?; // warm the connection
    let round_trips = rpc_round_trips(channel.clone(), 2000).await?;
    let rpc_per_sec = rpc_throughput(channel, options.concurrency, Duration::from_secs(2)).await?;
    Ok(Baseline {
        rpc_round_trip_ms: Percentiles::of(&round_trips),
        rpc_per_sec,
        fsync_ms: Percentiles::of(&fsync),
    })
}

/// What the workers count, shared.
#[derive(Default)]
struct Tally {
    committed: AtomicU64,
    aborted: AtomicU64,
    failed: AtomicU64,
    /// What made the first failed transaction fail.
    first_failure: Mutex<Option<String>>,
    started: AtomicU64,
    per_second: Mutex<Vec<u64>>,
    latencies: Mutex<Option<Histogram<u64>>>,
}

/// What every transaction of the run does, and the clients it does it with.
struct Shape {
    client: Client,
    participants: Vec<ParticipantRef>,
    banks: Vec<BankClient<Channel>>,
    workload: Workload,
    overdraft_share: f64,
    staging: Staging,
}

/// Accounts per bank in the bank workload, and their opening balance.
pub(crate) const BANK_ACCOUNTS: usize = 1000;
const OPENING: i64 = 1_000_000_000;

impl Shape {
    /// Runs one transaction; returns its outcome and the latency of the Commit call.
    async fn transaction(&self) -> Result<(Outcome, Duration), tonic::Status> {
        match self.workload {
            Workload::Noop => {
                let request = BeginRequest {
                    timeout_ms: 0,
                    participants: self.participants.clone(),
                };
                let txn = self.client.begin_with(request).await?.txn_id;
                let started = Instant::now();
                let (outcome, _) = self.client.commit(txn).await?;
                Ok((outcome, started.elapsed()))
            }
            Workload::Bank => {
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    let overdraw = rng.random_bool(self.overdraft_share);
                    let amount = if overdraw {
                        OPENING * 2
                    } else {
                        rng.random_range(1..100)
                    };
                    let account = |rng: &mut rand::rngs::ThreadRng| {
                        format!("a{}", rng.random_range(0..BANK_ACCOUNTS))
                    };
                    (account(&mut rng), account(&mut rng), amount)
                };
                self.transfer(from, to, amount).await
            }
        }
    }

    /// One bank transfer, staged the way the options say; the latency is from the call that
    /// hands over the work (Submit or Commit; Apply for `--staging apply`) to the outcome.
    async fn transfer(
        &self,
        from: String,
        to: String,
        amount: i64,
    ) -> Result<(Outcome, Duration), tonic::Status> {
        let to_bank = 1 % self.banks.len();
        let of = |bank: usize, account| AccountOf {
            bank: self.participants[bank].clone(),
            account,
        };
        if self.staging == Staging::Submit {
            let (from, to) = (of(0, from), of(to_bank, to));
            let request_id = crate::world::uuid_v7().to_string();
            let started = Instant::now();
            let (_, outcome, _) =
                transfer_submitting(&self.client, &request_id, &from, &to, amount).await?;
            return Ok((outcome, started.elapsed()));
        }
        // Both banks named at Begin: neither enlists itself.
        let request = BeginRequest {
            timeout_ms: 0,
            participants: self.participants.clone(),
        };
        let begun = self.client.begin_with(request).await?;
        let (txn, until) = (begun.txn_id, begun.deadline_unix_ms);
        let started = Instant::now();
        let (outcome, _) = match self.staging {
            Staging::Apply => {
                let at = |bank: usize, account| AccountAt {
                    bank: self.banks[bank].clone(),
                    account,
                };
                let (from, to) = (at(0, from), at(to_bank, to));
                transfer_in(&self.client, txn, until, &from, &to, amount).await?
            }
            _ => {
                let (from, to) = (of(0, from), of(to_bank, to));
                transfer_handing(&self.client, txn, &from, &to, amount).await?
            }
        };
        Ok((outcome, started.elapsed()))
    }
}

/// The participants the banks take part as, for Begin to name.
async fn describe_banks(banks: &[BankClient<Channel>]) -> anyhow::Result<Vec<ParticipantRef>> {
    let mut participants = Vec::new();
    for bank in banks {
        let participant = participant_of(bank)
            .await
            .context("asking a bank which participant it is (Describe)")?;
        participants.push(participant);
    }
    Ok(participants)
}

async fn open_bank_accounts(banks: &[BankClient<Channel>]) -> anyhow::Result<()> {
    for bank in banks {
        for i in 0..BANK_ACCOUNTS {
            let request = OpenAccountRequest {
                account: format!("a{i}"),
                balance: OPENING,
            };
            match bank.clone().open_account(request).await {
                Err(status) if status.code() != tonic::Code::AlreadyExists => Err(status)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// How many slices of its own and of PostgreSQL's alone a run with `--pg-direct` alternates.
const DIRECT_SLICES: u32 = 5;

/// Runs the workload; with `direct`, in slices alternating with the direct transfers'.
async fn drive(
    options: &BenchOptions,
    coordinator: &str,
    participants: &[String],
    baseline: Baseline,
    direct: Option<&mut pg_direct::Direct>,
) -> anyhow::Result<Report> {
    let used = &participants[..options.participants.max(1)];
    let banks: Vec<_> = used
        .iter()
        .map(|url| channel(url).map(BankClient::new))
        .collect::<Result<_, _>>()?;
    let participants = match options.workload {
        Workload::Noop => (0..)
            .zip(used)
            .map(|(i, url)| ParticipantRef {
                name: format!("p{i}"),
                endpoint: url.clone(),
            })
            .collect(),
        Workload::Bank => describe_banks(&banks).await?,
    };
    let shape = Arc::new(Shape {
        client: Client::new(coordinator, Duration::from_secs(30))?,
        participants,
        banks,
        workload: options.workload,
        overdraft_share: options.overdraft_share,
        staging: options.staging,
    });
    if options.workload == Workload::Bank {
        open_bank_accounts(&shape.banks)
            .await
            .context("opening bank accounts")?;
    }
    let tally = Arc::new(Tally::default());
    *tally.latencies.lock().expect("lock") = Some(histogram());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Arc::new(Mutex::new(Instant::now()));
    // Each transaction holds it shared; a pause takes it whole, once those in flight finished.
    let gate = Arc::new(tokio::sync::RwLock::new(()));

    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (shape, tally, measuring, stop, epoch, gate) = (
                shape.clone(),
                tally.clone(),
                measuring.clone(),
                stop.clone(),
                epoch.clone(),
                gate.clone(),
            );
            let limit = options.transactions;
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut per_second: Vec<u64> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if measuring.load(Ordering::Relaxed) {
                        let n = tally.started.fetch_add(1, Ordering::Relaxed);
                        if limit.is_some_and(|limit| n >= limit) {
                            break;
                        }
                    }
                    let open = gate.read().await;
                    let result = shape.transaction().await;
                    drop(open);
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match result {
                        Ok((Outcome::Committed, latency)) => {
                            tally.committed.fetch_add(1, Ordering::Relaxed);
                            let _ = latencies.record(micros(latency));
                            let second = epoch.lock().expect("lock").elapsed().as_secs() as usize;
                            if per_second.len() <= second {
                                per_second.resize(second + 1, 0);
                            }
                            per_second[second] += 1;
                        }
                        Ok((Outcome::Aborted, _)) => {
                            tally.aborted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            if tally.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                let why = format!("{:?}: {}", error.code(), error.message());
                                *tally.first_failure.lock().expect("lock") = Some(why);
                            }
                        }
                    }
                }
                if let Some(all) = tally.latencies.lock().expect("lock").as_mut() {
                    let _ = all.add(&latencies);
                }
                let mut all = tally.per_second.lock().expect("lock");
                if all.len() < per_second.len() {
                    all.resize(per_second.len(), 0);
                }
                for (total, n) in all.iter_mut().zip(per_second) {
                    *total += n;
                }
            })
        })
        .collect();

    tokio::time::sleep(options.warmup).await;
    *epoch.lock().expect("lock") = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let watch = Watch {
        options,
        tally: &tally,
        show: options.progress && std::io::stderr().is_terminal(),
    };
    let measured = match direct {
        None => watch.run_for(options.duration, Duration::ZERO).await,
        Some(direct) => {
            let slice = options.duration / DIRECT_SLICES;
            let mut measured = Duration::ZERO;
            for _ in 0..DIRECT_SLICES {
                measured += watch.run_for(slice, measured).await;
                let started = Instant::now();
                let paused = gate.write().await;
                measured += started.elapsed();
                direct.run(slice).await?;
                drop(paused);
            }
            measured
        }
    };
    let (elapsed, wall) = (measured.as_secs_f64(), started.elapsed().as_secs_f64());
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    if watch.show {
        eprintln!();
    }
    for worker in workers {
        worker.await?;
    }

    let latencies = tally.latencies.lock().expect("lock").take().expect("set");
    let committed = tally.committed.load(Ordering::Relaxed);
    let throughput = committed as f64 / elapsed;
    let commit_latency = Percentiles::of(&latencies);
    let rpcs_per_txn = match options.workload {
        // Begin (with participants), Commit, then a Prepare and a decision per participant.
        Workload::Noop => 2 + 2 * options.participants,
        // Submit, or Begin (naming both banks), two Applies or none and Commit; then Prepare
        // and decision per bank.
        Workload::Bank => match options.staging {
            Staging::Submit => 1 + 2 * 2,
            Staging::Commit => 2 + 2 * 2,
            Staging::Apply => 2 + 2 + 2 * 2,
        },
    };
    let floor = baseline.rpc_round_trip_ms.p50 + 2.0 * baseline.fsync_ms.p50;
    let first_failure = tally.first_failure.lock().expect("lock").take();
    let mut per_second = tally.per_second.lock().expect("lock").clone();
    per_second.truncate(wall.floor() as usize);
    let latency_distribution = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99]
        .iter()
        .map(|p| (*p, latencies.value_at_percentile(*p) as f64 / 1000.0))
        .collect();
    Ok(Report {
        workload: format!("{:?}", options.workload).to_lowercase(),
        coordinator_nodes: options.nodes,
        participants_per_txn: options.participants,
        concurrency: options.concurrency,
        log_sync: format!("{:?}", options.log_sync).to_lowercase(),
        duration_secs: elapsed,
        committed,
        aborted: tally.aborted.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        first_failure,
        throughput,
        throughput_ratio: throughput / (baseline.rpc_per_sec / rpcs_per_txn as f64),
        latency_ratio: commit_latency.p50 / floor,
        pg_direct: None,
        single_node: None,
        commit_latency_ms: commit_latency,
        rpcs_per_txn,
        baseline,
        committed_per_second: per_second,
        latency_distribution,
        footprint: Vec::new(),
    })
}

/// Watches the measured run: shows progress, and says when a stretch of it is over.
struct Watch<'a> {
    options: &'a BenchOptions,
    tally: &'a Tally,
    show: bool,
}

impl Watch<'_> {
    /// Waits `stretch` (or until the run's transaction count has started), `before` measured
    /// already; how long it waited.
    async fn run_for(&self, stretch: Duration, before: Duration) -> Duration {
        let started = Instant::now();
        let limit = self.options.transactions;
        while started.elapsed() < stretch || limit.is_some() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self.show {
                let secs = (before + started.elapsed()).as_secs_f64();
                let committed = self.tally.committed.load(Ordering::Relaxed);
                eprint!(
                    "\r[{secs:5.1} s] committed {committed:>9}  {:>8.0} txn/s ",
                    committed as f64 / secs
                );
            }
            if limit.is_some_and(|n| self.tally.started.load(Ordering::Relaxed) >= n) {
                break;
            }
        }
        started.elapsed()
    }
}
