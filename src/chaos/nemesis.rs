//! The randomized nemesis: a bank workload on a proxied cluster while processes are SIGKILLed
//! at random moments and the network turns slow, lossy or partitioned; then everything heals
//! and the [`ledger`](super::ledger) checker judges the history. With a coordinator cluster,
//! proxies sit on every link between its nodes too: a node is cut off from the others (clients
//! and banks still reach it), or one link fails; and a process is frozen with SIGSTOP, cut off
//! from everyone and unaware of it when it resumes — a deposed leader that still believes it
//! leads.
//!
//! The seed fixes every random choice (what to break, when, which transfers); thread timing
//! still varies between runs, so a replay explores the same schedule, not the same
//! interleaving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::cluster::{Cluster, ClusterConfig, Node};
use super::ledger::{check, run_transfers, Ledger, Report};
use super::proxy::Faults;
use crate::client::Client;

/// How to run the nemesis.
#[derive(Clone, Debug)]
pub struct NemesisConfig {
    /// The `verdict` binary to run the processes.
    pub exe: PathBuf,
    /// Where the processes keep their data and logs.
    pub dir: PathBuf,
    /// How long faults are injected (the settle and check come after).
    pub duration: Duration,
    pub seed: u64,
    pub banks: usize,
    /// Coordinator nodes: 1 is a single node, more a Raft cluster.
    pub coordinator_nodes: usize,
    pub accounts_per_bank: usize,
    /// Concurrent transfers.
    pub workers: usize,
    /// How long the cluster may take to settle once healed.
    pub patience: Duration,
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct Summary {
    pub report: Report,
    pub kills: usize,
    pub network_faults: usize,
    pub seed: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.report;
        write!(
            f,
            "nemesis: attempted {} committed {} aborted {} indeterminate {} kills {} \
             network_faults {} violations {} seed {}",
            r.attempted,
            r.committed,
            r.aborted,
            r.indeterminate,
            self.kills,
            self.network_faults,
            r.violations.len(),
            self.seed
        )
    }
}

/// Runs the nemesis and checks the result.
pub async fn run(config: &NemesisConfig) -> anyhow::Result<Summary> {
    let cluster_config = ClusterConfig {
        exe: config.exe.clone(),
        dir: config.dir.clone(),
        banks: config.banks,
        coordinator_nodes: config.coordinator_nodes,
        proxies: true,
        coordinator_args: [
            "--txn-timeout",
            "3s",
            "--prepare-timeout",
            "1s",
            "--decision-timeout",
            "1s",
            "--retry-initial",
            "20ms",
            "--retry-max",
            "500ms",
        ]
        .map(String::from)
        .to_vec(),
        bank_args: ["--quiet-period", "500ms"].map(String::from).to_vec(),
    };
    let cluster = Cluster::start(&cluster_config).await?;
    let ledger = Ledger::open(&cluster, config.accounts_per_bank, 1000).await?;
    let client = Client::new(&cluster.node_urls(), Duration::from_secs(3))?;
    let banks = cluster.bank_clients();
    let cluster = Arc::new(Mutex::new(cluster));
    let stop_at = Instant::now() + config.duration;
    let transfers = {
        let (ledger, seed, workers) = (ledger.clone(), config.seed, config.workers);
        tokio::spawn(async move {
            run_transfers(&ledger, &banks, &client, workers, seed, stop_at).await
        })
    };
    let (kills, network_faults) = break_things(&cluster, config.seed, stop_at).await?;
    let attempts = transfers.await??;
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("workers still hold the cluster"))?
        .into_inner();
    cluster.heal().await?;
    let report = check(&cluster, &ledger, &attempts, config.patience).await?;
    cluster.stop().await?;
    Ok(Summary {
        report,
        kills,
        network_faults,
        seed: config.seed,
    })
}

/// Until `stop_at`: every 0.2–1.5 s, kill a random process (restarting it after a moment), or
/// give a random proxy a random fault for a while, or freeze a random process (in a cluster, or
/// with no proxies), or cut a cluster's node off from the others. One fault at a time, so a
/// 3-node cluster keeps its majority between faults.
/// Returns (kills, network faults).
async fn break_things(
    cluster: &Mutex<Cluster>,
    seed: u64,
    stop_at: Instant,
) -> anyhow::Result<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut kills, mut faults) = (0, 0);
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        let downtime = Duration::from_millis(rng.random_range(50..1000));
        let (proxied, clustered) = {
            let cluster = cluster.lock().await;
            (
                cluster.proxies().count() > 0,
                !cluster.raft_links.is_empty(),
            )
        };
        if clustered && rng.random_bool(0.2) {
            let node = {
                let cluster = cluster.lock().await;
                let node = rng.random_range(0..cluster.coordinators.len());
                tracing::info!(node = node + 1, ?downtime, "nemesis: a node cut off");
                cluster.cut_off(node)?;
                node
            };
            faults += 1;
            tokio::time::sleep(downtime).await;
            cluster.lock().await.reconnect(node);
        } else if rng.random_bool(0.5) || !proxied {
            // A proxied single node's processes are killed; a cluster's may also be frozen.
            let how = match (proxied && !clustered) || rng.random_bool(0.5) {
                true => Disruption::Kill,
                false => Disruption::Freeze,
            };
            let victim = {
                let mut cluster = cluster.lock().await;
                let victim = rng.random_range(0..cluster.nodes().count());
                how.start(cluster.nodes().nth(victim).expect("in range"), downtime)
                    .await?;
                victim
            };
            match how {
                Disruption::Kill => kills += 1,
                Disruption::Freeze => faults += 1,
            }
            tokio::time::sleep(downtime).await;
            let mut cluster = cluster.lock().await;
            how.end(cluster.nodes().nth(victim).expect("in range"))
                .await?;
        } else {
            let fault = random_fault(&mut rng);
            let proxy = {
                let cluster = cluster.lock().await;
                let proxies = cluster.proxies().count();
                let proxy = rng.random_range(0..proxies);
                let target = cluster.proxies().nth(proxy).expect("in range");
                tracing::info!(?fault, ?downtime, "nemesis: network fault");
                match &fault {
                    None => target.reset_connections(),
                    Some(fault) => target.set(fault.clone()),
                }
                proxy
            };
            faults += 1;
            tokio::time::sleep(downtime).await;
            let cluster = cluster.lock().await;
            cluster.proxies().nth(proxy).expect("in range").heal();
        }
    }
    Ok((kills, faults))
}

/// What the nemesis does to a process for a while.
#[derive(Clone, Copy, Debug)]
enum Disruption {
    /// SIGKILL, restarted after the downtime.
    Kill,
    /// SIGSTOP, a partition from everyone, then SIGCONT (where there are no proxies to cut
    /// the network instead).
    Freeze,
}

impl Disruption {
    async fn start(self, node: &mut Node, downtime: Duration) -> anyhow::Result<()> {
        tracing::info!(node = %node.name, ?downtime, disruption = ?self, "nemesis");
        match self {
            Disruption::Kill => node.kill().await,
            Disruption::Freeze => node.signal(libc::SIGSTOP),
        }
    }

    async fn end(self, node: &mut Node) -> anyhow::Result<()> {
        match self {
            Disruption::Kill => node.start().await,
            Disruption::Freeze => node.signal(libc::SIGCONT),
        }
    }
}

/// A random fault; `None` means "reset every connection".
fn random_fault(rng: &mut StdRng) -> Option<Faults> {
    let latency = Duration::from_millis(rng.random_range(5..300));
    Some(match rng.random_range(0..6) {
        0 => return None,
        1 => Faults {
            latency,
            jitter: latency,
            ..Faults::default()
        },
        2 => Faults::partition(),
        3 => Faults {
            stall_forward: true,
            ..Faults::default()
        },
        4 => Faults {
            stall_backward: true,
            ..Faults::default()
        },
        _ => Faults {
            refuse: true,
            ..Faults::default()
        },
    })
}
