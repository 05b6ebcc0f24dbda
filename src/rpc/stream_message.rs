//! `SendStreamingMessage` / `message/stream` / `message.stream`: stream a message's task
//! from its agent, committing every event before the client sees it.
//!
//! The agent's stream is consumed by a pump task of its own, so a client that goes away does
//! not stop the recording: the pump keeps reading (and committing) until the task is terminal
//! or interrupted. If the agent's connection drops first, the pump reconnects with
//! SubscribeToTask (bounded attempts) and gives up on record (logged, counted) after that.
//! Subscribers on other nodes follow the same events from the applied log.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::send_message::{Params, RecordedBy, record, record_with_push};
use super::{Call, Outcome, RpcError, StreamFrame, StreamReply, Target, resolve_agent};
use crate::a2a::task::{
    TaskView, artifact_update_to_wire, change_to_wire, current_status_to_wire, message_result, status_update_to_wire,
    task_result, task_to_wire,
};
use crate::agents::{
    BreakerState, Outcome as CallOutcome, Permit, StreamFault, StreamItem, UpstreamMethod, UpstreamStream,
};
use crate::gateway::Gateway;
use crate::state::{ArtifactUpdate, Command, ProposeError, Refusal, StatusUpdate, Task, TransitionError};

pub async fn run(gw: &Arc<Gateway>, call: &Call, mut p: Params) -> Result<Outcome, RpcError> {
    let agent_id = match &p.task_id {
        Some(task_id) => Some(super::send_message::continue_task(gw, call, task_id, &mut p.request).await?),
        None => p.agent_id.take(),
    };
    let target = resolve_agent(gw, call, agent_id.as_deref()).await?;
    if !target.upstream.streaming {
        return Err(RpcError::UnsupportedOperation(format!("agent {} does not stream", target.agent_id)));
    }
    let push = super::send_message::push_configs(gw, call, &p).await?;
    let limits = &gw.config.streams;
    let follow_up = p.task_id.as_ref().and_then(|_| p.request.get("message").cloned());
    // The permit (an in-flight slot of the agent) goes with the pump and ends with it.
    let (upstream, permit) = gw
        .open_agent_stream(&target.call_target(call), UpstreamMethod::SendStreamingMessage, Value::Object(p.request))
        .await?;
    if let (Some(task_id), Some(message)) = (&p.task_id, follow_up) {
        // The agent took the follow-up; its stream of updates will not carry the message.
        append_to_history(gw, &target.agent_id, task_id, message).await;
    }
    let (tx, frames) = mpsc::channel(limits.client_buffer_events + 1);
    // A follow-up message continues a known task: the agent may start with an update.
    let pump = Pump {
        gw: gw.clone(),
        call: call.clone(),
        target,
        client: Some(tx),
        task_id: p.task_id.clone(),
        history_length: p.history_length,
        resumed: false,
        permit,
        push,
    };
    // The pump outlives the request; its logs still name the request that started it.
    tokio::spawn(tracing::Instrument::in_current_span(pump.run(upstream)));
    Ok(Outcome::Stream(StreamReply { frames, extensions: None, resume: None }))
}

/// Records a follow-up message in its task's history before the agent's updates for it.
/// A refusal (the task ended meanwhile) is the stream's to report, not this.
async fn append_to_history(gw: &Gateway, agent_id: &str, task_id: &str, message: Value) {
    let command = Command::AppendMessage {
        agent_id: agent_id.to_owned(),
        task_id: task_id.to_owned(),
        message: crate::codec::Json(message),
        at_ms: gw.now_ms(),
    };
    if let Err(e) = gw.replica.propose(command).await {
        tracing::debug!(agent_id, task_id, error = %e, "follow-up message not added to the task's history");
    }
}

/// Follows a task with the agent's SubscribeToTask until the stream ends, recording every
/// event (no client reads it: subscribers follow the log). A task whose stream cannot be
/// opened is left to the caller (which polls).
pub(super) async fn follow_stream(gw: &Arc<Gateway>, call: &Call, target: Target, task_id: &str) {
    let params = json!({ "id": task_id });
    let opened = gw.open_agent_stream(&target.call_target(call), UpstreamMethod::SubscribeToTask, params).await;
    let (upstream, permit) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            tracing::debug!(agent_id = %target.agent_id, %task_id, error = %e, "could not follow the task's stream");
            return;
        }
    };
    let pump = Pump {
        gw: gw.clone(),
        call: call.clone(),
        target,
        client: None,
        task_id: Some(task_id.to_owned()),
        history_length: None,
        resumed: true,
        permit,
        push: vec![],
    };
    pump.run(upstream).await;
}

struct Pump {
    gw: Arc<Gateway>,
    call: Call,
    target: Target,
    /// The client's end; `None` once it went away or fell too far behind.
    client: Option<mpsc::Sender<StreamFrame>>,
    task_id: Option<String>,
    history_length: Option<usize>,
    /// Set once the pump reconnected: the agent's new stream starts with a task snapshot,
    /// which the client (already past its first event) gets as the updates it implies.
    resumed: bool,
    /// The agent's in-flight slot, held for as long as the pump follows the agent; broken
    /// connections and malformed events are recorded on it as the agent's failures.
    permit: Permit,
    /// Webhooks the client's message set for a new task: committed with its first record.
    push: Vec<crate::state::PushConfig>,
}

/// A committed event as the client gets it: the 1.0 result, the task's state after it, and
/// its event number.
type Committed = (Value, crate::a2a::TaskState, Option<u64>);

/// Whether the stream goes on after an event.
enum Next {
    More,
    Done,
}

/// What one commit takes: an event on its own, or events of one task that arrived together.
enum Gathered {
    One(StreamItem),
    Updates(Vec<StreamItem>),
}

/// One read from the agent's stream.
type Read = Result<Option<StreamItem>, StreamFault>;

/// The task an event is about (empty for a message, which has none).
fn item_task_id(item: &StreamItem) -> &str {
    match item {
        StreamItem::Task(task) => &task.id,
        StreamItem::Status(update) => &update.task_id,
        StreamItem::Artifact(update) => &update.task_id,
        StreamItem::Message(_) => "",
    }
}

fn is_update(item: &StreamItem) -> bool {
    matches!(item, StreamItem::Status(_) | StreamItem::Artifact(_))
}

/// A status update into a terminal or interrupted state ends the client's stream.
fn ends_stream(item: &StreamItem) -> bool {
    matches!(item, StreamItem::Status(u) if u.status.state.is_terminal() || u.status.state.is_interrupted())
}

impl Pump {
    async fn run(mut self, mut upstream: UpstreamStream) {
        let mut reconnects = 0;
        // What the agent sent after the last batch, read while gathering it.
        let mut carried = None;
        loop {
            let next = match carried.take() {
                Some(next) => next,
                None => upstream.next().await,
            };
            let fault = match next {
                Ok(Some(item)) => {
                    let (updates, after) = self.gather(item, &mut upstream).await;
                    carried = after;
                    let committed = match updates {
                        Gathered::One(item) => self.commit(item).await,
                        Gathered::Updates(updates) => self.commit_updates(updates).await,
                    };
                    match committed {
                        Ok(Next::More) => continue,
                        Ok(Next::Done) => return,
                        Err(e) => return self.fail(e),
                    }
                }
                Ok(None) => "the agent closed its stream before the task ended".to_owned(),
                Err(StreamFault::Dropped(why)) => {
                    self.permit.record(CallOutcome::Failure, Some(&why));
                    why
                }
                Err(StreamFault::Agent(e)) => return self.fail(e),
                Err(StreamFault::Invalid(why)) => {
                    self.permit.record(CallOutcome::Failure, Some(&why));
                    return self.fail(RpcError::InvalidAgentResponse(why));
                }
            };
            let Some(task_id) = self.task_id.clone() else {
                let e = RpcError::AgentUnavailable(format!(
                    "agent {}: stream ended before a task: {fault}",
                    self.target.agent_id
                ));
                return self.fail(e);
            };
            if reconnects >= self.gw.config.streams.upstream_resubscribe_attempts {
                tracing::warn!(agent_id = %self.target.agent_id, %task_id, %fault, "gave up following the agent's stream; polling it");
                self.permit.counters().streams_abandoned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let e = RpcError::AgentUnavailable(format!("agent {} stream lost: {fault}", self.target.agent_id));
                self.fail(e);
                // The task goes on without a stream: poll it, so subscribers see it end.
                return super::follow::start(
                    &self.gw,
                    &self.call,
                    self.target.clone(),
                    task_id,
                    super::follow::Via::Poll,
                );
            }
            reconnects += 1;
            // The stream's permit already holds an in-flight slot, but an open (or probing)
            // breaker still means the agent is not called: the attempt is spent without it.
            if self.permit.counters().breaker_state() != BreakerState::Closed {
                tracing::info!(agent_id = %self.target.agent_id, %task_id, attempt = reconnects, "breaker not closed: not resubscribing");
                continue;
            }
            self.resumed = true;
            tracing::info!(agent_id = %self.target.agent_id, %task_id, %fault, attempt = reconnects, "resubscribing to the agent's stream");
            let params = json!({ "id": task_id });
            let target = self.target.call_target(&self.call);
            match self.gw.reopen_agent_stream(&mut self.permit, &target, UpstreamMethod::SubscribeToTask, params).await
            {
                Ok(stream) => upstream = stream,
                Err(e) => tracing::warn!(agent_id = %self.target.agent_id, %task_id, error = %e, "resubscribe failed"),
            }
        }
    }

    /// Takes `first` and the updates of the same task already here behind it, within the
    /// batch limits. A batch opens with the stream's task (one this node does not hold yet,
    /// or holds active) or an update; a message, a resumed stream's snapshot and anything
    /// that ends the stream at once go alone, and a batch ends with an update that ends the
    /// stream. What was read but does not belong in the batch comes back as the second value,
    /// so the outcome is exactly that of committing the events one by one.
    async fn gather(&self, first: StreamItem, upstream: &mut UpstreamStream) -> (Gathered, Option<Read>) {
        let limits = &self.gw.config.streams;
        let batchable = match &first {
            StreamItem::Task(task) => {
                let state = task.status.state;
                !self.resumed && !state.is_terminal() && !state.is_interrupted() && self.fresh_task(task)
            }
            item => is_update(item) && !ends_stream(item),
        };
        if !batchable || limits.commit_batch_events_max <= 1 {
            return (Gathered::One(first), None);
        }
        let task_id = item_task_id(&first).to_owned();
        let mut bytes = upstream.last_event_bytes();
        let mut updates = vec![first];
        let mut yielded = false;
        while updates.len() < limits.commit_batch_events_max && bytes < limits.commit_batch_bytes_max {
            match upstream.next_ready() {
                // The agent's connection is read by a task of its own, which hands over one
                // chunk at a time: let it run, and go on while that brings events.
                None if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                None => break,
                Some(Ok(Some(item))) if is_update(&item) && item_task_id(&item) == task_id => {
                    yielded = false;
                    bytes += upstream.last_event_bytes();
                    let last = ends_stream(&item);
                    updates.push(item);
                    if last {
                        break;
                    }
                }
                Some(other) => return (Gathered::Updates(updates), Some(other)),
            }
        }
        (Gathered::Updates(updates), None)
    }

    /// Whether `task` opens this stream with nothing in the way: a task this node does not
    /// hold, or holds active for this agent. Anything else (a terminal task, another agent's)
    /// is committed on its own, where the answer to each case is worked out.
    fn fresh_task(&self, task: &Task) -> bool {
        let agent_id = &self.target.agent_id;
        let same_task = self.task_id.as_ref().is_none_or(|id| *id == task.id);
        same_task
            && self.gw.replica.read(|t| {
                t.task(&task.id).is_none_or(|e| e.agent_id == *agent_id && !e.task.status.state.is_terminal())
            })
    }

    /// Commits events that arrived together (a stream's opening task and the updates behind
    /// it, or updates alone) in one log entry, then hands the client each one that was applied,
    /// in order.
    async fn commit_updates(&mut self, updates: Vec<StreamItem>) -> Result<Next, RpcError> {
        let agent_id = self.target.agent_id.clone();
        let at_ms = self.gw.now_ms();
        let mut commands = Vec::with_capacity(updates.len());
        let mut frames = Vec::with_capacity(updates.len());
        let mut state = None;
        for item in updates {
            match item {
                StreamItem::Task(task) if commands.is_empty() => {
                    self.task_id = Some(task.id.clone());
                    let view = TaskView { history_length: self.history_length, include_artifacts: true };
                    frames.push(task_result(task_to_wire(&task, view)));
                    state = Some(task.status.state);
                    let push = std::mem::take(&mut self.push);
                    let by = RecordedBy::Caller(&self.call.principal);
                    commands.push(super::send_message::record_command(agent_id.clone(), task, at_ms, push, by));
                }
                StreamItem::Status(update) => {
                    self.check_task(&update.task_id)?;
                    frames.push(status_update_to_wire(&update));
                    state = Some(update.status.state);
                    commands.push(Command::UpdateStatus { agent_id: agent_id.clone(), update, at_ms });
                }
                StreamItem::Artifact(update) => {
                    self.check_task(&update.task_id)?;
                    frames.push(artifact_update_to_wire(&update));
                    state = None; // chunks never end a stream
                    commands.push(Command::UpdateArtifact { agent_id: agent_id.clone(), update, at_ms });
                }
                StreamItem::Task(_) | StreamItem::Message(_) => {
                    return Err(RpcError::Internal("a task or message in a batch of updates".into()));
                }
            }
        }
        let (events, outcome) = self.gw.replica.propose_sequence(commands).await;
        for (frame, id) in frames.into_iter().zip(events) {
            self.send(frame, id);
        }
        if let Err(e) = outcome {
            return Err(self.refused(e));
        }
        // Only the last event can end the stream (gather stops there).
        Ok(match state {
            Some(s) if s.is_terminal() || s.is_interrupted() => Next::Done,
            _ => Next::More,
        })
    }

    /// Commits one event, then hands it to the client.
    async fn commit(&mut self, item: StreamItem) -> Result<Next, RpcError> {
        let agent_id = self.target.agent_id.clone();
        let (result, state, id) = match item {
            StreamItem::Message(message) if self.task_id.is_none() => {
                self.send(message_result(message), None);
                return Ok(Next::Done);
            }
            StreamItem::Task(task) if self.resumed => return self.commit_resumed(task).await,
            StreamItem::Task(task) => {
                if self.task_id.as_ref().is_some_and(|id| *id != task.id) {
                    return Err(RpcError::InvalidAgentResponse(format!("agent {agent_id} switched tasks mid-stream")));
                }
                self.task_id = Some(task.id.clone());
                let state = task.status.state;
                let view = TaskView { history_length: self.history_length, include_artifacts: true };
                let push = std::mem::take(&mut self.push);
                let (task, id) = record_with_push(&self.gw, &self.call, &agent_id, task, view, push).await?;
                (task_result(task), state, id)
            }
            StreamItem::Status(update) => self.commit_status(update).await?,
            StreamItem::Artifact(update) => self.commit_artifact(update).await?,
            StreamItem::Message(_) => {
                return Err(RpcError::InvalidAgentResponse(format!(
                    "agent {agent_id} sent a message inside a task stream"
                )));
            }
        };
        self.send(result, id);
        Ok(if state.is_terminal() || state.is_interrupted() { Next::Done } else { Next::More })
    }

    /// Records the snapshot a resumed stream starts with, and sends the client what changed.
    async fn commit_resumed(&mut self, task: Task) -> Result<Next, RpcError> {
        let agent_id = self.target.agent_id.clone();
        self.check_task(&task.id)?;
        let before = self.gw.replica.read(|t| t.task(&task.id).map(|e| e.task.clone()));
        let changes = before.map(|b| crate::state::task::diff(&b, &task)).unwrap_or_default();
        let (id, context, state) = (task.id.clone(), task.context_id.clone(), task.status.state);
        let (_, events) = record(&self.gw, &agent_id, task, TaskView::FULL).await?;
        // The changes are the task's last events (its count after them is `events`).
        let first = events.map(|n| n + 1 - changes.len() as u64);
        for (i, change) in changes.iter().enumerate() {
            if let Some(frame) = change_to_wire(&id, &context, change) {
                self.send(frame, first.map(|f| f + i as u64));
            }
        }
        Ok(if state.is_terminal() || state.is_interrupted() { Next::Done } else { Next::More })
    }

    fn check_task(&self, task_id: &str) -> Result<(), RpcError> {
        match &self.task_id {
            Some(id) if id == task_id => Ok(()),
            _ => Err(RpcError::InvalidAgentResponse(format!(
                "agent {}: an update for task {task_id} that this stream did not start with",
                self.target.agent_id
            ))),
        }
    }

    async fn commit_status(&mut self, update: StatusUpdate) -> Result<Committed, RpcError> {
        self.check_task(&update.task_id)?;
        let rendered = status_update_to_wire(&update);
        let state = update.status.state;
        let command = Command::UpdateStatus { agent_id: self.target.agent_id.clone(), update, at_ms: self.gw.now_ms() };
        let id = self.propose(command).await?;
        Ok((rendered, state, id))
    }

    /// Artifact chunks never end a stream (only a status or task does), whatever state the
    /// task was left in before: a follow-up may go straight from input-required to chunks.
    async fn commit_artifact(&mut self, update: ArtifactUpdate) -> Result<Committed, RpcError> {
        self.check_task(&update.task_id)?;
        let rendered = artifact_update_to_wire(&update);
        let command =
            Command::UpdateArtifact { agent_id: self.target.agent_id.clone(), update, at_ms: self.gw.now_ms() };
        let id = self.propose(command).await?;
        Ok((rendered, crate::a2a::TaskState::Working, id))
    }

    /// Proposes an event. If the task was finished elsewhere meanwhile (e.g. canceled through
    /// another node), the stream ends with the stored final status.
    /// Answers the event number of the committed event.
    async fn propose(&mut self, command: Command) -> Result<Option<u64>, RpcError> {
        match self.gw.replica.propose(command).await {
            Ok(events) => Ok(events),
            Err(e) => Err(self.refused(e)),
        }
    }

    /// The stream's answer to a failed proposal: when the task was finished elsewhere the
    /// client gets the stored final status, then the stream ends.
    fn refused(&mut self, error: ProposeError) -> RpcError {
        match error {
            ProposeError::Refused(Refusal::Transition(TransitionError::Terminal(_))) => {
                let id = self.task_id.clone().unwrap_or_default();
                let final_status =
                    self.gw.replica.read(|t| t.task(&id).map(|e| (current_status_to_wire(&e.task), e.events)));
                if let Some((status, events)) = final_status {
                    self.send(status, Some(events));
                }
                self.client = None;
                RpcError::UnsupportedOperation(format!("task {id} reached a terminal state"))
            }
            e => e.into(),
        }
    }

    /// Hands a 1.0 result to the client in its version, with its event number when it is a
    /// committed event. A client that is gone or too slow is dropped (with a last error frame
    /// when there is room); recording goes on.
    fn send(&mut self, result: Value, id: Option<u64>) {
        let Some(tx) = &self.client else { return };
        let frame = StreamFrame::result(crate::a2a::result_for(self.call.version, result), id);
        if tx.capacity() <= 1 {
            let _ = tx.try_send(StreamFrame::Error(RpcError::Overloaded(
                "client too slow for the stream; use GetTask for the current state".into(),
            )));
            self.client = None;
            return;
        }
        if tx.try_send(frame).is_err() {
            self.client = None;
        }
    }

    fn fail(&mut self, error: RpcError) {
        if let Some(tx) = self.client.take() {
            let _ = tx.try_send(StreamFrame::Error(error));
        }
    }
}
