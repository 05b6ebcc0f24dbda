//! Membership for an application that manages it itself ([`MembershipControl::External`]):
//! a view of the members and their replication progress, and the operations that change
//! membership, each one raft change at a time.
//!
//! The application (the root crate's autopilot) decides who joins, who becomes a voter and who
//! is removed; this module only carries those decisions to openraft and reports what it
//! refused. It never decides on its own.
//!
//! [`MembershipControl::External`]: crate::MembershipControl::External

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};

use crate::error::MembershipError;
use crate::types::{Metrics, PeerNode, Raft};
use crate::{NodeId, PeerAddr};

/// The membership as this node sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// True when this node leads (only the leader changes membership).
    pub is_leader: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// True once this node holds a membership (it founded a cluster or was added to one).
    pub initialized: bool,
    /// A membership change is half done (joint configuration): wait before the next one.
    pub changing: bool,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Every member's addresses, as stored in the membership.
    pub nodes: BTreeMap<NodeId, PeerAddr>,
    /// On the leader: the last log index each member is known to hold (`None` until the
    /// member answered once). Empty elsewhere.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// The last index of this node's log.
    pub last_log_index: u64,
}

impl MembershipView {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let membership = metrics.membership_config.membership();
        let nodes = membership
            .nodes()
            .map(|(id, node)| (*id, PeerAddr { raft: node.raft.clone(), api: node.api.clone() }))
            .collect::<BTreeMap<_, _>>();
        let matched = metrics
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, log_id)| (*id, log_id.as_ref().map(|l| l.index))).collect())
            .unwrap_or_default();
        MembershipView {
            is_leader: metrics.state == ServerState::Leader,
            leader: metrics.current_leader,
            term: metrics.current_term,
            initialized: !nodes.is_empty(),
            changing: membership.get_joint_config().len() > 1,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes,
            matched,
            last_log_index: metrics.last_log_index.unwrap_or(0),
        }
    }

    /// How far behind the leader's log `id` is, on the leader; `None` when unknown.
    pub fn lag(&self, id: NodeId) -> Option<u64> {
        let matched = (*self.matched.get(&id)?)?;
        Some(self.last_log_index.saturating_sub(matched))
    }
}

/// Founds a cluster whose first membership is `voters`; every node in it must agree on the
/// same set (initializing several nodes with the same set is safe, with different sets it is
/// not: the caller's bootstrap rule guarantees one set).
pub(crate) async fn initialize(raft: &Raft, voters: &BTreeMap<NodeId, PeerAddr>) -> Result<(), MembershipError> {
    let nodes: BTreeMap<NodeId, PeerNode> = voters.iter().map(|(id, addr)| (*id, PeerNode::from(addr))).collect();
    if nodes.is_empty() {
        return Err(MembershipError::Invalid("a cluster needs at least one voter".into()));
    }
    match raft.initialize(nodes).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Err(MembershipError::AlreadyInitialized),
        Err(e) => Err(MembershipError::Failed(e.to_string())),
    }
}

/// Adds `id` as a learner (or updates nothing if it is one); returns once replication to it is
/// set up, without waiting for it to catch up.
pub(crate) async fn add_learner(raft: &Raft, id: NodeId, addr: &PeerAddr) -> Result<(), MembershipError> {
    raft.add_learner(id, PeerNode::from(addr), false).await.map(drop).map_err(map_write_error)
}

/// Makes `voters` the voter set: members not in it stop voting (kept as learners when
/// `keep_removed`, removed from the cluster otherwise); learners in it become voters.
pub(crate) async fn set_voters(
    raft: &Raft,
    voters: &BTreeSet<NodeId>,
    keep_removed: bool,
) -> Result<(), MembershipError> {
    if voters.is_empty() {
        return Err(MembershipError::Invalid("the voter set cannot be empty".into()));
    }
    let change = ChangeMembers::ReplaceAllVoters(voters.clone());
    raft.change_membership(change, keep_removed).await.map(drop).map_err(map_write_error)
}

/// Removes learners (voters must first stop being voters through [`set_voters`]).
pub(crate) async fn remove_learners(raft: &Raft, ids: &BTreeSet<NodeId>) -> Result<(), MembershipError> {
    let change = ChangeMembers::RemoveNodes(ids.clone());
    raft.change_membership(change, false).await.map(drop).map_err(map_write_error)
}

/// Updates the addresses stored for members that moved.
pub(crate) async fn set_addresses(raft: &Raft, moved: &BTreeMap<NodeId, PeerAddr>) -> Result<(), MembershipError> {
    let nodes = moved.iter().map(|(id, addr)| (*id, PeerNode::from(addr))).collect();
    raft.change_membership(ChangeMembers::SetNodes(nodes), true).await.map(drop).map_err(map_write_error)
}

fn map_write_error(e: RaftError<u64, ClientWriteError<u64, PeerNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))) => {
            MembershipError::InProgress
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => MembershipError::Invalid(e.to_string()),
        RaftError::Fatal(e) => MembershipError::Failed(e.to_string()),
    }
}
