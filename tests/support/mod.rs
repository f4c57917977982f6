//! Test support: the `verdict` coordinator as a real child process, and participant doubles —
//! real tonic servers on loopback that vote as told, delay, fail or stay silent, and record what
//! they were asked.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, Notify};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::participant_server::{Participant, ParticipantServer};
use verdict::proto::{self, *};

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `verdict serve` child process on its own data directory.
pub struct Coordinator {
    child: Option<Child>,
    pub addr: SocketAddr,
    data_dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Coordinator {
    /// Starts a coordinator on a free port with `args` added to `serve`.
    pub async fn start(args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, addr) = spawn(data_dir.path(), "127.0.0.1:0", &args).await;
        Coordinator {
            child: Some(child),
            addr,
            data_dir,
            args,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::connect(self.url())
            .await
            .expect("connect to the coordinator")
    }

    /// SIGKILL: no destructors, no flush.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("kill");
    }

    /// Starts it again on the same data directory and port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        let (child, addr) = spawn(self.data_dir.path(), &self.addr.to_string(), &self.args).await;
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("coordinator.log")
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            eprintln!("---- coordinator log ----\n{log}");
        }
    }
}

async fn spawn(data_dir: &Path, listen: &str, args: &[String]) -> (Child, SocketAddr) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("coordinator.log"))
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir.join("log"))
        .args(args)
        .env("RUST_LOG", "verdict=debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn verdict");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.parse().expect("address");
            }
        }
        panic!(
            "verdict exited before listening; see {}",
            data_dir.display()
        )
    })
    .await
    .expect("verdict started in time");
    (child, addr)
}

/// What a participant double was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Prepare(String),
    Commit(String),
    Abort(String),
}

/// How a participant double behaves.
#[derive(Clone, Debug)]
pub struct Behavior {
    pub vote: Vote,
    pub no_reason: String,
    /// Waits this long before answering Prepare.
    pub prepare_delay: Duration,
    /// Answers Commit and Abort with UNAVAILABLE (after recording the call).
    pub fail_decisions: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            vote: Vote::Yes,
            no_reason: String::new(),
            prepare_delay: Duration::ZERO,
            fail_decisions: false,
        }
    }
}

#[derive(Default)]
struct Shared {
    behavior: Mutex<Behavior>,
    calls: Mutex<Vec<Call>>,
    called: Notify,
}

impl Shared {
    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.called.notify_waiters();
    }

    fn behavior(&self) -> Behavior {
        self.behavior.lock().unwrap().clone()
    }
}

/// A participant double: a real tonic `verdict.v1.Participant` server on loopback.
pub struct Double {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Double {
    pub async fn start(behavior: Behavior) -> Self {
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            ..Default::default()
        });
        let mut double = Double {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared,
            stop: None,
        };
        double.serve().await;
        double
    }

    async fn serve(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind");
        self.addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = ParticipantServer::new(DoubleService(self.shared.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        self.stop = Some(stop);
    }

    /// Stops serving (the port is closed: the participant is down).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.serve().await;
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, change: impl FnOnce(&mut Behavior)) {
        change(&mut self.shared.behavior.lock().unwrap());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn count(&self, call: &Call) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    /// Waits until the double has been asked `call` at least `times` times.
    pub async fn wait_for(&self, call: Call, times: usize) {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                let notified = self.shared.called.notified();
                if self.count(&call) >= times {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "participant {} was not asked {call:?} {times} time(s); calls: {:?}",
            self.addr,
            self.calls()
        );
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.stop();
    }
}

struct DoubleService(Arc<Shared>);

#[tonic::async_trait]
impl Participant for DoubleService {
    async fn prepare(
        &self,
        request: Request<PrepareRequest>,
    ) -> Result<Response<PrepareResponse>, Status> {
        let request = request.into_inner();
        self.0.record(Call::Prepare(request.txn_id));
        let behavior = self.0.behavior();
        tokio::time::sleep(behavior.prepare_delay).await;
        Ok(Response::new(PrepareResponse {
            vote: behavior.vote.into(),
            reason: behavior.no_reason,
        }))
    }

    async fn commit(
        &self,
        request: Request<ParticipantCommitRequest>,
    ) -> Result<Response<ParticipantCommitResponse>, Status> {
        self.0.record(Call::Commit(request.into_inner().txn_id));
        if self.0.behavior().fail_decisions {
            return Err(Status::unavailable("test double is failing decisions"));
        }
        Ok(Response::new(ParticipantCommitResponse {}))
    }

    async fn abort(
        &self,
        request: Request<ParticipantAbortRequest>,
    ) -> Result<Response<ParticipantAbortResponse>, Status> {
        self.0.record(Call::Abort(request.into_inner().txn_id));
        if self.0.behavior().fail_decisions {
            return Err(Status::unavailable("test double is failing decisions"));
        }
        Ok(Response::new(ParticipantAbortResponse {}))
    }
}

/// A participant reference for Begin/Enlist.
pub fn participant(name: &str, endpoint: &str) -> ParticipantRef {
    ParticipantRef {
        name: name.into(),
        endpoint: endpoint.into(),
    }
}

/// Begins a transaction with `participants`, returning its id.
pub async fn begin(
    client: &mut CoordinatorClient<Channel>,
    participants: Vec<ParticipantRef>,
) -> String {
    client
        .begin(BeginRequest {
            timeout_ms: 0,
            participants,
        })
        .await
        .expect("begin")
        .into_inner()
        .txn_id
}

pub async fn commit(client: &mut CoordinatorClient<Channel>, txn_id: &str) -> CommitResponse {
    client
        .commit(CommitRequest {
            txn_id: txn_id.into(),
            wait_for_acks: false,
        })
        .await
        .expect("commit")
        .into_inner()
}

pub async fn get(client: &mut CoordinatorClient<Channel>, txn_id: &str) -> proto::Transaction {
    client
        .get_transaction(GetTransactionRequest {
            txn_id: txn_id.into(),
        })
        .await
        .expect("get")
        .into_inner()
        .transaction
        .expect("transaction")
}

pub async fn resolve(client: &mut CoordinatorClient<Channel>, txn_id: &str) -> Outcome {
    client
        .resolve(ResolveRequest {
            txn_id: txn_id.into(),
        })
        .await
        .expect("resolve")
        .into_inner()
        .outcome()
}

/// An endpoint where nothing listens.
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
