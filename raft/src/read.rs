//! Linearizable reads by read-index, on any node.
//!
//! The leader confirms it still leads (a heartbeat round acknowledged by a quorum) and answers
//! its commit index (openraft's `get_read_log_id`); the reading node, leader or follower, then
//! waits until it has applied up to that index and reads its local state. Every write
//! acknowledged before the read started is committed at or below that index, so the read sees
//! it.
//!
//! Reads share rounds: openraft sends one heartbeat to every voter per `get_read_log_id`, so
//! the read batcher asks for one read index on behalf of every reader queued when the round
//! starts. A reader arriving during a round waits for the next one, because an index taken
//! before its read began would not cover writes acknowledged in between.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::ReadError;
use crate::network::{READ_INDEX_PATH, ReadIndexReply, ReadIndexRequest};
use crate::route::{Leader, Pause, REPLY_MARGIN, Routing};
use crate::types::{Raft, index_of};

/// A reader waiting for the next read-index round.
pub(crate) struct ReadWaiter {
    /// When the reader gives up; the round ends by the first waiter's deadline.
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<u64, ReadError>>,
}

/// Starts the read batcher; it runs until every sender of `waiters` is dropped.
pub(crate) fn spawn_read_batcher(routing: Arc<Routing>, waiters: mpsc::Receiver<ReadWaiter>) -> JoinHandle<()> {
    tokio::spawn(read_loop(routing, waiters))
}

async fn read_loop(routing: Arc<Routing>, mut waiters: mpsc::Receiver<ReadWaiter>) {
    while let Some(first) = waiters.recv().await {
        let deadline = first.deadline;
        let mut round = vec![first];
        while let Ok(next) = waiters.try_recv() {
            round.push(next);
        }
        let index = read_index(&routing, deadline).await;
        for waiter in round {
            let _ = waiter.reply.send(index.clone());
        }
    }
}

/// Finds the read index through whichever node leads, retrying until `deadline`.
pub(crate) async fn read_index(routing: &Routing, deadline: Instant) -> Result<u64, ReadError> {
    loop {
        let leader = routing.leader();
        let remaining = Routing::remaining(deadline);
        let reply = match &leader {
            Leader::Me => match read_index_here(&routing.raft, remaining).await {
                ReadIndexReply::Failed(e) => return Err(ReadError::Fatal(e)),
                reply => reply,
            },
            Leader::Other { raft_addr, .. } => ask_leader(routing, raft_addr, remaining).await,
            Leader::Unknown => ReadIndexReply::NotLeader,
        };
        if let ReadIndexReply::Index(index) = reply {
            return Ok(index);
        }
        match routing.pause(leader.id(routing.node_id), deadline).await {
            Pause::Retry => {}
            Pause::Deadline => return Err(deadline_error(routing)),
            Pause::Stopped => return Err(ReadError::Fatal("raft stopped".into())),
        }
    }
}

fn deadline_error(routing: &Routing) -> ReadError {
    match routing.leader() {
        Leader::Unknown => ReadError::NoLeader,
        Leader::Me | Leader::Other { .. } => ReadError::Timeout,
    }
}

async fn ask_leader(routing: &Routing, raft_addr: &str, remaining: Duration) -> ReadIndexReply {
    let attempt = remaining.min(Duration::from_millis(routing.config.forward_timeout_ms));
    let request = ReadIndexRequest { timeout_ms: attempt.as_millis() as u64 };
    let call = routing.client.call(raft_addr, READ_INDEX_PATH, &request, attempt + REPLY_MARGIN);
    match call.await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(leader = raft_addr, error = %e, "read-index failed; will retry");
            ReadIndexReply::NotLeader
        }
    }
}

/// Confirms this node leads and answers the index a linearizable read must wait for.
pub(crate) async fn read_index_here(raft: &Raft, timeout: Duration) -> ReadIndexReply {
    match tokio::time::timeout(timeout, raft.get_read_log_id()).await {
        Err(_) => ReadIndexReply::Timeout,
        Ok(Ok((read_log_id, _applied))) => ReadIndexReply::Index(index_of(read_log_id.as_ref())),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => ReadIndexReply::NotLeader,
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => ReadIndexReply::Timeout,
        Ok(Err(RaftError::Fatal(e))) => ReadIndexReply::Failed(e.to_string()),
    }
}

/// Waits until the local state machine has applied `index`, or `deadline`.
pub(crate) async fn wait_applied(
    mut applied: watch::Receiver<u64>,
    index: u64,
    deadline: Instant,
) -> Result<(), ReadError> {
    let reached = applied.wait_for(|applied| *applied >= index);
    match tokio::time::timeout_at(deadline, reached).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(ReadError::Fatal("raft stopped".into())),
        Err(_) => Err(ReadError::Timeout),
    }
}
