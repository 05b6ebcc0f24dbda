//! A point-in-time view of this node's raft state, for `cluster/status` and `/ready`.

use serde::Serialize;

use crate::NodeId;
use crate::types::{Metrics, index_of};

/// This node's part in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// Receives the log but does not vote (not yet promoted, or beyond `voters_max`).
    Learner,
    /// Raft on this node has stopped.
    Shutdown,
}

impl Role {
    /// The lowercase name: "leader", "follower", "candidate", "learner" or "shutdown".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This node's raft state. Indexes are raft log indexes (0 when there is none yet; entry 0 is
/// the cluster's initial membership).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// The leader's public API address (`host:port`), from membership metadata.
    pub leader_api: Option<String>,
    /// The highest index this node knows to be committed.
    pub committed_index: u64,
    /// The highest index applied to this node's state machine.
    pub applied_index: u64,
    /// The last index covered by this node's latest snapshot.
    pub snapshot_index: u64,
    /// The last index removed from this node's log (covered by a snapshot).
    pub purged_index: u64,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

impl RaftStatus {
    pub(crate) fn new(metrics: &Metrics, committed_index: u64, applied_index: u64) -> Self {
        let membership = metrics.membership_config.membership();
        let leader_api = metrics.current_leader.and_then(|id| membership.get_node(&id)).map(|node| node.api.clone());
        RaftStatus {
            node_id: metrics.id,
            role: role(metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            leader_api,
            committed_index,
            applied_index,
            snapshot_index: index_of(metrics.snapshot.as_ref()),
            purged_index: index_of(metrics.purged.as_ref()),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }
}

fn role(state: openraft::ServerState) -> Role {
    match state {
        openraft::ServerState::Leader => Role::Leader,
        openraft::ServerState::Follower => Role::Follower,
        openraft::ServerState::Candidate => Role::Candidate,
        openraft::ServerState::Learner => Role::Learner,
        openraft::ServerState::Shutdown => Role::Shutdown,
    }
}
