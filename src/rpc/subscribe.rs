//! `SubscribeToTask` (1.0), `tasks/resubscribe` (0.3) and SuperX's `tasks/subscribe`: follow
//! a task from any node. The first event is the task as this node has it, then every event
//! committed after that snapshot, from the applied log (not from the node that reads the
//! agent's stream). The stream closes when the task is terminal or interrupted; a subscriber
//! that falls too far behind is closed with an error.
//!
//! A terminal task answers -32004 in 1.0 and 0.3; SuperX's form sends the snapshot and closes.
//!
//! Resuming (`Last-Event-ID`, the resumable-streams extension, docs/resumable-streams.md):
//! every event carries its number in the task's event sequence (the same on every node), and
//! a client that reconnects with the last number it got is sent every committed event after
//! it, then the live ones, on whichever node it reconnects to. The events come from the
//! node's replay history; when they are no longer there, the client gets the current task
//! first (and the `SuperX-Resume: snapshot` header says so). A finished task can be resumed
//! too: the client gets what it missed, up to the end.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::{Call, Outcome, RpcError, Scope, StreamFrame, StreamReply, find_task, resolve_agent};
use crate::a2a::task::{TaskView, change_to_wire, task_result, task_to_wire};
use crate::a2a::{ProtocolVersion, Resume, result_for};
use crate::gateway::Gateway;
use crate::state::TaskEvent;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    #[serde(alias = "taskId")]
    id: String,
    /// Set for SuperX's `tasks/subscribe`, which answers a terminal task with its snapshot.
    #[serde(skip)]
    pub(super) snapshot_if_terminal: bool,
}

/// The task as this node holds it when the stream starts.
struct Snapshot {
    task: Value,
    /// Its event count: the number of the last event the snapshot includes.
    events: u64,
    state: crate::a2a::TaskState,
}

pub async fn run(gw: &Arc<Gateway>, call: &Call, p: Params) -> Result<Outcome, RpcError> {
    let resume_after = call.last_event_id;
    let task = find_task(gw, call, &p.id).await?;
    let agent_call = Call { scope: Scope::Agent(task.agent_id.clone()), ..call.clone() };
    if let Ok(target) = resolve_agent(gw, &agent_call, None).await
        && !target.upstream.streaming
    {
        return Err(RpcError::UnsupportedOperation(format!("agent {} does not stream", target.agent_id)));
    }
    if task.state.is_terminal() && !p.snapshot_if_terminal && resume_after.is_none() {
        return Err(RpcError::UnsupportedOperation(format!("task {} is in a terminal state", p.id)));
    }
    if let Some(archived) = &task.archived {
        // Terminal, and no longer in memory: the snapshot is the whole answer.
        let (tx, frames) = mpsc::channel(1);
        let first = result_for(call.version, task_result(task_to_wire(archived, TaskView::FULL)));
        tx.try_send(StreamFrame::Result(first)).expect("a new channel has room");
        let resume = resume_after.map(|_| Resume::Snapshot);
        return Ok(Outcome::Stream(StreamReply { frames, extensions: None, resume }));
    }
    let events = gw.replica.subscriptions().subscribe(&p.id).map_err(|e| RpcError::Overloaded(e.to_string()))?;
    // Snapshot after subscribing: events at or below its count are already in it.
    let snapshot = gw
        .replica
        .read(|t| {
            t.task(&p.id).map(|e| Snapshot {
                task: task_to_wire(&e.task, TaskView::FULL),
                events: e.events,
                state: e.task.status.state,
            })
        })
        .ok_or_else(|| RpcError::TaskNotFound(p.id.clone()))?;
    let (tx, frames) = mpsc::channel(gw.config.streams.client_buffer_events);
    let version = call.version;
    let replayed = resume_after.and_then(|after| replay_after(gw, &p.id, after, &snapshot));
    let resume = resume_after.map(|_| if replayed.is_some() { Resume::Replayed } else { Resume::Snapshot });
    let replay = match replayed {
        Some(replay) => replay,
        None => {
            let first = result_for(version, task_result(snapshot.task));
            tx.try_send(StreamFrame::Event(snapshot.events, first)).expect("a new channel has room");
            Replay { frames: vec![], last: snapshot.events, state: snapshot.state }
        }
    };
    if !(replay.frames.is_empty() && ends_stream(replay.state)) {
        tokio::spawn(forward(events, replay, tx, version));
    }
    Ok(Outcome::Stream(StreamReply { frames, extensions: None, resume }))
}

/// A terminal or interrupted task's stream ends after the event that put it there.
fn ends_stream(state: crate::a2a::TaskState) -> bool {
    state.is_terminal() || state.is_interrupted()
}

/// What a resumed stream sends before the live events: the events after the client's last
/// one, as 1.0 results with their numbers, and where they leave the task.
struct Replay {
    frames: Vec<(u64, Value)>,
    /// The number of the last event the client has once the replay is sent.
    last: u64,
    /// The task's state after that event.
    state: crate::a2a::TaskState,
}

/// The events after `after` from this node's replay history, if it still holds all of them.
/// `after` must be an event the task had (0, or a number past the snapshot's, is not: the
/// client then gets the current task).
fn replay_after(gw: &Gateway, task_id: &str, after: u64, snapshot: &Snapshot) -> Option<Replay> {
    if after == 0 || after > snapshot.events {
        return None;
    }
    let kept = gw.replica.subscriptions().replay(task_id, after, snapshot.events)?;
    let mut replay = Replay { frames: vec![], last: after, state: snapshot.state };
    for event in &kept {
        for (n, change) in event.numbered_changes().filter(|(n, _)| *n > after) {
            if let Some(frame) = change_to_wire(&event.task_id, &event.context_id, change) {
                replay.frames.push((n, frame));
            }
        }
        replay.last = event.events;
        replay.state = event.state;
    }
    Some(replay)
}

/// Sends the replay, then moves committed events to the client until the task ends, the
/// client leaves, or the subscriber lags out. Events the client has (by number) are skipped.
async fn forward(
    mut events: broadcast::Receiver<Arc<TaskEvent>>,
    replay: Replay,
    tx: mpsc::Sender<StreamFrame>,
    version: ProtocolVersion,
) {
    for (n, frame) in replay.frames {
        if tx.send(StreamFrame::Event(n, result_for(version, frame))).await.is_err() {
            return;
        }
    }
    if ends_stream(replay.state) {
        return;
    }
    let mut sent_upto = replay.last;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = tx.closed() => return,
        };
        let event = match event {
            Ok(e) if e.events <= sent_upto => continue,
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                let e = RpcError::Overloaded(format!(
                    "subscriber fell {n} events behind and was closed; resume with Last-Event-ID or use GetTask"
                ));
                let _ = tx.send(StreamFrame::Error(e)).await;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        for (n, change) in event.numbered_changes().filter(|(n, _)| *n > sent_upto) {
            let Some(frame) = change_to_wire(&event.task_id, &event.context_id, change) else { continue };
            if tx.send(StreamFrame::Event(n, result_for(version, frame))).await.is_err() {
                return;
            }
        }
        sent_upto = event.events;
        if ends_stream(event.state) {
            return;
        }
    }
}
