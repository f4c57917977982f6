//! A coordinator — one node, or a Raft cluster of several — and bank participants as child
//! processes that can be killed and restarted on the same port and data directory, optionally
//! behind [`FaultProxy`]s: one in front of each bank (the coordinator's calls to it), and one in
//! front of a single-node coordinator (the banks' calls: Enlist and Resolve) or one on each link
//! between a cluster's nodes (`--raft-via`), so that a node can be cut off from the others.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tonic::transport::Channel;

use super::proxy::{FaultProxy, Faults};
use crate::client::Client;
use crate::process::ChildServer;
use crate::proto::bank_client::BankClient;

/// One `verdict` process of the cluster.
pub struct Node {
    pub name: String,
    exe: PathBuf,
    args: Vec<OsString>,
    data_dir: PathBuf,
    /// Where it listens; fixed by its first start, kept across restarts.
    listen: Option<SocketAddr>,
    /// Environment for its next start (crash points), cleared by [`Node::disarm`].
    env: Vec<(String, String)>,
    child: Option<ChildServer>,
    /// One lazily connected channel for the node's life: it reconnects after a restart.
    channel: Option<Channel>,
}

impl Node {
    /// A node named `name` running `exe` with `args` (plus its listen address and data
    /// directory under `dir`), not started yet.
    pub fn new(name: &str, exe: &Path, dir: &Path, args: Vec<OsString>) -> Self {
        Node {
            name: name.into(),
            exe: exe.into(),
            args,
            data_dir: dir.join(name),
            listen: None,
            env: Vec::new(),
            child: None,
            channel: None,
        }
    }

    /// Fixes the address of its first start (a cluster node's URL is known to its peers).
    pub fn listen_at(&mut self, addr: SocketAddr) {
        self.listen = Some(addr);
    }

    /// Arms crash point `point` for the next start.
    pub fn arm(&mut self, point: &str) {
        self.env = vec![("FAILPOINTS".into(), format!("{point}=return"))];
    }

    pub fn disarm(&mut self) {
        self.env.clear();
    }

    /// Starts it (again), on its port and data directory.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let listen = self.listen.map_or("127.0.0.1:0".into(), |a| a.to_string());
        let mut args = self.args.clone();
        args.extend(["--listen".into(), listen.into(), "--data-dir".into()]);
        args.push(self.data_dir.join("data").into());
        std::fs::create_dir_all(&self.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child =
            ChildServer::spawn_with_env(&self.exe, args, self.env.clone(), Stdio::from(log))
                .await
                .with_context(|| format!("starting {}", self.name))?;
        self.listen = Some(child.addr());
        self.child = Some(child);
        if self.channel.is_none() {
            self.channel = Some(Channel::from_shared(self.url())?.connect_lazy());
        }
        Ok(())
    }

    /// SIGKILL.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        match self.child.take() {
            Some(child) => child.kill().await,
            None => Ok(()),
        }
    }

    /// Sends `signal` to the running process (SIGSTOP freezes it as a partition would: the
    /// others hear nothing and it notices nothing; SIGCONT lets it run on).
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("it is not running")?;
        child.signal(signal)
    }

    /// Whether it is running (started and not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !c.has_exited())
    }

    /// Forgets a process that exited by itself (a crash point fired), so it can start again.
    pub fn reap(&mut self) -> bool {
        if self.child.as_mut().is_some_and(|c| c.has_exited()) {
            self.child = None;
            return true;
        }
        false
    }

    /// Waits up to `timeout` for the process to exit by itself; true if it did (then it is
    /// forgotten, ready to start again).
    pub async fn exits_within(&mut self, timeout: std::time::Duration) -> bool {
        let exited = match self.child.as_mut() {
            Some(child) => child.exits_within(timeout).await,
            None => return true,
        };
        if exited {
            self.child = None;
        }
        exited
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen.expect("started once")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone().expect("started once")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.child.take() {
            Some(child) => child.stop().await,
            None => Ok(()),
        }
    }
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The `verdict` binary.
    pub exe: PathBuf,
    /// Where the nodes keep their data and logs.
    pub dir: PathBuf,
    pub banks: usize,
    /// Coordinator nodes: 1 is a single node, more form a Raft cluster.
    pub coordinator_nodes: usize,
    /// Put fault proxies between the processes: in front of each bank (the coordinator's calls),
    /// and in front of a single-node coordinator (the banks' calls) or on every link between
    /// a cluster's nodes (their Raft traffic, so one can be cut off from the others).
    pub proxies: bool,
    /// Extra flags for `verdict serve`.
    pub coordinator_args: Vec<String>,
    /// Extra flags for `verdict participant kv`.
    pub bank_args: Vec<String>,
}

/// The processes and proxies.
pub struct Cluster {
    /// The coordinator's nodes (one, unless a Raft cluster), node id `i + 1` at index `i`.
    pub coordinators: Vec<Node>,
    pub banks: Vec<Node>,
    /// In front of the coordinator (the banks' calls), if proxied.
    pub coordinator_proxy: Option<FaultProxy>,
    /// In front of each bank (the coordinator's calls), if proxied.
    pub bank_proxies: Vec<FaultProxy>,
    /// On each link between a cluster's nodes, if proxied: `(from, to, proxy)` by index into
    /// `coordinators`, carrying `from`'s Raft calls to `to`.
    pub raft_links: Vec<(usize, usize, FaultProxy)>,
}

fn os(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The coordinator's nodes, not started: `coordinator` alone, or `node-1`… naming each other.
fn coordinator_nodes(config: &ClusterConfig) -> anyhow::Result<Vec<Node>> {
    let serve = os(&["serve".into()]);
    if config.coordinator_nodes == 1 {
        return Ok(vec![Node::new(
            "coordinator",
            &config.exe,
            &config.dir,
            serve,
        )]);
    }
    let ports = crate::process::free_local_ports(config.coordinator_nodes)?;
    let peers: Vec<String> = (1..)
        .zip(&ports)
        .map(|(id, port)| format!("{id}=http://127.0.0.1:{port}"))
        .collect();
    let nodes = (1..).zip(&ports).map(|(id, port)| {
        let mut args = serve.clone();
        args.extend(os(&[
            "--node-id".into(),
            id.to_string(),
            "--peers".into(),
            peers.join(","),
        ]));
        let mut node = Node::new(&format!("node-{id}"), &config.exe, &config.dir, args);
        node.listen_at(SocketAddr::from(([127, 0, 0, 1], *port)));
        node
    });
    Ok(nodes.collect())
}

/// A proxy on every link between `nodes`, each node told to send its Raft calls through them.
async fn raft_links(nodes: &mut [Node]) -> anyhow::Result<Vec<(usize, usize, FaultProxy)>> {
    let mut links = Vec::new();
    for from in 0..nodes.len() {
        let mut via = Vec::new();
        for to in (0..nodes.len()).filter(|&to| to != from) {
            let proxy = FaultProxy::bind().await?;
            proxy.set_target(nodes[to].addr());
            via.push(format!("{}={}", to + 1, proxy.url()));
            links.push((from, to, proxy));
        }
        nodes[from]
            .args
            .extend(os(&["--raft-via".into(), via.join(",")]));
    }
    Ok(links)
}

impl Cluster {
    /// Starts the coordinator's nodes, then the banks.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<Self> {
        let single = config.coordinator_nodes == 1;
        let coordinator_proxy = match config.proxies && single {
            true => Some(FaultProxy::bind().await?),
            false => None,
        };
        let mut coordinators = coordinator_nodes(config)?;
        let raft_links = match config.proxies && !single {
            true => raft_links(&mut coordinators).await?,
            false => Vec::new(),
        };
        if let Some(proxy) = &coordinator_proxy {
            coordinators[0]
                .args
                .extend(os(&["--advertise-url".into(), proxy.url()]));
        }
        for node in &mut coordinators {
            node.args.extend(os(&config.coordinator_args));
            node.start().await?;
        }
        if let Some(proxy) = &coordinator_proxy {
            proxy.set_target(coordinators[0].addr());
        }
        let urls: Vec<String> = coordinators.iter().map(Node::url).collect();
        let coordinator_url = coordinator_proxy
            .as_ref()
            .map_or_else(|| urls.join(","), FaultProxy::url);

        let mut banks = Vec::new();
        let mut bank_proxies = Vec::new();
        for i in 0..config.banks {
            let name = format!("bank-{i}");
            let mut args = os(&[
                "participant".into(),
                "kv".into(),
                "--name".into(),
                name.clone(),
                "--coordinator".into(),
                coordinator_url.clone(),
            ]);
            let proxy = match config.proxies {
                true => Some(FaultProxy::bind().await?),
                false => None,
            };
            if let Some(proxy) = &proxy {
                args.extend(os(&["--advertise-url".into(), proxy.url()]));
            }
            args.extend(os(&config.bank_args));
            let mut bank = Node::new(&name, &config.exe, &config.dir, args);
            bank.start().await?;
            if let Some(proxy) = proxy {
                proxy.set_target(bank.addr());
                bank_proxies.push(proxy);
            }
            banks.push(bank);
        }
        Ok(Cluster {
            coordinators,
            banks,
            coordinator_proxy,
            bank_proxies,
            raft_links,
        })
    }

    /// The coordinator as the banks reach it: its proxy, or every node comma-separated.
    pub fn coordinator_url(&self) -> String {
        match &self.coordinator_proxy {
            Some(proxy) => proxy.url(),
            None => self.node_urls(),
        }
    }

    /// Every coordinator node's own URL, comma-separated.
    pub fn node_urls(&self) -> String {
        let urls: Vec<String> = self.coordinators.iter().map(Node::url).collect();
        urls.join(",")
    }

    /// An application client of the coordinator (it follows a cluster's leader).
    pub fn client(&self, timeout: std::time::Duration) -> anyhow::Result<Client> {
        Ok(Client::new(&self.node_urls(), timeout)?)
    }

    pub fn bank_client(&self, bank: usize) -> BankClient<Channel> {
        BankClient::new(self.banks[bank].channel())
    }

    /// A client of every bank, by index (they reconnect after a restart: same port).
    pub fn bank_clients(&self) -> Vec<BankClient<Channel>> {
        (0..self.banks.len()).map(|i| self.bank_client(i)).collect()
    }

    /// Every node, coordinator nodes first.
    pub fn nodes(&mut self) -> impl Iterator<Item = &mut Node> {
        self.coordinators.iter_mut().chain(self.banks.iter_mut())
    }

    /// Every proxy.
    pub fn proxies(&self) -> impl Iterator<Item = &FaultProxy> {
        let links = self.raft_links.iter().map(|(_, _, proxy)| proxy);
        self.coordinator_proxy
            .iter()
            .chain(self.bank_proxies.iter())
            .chain(links)
    }

    /// Cuts coordinator node `node` (an index into `coordinators`) off from the other nodes,
    /// both ways, until [`Cluster::heal`]; clients and banks still reach it, and it them.
    pub fn cut_off(&self, node: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.raft_links.is_empty(),
            "cutting a node off needs a cluster started with proxies"
        );
        self.links_of(node)
            .for_each(|proxy| proxy.set(Faults::partition()));
        Ok(())
    }

    /// Heals the links of coordinator node `node` to the other nodes.
    pub fn reconnect(&self, node: usize) {
        self.links_of(node).for_each(FaultProxy::heal);
    }

    fn links_of(&self, node: usize) -> impl Iterator<Item = &FaultProxy> {
        let touches =
            move |(from, to, _): &&(usize, usize, FaultProxy)| *from == node || *to == node;
        self.raft_links
            .iter()
            .filter(touches)
            .map(|(_, _, proxy)| proxy)
    }

    /// Heals every proxy and (re)starts every node that is not running, disarmed.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        for proxy in self.proxies() {
            proxy.heal();
        }
        for node in self.nodes() {
            node.disarm();
            if !node.is_running() {
                node.reap();
                node.kill().await?;
                node.start().await?;
            }
        }
        Ok(())
    }

    /// Stops every node gracefully.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        for node in self.nodes() {
            node.stop().await?;
        }
        Ok(())
    }
}
