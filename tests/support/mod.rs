//! Test support: the `verdict` coordinator as a real child process, and participant doubles —
//! real tonic servers on loopback that vote as told, delay, fail or stay silent, and record what
//! they were asked.

#![allow(dead_code)]

pub mod certs;
pub mod conformance;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use verdict::process::ChildServer;
use verdict::proto::coordinator_client::CoordinatorClient;
use verdict::proto::participant_server::{Participant, ParticipantServer};
use verdict::proto::{self, *};

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `verdict` server (coordinator or participant) as a child process with its own data
/// directory; its log is shown if the test fails.
pub struct Server {
    child: Option<ChildServer>,
    pub addr: SocketAddr,
    data_dir: tempfile::TempDir,
    args: Vec<String>,
}

/// The coordinator is a [`Server`] started with `serve`.
pub type Coordinator = Server;

impl Server {
    /// `verdict serve` on a free port with `args` added.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with(["serve"].iter().chain(args)).await
    }

    /// `verdict participant kv` named `name`, enlisting with `coordinator`, with `args` added.
    pub async fn start_bank(coordinator: &Server, name: &str, args: &[&str]) -> Self {
        Self::start_bank_at(&coordinator.url(), name, args).await
    }

    /// `verdict participant kv` named `name`, enlisting with the coordinator at `urls` (one
    /// URL, or a cluster's nodes comma-separated), with `args` added.
    pub async fn start_bank_at(urls: &str, name: &str, args: &[&str]) -> Self {
        let base = ["participant", "kv", "--coordinator", urls, "--name", name];
        Self::start_with(base.iter().chain(args)).await
    }

    /// `verdict ARGS…` on a free port (any kind of server: give the subcommand).
    pub async fn start_args(args: &[&str]) -> Self {
        Self::start_with(args.iter()).await
    }

    async fn start_with<'a>(args: impl Iterator<Item = &'a &'a str>) -> Self {
        Self::start_at("127.0.0.1:0", args).await
    }

    async fn start_at<'a>(listen: &str, args: impl Iterator<Item = &'a &'a str>) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args.map(|a| a.to_string()).collect();
        let child = spawn(data_dir.path(), listen, &args).await;
        Server {
            addr: child.addr(),
            child: Some(child),
            data_dir,
            args,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::new(self.channel())
    }

    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_lazy()
    }

    /// SIGKILL: no destructors, no flush.
    pub async fn kill(&mut self) {
        let child = self.child.take().expect("running");
        child.kill().await.expect("kill");
    }

    /// Stops it gracefully (SIGTERM), as an orchestrator would, and waits for it to exit.
    pub async fn stop(&mut self) {
        let child = self.child.take().expect("running");
        child.stop().await.expect("a graceful stop");
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("running");
        child.signal(signal).expect("signal");
    }

    /// Freezes it (SIGSTOP): to the others it is cut off, and it notices nothing.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen process run on (SIGCONT), still believing what it did before.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Starts it again on the same data directory and port.
    pub async fn restart(&mut self) {
        let addr = self.addr.to_string();
        self.restart_on(&addr).await;
        assert_eq!(self.child.as_ref().unwrap().addr(), self.addr);
    }

    /// Starts it again on the same data directory and another port.
    pub async fn restart_on_new_port(&mut self) {
        self.restart_on("127.0.0.1:0").await;
        self.addr = self.child.as_ref().unwrap().addr();
    }

    async fn restart_on(&mut self, listen: &str) {
        assert!(self.child.is_none(), "kill it first");
        self.child = Some(spawn(self.data_dir.path(), listen, &self.args).await);
    }

    /// Waits until its health service reports SERVING (for a participant: recovery is done).
    pub async fn wait_serving(&self, service: &str) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::HealthCheckRequest;
        let mut health = HealthClient::new(self.channel());
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let serving = tokio::time::timeout(PATIENCE, async {
            let mut updates = health.watch(request).await.expect("watch").into_inner();
            while let Some(update) = updates.message().await.expect("health") {
                if update.status() == ServingStatus::Serving {
                    return;
                }
            }
        })
        .await;
        assert!(
            serving.is_ok(),
            "{service} at {} never became SERVING",
            self.addr
        );
    }

    /// The coordinator's (or bank's) data directory.
    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("server.log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            eprintln!("---- {:?} log ----\n{log}", self.args.first());
        }
    }
}

async fn spawn(data_dir: &Path, listen: &str, args: &[String]) -> ChildServer {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))
        .expect("log file");
    let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
    all.extend(["--listen".into(), listen.into(), "--data-dir".into()]);
    all.push(data_dir.join("data").into());
    all.extend(["--log-level".into(), "verdict=debug".into()]);
    ChildServer::spawn(
        Path::new(env!("CARGO_BIN_EXE_verdict")),
        all,
        Stdio::from(log),
    )
    .await
    .expect("verdict started")
}

/// Held by a test that runs a cluster: one at a time, because many clusters on two cores starve
/// each other's heartbeats and leadership then moves by itself, which is not what the tests
/// are about.
pub async fn one_cluster_at_a_time() -> tokio::sync::SemaphorePermit<'static> {
    static CLUSTERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    CLUSTERS.acquire().await.expect("never closed")
}

/// Transfers run in the background on a chaos cluster, one worker per `(from, to)` pair of
/// ledger accounts, each moving `amount` at a time, until stopped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    done: Arc<std::sync::atomic::AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<verdict::chaos::ledger::Attempt>>>,
}

impl Load {
    pub fn start(
        cluster: &verdict::chaos::cluster::Cluster,
        ledger: &verdict::chaos::ledger::Ledger,
        pairs: &[(usize, usize)],
        amount: i64,
    ) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = pairs
            .iter()
            .map(|&(from, to)| {
                let (ledger, banks) = (ledger.clone(), cluster.bank_clients());
                let client = cluster.client(Duration::from_secs(3)).unwrap();
                let (stop, done) = (stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut attempts = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        attempts.push(ledger.transfer(&banks, &client, (from, to, amount)).await);
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    attempts
                })
            })
            .collect();
        Load {
            stop,
            done,
            workers,
        }
    }

    /// Waits until `count` more transfers have ended, whatever their outcome.
    pub async fn more(&self, count: usize) {
        let target = self.done.load(std::sync::atomic::Ordering::Relaxed) + count;
        let ended = tokio::time::timeout(PATIENCE, async {
            while self.done.load(std::sync::atomic::Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        ended.expect("transfers stopped going through");
    }

    /// Stops the workers; returns every transfer they attempted.
    pub async fn stop(self) -> Vec<verdict::chaos::ledger::Attempt> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut attempts = Vec::new();
        for worker in self.workers {
            attempts.extend(worker.await.expect("a load worker panicked"));
        }
        attempts
    }
}

/// The index of the chaos cluster's node that leads and runs transactions, among `among`,
/// once one does.
pub async fn running_leader(cluster: &verdict::chaos::cluster::Cluster, among: &[usize]) -> usize {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            for &i in among {
                let status = verdict::cluster::admin::status(&cluster.coordinators[i].url()).await;
                if status.is_ok_and(|s| s["running_transactions"] == true) {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.expect("no node took the lead")
}

/// A cluster of `verdict serve` nodes as child processes, each on its own port and data
/// directory (node ids 1, 2, …).
pub struct TestCluster {
    pub nodes: Vec<Server>,
    pub peers: String,
}

impl TestCluster {
    /// Starts `n` nodes with `args` added to each.
    pub async fn start(n: usize, args: &[&str]) -> Self {
        Self::start_each(n, |_| args.iter().map(|&a| a.to_owned()).collect()).await
    }

    /// Starts `n` nodes, node index `i` with `args(i)` added.
    pub async fn start_each(n: usize, args: impl Fn(usize) -> Vec<String>) -> Self {
        Self::start_at_scheme(n, "http", args).await
    }

    /// Starts `n` nodes whose `--peers` URLs are `scheme://…` (`https` for nodes serving TLS),
    /// node index `i` with `args(i)` added.
    pub async fn start_at_scheme(
        n: usize,
        scheme: &str,
        args: impl Fn(usize) -> Vec<String>,
    ) -> Self {
        let ports = verdict::process::free_local_ports(n).expect("free ports");
        let peers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}={scheme}://127.0.0.1:{port}", i + 1))
            .collect();
        let peers = peers.join(",");
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = (i + 1).to_string();
            let extra = args(i);
            let base = ["serve", "--node-id", &id, "--peers", &peers];
            let all = base.into_iter().chain(extra.iter().map(String::as_str));
            let all: Vec<&str> = all.collect();
            let listen = format!("127.0.0.1:{port}");
            nodes.push(Server::start_at(&listen, all.iter()).await);
        }
        TestCluster { nodes, peers }
    }

    /// Starts `n` nodes whose `--peers` name them by host names nobody can resolve
    /// (`node-N.invalid`), their Raft traffic carried to the real addresses by `--raft-via`:
    /// what a client outside a container network sees of a compose cluster.
    pub async fn start_behind_names(n: usize) -> Self {
        let ports = verdict::process::free_local_ports(n).expect("free ports");
        let list = |host: &dyn Fn(usize) -> String| {
            let urls = ports.iter().enumerate();
            let urls = urls.map(|(i, port)| format!("{}=http://{}:{port}", i + 1, host(i + 1)));
            urls.collect::<Vec<_>>().join(",")
        };
        let peers = list(&|id| format!("node-{id}.invalid"));
        let via = list(&|_| "127.0.0.1".to_owned());
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let id = (i + 1).to_string();
            let args = [
                "serve",
                "--node-id",
                &id,
                "--peers",
                &peers,
                "--raft-via",
                &via,
            ];
            let listen = format!("127.0.0.1:{port}");
            nodes.push(Server::start_at(&listen, args.iter()).await);
        }
        TestCluster { nodes, peers }
    }

    /// Starts one more node, id `id`, with `--join`: it waits for `verdict cluster add-node`.
    pub async fn start_joining(&mut self, id: u64, args: &[&str]) -> String {
        let port = verdict::process::free_local_ports(1).expect("free port")[0];
        let url = format!("http://127.0.0.1:{port}");
        let (id, peers) = (id.to_string(), format!("{id}={url}"));
        let base = ["serve", "--node-id", &id, "--peers", &peers, "--join"];
        let listen = format!("127.0.0.1:{port}");
        self.nodes
            .push(Server::start_at(&listen, base.iter().chain(args)).await);
        url
    }

    /// Every node's URL, comma-separated (for `--coordinator` and the client).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(Server::url).collect();
        urls.join(",")
    }

    /// A node's view of the cluster, or `None` if it does not answer.
    pub async fn status(&self, node: usize) -> Option<serde_json::Value> {
        verdict::cluster::admin::status(&self.nodes[node].url())
            .await
            .ok()
    }

    /// Waits until one of the nodes in `among` leads and runs transactions; returns its index.
    pub async fn leader_among(&self, among: &[usize]) -> usize {
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                for &i in among {
                    if let Some(status) = self.status(i).await {
                        if status["running_transactions"] == true {
                            return i;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.expect("no node took the lead in time")
    }

    /// Waits until some node leads and runs transactions; returns its index.
    pub async fn leader(&self) -> usize {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.leader_among(&all).await
    }
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
    /// Holds every Prepare unanswered until this is set back to false.
    pub hold_prepare: bool,
    /// Waits this long before answering Commit and Abort.
    pub decision_delay: Duration,
    /// Answers Decide with UNIMPLEMENTED, as a participant written before it.
    pub no_decide: bool,
    /// Answers PrepareStream with UNIMPLEMENTED, as a participant written before it.
    pub no_prepare_stream: bool,
    /// Holds every Commit and Abort (after recording it) until this is set back to false.
    pub hold_decisions: bool,
    /// Runs the work a Prepare carries (answers `took_work`), as a participant that knows
    /// `PrepareRequest.work`; otherwise it never runs any, as one written before it.
    pub takes_work: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            vote: Vote::Yes,
            no_reason: String::new(),
            prepare_delay: Duration::ZERO,
            fail_decisions: false,
            hold_prepare: false,
            decision_delay: Duration::ZERO,
            no_decide: false,
            no_prepare_stream: false,
            hold_decisions: false,
            takes_work: false,
        }
    }
}

#[derive(Default)]
struct Shared {
    behavior: Mutex<Behavior>,
    calls: Mutex<Vec<Call>>,
    /// The `traceparent` each call carried, in call order.
    traces: Mutex<Vec<(Call, Option<String>)>>,
    called: Notify,
    changed: Notify,
    /// Commit and Abort calls being answered now, and the most there ever were at once.
    open_decisions: AtomicUsize,
    most_open_decisions: AtomicUsize,
    /// How many decisions each Decide call carried (UNIMPLEMENTED ones too), in call order.
    decide_calls: Mutex<Vec<usize>>,
    /// PrepareStream calls opened (UNIMPLEMENTED ones too), and those ended (by the caller, or
    /// by the double stopping).
    stream_calls: AtomicUsize,
    stream_calls_ended: AtomicUsize,
    /// Decide calls being answered now, and the most there ever were at once.
    open_decides: AtomicUsize,
    most_open_decides: AtomicUsize,
}

/// One call being answered; counted until dropped (a call cut off included).
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn new(open: &'a AtomicUsize, most: &AtomicUsize) -> Self {
        most.fetch_max(open.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        Open(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn record(&self, call: Call, metadata: &tonic::metadata::MetadataMap) {
        let trace = metadata
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned());
        self.traces.lock().unwrap().push((call.clone(), trace));
        self.calls.lock().unwrap().push(call);
        self.called.notify_waiters();
    }

    fn behavior(&self) -> Behavior {
        self.behavior.lock().unwrap().clone()
    }

    /// Waits while `held` says so of the behavior.
    async fn hold_while(&self, held: fn(&Behavior) -> bool) {
        until(&self.changed, || !held(&self.behavior())).await;
    }
}

/// Completes once `done` holds, looking again each time `notify` is notified.
async fn until(notify: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = notify.notified();
        if done() {
            return;
        }
        notified.await;
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
        let (stopping, stops) = tokio::sync::watch::channel(false);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = ParticipantServer::new(DoubleService(self.shared.clone(), stops));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopped.await;
                    // As a real participant: its PrepareStream calls end with it.
                    let _ = stopping.send(true);
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
        self.shared.changed.notify_waiters();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Every call with the `traceparent` it carried.
    pub fn traces(&self) -> Vec<(Call, Option<String>)> {
        self.shared.traces.lock().unwrap().clone()
    }

    /// The most Commit and Abort calls it was answering at once (each decision of a Decide
    /// counted as one).
    pub fn most_open_decisions(&self) -> usize {
        self.shared.most_open_decisions.load(Ordering::SeqCst)
    }

    /// How many decisions each Decide call carried, in call order.
    pub fn decide_calls(&self) -> Vec<usize> {
        self.shared.decide_calls.lock().unwrap().clone()
    }

    /// How many PrepareStream calls were opened (refused ones too).
    pub fn prepare_stream_calls(&self) -> usize {
        self.shared.stream_calls.load(Ordering::SeqCst)
    }

    /// Waits until `count` PrepareStream calls have ended.
    pub async fn wait_prepare_streams_ended(&self, count: usize) {
        let ended = || self.shared.stream_calls_ended.load(Ordering::SeqCst);
        let waited =
            tokio::time::timeout(PATIENCE, until(&self.shared.changed, || ended() >= count)).await;
        assert!(
            waited.is_ok(),
            "{} PrepareStream calls ended, not {count}",
            ended()
        );
    }

    /// The most Decide calls it was answering at once.
    pub fn most_open_decides(&self) -> usize {
        self.shared.most_open_decides.load(Ordering::SeqCst)
    }

    pub fn count(&self, call: &Call) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    /// Waits until the double has been asked `call` at least `times` times.
    pub async fn wait_for(&self, call: Call, times: usize) {
        let asked = || self.count(&call) >= times;
        let waited = tokio::time::timeout(PATIENCE, until(&self.shared.called, asked)).await;
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

/// The double's service, and whether the server serving it is stopping.
struct DoubleService(Arc<Shared>, tokio::sync::watch::Receiver<bool>);

/// The answers of a PrepareStream call.
type Votes =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<StreamedVote, Status>> + Send>>;

impl DoubleService {
    /// Records a phase-2 call; fails it while the double is failing decisions.
    async fn decided(
        &self,
        call: Call,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        let _open = Open::new(&self.0.open_decisions, &self.0.most_open_decisions);
        self.0.record(call, metadata);
        self.0.hold_while(|b| b.hold_decisions).await;
        let behavior = self.0.behavior();
        tokio::time::sleep(behavior.decision_delay).await;
        match behavior.fail_decisions {
            true => Err(Status::unavailable("test double is failing decisions")),
            false => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl Participant for DoubleService {
    async fn prepare(
        &self,
        request: Request<PrepareRequest>,
    ) -> Result<Response<PrepareResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.0.record(Call::Prepare(request.txn_id), &metadata);
        self.0.hold_while(|b| b.hold_prepare).await;
        let behavior = self.0.behavior();
        tokio::time::sleep(behavior.prepare_delay).await;
        Ok(Response::new(PrepareResponse {
            vote: behavior.vote.into(),
            reason: behavior.no_reason,
            took_work: behavior.takes_work && !request.work.is_empty(),
        }))
    }

    type PrepareStreamStream = Votes;

    /// Each prepare as its Prepare call, each in its own task, answered as each is done.
    async fn prepare_stream(
        &self,
        request: Request<Streaming<StreamedPrepare>>,
    ) -> Result<Response<Votes>, Status> {
        self.0.stream_calls.fetch_add(1, Ordering::SeqCst);
        if self.0.behavior().no_prepare_stream {
            return Err(Status::unimplemented(
                "test double written before PrepareStream",
            ));
        }
        let (metadata, _, mut incoming) = request.into_parts();
        let (votes, answers) = tokio::sync::mpsc::unbounded_channel();
        let (shared, mut stopping) = (self.0.clone(), self.1.clone());
        tokio::spawn(async move {
            loop {
                let streamed = tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(streamed)) => streamed,
                        _ => break,
                    },
                    _ = stopping.wait_for(|stopping| *stopping) => break,
                };
                let service = DoubleService(shared.clone(), stopping.clone());
                let prepare = Request::from_parts(
                    metadata.clone(),
                    Default::default(),
                    streamed.request.unwrap_or_default(),
                );
                let votes = votes.clone();
                tokio::spawn(async move {
                    let response = service.prepare(prepare).await;
                    let vote = StreamedVote {
                        id: streamed.id,
                        response: response.ok().map(Response::into_inner),
                        ..Default::default()
                    };
                    let _ = votes.send(Ok(vote));
                });
            }
            shared.stream_calls_ended.fetch_add(1, Ordering::SeqCst);
            shared.changed.notify_waiters();
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(answers),
        )))
    }

    async fn commit(
        &self,
        request: Request<ParticipantCommitRequest>,
    ) -> Result<Response<ParticipantCommitResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.decided(Call::Commit(request.txn_id), &metadata)
            .await?;
        Ok(Response::new(ParticipantCommitResponse {}))
    }

    async fn abort(
        &self,
        request: Request<ParticipantAbortRequest>,
    ) -> Result<Response<ParticipantAbortResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.decided(Call::Abort(request.txn_id), &metadata).await?;
        Ok(Response::new(ParticipantAbortResponse {}))
    }

    /// Each decision as its Commit or Abort, all at once.
    async fn decide(
        &self,
        request: Request<DecideRequest>,
    ) -> Result<Response<DecideResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        let _open = Open::new(&self.0.open_decides, &self.0.most_open_decides);
        let calls = request.decisions.len();
        self.0.decide_calls.lock().unwrap().push(calls);
        if self.0.behavior().no_decide {
            return Err(Status::unimplemented("test double written before Decide"));
        }
        let decided = request.decisions.into_iter().map(|d| {
            let call = match d.commit {
                true => Call::Commit(d.txn_id),
                false => Call::Abort(d.txn_id),
            };
            self.decided(call, &metadata)
        });
        let results = futures_util::future::join_all(decided)
            .await
            .into_iter()
            .map(|result| match result {
                Ok(()) => DecisionResult::default(),
                Err(status) => DecisionResult {
                    code: status.code() as i32,
                    message: status.message().into(),
                },
            })
            .collect();
        Ok(Response::new(DecideResponse { results }))
    }
}

/// A participant reference for Begin/Enlist.
pub fn participant(name: &str, endpoint: &str) -> ParticipantRef {
    ParticipantRef {
        name: name.into(),
        endpoint: endpoint.into(),
    }
}

/// Begins a transaction with participants given as (name, endpoint), returning its id.
pub async fn begin(
    client: &mut CoordinatorClient<Channel>,
    participants: &[(&str, String)],
) -> String {
    let participants = participants
        .iter()
        .map(|(name, endpoint)| participant(name, endpoint))
        .collect();
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
            work: Vec::new(),
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

/// Asserts `result` failed with `code` and a message containing `hint`.
pub fn expect_status<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code, hint: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(hint),
        "{:?} lacks {hint:?}",
        status.message()
    );
}
