//! Where a write or a read goes: this node if it leads, the leader's raft listener if another
//! node leads, nowhere yet during an election. Shared by `propose.rs` and `read.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;
use crate::config::RaftConfig;
use crate::network::client::PeerClient;
use crate::types::{Metrics, Raft};

/// Extra time a node gives the leader's answer to a forwarded call beyond the timeout it asked
/// the leader to honour, so the leader's own `Timeout` reply arrives before the HTTP call gives
/// up.
pub(crate) const REPLY_MARGIN: Duration = Duration::from_millis(200);

/// The leader as this node currently sees it.
pub(crate) enum Leader {
    Me,
    Other { id: NodeId, raft_addr: String },
    Unknown,
}

impl Leader {
    pub(crate) fn id(&self, me: NodeId) -> Option<NodeId> {
        match self {
            Leader::Me => Some(me),
            Leader::Other { id, .. } => Some(*id),
            Leader::Unknown => None,
        }
    }
}

/// True when this node leads but no majority has acknowledged it for longer than the election
/// timeout: it cannot commit anything, and the others are electing (or have elected) another
/// leader. openraft 0.9 does not step such a leader down, so we stop counting it as one. A
/// leader with no acknowledgement yet was just elected by a majority and still counts.
pub(crate) fn isolated_leader(metrics: &Metrics, config: &RaftConfig) -> bool {
    metrics.current_leader == Some(metrics.id)
        && metrics.millis_since_quorum_ack.is_some_and(|ms| ms > config.election_timeout_ms.1)
}

/// What to do after a failed attempt.
pub(crate) enum Pause {
    /// Try again: the leader view changed or the backoff passed.
    Retry,
    /// The caller's deadline passed.
    Deadline,
    /// Raft on this node stopped.
    Stopped,
}

/// Everything the write and read paths need to find and reach the leader.
pub(crate) struct Routing {
    pub(crate) raft: Raft,
    pub(crate) node_id: NodeId,
    pub(crate) client: PeerClient,
    pub(crate) config: Arc<RaftConfig>,
}

impl Routing {
    pub(crate) fn leader(&self) -> Leader {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let Some(id) = metrics.current_leader else {
            return Leader::Unknown;
        };
        if id == self.node_id {
            return if isolated_leader(&metrics, &self.config) { Leader::Unknown } else { Leader::Me };
        }
        let from_membership = metrics.membership_config.membership().get_node(&id).map(|n| n.raft.clone());
        let from_config = || self.config.peers.get(&id).map(|p| p.raft.clone());
        match from_membership.or_else(from_config) {
            Some(raft_addr) => Leader::Other { id, raft_addr },
            None => Leader::Unknown,
        }
    }

    /// Waits until the leader differs from `seen`, `retry_backoff_ms` passes, or `deadline`.
    pub(crate) async fn pause(&self, seen: Option<NodeId>, deadline: Instant) -> Pause {
        let now = Instant::now();
        if now >= deadline {
            return Pause::Deadline;
        }
        let wait = (deadline - now).min(Duration::from_millis(self.config.retry_backoff_ms));
        let mut metrics = self.raft.metrics();
        let changed = metrics.wait_for(|m| m.current_leader != seen);
        match tokio::time::timeout(wait, changed).await {
            Ok(Err(_)) => Pause::Stopped,
            Ok(Ok(_)) | Err(_) => Pause::Retry,
        }
    }

    /// The time left before `deadline`.
    pub(crate) fn remaining(deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
    }
}
