//! Which engine serves a node's requests: the seam between the gRPC service and single-node or
//! cluster mode. A single node always leads; a cluster node leads only while Raft says so, and
//! otherwise knows where the leader is.

use std::future::Future;
use std::sync::Arc;

use super::Engine;
use crate::log::DecisionLog;

/// This node does not run transactions now.
#[derive(Clone, Debug)]
pub struct NotLeader {
    /// The leader's URL, when known.
    pub leader_url: Option<String>,
    /// Why, for the caller.
    pub why: String,
}

/// Where a node's requests run.
pub trait Leadership: Send + Sync + 'static {
    type Log: DecisionLog;

    /// The engine that runs transactions here now.
    fn engine(&self) -> Result<Arc<Engine<Self::Log>>, NotLeader>;

    /// The engine, once a quorum has confirmed that this node still leads: reads through it
    /// are linearizable (a deposed leader cannot answer from stale state).
    fn confirmed(&self) -> impl Future<Output = Result<Arc<Engine<Self::Log>>, NotLeader>> + Send;
}

/// A single node leads always.
impl<L: DecisionLog> Leadership for Arc<Engine<L>> {
    type Log = L;

    fn engine(&self) -> Result<Arc<Engine<L>>, NotLeader> {
        Ok(self.clone())
    }

    fn confirmed(&self) -> impl Future<Output = Result<Arc<Engine<L>>, NotLeader>> + Send {
        std::future::ready(Ok(self.clone()))
    }
}
