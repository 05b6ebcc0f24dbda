//! Following a task upstream when no client stream does: a task answered active to a
//! non-streaming send (`returnImmediately` / `blocking:false`, or an agent that answers
//! before it is done), or one whose stream the agent dropped for good. The node that saw it
//! follows it until it ends (or is interrupted), so subscribers on every node see each
//! change live from the log:
//! - an agent that takes webhooks (`capabilities.pushNotifications`) is given the gateway's
//!   own (`inbound`) and pushes its updates there; the task is still polled, as a safety net
//!   (what happened before the registration, a lost delivery), but only every
//!   `streams.follow_poll_max_ms`;
//! - an agent that streams is followed with its SubscribeToTask (the stream pump, without a
//!   client);
//! - otherwise (or once that stream is lost) the task is polled with GetTask, the pause
//!   doubling from `streams.follow_poll_initial_ms` to `follow_poll_max_ms` while nothing
//!   changes, for at most `streams.follow_budget_ms`.
//!
//! A node follows a task at most once, and at most `streams.follow_tasks_max` tasks at a time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::send_message::record;
use super::stream_message::follow_stream;
use super::{Call, Target, expect_task};
use crate::a2a::task::TaskView;
use crate::agents::UpstreamMethod;
use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;

/// How to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// The agent's stream when it streams, then polling.
    Stream,
    /// Polling only (the stream was just lost).
    Poll,
}

/// Starts following a task in the background, unless this node follows it already or
/// follows as many tasks as it may.
pub(super) fn start(gw: &Arc<Gateway>, call: &Call, target: Target, task_id: String, via: Via) {
    let Some(place) = gw.followed.start(&task_id) else {
        tracing::debug!(%task_id, "not following: followed already, or at streams.follow_tasks_max");
        return;
    };
    // The follower holds no client's stream slot: it is not the client's stream.
    let (gw, call) = (gw.clone(), Call { stream_slot: None, ..call.clone() });
    let follow = async move {
        let _place = place;
        follow(&gw, &call, target, &task_id, via).await;
    };
    tokio::spawn(tracing::Instrument::in_current_span(follow));
}

/// Whether the task still needs following: known here, and neither finished nor waiting for
/// the client.
fn still_active(gw: &Gateway, task_id: &str) -> bool {
    gw.replica.read(|t| {
        t.task(task_id).is_some_and(|e| !(e.task.status.state.is_terminal() || e.task.status.state.is_interrupted()))
    })
}

async fn follow(gw: &Arc<Gateway>, call: &Call, target: Target, task_id: &str, via: Via) {
    let limits = &gw.config.streams;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.follow_budget_ms);
    let pushed =
        target.upstream.push && still_active(gw, task_id) && super::inbound::register(gw, call, &target, task_id).await;
    if !pushed && via == Via::Stream && target.upstream.streaming && still_active(gw, task_id) {
        let followed = tokio::time::timeout_at(deadline, follow_stream(gw, call, target.clone(), task_id)).await;
        if followed.is_err() {
            tracing::info!(agent_id = %target.agent_id, %task_id, "stopped following: streams.follow_budget_ms spent");
            return;
        }
    }
    let pause_max = Duration::from_millis(limits.follow_poll_max_ms.max(limits.follow_poll_initial_ms));
    // Webhooks bring a pushing agent's updates: its poll is only the safety net.
    let pause_min = if pushed { pause_max } else { Duration::from_millis(limits.follow_poll_initial_ms) };
    let mut pause = pause_min;
    while still_active(gw, task_id) {
        if tokio::time::Instant::now() + pause > deadline {
            tracing::info!(agent_id = %target.agent_id, %task_id, "stopped following: streams.follow_budget_ms spent");
            return;
        }
        tokio::time::sleep(pause).await;
        match poll(gw, call, &target, task_id).await {
            Ok(true) => pause = pause_min,
            Ok(false) => pause = (pause * 2).min(pause_max),
            Err(RpcError::TaskNotFound(_)) => {
                tracing::info!(agent_id = %target.agent_id, %task_id, "stopped following: the agent no longer knows the task");
                return;
            }
            Err(e) => {
                tracing::debug!(agent_id = %target.agent_id, %task_id, error = %e, "follow poll failed");
                pause = (pause * 2).min(pause_max);
            }
        }
    }
}

/// One GetTask of the agent, recorded; answers whether the task changed.
async fn poll(gw: &Gateway, call: &Call, target: &Target, task_id: &str) -> Result<bool, RpcError> {
    let before = gw.replica.read(|t| t.task(task_id).map(|e| e.events));
    let reply = gw.call_agent(&target.call_target(call), UpstreamMethod::GetTask, json!({ "id": task_id })).await?;
    let task = expect_task(&target.agent_id, task_id, reply.answer)?;
    let (_, after) = record(gw, &target.agent_id, task, TaskView::FULL).await?;
    Ok(after.is_some() && after != before)
}
