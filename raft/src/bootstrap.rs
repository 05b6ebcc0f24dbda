//! Forming the cluster: who initializes it, and how configured peers become members.
//!
//! Exactly one node initializes: the lowest id in `peers` (or the only node), and only when its
//! storage is empty, so a restart never re-initializes. Before it does, it asks the other peers
//! whether they already belong to a cluster; if one does (the lowest node lost its disk), it
//! waits to be re-added instead of founding a second cluster. The cluster starts with that node
//! as its only voter; the leader's reconciler then adds every configured peer missing from the
//! membership as a learner and promotes caught-up learners, lowest id first, until there are
//! `voters_max` voters. Extra nodes stay learners. Restarted nodes are already members and just
//! rejoin.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tokio::task::JoinHandle;

use crate::config::RaftConfig;
use crate::error::StartError;
use crate::network::INITIALIZED_PATH;
use crate::network::client::PeerClient;
use crate::types::{Metrics, PeerNode, Raft};

type Membership = openraft::Membership<u64, PeerNode>;

/// Initializes the cluster if this node is the one to do it.
pub(crate) async fn initialize_if_first(
    raft: &Raft,
    config: &RaftConfig,
    client: &PeerClient,
    pristine: bool,
) -> Result<(), StartError> {
    let members = config.members();
    let lowest = members.keys().next().copied();
    if !pristine || lowest != Some(config.node_id) {
        return Ok(());
    }
    if any_peer_initialized(client, config).await {
        tracing::warn!(
            node_id = config.node_id,
            "storage is empty but peers already form a cluster; waiting to be re-added"
        );
        return Ok(());
    }
    let founder = BTreeMap::from([(config.node_id, PeerNode::from(&members[&config.node_id]))]);
    match raft.initialize(founder).await {
        Ok(()) => {
            tracing::info!(node_id = config.node_id, "initialized a new raft cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(StartError::Raft(format!("initialize: {e}"))),
    }
}

async fn any_peer_initialized(client: &PeerClient, config: &RaftConfig) -> bool {
    let timeout = Duration::from_millis(config.rpc_connect_timeout_ms);
    let asks = config
        .peers
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(_, addr)| client.call::<(), bool>(&addr.raft, INITIALIZED_PATH, &(), timeout));
    futures::future::join_all(asks).await.into_iter().any(|answer| matches!(answer, Ok(true)))
}

/// Runs the reconciler every `reconcile_interval_ms`; it acts only while this node leads.
pub(crate) fn spawn_reconciler(raft: Raft, config: Arc<RaftConfig>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(config.reconcile_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reconcile(&raft, &config).await {
                tracing::debug!(error = %e, "membership reconcile step failed; will retry");
            }
        }
    })
}

/// One step: add missing peers as learners, then promote caught-up learners.
async fn reconcile(raft: &Raft, config: &RaftConfig) -> Result<(), String> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Ok(());
    }
    let membership = metrics.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return Ok(());
    }
    add_missing_learners(raft, membership, config).await?;
    update_moved_nodes(raft, membership, config).await?;
    let promote = learners_to_promote(&metrics, config);
    if !promote.is_empty() {
        tracing::info!(nodes = ?promote, "promoting learners to voters");
        raft.change_membership(ChangeMembers::AddVoterIds(promote), false).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Adds every configured peer that is not a member yet as a learner.
async fn add_missing_learners(raft: &Raft, membership: &Membership, config: &RaftConfig) -> Result<(), String> {
    for (id, addr) in config.members() {
        if membership.get_node(&id).is_none() {
            tracing::info!(node_id = id, "adding peer as learner");
            raft.add_learner(id, PeerNode::from(&addr), false).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Updates the addresses kept in membership for configured peers whose address changed.
async fn update_moved_nodes(raft: &Raft, membership: &Membership, config: &RaftConfig) -> Result<(), String> {
    let moved: BTreeMap<u64, PeerNode> = config
        .members()
        .iter()
        .map(|(id, addr)| (*id, PeerNode::from(addr)))
        .filter(|(id, node)| membership.get_node(id).is_some_and(|known| known != node))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    tracing::info!(nodes = ?moved.keys().collect::<Vec<_>>(), "updating moved peers' addresses");
    raft.change_membership(ChangeMembers::SetNodes(moved), true).await.map(drop).map_err(|e| e.to_string())
}

/// Configured learners close enough to the leader's log, lowest ids first, up to the cap.
fn learners_to_promote(metrics: &Metrics, config: &RaftConfig) -> BTreeSet<u64> {
    let membership = metrics.membership_config.membership();
    let voters = membership.voter_ids().count();
    let wanted = config.voters_max.saturating_sub(voters);
    let last_index = metrics.last_log_index.unwrap_or(0);
    let Some(replication) = &metrics.replication else {
        return BTreeSet::new();
    };
    let configured = config.members();
    membership
        .learner_ids()
        .filter(|id| configured.contains_key(id))
        .filter(|id| {
            let matched = replication.get(id).and_then(|m| m.as_ref()).map(|m| m.index);
            matched.is_some_and(|m| last_index.saturating_sub(m) <= config.promote_lag_entries_max)
        })
        .take(wanted)
        .collect()
}
