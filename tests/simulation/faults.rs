//! The faults of one simulated run, drawn from its seed before it starts, and their effect on
//! the simulation: machines losing power or processes killed (and restarted), links cut, links
//! slowed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use verdict::durable::Disks;

/// The servers: each a host of its own, its data under `/{name}`.
pub const SERVERS: [&str; 3] = ["coordinator", "bank-a", "bank-b"];

/// Every host, the application's too (its links can be cut; it never crashes: it keeps the
/// record of what it was told).
pub const HOSTS: [&str; 4] = ["app", "coordinator", "bank-a", "bank-b"];

/// Message latency on a healthy link: up to this, exponentially distributed.
pub const LATENCY: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The machine loses power: each disk keeps what was synced and a torn part of the rest;
    /// the process restarts when power returns.
    PowerLoss(&'static str),
    /// The process is killed: what it wrote survives, what it held in memory does not; it
    /// restarts.
    Kill(&'static str),
    /// The link between two hosts is cut, both ways.
    Partition(&'static str, &'static str),
    /// Messages between two hosts take up to this long.
    Slow(&'static str, &'static str, Duration),
}

impl Fault {
    /// What the fault holds while it lasts: no second fault may hold it meanwhile.
    fn holds(&self) -> String {
        match self {
            Fault::PowerLoss(host) | Fault::Kill(host) => host.to_string(),
            Fault::Partition(a, b) | Fault::Slow(a, b, _) => format!("{a}~{b}"),
        }
    }
}

/// A fault, when it starts and how long it lasts.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

impl fmt::Display for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {:?} for {:?}: {:?}", self.at, self.lasts, self.fault)
    }
}

/// Faults from `start` until `end`, one every 0.3–2.5 s, each lasting 0.1–4 s.
pub fn schedule(rng: &mut StdRng, start: Duration, end: Duration) -> Vec<Scheduled> {
    let mut faults = Vec::new();
    let mut at = start;
    loop {
        at += Duration::from_millis(rng.random_range(300..2_500));
        if at >= end {
            return faults;
        }
        let lasts = Duration::from_millis(rng.random_range(100..4_000));
        faults.push(Scheduled {
            at,
            lasts,
            fault: draw(rng),
        });
    }
}

fn draw(rng: &mut StdRng) -> Fault {
    let server = SERVERS[rng.random_range(0..SERVERS.len())];
    let a = rng.random_range(0..HOSTS.len());
    let b = (a + rng.random_range(1..HOSTS.len())) % HOSTS.len();
    let (a, b) = (HOSTS[a.min(b)], HOSTS[a.max(b)]);
    match rng.random_range(0..100) {
        0..30 => Fault::PowerLoss(server),
        30..45 => Fault::Kill(server),
        45..80 => Fault::Partition(a, b),
        _ => Fault::Slow(a, b, Duration::from_millis(rng.random_range(200..3_000))),
    }
}

/// Starts and ends the scheduled faults as simulated time passes.
pub struct Nemesis {
    upcoming: Vec<Scheduled>,
    /// Faults in force, with when each ends.
    current: Vec<(Duration, Fault)>,
    held: BTreeSet<String>,
    /// Every fault that took effect, with when.
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(mut schedule: Vec<Scheduled>) -> Self {
        schedule.reverse();
        Nemesis {
            upcoming: schedule,
            current: Vec::new(),
            held: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    /// Starts and ends what is due at `now`; whether every fault is over for good.
    pub fn tick(
        &mut self,
        now: Duration,
        sim: &mut turmoil::Sim,
        disks: &Disks,
        rng: &mut StdRng,
    ) -> bool {
        while self.upcoming.last().is_some_and(|s| s.at <= now) {
            let scheduled = self.upcoming.pop().expect("checked");
            if self.held.insert(scheduled.fault.holds()) {
                start(&scheduled.fault, sim, disks, rng);
                self.log.push(scheduled.to_string());
                self.current.push((now + scheduled.lasts, scheduled.fault));
            }
        }
        let (over, current) = self.current.drain(..).partition(|(end, _)| *end <= now);
        self.current = current;
        for (_, fault) in over {
            end(&fault, sim);
            self.held.remove(&fault.holds());
        }
        self.upcoming.is_empty() && self.current.is_empty()
    }
}

fn start(fault: &Fault, sim: &mut turmoil::Sim, disks: &Disks, rng: &mut StdRng) {
    match *fault {
        Fault::PowerLoss(host) => {
            // Before the crash: the dying process's last writes must not reach the disk.
            disks.power_loss(&root(host), |written| rng.random_range(0..=written));
            sim.crash(host);
        }
        Fault::Kill(host) => {
            disks.power_loss(&root(host), |written| written);
            sim.crash(host);
        }
        Fault::Partition(a, b) => sim.partition(a, b),
        Fault::Slow(a, b, latency) => sim.set_link_max_message_latency(a, b, latency),
    }
}

fn end(fault: &Fault, sim: &mut turmoil::Sim) {
    match *fault {
        Fault::PowerLoss(host) | Fault::Kill(host) => sim.bounce(host),
        Fault::Partition(a, b) => sim.repair(a, b),
        Fault::Slow(a, b, _) => sim.set_link_max_message_latency(a, b, LATENCY),
    }
}

/// Where a server keeps its data.
pub fn root(host: &str) -> std::path::PathBuf {
    Path::new("/").join(host)
}
