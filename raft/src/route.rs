//! Where a write or a read goes: this node if it leads, the leader's raft listener if another
//! node leads, nowhere yet during an election. Shared by `propose.rs` and `read.rs`.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
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
    /// This node's applied index.
    pub(crate) applied: watch::Receiver<u64>,
    /// The term in which this node was first seen leading, and when.
    leading_since: Mutex<Option<(u64, Instant)>>,
    /// Set while this leader hands over (`handoff`): it commits nothing more, so a voter can
    /// catch up with its whole log; writes are answered "not leader" and wait for the next.
    pub(crate) handing_off: Arc<std::sync::atomic::AtomicBool>,
}

impl Routing {
    pub(crate) fn new(raft: Raft, client: PeerClient, config: Arc<RaftConfig>, applied: watch::Receiver<u64>) -> Self {
        Routing {
            raft,
            node_id: config.node_id,
            client,
            config,
            applied,
            leading_since: Mutex::new(None),
            handing_off: Arc::default(),
        }
    }

    pub(crate) fn leader(&self) -> Leader {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let Some(id) = self.leader_view(&metrics) else {
            return Leader::Unknown;
        };
        if id == self.node_id {
            return Leader::Me;
        }
        let from_membership = metrics.membership_config.membership().get_node(&id).map(|n| n.raft.clone());
        let from_config = || self.config.peers.get(&id).map(|p| p.raft.clone());
        match from_membership.or_else(from_config) {
            Some(raft_addr) => Leader::Other { id, raft_addr },
            None => Leader::Unknown,
        }
    }

    /// The leader to route to: none during an election, nor while this node leads without a
    /// majority.
    pub(crate) fn leader_view(&self, metrics: &Metrics) -> Option<NodeId> {
        let id = metrics.current_leader?;
        if id == self.node_id && self.isolated(metrics) { None } else { Some(id) }
    }

    /// True when this node leads but no majority has acknowledged it for longer than the
    /// election timeout: it cannot commit anything, and the others are electing (or have
    /// elected) another leader. openraft 0.9 does not step such a leader down, so we stop
    /// counting it as one. Before any acknowledgement, the time since this node was first seen
    /// leading in this term counts instead.
    fn isolated(&self, metrics: &Metrics) -> bool {
        let unacked = match metrics.millis_since_quorum_ack {
            Some(ms) => Duration::from_millis(ms),
            None => self.leading_for(metrics.current_term),
        };
        unacked > Duration::from_millis(self.config.election_timeout_ms.1)
    }

    fn leading_for(&self, term: u64) -> Duration {
        let now = Instant::now();
        let mut since = self.leading_since.lock();
        match *since {
            Some((seen_term, at)) if seen_term == term => now - at,
            _ => {
                *since = Some((term, now));
                Duration::ZERO
            }
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
        let changed = metrics.wait_for(|m| self.leader_view(m) != seen);
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
