//! The gossip key schema: every chitchat key superx publishes is a `const` here, with a typed
//! accessor. No other file names a key.
//!
//! INTERFACE STUB (to be completed): the public types below are the contract the root crate
//! codes against.

use serde::{Deserialize, Serialize};

/// Whether a node's raft storage holds a cluster: what bootstrap needs to know of each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftState {
    /// Empty storage: never initialized, never joined.
    Pristine,
    /// The storage holds a cluster (this node founded one or was added to one).
    Member,
}

/// A small per-node health digest, gossiped so every node can show every node's load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDigest {
    /// Agent calls in flight on the node (streams included).
    pub in_flight: u64,
    /// Tasks in the node's memory.
    pub tasks: u64,
    /// The node's raft applied index.
    pub applied_index: u64,
    /// Agents whose last call on this node failed.
    pub agents_failing: u64,
}
