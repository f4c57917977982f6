//! What the replicated log carries: openraft's type configuration and one entry's payload.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster (`--node-id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The cluster's Raft types: an entry carries a [`Batch`], applying it answers [`Applied`].
    pub TypeConfig:
        D = Batch,
        R = Applied,
);

/// The Raft instance of one node.
pub type Raft = openraft::Raft<TypeConfig>;

/// A leader's identity: its term and node id (openraft lets one term have several candidates,
/// so the node id is part of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub term: u64,
    pub node_id: NodeId,
}

/// The decision-log writes of one round, in the order the engine made them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Batch {
    /// The leader whose engine made the writes. They take effect only if the entry is committed
    /// in that leader's own term: an engine deposed and re-elected cannot slip writes from its
    /// old term past the new engine's recovery.
    pub leader: Leader,
    pub commands: Vec<Command>,
}

/// One write to the decision log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    /// A transaction's record (the framed format of [`crate::log::encode`]), replacing its
    /// previous one.
    Put(Vec<u8>),
    /// Retention collection: finished records that finished before this instant go. The
    /// cutoff travels in the entry so every node collects the same records.
    Collect { before_unix_ms: u64 },
}

/// What applying one entry did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    /// False when the batch was dropped: committed in another leader's term.
    pub accepted: bool,
    /// Records removed by `Collect` commands.
    pub collected: usize,
}
