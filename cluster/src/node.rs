//! [`Cluster`]: one chitchat node.
//!
//! INTERFACE STUB (to be completed): the public types and signatures below are the contract
//! the root crate codes against.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use crate::discovery::Strategy;
use crate::keys::{HealthDigest, RaftState};

/// What a node needs to join the gossip.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (the raft node id); stable across restarts.
    pub node_id: u64,
    /// Nodes gossip only with nodes of the same cluster id (chitchat drops other clusters'
    /// messages).
    pub cluster_id: String,
    /// UDP listener for gossip.
    pub gossip_listen: SocketAddr,
    /// How other nodes reach this node's gossip listener.
    pub gossip_advertise: SocketAddr,
    /// Period of one gossip round.
    pub gossip_interval: Duration,
    /// A node silent for longer than this (as judged by chitchat's phi-accrual detector) is
    /// dead; a dead node's state is forgotten after `dead_node_grace`.
    pub dead_node_grace: Duration,
    /// Where seeds come from.
    pub strategy: Strategy,
}

/// This node's facts, published once at start.
#[derive(Clone, Debug)]
pub struct NodeMeta {
    /// `host:port` of the public API.
    pub api_addr: String,
    /// `host:port` of the internal raft listener.
    pub raft_addr: String,
    /// The binary's version.
    pub version: String,
}

/// One node as gossip sees it (the newest generation of each node id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    /// Changes on every restart of the node.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub api_addr: String,
    pub raft_addr: String,
    pub version: String,
    pub cluster_id: String,
    /// The node's own readiness (`/ready`).
    pub ready: bool,
    pub raft_state: RaftState,
    /// The node announced it leaves the cluster on purpose.
    pub left: bool,
    /// Alive according to the failure detector.
    pub live: bool,
    /// When this node (the observer) last saw `live` change for this member.
    pub since: Instant,
    pub health: Option<HealthDigest>,
    /// The set of pristine node ids this member sees, published while it waits to bootstrap.
    pub bootstrap_view: Option<Vec<u64>>,
    /// True for the observing node itself.
    pub is_self: bool,
}

/// A change in the member list, as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node became alive (first seen, or back after being dead, or restarted).
    Live(Member),
    /// A node stopped answering.
    Dead(Member),
    /// A node announced it leaves.
    Left(Member),
    /// A live node's published state changed (readiness, raft state, health...).
    Updated(Member),
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("gossip listener {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("discovery: {0}")]
    Discovery(String),
}

/// A running gossip node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    #[allow(dead_code)]
    inner: Arc<()>,
}

impl Cluster {
    /// Binds the gossip listener, publishes `meta`, starts gossip and the discovery loop.
    pub async fn start(_config: ClusterConfig, _meta: NodeMeta) -> Result<Cluster, ClusterError> {
        todo!()
    }
    /// Every node gossip knows (newest generation per node id), this node included, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        todo!()
    }
    /// The member list, updated on every change.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        todo!()
    }
    /// The change stream.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        todo!()
    }
    pub async fn set_ready(&self, _ready: bool) {
        todo!()
    }
    pub async fn set_raft_state(&self, _state: RaftState) {
        todo!()
    }
    pub async fn set_health(&self, _health: &HealthDigest) {
        todo!()
    }
    /// Publishes (or withdraws, with `None`) the pristine ids this node sees while it waits to
    /// bootstrap.
    pub async fn set_bootstrap_view(&self, _view: Option<&[u64]>) {
        todo!()
    }
    /// Announces that this node leaves on purpose.
    pub async fn leave(&self) {
        todo!()
    }
    /// The last discovery error, if the last discovery round failed (shown in cluster/status).
    pub fn discovery_error(&self) -> Option<String> {
        todo!()
    }
    /// Stops gossip.
    pub async fn shutdown(&self) {
        todo!()
    }
}
