//! `SubscribeToTask` (1.0), `tasks/resubscribe` (0.3) and SuperX's `tasks/subscribe`: follow
//! a task from any node. The first event is the task as this node has it, then every event
//! committed after that snapshot, from the applied log (not from the node that reads the
//! agent's stream). The stream closes when the task is terminal or interrupted; a subscriber
//! that falls too far behind is closed with an error.
//!
//! A terminal task answers -32004 in 1.0 and 0.3; SuperX's form sends the snapshot and closes.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::stream_message::change_frame;
use super::{Call, Outcome, RpcError, Scope, StreamFrame, StreamReply, find_task, resolve_agent};
use crate::a2a::task::{TaskView, task_to_wire};
use crate::a2a::{ProtocolVersion, v03};
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

pub async fn run(gw: &Arc<Gateway>, call: &Call, p: Params) -> Result<Outcome, RpcError> {
    let task = find_task(gw, call, &p.id).await?;
    let agent_call = Call { scope: Scope::Agent(task.agent_id.clone()), ..call.clone() };
    if let Ok(target) = resolve_agent(gw, &agent_call, None).await
        && !target.upstream.streaming
    {
        return Err(RpcError::UnsupportedOperation(format!("agent {} does not stream", target.agent_id)));
    }
    if task.state.is_terminal() && !p.snapshot_if_terminal {
        return Err(RpcError::UnsupportedOperation(format!("task {} is in a terminal state", p.id)));
    }
    if let Some(archived) = &task.archived {
        // Terminal, and no longer in memory: the snapshot is the whole answer.
        let (tx, frames) = mpsc::channel(1);
        let first = render(call.version, json!({ "task": task_to_wire(archived, TaskView::FULL) }));
        tx.try_send(StreamFrame::Result(first)).expect("a new channel has room");
        return Ok(Outcome::Stream(StreamReply { frames, extensions: None }));
    }
    let events = gw.replica.subscriptions().subscribe(&p.id).map_err(|e| RpcError::Overloaded(e.to_string()))?;
    // Snapshot after subscribing: events at or below its sequence are already in it.
    let (snapshot, seq, state) = gw
        .replica
        .read(|t| t.task(&p.id).map(|e| (task_to_wire(&e.task, TaskView::FULL), e.seq, e.task.status.state)))
        .ok_or_else(|| RpcError::TaskNotFound(p.id.clone()))?;
    let (tx, frames) = mpsc::channel(gw.config.streams.client_buffer_events);
    let version = call.version;
    let first = render(version, json!({ "task": snapshot }));
    tx.try_send(StreamFrame::Result(first)).expect("a new channel has room");
    if !(state.is_terminal() || state.is_interrupted()) {
        tokio::spawn(forward(events, seq, tx, version));
    }
    Ok(Outcome::Stream(StreamReply { frames, extensions: None }))
}

fn render(version: ProtocolVersion, result: Value) -> Value {
    match version {
        ProtocolVersion::V10 => result,
        ProtocolVersion::V03 => v03::result_from_v10(result),
    }
}

/// Moves committed events to the client until the task ends, the client leaves, or the
/// subscriber lags out.
async fn forward(
    mut events: broadcast::Receiver<Arc<TaskEvent>>,
    after_seq: u64,
    tx: mpsc::Sender<StreamFrame>,
    version: ProtocolVersion,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = tx.closed() => return,
        };
        let event = match event {
            Ok(e) if e.seq <= after_seq => continue,
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                let e = RpcError::Overloaded(format!(
                    "subscriber fell {n} events behind and was closed; use GetTask for the current state"
                ));
                let _ = tx.send(StreamFrame::Error(e)).await;
                return;
            }
            Err(RecvError::Closed) => return,
        };
        for result in frames_of(&event) {
            if tx.send(StreamFrame::Result(render(version, result))).await.is_err() {
                return;
            }
        }
        if event.state.is_terminal() || event.state.is_interrupted() {
            return;
        }
    }
}

/// The 1.0 stream results of one applied event.
fn frames_of(event: &TaskEvent) -> Vec<Value> {
    event.changes.iter().filter_map(|change| change_frame(&event.task_id, &event.context_id, change)).collect()
}
