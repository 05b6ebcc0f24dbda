//! The write path: batch proposals into one log entry, commit it on the leader, answer each
//! caller with its own response.
//!
//! `Replicated::propose` queues a [`Proposal`]; the batcher takes every proposal waiting at
//! that moment (up to `propose_batch_entries_max` / `propose_batch_bytes_max`) into one
//! [`Batch`], so one append, one fsync and one replication round serve them all. At most
//! `propose_batches_in_flight_max` batches commit at once; while they do, the queue fills and
//! the next batch grows, so batching adapts to load without a timer. A batch is committed
//! locally when this node leads, forwarded once to the leader otherwise, and retried (same
//! request ids, so never applied twice) as leadership settles, until `write_timeout_ms`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::Blob;
use crate::error::ProposeError;
use crate::network::{CommitReply, FORWARD_PATH, ForwardRequest};
use crate::route::{Leader, Pause, REPLY_MARGIN, Routing};
use crate::types::{Batch, Raft, Request};

/// One caller's write, waiting for a batch.
pub(crate) struct Proposal {
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Result<Blob, ProposeError>>,
}

/// Starts the batcher; it runs until every sender of `proposals` is dropped.
pub(crate) fn spawn_batcher(routing: Arc<Routing>, proposals: mpsc::Receiver<Proposal>) -> JoinHandle<()> {
    tokio::spawn(batch_loop(routing, proposals))
}

async fn batch_loop(routing: Arc<Routing>, mut proposals: mpsc::Receiver<Proposal>) {
    let in_flight = Arc::new(Semaphore::new(routing.config.propose_batches_in_flight_max));
    while let Some(first) = proposals.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let batch = gather(first, &mut proposals, &routing);
        tokio::spawn(commit_batch(routing.clone(), batch, permit));
    }
}

/// Takes `first` and whatever else is already queued, within the batch limits.
fn gather(first: Proposal, proposals: &mut mpsc::Receiver<Proposal>, routing: &Routing) -> Vec<Proposal> {
    let (entries_max, bytes_max) = (routing.config.propose_batch_entries_max, routing.config.propose_batch_bytes_max);
    let mut bytes = first.request.command.0.len();
    let mut batch = vec![first];
    while batch.len() < entries_max && bytes < bytes_max {
        let Ok(next) = proposals.try_recv() else {
            break;
        };
        bytes += next.request.command.0.len();
        batch.push(next);
    }
    batch
}

async fn commit_batch(routing: Arc<Routing>, proposals: Vec<Proposal>, permit: OwnedSemaphorePermit) {
    let (requests, replies): (Vec<Request>, Vec<_>) = proposals.into_iter().map(|p| (p.request, p.reply)).unzip();
    let deadline = Instant::now() + Duration::from_millis(routing.config.write_timeout_ms);
    let committed = commit(&routing, Batch { requests }, deadline).await;
    // The next batch may start now; waiting for the local apply below needs no slot.
    drop(permit);
    match committed {
        Ok((index, responses)) => {
            wait_applied_here(&routing, index, deadline).await;
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Waits (until `deadline` at most) for this node to apply `index`, so a caller reads its own
/// write here even with a local read. On the leader the entry is already applied; a follower
/// learns the commit with the leader's next append, about one round trip later. The write is
/// committed either way, so running out of time still answers success.
async fn wait_applied_here(routing: &Routing, index: u64, deadline: Instant) {
    let mut applied = routing.applied.clone();
    let reached = applied.wait_for(|applied| *applied >= index);
    if tokio::time::timeout_at(deadline, reached).await.is_err() {
        tracing::debug!(index, "committed write not applied locally before the write timeout");
    }
}

/// Commits `batch` wherever the leader is, retrying until `deadline`; answers the entry's log
/// index and the responses.
async fn commit(routing: &Routing, batch: Batch, deadline: Instant) -> Result<(u64, Vec<Blob>), ProposeError> {
    loop {
        let leader = routing.leader();
        let remaining = Routing::remaining(deadline);
        let reply = match &leader {
            Leader::Me => match commit_here(&routing.raft, &routing.handing_off, batch.clone(), remaining).await {
                CommitReply::Failed(e) => return Err(ProposeError::Fatal(e)),
                reply => reply,
            },
            Leader::Other { raft_addr, .. } => forward(routing, raft_addr, &batch, remaining).await,
            Leader::Unknown => CommitReply::NotLeader,
        };
        if let CommitReply::Applied { index, responses } = reply {
            return Ok((index, responses));
        }
        match routing.pause(leader.id(routing.node_id), deadline).await {
            Pause::Retry => {}
            Pause::Deadline => return Err(deadline_error(routing)),
            Pause::Stopped => return Err(ProposeError::Stopped),
        }
    }
}

fn deadline_error(routing: &Routing) -> ProposeError {
    match routing.leader() {
        Leader::Unknown => ProposeError::NoLeader,
        Leader::Me | Leader::Other { .. } => ProposeError::Timeout,
    }
}

/// Sends `batch` to the leader's raft listener, once.
async fn forward(routing: &Routing, raft_addr: &str, batch: &Batch, remaining: Duration) -> CommitReply {
    let attempt = remaining.min(Duration::from_millis(routing.config.forward_timeout_ms));
    let request = ForwardRequest { batch, timeout_ms: attempt.as_millis() as u64 };
    let call = routing.client.call(raft_addr, FORWARD_PATH, &request, attempt + REPLY_MARGIN);
    match call.await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(leader = raft_addr, error = %e, "forward-write failed; will retry");
            CommitReply::NotLeader
        }
    }
}

/// Commits `batch` through the local raft if it leads; never forwards.
pub(crate) async fn commit_here(raft: &Raft, handing_off: &AtomicBool, batch: Batch, timeout: Duration) -> CommitReply {
    if handing_off.load(Ordering::Acquire) {
        return CommitReply::NotLeader;
    }
    let requests = batch.requests.len();
    match tokio::time::timeout(timeout, raft.client_write(batch)).await {
        Err(_) => CommitReply::Timeout,
        Ok(Ok(written)) if written.data.responses.len() == requests => {
            CommitReply::Applied { index: written.log_id.index, responses: written.data.responses }
        }
        Ok(Ok(_)) => CommitReply::Failed("apply answered a wrong number of responses".into()),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => CommitReply::NotLeader,
        Ok(Err(RaftError::APIError(e))) => CommitReply::Failed(e.to_string()),
        Ok(Err(RaftError::Fatal(e))) => CommitReply::Failed(e.to_string()),
    }
}
