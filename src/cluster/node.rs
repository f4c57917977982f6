//! One cluster node: its storage, its Raft, and the engine it runs while it leads.
//!
//! A watcher follows openraft's metrics. When this node becomes leader it first commits an
//! entry of its own and waits until it is applied, so its state machine holds every decision a
//! majority ever had; only then does it start an engine on that state,
//! which re-drives decided transactions and aborts undecided ones (DESIGN §5). When it stops
//! leading, the engine stops at once: nothing more is sent or written in the old term.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, watch};

use super::log::{propose, Proposals, ReplicatedLog};
use super::network::Network;
use super::state::StateMachine;
use super::store::LogStore;
use super::types::{Batch, Leader};
use super::{NodeId, Peers, Raft};
use crate::coordinator::{Config, Engine, Leadership, NotLeader};
use crate::durable::{DurableDb, LogSync};

/// How long a leadership confirmation may take before the caller is told to retry.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// A leader that has heard from no majority for this long takes no requests: cut off by a
/// partition, it can decide nothing, while the others elect a new leader within about
/// 0.4 s. openraft 0.9 keeps such a node leader until it hears a later term, and clients and
/// participants that still reach it must move on to the new one. Well above the quorum
/// acknowledgement gaps seen under saturating load (under 0.3 s).
const CUT_OFF_AFTER: Duration = Duration::from_millis(500);

/// How a node takes part in its cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub node_id: NodeId,
    /// Every node of the initial cluster (or, with `join`, at least this one).
    pub peers: Peers,
    /// Wait to be added by `verdict cluster add-node` instead of forming a cluster from `peers`.
    pub join: bool,
    pub data_dir: PathBuf,
    pub log_sync: LogSync,
    /// Raft log entries between snapshots (the log is purged behind each).
    pub snapshot_every: u64,
    /// Where to reach peers whose Raft traffic does not go to their URL in the membership.
    pub raft_via: Option<Peers>,
    /// The engine's configuration for every term this node leads.
    pub engine: Config,
}

/// What this node does with requests now.
enum Leading {
    Not,
    /// Leader, waiting for an entry of its own to apply before it starts its engine.
    Recovering(Leader),
    Running(Leader, Arc<Engine<ReplicatedLog>>),
}

impl Leading {
    fn leader(&self) -> Option<Leader> {
        match self {
            Leading::Not => None,
            Leading::Recovering(l) | Leading::Running(l, _) => Some(*l),
        }
    }
}

/// A running cluster node.
pub struct ClusterNode {
    id: NodeId,
    url: String,
    raft: Raft,
    db: Arc<DurableDb>,
    state: StateMachine,
    proposals: Mutex<Option<Proposals>>,
    engine_config: Config,
    leading: Mutex<Leading>,
}

/// How often the cluster gauges are set.
const METRICS_EVERY: Duration = Duration::from_secs(1);

fn raft_config(snapshot_every: u64) -> anyhow::Result<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "verdict".into(),
        heartbeat_interval: 50,
        election_timeout_min: 100,
        election_timeout_max: 200,
        // The default 200 ms is too short for a first chunk of a large snapshot.
        install_snapshot_timeout: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: snapshot_every.min(1000),
        ..Default::default()
    };
    Ok(config.validate()?)
}

impl ClusterNode {
    /// Opens the node's storage, starts Raft, and forms the cluster from `--peers` if this node
    /// has never been part of one. Must run inside a tokio runtime.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<Arc<Self>> {
        let url = options
            .peers
            .get(options.node_id)
            .with_context(|| {
                format!(
                    "--node-id {} is not in --peers ({}): list this node too",
                    options.node_id, options.peers
                )
            })?
            .to_owned();
        let dir = &options.data_dir;
        let db = Arc::new(DurableDb::open(dir, options.log_sync).with_context(|| {
            format!(
                "cannot open the node's data in {} (is another verdict using it?)",
                dir.display()
            )
        })?);
        let log = LogStore::open(db.clone())?;
        let state = StateMachine::open(db.clone(), dir)?;
        let config = Arc::new(raft_config(options.snapshot_every)?);
        let network = Network::new(options.raft_via.clone());
        let raft = Raft::new(options.node_id, config, network, log, state.clone()).await?;
        if !options.join {
            form(&raft, &options.peers).await?;
        }
        let (proposals, queue) = mpsc::unbounded_channel();
        tokio::spawn(propose(raft.clone(), queue));
        let node = Arc::new(ClusterNode {
            id: options.node_id,
            url,
            raft,
            db,
            state,
            proposals: Mutex::new(Some(proposals)),
            engine_config: options.engine,
            leading: Mutex::new(Leading::Not),
        });
        tokio::spawn(follow_leadership(
            Arc::downgrade(&node),
            node.raft.metrics(),
        ));
        tokio::spawn(crate::periodic::every(
            METRICS_EVERY,
            Arc::downgrade(&node),
            |node| async move { node.report_metrics() },
        ));
        Ok(node)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stops the engine and Raft and makes every write durable; at shutdown.
    pub async fn shutdown(&self) {
        self.set_leading(Leading::Not);
        self.proposals.lock().expect("lock").take();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not shut down cleanly");
        }
        self.db.close();
    }

    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    fn url_of(metrics: &RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<String> {
        let membership = metrics.membership_config.membership();
        membership.get_node(&id).map(|node| node.addr.clone())
    }

    fn leader_url(&self) -> Option<String> {
        let metrics = self.metrics();
        metrics
            .current_leader
            .and_then(|id| Self::url_of(&metrics, id))
    }

    /// Replaces what this node does, stopping the engine it ran.
    fn set_leading(&self, next: Leading) {
        let previous = std::mem::replace(&mut *self.leading.lock().expect("lock"), next);
        if let Leading::Running(leader, engine) = previous {
            tracing::info!(term = leader.term, "no longer leading; the engine stops");
            engine.stop();
        }
    }

    /// Brings what this node does in line with Raft: `leader` is this node's leadership now.
    async fn follow(&self, leader: Option<Leader>) {
        if self.leading.lock().expect("lock").leader() == leader {
            return;
        }
        let Some(leader) = leader else {
            self.set_leading(Leading::Not);
            tracing::info!(leader = ?self.metrics().current_leader, "following");
            return;
        };
        self.set_leading(Leading::Recovering(leader));
        tracing::info!(
            term = leader.term,
            "elected leader; committing an entry of its own first"
        );
        if let Err(why) = self.settle(leader).await {
            tracing::warn!(term = leader.term, %why, "leadership not confirmed; will retry");
            self.set_leading(Leading::Not);
            return;
        }
        if self.leading.lock().expect("lock").leader() != Some(leader) {
            return;
        }
        match self.start_engine(leader) {
            Ok(engine) => self.set_leading(Leading::Running(leader, engine)),
            Err(error) => {
                tracing::error!(%error, "cannot start the engine on the replicated log");
                self.set_leading(Leading::Not);
            }
        }
    }

    /// Commits an empty batch of `leader`'s and waits until it is applied here: then the state
    /// machine holds every entry before it, so every decision a majority ever had. Not
    /// openraft's "this term's first entry" (`ensure_linearizable`): a leader restarted
    /// quickly resumes its term without a new one, and entries its previous life appended
    /// but did not see committed would then be applied after the engine had recovered (found
    /// by the nemesis: a COMMIT told to a client, aborted by the recovery that missed it).
    async fn settle(&self, leader: Leader) -> Result<(), String> {
        let barrier = Batch {
            leader,
            commands: Vec::new(),
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.client_write(barrier)).await {
            Ok(Ok(written)) if written.data.accepted => Ok(()),
            Ok(Ok(_)) => Err("its entry was committed in another term".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no majority within {CONFIRM_TIMEOUT:?}")),
        }
    }

    fn start_engine(&self, leader: Leader) -> anyhow::Result<Arc<Engine<ReplicatedLog>>> {
        let proposals = self
            .proposals
            .lock()
            .expect("lock")
            .clone()
            .context("the node is shutting down")?;
        let metrics = self.metrics();
        let mut config = self.engine_config.clone();
        config.advertise_url = self.url.clone();
        config.cluster_urls = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, node)| node.addr.clone())
            .collect();
        let log = ReplicatedLog::new(leader, proposals, self.state.clone());
        // The engine's recovery logs how many transactions it took over, by kind.
        tracing::info!(
            term = leader.term,
            "leading: taking over every unfinished transaction"
        );
        Ok(Engine::start(log, config)?)
    }

    /// Sets the cluster gauges: role, term, applied index, and on the leader each follower's
    /// replication lag.
    fn report_metrics(&self) {
        use crate::metrics as names;
        let m = self.metrics();
        let leads = m.current_leader == Some(self.id);
        metrics::gauge!(names::IS_LEADER).set(if leads { 1.0 } else { 0.0 });
        metrics::gauge!(names::TERM).set(m.current_term as f64);
        let applied = m.last_applied.map_or(0, |l| l.index);
        metrics::gauge!(names::APPLIED_INDEX).set(applied as f64);
        let last = m.last_log_index.unwrap_or(0);
        for (id, matched) in m.replication.iter().flatten() {
            if *id == self.id {
                continue;
            }
            let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
            metrics::gauge!(names::REPLICATION_LAG, "follower" => id.to_string()).set(lag as f64);
        }
    }

    /// This node's view of the cluster, as `verdict cluster status` prints it.
    pub fn status(&self) -> serde_json::Value {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = m.replication.clone().unwrap_or_default();
        let last_index = m.last_log_index.unwrap_or(0);
        let members: Vec<serde_json::Value> = membership
            .nodes()
            .map(|(id, node)| {
                let matched = matched.get(id).cloned().flatten().map(|l| l.index);
                serde_json::json!({
                    "id": id,
                    "url": node.addr,
                    "voter": voters.contains(id),
                    "matched_index": matched,
                    "lag": matched.map(|i| last_index.saturating_sub(i)),
                })
            })
            .collect();
        let running = self.serving().is_ok();
        serde_json::json!({
            "node_id": self.id,
            "url": self.url,
            "state": format!("{:?}", m.state),
            "leader": m.current_leader,
            "leader_url": m.current_leader.and_then(|id| Self::url_of(&m, id)),
            "term": m.current_term,
            "last_log_index": m.last_log_index,
            "last_applied_index": m.last_applied.map(|l| l.index),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "purged_index": m.purged.map(|l| l.index),
            "running_transactions": running,
            "members": members,
        })
    }

    /// The fingerprint of this node's records (see [`StateMachine::digest`]).
    pub fn digest(&self) -> Result<serde_json::Value, tonic::Status> {
        let digest = self
            .state
            .digest()
            .map_err(|e| tonic::Status::internal(format!("cannot read the records: {e}")))?;
        Ok(serde_json::json!(digest))
    }

    /// Adds a node: first as a learner that catches up, then as a voter (joint consensus).
    pub async fn add_node(&self, id: NodeId, url: String) -> Result<(), tonic::Status> {
        crate::coordinator::validate::url("the new node's URL", &url)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        self.leader_only()?;
        self.raft
            .add_learner(id, BasicNode { addr: url }, true)
            .await
            .map_err(membership_failed)?;
        let mut voters = self.voters();
        voters.insert(id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(membership_failed)?;
        tracing::info!(node = id, "added a node");
        Ok(())
    }

    /// Removes a node from the voters and the cluster (joint consensus).
    pub async fn remove_node(&self, id: NodeId) -> Result<(), tonic::Status> {
        self.leader_only()?;
        let mut voters = self.voters();
        if !voters.remove(&id) {
            return Err(tonic::Status::not_found(format!(
                "node {id} is not a voter of this cluster; `verdict cluster status` lists them"
            )));
        }
        if voters.is_empty() {
            return Err(tonic::Status::failed_precondition(
                "the last voter cannot be removed",
            ));
        }
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(membership_failed)?;
        tracing::info!(node = id, "removed a node");
        Ok(())
    }

    /// Whether callers are served here: it runs transactions, or names the leader that does.
    /// Not while it has no leader, takes over, or leads cut off from the majority.
    pub fn ready(&self) -> bool {
        match self.serving() {
            Ok(_) => true,
            Err(not_leader) => not_leader.leader_url.is_some(),
        }
    }

    /// The engine that takes requests here now, or why there is none.
    fn serving(&self) -> Result<Arc<Engine<ReplicatedLog>>, NotLeader> {
        match &*self.leading.lock().expect("lock") {
            Leading::Running(..) if self.cut_off() => Err(NotLeader {
                leader_url: None,
                why: "this node has lost contact with a majority of the cluster; another node \
                      may lead now"
                    .into(),
            }),
            Leading::Running(_, engine) => Ok(engine.clone()),
            Leading::Recovering(_) => Err(NotLeader {
                leader_url: None,
                why: "this node was just elected leader and is taking over".into(),
            }),
            Leading::Not => Err(NotLeader {
                leader_url: self.leader_url(),
                why: "this coordinator node is not the leader".into(),
            }),
        }
    }

    /// Whether this node, leading, has heard from no majority for [`CUT_OFF_AFTER`].
    fn cut_off(&self) -> bool {
        let since = self.raft.metrics().borrow().millis_since_quorum_ack;
        since.is_some_and(|ms| ms > CUT_OFF_AFTER.as_millis() as u64)
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        let metrics = self.metrics();
        metrics.membership_config.membership().voter_ids().collect()
    }

    fn leader_only(&self) -> Result<(), tonic::Status> {
        if self.metrics().current_leader == Some(self.id) {
            return Ok(());
        }
        let leader = self.leader_url().unwrap_or_else(|| "not known yet".into());
        Err(tonic::Status::unavailable(format!(
            "membership changes run on the leader ({leader}); send this there"
        )))
    }
}

fn membership_failed(e: impl std::fmt::Display) -> tonic::Status {
    tonic::Status::failed_precondition(format!("the membership change failed: {e}"))
}

/// Forms the cluster from `peers` if this node has never been part of one. Every node may do
/// it with the same list (openraft makes it safe); on a restart it is skipped.
async fn form(raft: &Raft, peers: &Peers) -> anyhow::Result<()> {
    if raft.is_initialized().await? {
        return Ok(());
    }
    let members: BTreeMap<NodeId, BasicNode> = peers
        .iter()
        .map(|(id, url)| {
            (
                id,
                BasicNode {
                    addr: url.to_owned(),
                },
            )
        })
        .collect();
    match raft.initialize(members).await {
        Ok(()) => {
            tracing::info!(%peers, "formed the cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot form the cluster from --peers: {e}")),
    }
}

/// Follows leadership changes for as long as the node lives.
async fn follow_leadership(
    node: Weak<ClusterNode>,
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
) {
    loop {
        let leader = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then_some(Leader {
                term: m.current_term,
                node_id: m.id,
            })
        };
        let Some(node) = node.upgrade() else {
            return;
        };
        node.follow(leader).await;
        drop(node);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Leadership for Arc<ClusterNode> {
    type Log = ReplicatedLog;

    fn engine(&self) -> Result<Arc<Engine<ReplicatedLog>>, NotLeader> {
        self.serving()
    }

    async fn confirmed(&self) -> Result<Arc<Engine<ReplicatedLog>>, NotLeader> {
        let engine = self.engine()?;
        let confirmed =
            tokio::time::timeout(CONFIRM_TIMEOUT, self.raft.ensure_linearizable()).await;
        let still = self.engine()?;
        match confirmed {
            Ok(Ok(_)) if Arc::ptr_eq(&engine, &still) => Ok(engine),
            _ => Err(NotLeader {
                leader_url: None,
                why: "this node could not confirm with a majority that it still leads".into(),
            }),
        }
    }
}
