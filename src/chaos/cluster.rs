//! A coordinator and bank participants as child processes that can be killed and restarted on
//! the same port and data directory, optionally behind [`FaultProxy`]s: one in front of each
//! bank (the coordinator's calls to it) and one in front of the coordinator (the banks' calls:
//! Enlist and Resolve).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tonic::transport::Channel;

use super::proxy::FaultProxy;
use crate::process::ChildServer;
use crate::proto::bank_client::BankClient;
use crate::proto::coordinator_client::CoordinatorClient;

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
    /// Put fault proxies between the processes.
    pub proxies: bool,
    /// Extra flags for `verdict serve`.
    pub coordinator_args: Vec<String>,
    /// Extra flags for `verdict participant kv`.
    pub bank_args: Vec<String>,
}

/// The processes and proxies.
pub struct Cluster {
    pub coordinator: Node,
    pub banks: Vec<Node>,
    /// In front of the coordinator (the banks' calls), if proxied.
    pub coordinator_proxy: Option<FaultProxy>,
    /// In front of each bank (the coordinator's calls), if proxied.
    pub bank_proxies: Vec<FaultProxy>,
}

fn os(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

impl Cluster {
    /// Starts the coordinator, then the banks.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<Self> {
        let coordinator_proxy = match config.proxies {
            true => Some(FaultProxy::bind().await?),
            false => None,
        };
        let mut coordinator_args = os(&["serve".into()]);
        if let Some(proxy) = &coordinator_proxy {
            coordinator_args.extend(os(&["--advertise-url".into(), proxy.url()]));
        }
        coordinator_args.extend(os(&config.coordinator_args));
        let mut coordinator = Node::new("coordinator", &config.exe, &config.dir, coordinator_args);
        coordinator.start().await?;
        if let Some(proxy) = &coordinator_proxy {
            proxy.set_target(coordinator.addr());
        }
        let coordinator_url = coordinator_proxy
            .as_ref()
            .map_or_else(|| coordinator.url(), FaultProxy::url);

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
            coordinator,
            banks,
            coordinator_proxy,
            bank_proxies,
        })
    }

    pub fn coordinator_client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::new(self.coordinator.channel())
    }

    pub fn bank_client(&self, bank: usize) -> BankClient<Channel> {
        BankClient::new(self.banks[bank].channel())
    }

    /// A client of every bank, by index (they reconnect after a restart: same port).
    pub fn bank_clients(&self) -> Vec<BankClient<Channel>> {
        (0..self.banks.len()).map(|i| self.bank_client(i)).collect()
    }

    /// Every node, coordinator first.
    pub fn nodes(&mut self) -> impl Iterator<Item = &mut Node> {
        std::iter::once(&mut self.coordinator).chain(self.banks.iter_mut())
    }

    /// Every proxy.
    pub fn proxies(&self) -> impl Iterator<Item = &FaultProxy> {
        self.coordinator_proxy
            .iter()
            .chain(self.bank_proxies.iter())
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
