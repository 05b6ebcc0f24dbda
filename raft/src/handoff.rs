//! Handing leadership to another voter before a planned stop, so the cluster does not wait
//! out an election timeout and the leader lease.
//!
//! openraft 0.9 has no leadership transfer, but it has what one needs: a follower can be told
//! to campaign at once (`Trigger::elect`), and the leader grants a higher-term vote to a
//! candidate whose log is as long as its own once its own lease on the vote has run out (a
//! leader does not refresh it; followers refresh theirs on every heartbeat and so refuse).
//! With the leader's vote the candidate has a majority of three (or, with five, needs one
//! more whose lease ran out). So: wait until a voter holds the whole log, tell it to elect,
//! and wait until someone else leads. Anything short of that within the deadline leaves the
//! cluster to its normal election once this node stops.

use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;
use crate::membership::MembershipView;
use crate::network::ELECT_PATH;
use crate::network::client::PeerClient;
use crate::types::Raft;

/// How often the leader looks at replication progress while it waits for a voter to catch up.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// What came of a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOff {
    /// This node did not lead: nothing to hand over.
    NotLeader,
    /// This node was the only voter.
    NoOtherVoter,
    /// Another node leads now.
    Done { leader: NodeId },
    /// The deadline passed first (no voter caught up, or its election did not win).
    TimedOut,
}

pub(crate) async fn hand_off(raft: &Raft, me: NodeId, client: &PeerClient, timeout: Duration) -> HandOff {
    let deadline = Instant::now() + timeout;
    let view = MembershipView::new(&raft.metrics().borrow());
    if !view.is_leader {
        return HandOff::NotLeader;
    }
    if !view.voters.iter().any(|id| *id != me) {
        return HandOff::NoOtherVoter;
    }
    let Some(target) = caught_up_voter(raft, me, deadline).await else {
        return HandOff::TimedOut;
    };
    let Some(addr) = view.nodes.get(&target) else {
        return HandOff::TimedOut;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if let Err(e) = client.call::<(), bool>(&addr.raft, ELECT_PATH, &(), left).await {
        tracing::warn!(target, error = %e, "leadership hand-off: the voter could not be asked to elect");
        return HandOff::TimedOut;
    }
    let mut metrics = raft.metrics();
    loop {
        let leader = metrics.borrow().current_leader;
        if let Some(leader) = leader.filter(|l| *l != me) {
            return HandOff::Done { leader };
        }
        if !matches!(tokio::time::timeout_at(deadline, metrics.changed()).await, Ok(Ok(()))) {
            return HandOff::TimedOut;
        }
    }
}

/// A voter (not this node) whose log matches this leader's last entry, the first to get there.
async fn caught_up_voter(raft: &Raft, me: NodeId, deadline: Instant) -> Option<NodeId> {
    loop {
        let (view, last) = {
            let m = raft.metrics().borrow().clone();
            (MembershipView::new(&m), m.last_log_index)
        };
        let found = view
            .voters
            .iter()
            .copied()
            .filter(|id| *id != me)
            .find(|id| view.matched.get(id).copied().flatten().is_some_and(|matched| Some(matched) >= last));
        if found.is_some() || !view.is_leader {
            return found;
        }
        if Instant::now() + CATCH_UP_POLL > deadline {
            return None;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}
