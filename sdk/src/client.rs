//! A small client for applications: begin, enlist, commit and abort global transactions.
//!
//! Every call is idempotent on the coordinator, so a caller may retry any of them after a
//! timeout or `UNAVAILABLE`; a retried `commit` returns the true outcome. Given the nodes of a
//! cluster, the client follows the leader: a node that does not lead answers `UNAVAILABLE`
//! naming the leader (`verdict-leader`), and one that is down is skipped; the call is retried
//! on the next node until it is answered or its timeout passes. A coordinator that is full (or
//! rate-limits the caller) answers `RESOURCE_EXHAUSTED` with a `retry-after-ms` hint: the call is
//! sent again after about that long, jittered so that refused callers do not return together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::Status;

use crate::credentials::AUTHORIZATION;
use crate::proto::{LEADER_METADATA, RETRY_AFTER_METADATA, TRACEPARENT};

use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{self, *};
use crate::{Outcome, TxnId};

/// A connection to a Verdict coordinator, or to the nodes of a cluster.
#[derive(Clone)]
pub struct Client {
    nodes: Arc<Nodes>,
    timeout: Duration,
    /// The W3C `traceparent` sent with every call (see [`Client::with_trace`]).
    trace: Option<tonic::metadata::AsciiMetadataValue>,
    /// The bearer token presented instead of the process's (see [`Client::with_token`]).
    token: Option<tonic::metadata::AsciiMetadataValue>,
}

/// The coordinator nodes known, and which one is believed to lead.
struct Nodes {
    nodes: Mutex<Vec<Node>>,
    leader: AtomicUsize,
}

/// One coordinator node as this client reaches it.
struct Node {
    url: String,
    client: CoordinatorClient<Channel>,
    /// It refused the last call without naming a leader: it is down, cut off, between leaders
    /// — or named by its peers under a URL this client cannot reach (a container network's
    /// names, seen from the host). Redirects to it are not followed until it answers again;
    /// the nodes are tried in turn instead, which finds the leader under the URL given.
    silent: bool,
}

impl Node {
    fn new(url: String, timeout: Duration) -> Result<Self, Status> {
        let client = connect(&url, timeout)?;
        Ok(Node {
            url,
            client,
            silent: false,
        })
    }
}

/// The pause before trying the nodes again once each has refused (an election takes a few
/// hundred milliseconds).
const ALL_REFUSED_PAUSE: Duration = Duration::from_millis(50);

/// How often an open connection to a node is checked with an HTTP/2 ping, and how long the
/// answer may take: a node that is frozen or cut off (not just down) fails the calls on it
/// within about a second and a half, and they go to another node, however long the call itself
/// may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long connecting to one node may take before the call goes to another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(url: &str, timeout: Duration) -> Result<CoordinatorClient<Channel>, Status> {
    let channel = crate::net::channel(
        crate::tls::endpoint(url)
            .map_err(|e| Status::invalid_argument(format!("the coordinator URL: {e}")))?
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true),
    );
    Ok(CoordinatorClient::new(channel))
}

impl Nodes {
    fn current(&self) -> (usize, CoordinatorClient<Channel>) {
        let nodes = self.nodes.lock().expect("lock");
        let i = self.leader.load(Ordering::Relaxed) % nodes.len();
        (i, nodes[i].client.clone())
    }

    /// Node `i` answered a call.
    fn answered(&self, i: usize) {
        self.nodes.lock().expect("lock")[i].silent = false;
    }

    /// After node `failed` refused: move to the leader it named, or else to the next node.
    fn follow(&self, failed: usize, status: &Status, timeout: Duration) {
        let named = status
            .metadata()
            .get(LEADER_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut nodes = self.nodes.lock().expect("lock");
        nodes[failed].silent = named.is_none();
        let in_turn = (failed + 1) % nodes.len();
        let next = named
            .and_then(|url| match nodes.iter().position(|node| node.url == url) {
                Some(i) => Some(i),
                None => {
                    nodes.push(Node::new(url, timeout).ok()?);
                    Some(nodes.len() - 1)
                }
            })
            .filter(|&i| !nodes[i].silent)
            .unwrap_or(in_turn);
        let _ = self
            .leader
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Whether a failed call may go to another node: the node does not lead, cannot be reached,
/// or its connection broke mid-call (a node killed: tonic reports `CANCELLED`). Every call is
/// idempotent, so sending it again is safe; a Begin sent twice leaves an unused transaction
/// that expires at its deadline.
fn try_elsewhere(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Cancelled
    )
}

/// How long a refusal with a `retry-after-ms` hint says to wait before sending again; the
/// request changed nothing.
fn told_to_wait(status: &Status) -> Option<Duration> {
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let millis = status.metadata().get(RETRY_AFTER_METADATA)?.to_str().ok()?;
    Some(Duration::from_millis(millis.parse().ok()?))
}

/// The outcome a coordinator answered `method` with, which must be one.
fn outcome(method: &str, answered: proto::Outcome) -> Result<Outcome, Status> {
    match answered {
        proto::Outcome::Committed => Ok(Outcome::Committed),
        proto::Outcome::Aborted => Ok(Outcome::Aborted),
        other => Err(Status::internal(format!(
            "the coordinator answered {method} with {other:?}"
        ))),
    }
}

/// A transaction just begun.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    pub txn_id: TxnId,
    pub deadline_unix_ms: u64,
}

impl Client {
    /// A client of the coordinator at `urls` — one URL, or a cluster's nodes comma-separated
    /// (connected on first use); each call may take up to `timeout` (a commit waits for the
    /// votes and the forced decision), retries on other nodes included.
    pub fn new(urls: &str, timeout: Duration) -> Result<Self, Status> {
        let nodes = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| Node::new(url.to_owned(), timeout))
            .collect::<Result<Vec<_>, Status>>()?;
        if nodes.is_empty() {
            return Err(Status::invalid_argument(
                "no coordinator URL given: name one, or a cluster's nodes comma-separated",
            ));
        }
        Ok(Client {
            nodes: Arc::new(Nodes {
                nodes: Mutex::new(nodes),
                leader: AtomicUsize::new(0),
            }),
            timeout,
            trace: None,
            token: None,
        })
    }

    /// This client, presenting `token` as its bearer token instead of the process's
    /// (`--token-file`): for a process acting for several callers, as the console does for each
    /// signed-in operator.
    pub fn with_token(&self, token: &str) -> Result<Client, Status> {
        Ok(Client {
            token: Some(crate::credentials::bearer(token)?),
            ..self.clone()
        })
    }

    /// This client, sending `traceparent` (a W3C trace context, e.g. from the application's
    /// tracer) with every call: the coordinator carries it into every Prepare, Commit and Abort
    /// it sends to the transaction's participants, so one trace shows the whole transaction.
    pub fn with_trace(&self, traceparent: &str) -> Result<Client, Status> {
        let value = traceparent.parse().map_err(|_| {
            Status::invalid_argument(format!("{traceparent:?} is not a traceparent header value"))
        })?;
        Ok(Client {
            trace: Some(value),
            ..self.clone()
        })
    }

    /// Sends `message` with `call` to the leader, following redirects and skipping nodes that
    /// are down, until it is answered or the timeout passes.
    async fn call<T: Clone, R, Fut>(
        &self,
        message: T,
        call: impl Fn(CoordinatorClient<Channel>, tonic::Request<T>) -> Fut,
    ) -> Result<R, Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut refusals = 0;
        loop {
            let (node, client) = self.nodes.current();
            let mut request = crate::credentials::request(message.clone());
            if let Some(token) = &self.token {
                request.metadata_mut().insert(AUTHORIZATION, token.clone());
            }
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
            if let Some(trace) = &self.trace {
                request.metadata_mut().insert(TRACEPARENT, trace.clone());
            }
            let status = match call(client, request).await {
                Ok(response) => {
                    self.nodes.answered(node);
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            if let Some(wait) = told_to_wait(&status) {
                let wait = wait.mul_f64(0.5 + crate::world::jitter());
                if Instant::now() + wait >= deadline {
                    return Err(status);
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            if !try_elsewhere(&status) || Instant::now() >= deadline {
                return Err(status);
            }
            self.nodes.follow(node, &status, self.timeout);
            refusals += 1;
            if refusals % self.nodes.nodes.lock().expect("lock").len() == 0 {
                tokio::time::sleep(ALL_REFUSED_PAUSE).await;
            }
        }
    }

    /// Begins a transaction; `timeout` is its deadline (the coordinator's default if `None`).
    pub async fn begin(&self, timeout: Option<Duration>) -> Result<Begun, Status> {
        self.begin_with(BeginRequest {
            timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
            participants: vec![],
        })
        .await
    }

    /// Begins a transaction as `request` says (deadline, participants enlisted at once).
    pub async fn begin_with(&self, request: BeginRequest) -> Result<Begun, Status> {
        let response = self
            .call(request, |mut c, r| async move { c.begin(r).await })
            .await?;
        let txn_id = response
            .txn_id
            .parse()
            .map_err(|_| Status::internal("the coordinator returned a malformed txn_id"))?;
        Ok(Begun {
            txn_id,
            deadline_unix_ms: response.deadline_unix_ms,
        })
    }

    /// Enlists a participant; returns the response (whether it was new, and the deadline).
    pub async fn enlist(
        &self,
        txn: TxnId,
        name: &str,
        endpoint: &str,
    ) -> Result<EnlistResponse, Status> {
        let request = EnlistRequest {
            txn_id: txn.to_string(),
            participant: Some(ParticipantRef {
                name: name.into(),
                endpoint: endpoint.into(),
            }),
        };
        self.call(request, |mut c, r| async move { c.enlist(r).await })
            .await
    }

    /// Commits; returns the outcome (as soon as the decision is durable) and, for an abort,
    /// its reason.
    pub async fn commit(&self, txn: TxnId) -> Result<(Outcome, String), Status> {
        self.commit_with(txn, false, Vec::new()).await
    }

    /// As [`Client::commit`], but answers only once every participant has acknowledged.
    pub async fn commit_and_wait(&self, txn: TxnId) -> Result<(Outcome, String), Status> {
        self.commit_with(txn, true, Vec::new()).await
    }

    /// As [`Client::commit`], handing each participant in `work` its work (in that participant's
    /// format), which the coordinator enlists it with and sends in its Prepare
    /// (`CommitRequest.work`): no call of the application's own to those participants.
    pub async fn commit_handing(
        &self,
        txn: TxnId,
        work: Vec<ParticipantWork>,
    ) -> Result<(Outcome, String), Status> {
        self.commit_with(txn, false, work).await
    }

    async fn commit_with(
        &self,
        txn: TxnId,
        wait_for_acks: bool,
        work: Vec<ParticipantWork>,
    ) -> Result<(Outcome, String), Status> {
        let request = CommitRequest {
            txn_id: txn.to_string(),
            wait_for_acks,
            work,
        };
        let response = self
            .call(request, |mut c, r| async move { c.commit(r).await })
            .await?;
        Ok((outcome("Commit", response.outcome())?, response.reason))
    }

    /// Begins a transaction and commits it in one call, handing each participant in `work` its
    /// work as [`Client::commit_handing`] does: Begin's round trip saved. `request_id` names
    /// the request, unique per transaction (a UUID serves): a retry with the same id — this
    /// client's own, or the application's after a crash — answers that transaction's outcome
    /// and never runs the work twice. Returns the transaction, its outcome and, for an abort,
    /// its reason.
    pub async fn submit(
        &self,
        request_id: &str,
        work: Vec<ParticipantWork>,
    ) -> Result<(TxnId, Outcome, String), Status> {
        let request = SubmitRequest {
            request_id: request_id.into(),
            timeout_ms: 0,
            work,
            wait_for_acks: false,
        };
        let response = self
            .call(request, |mut c, r| async move { c.submit(r).await })
            .await?;
        let txn = response.txn_id.parse().map_err(|_| {
            Status::internal(format!(
                "the coordinator answered Submit with transaction id {:?}",
                response.txn_id
            ))
        })?;
        Ok((txn, outcome("Submit", response.outcome())?, response.reason))
    }

    /// Aborts a transaction that is not decided yet.
    pub async fn abort(&self, txn: TxnId, reason: &str) -> Result<(), Status> {
        let request = AbortRequest {
            txn_id: txn.to_string(),
            reason: reason.into(),
        };
        self.call(request, |mut c, r| async move { c.abort(r).await })
            .await?;
        Ok(())
    }

    /// The outcome a participant in doubt acts on (`Resolve`): unknown ids are ABORTED.
    pub async fn resolve(&self, request: ResolveRequest) -> Result<ResolveResponse, Status> {
        self.call(request, |mut c, r| async move { c.resolve(r).await })
            .await
    }

    /// A page of transactions (`ListTransactions`).
    pub async fn list(
        &self,
        request: ListTransactionsRequest,
    ) -> Result<ListTransactionsResponse, Status> {
        self.call(
            request,
            |mut c, r| async move { c.list_transactions(r).await },
        )
        .await
    }

    /// The coordinator's view of a transaction.
    /// Has the coordinator send `txn`'s decision now to every participant still owed it.
    pub async fn retry_delivery(&self, txn: TxnId) -> Result<(), Status> {
        let request = RetryDeliveryRequest {
            txn_id: txn.to_string(),
        };
        self.call(request, |mut c, r| async move { c.retry_delivery(r).await })
            .await
            .map(drop)
    }

    /// For operators: settles `txn` by hand as `outcome` — see `ResolveByHand` in the contract.
    /// Returns the transaction as it is after.
    pub async fn resolve_by_hand(
        &self,
        txn: TxnId,
        outcome: Outcome,
        reason: &str,
        operator: &str,
    ) -> Result<proto::Transaction, Status> {
        let outcome = match outcome {
            Outcome::Committed => proto::Outcome::Committed,
            Outcome::Aborted => proto::Outcome::Aborted,
        };
        let request = ResolveByHandRequest {
            txn_id: txn.to_string(),
            outcome: outcome.into(),
            reason: reason.into(),
            operator: operator.into(),
        };
        let response = self
            .call(
                request,
                |mut c, r| async move { c.resolve_by_hand(r).await },
            )
            .await?;
        response
            .transaction
            .ok_or_else(|| Status::internal("the coordinator answered with no transaction"))
    }

    /// What the coordinator (in a cluster: the leader) has begun and decided, and holds now.
    pub async fn stats(&self) -> Result<GetStatsResponse, Status> {
        self.call(GetStatsRequest {}, |mut c, r| async move {
            c.get_stats(r).await
        })
        .await
    }

    pub async fn get(&self, txn: TxnId) -> Result<proto::Transaction, Status> {
        let request = GetTransactionRequest {
            txn_id: txn.to_string(),
        };
        self.call(
            request,
            |mut c, r| async move { c.get_transaction(r).await },
        )
        .await?
        .transaction
        .ok_or_else(|| Status::internal("the coordinator answered without a transaction"))
    }
}
