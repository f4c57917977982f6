//! Verdict servers as child processes: started with `listening on ADDR` awaited on their stdout,
//! stopped gracefully (SIGTERM) or killed (SIGKILL). Used by `verdict demo`, the benchmark and
//! the tests.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Free loopback ports: bound, read and released, for servers whose addresses must be known
/// before they start (cluster nodes name each other in `--peers`).
pub fn free_local_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A running `verdict` server process.
pub struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    /// Runs `exe` with `args` and waits until it prints `listening on ADDR`. Its stderr goes to
    /// `stderr`. The process is killed if this handle is dropped.
    pub async fn spawn<I, S>(exe: &Path, args: I, stderr: Stdio) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_with_env(exe, args, std::iter::empty::<(&str, &str)>(), stderr).await
    }

    /// As [`ChildServer::spawn`], with extra environment variables.
    pub async fn spawn_with_env<I, S, E, K, V>(
        exe: &Path,
        args: I,
        envs: E,
        stderr: Stdio,
    ) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut child = Command::new(exe)
            .args(args)
            .envs(envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let listening = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok(addr.parse::<SocketAddr>()?);
                }
            }
            bail!("it exited before listening")
        };
        let addr = tokio::time::timeout(START_TIMEOUT, listening)
            .await
            .context("it did not start listening in time")?
            .with_context(|| format!("{} did not start", exe.display()))?;
        Ok(ChildServer { child, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP` to freeze it as a partition would, `SIGCONT` to let
    /// it run on, unaware of what passed meanwhile).
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.child.id().context("it has exited")?;
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
        anyhow::ensure!(result == 0, "kill({pid}, {signal}) failed");
        Ok(())
    }

    /// Whether the process has exited (crashed, or was told to stop).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the process exits by itself, up to `timeout`; true if it did.
    pub async fn exits_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_ok()
    }

    /// SIGKILL: no destructors, no flush — as a crash.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("kill")
    }

    /// SIGTERM, then waits for a graceful exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.signal(libc::SIGTERM);
        let status = tokio::time::timeout(START_TIMEOUT, self.child.wait())
            .await
            .context("it did not stop in time")??;
        anyhow::ensure!(status.success(), "it exited with {status}");
        Ok(())
    }
}
