//! `GetTask` / `tasks/get` / `tasks.get`: a task from the tables.
//!
//! A terminal task is answered from the tables alone. An active one is first refreshed from
//! its agent (and the refresh committed), so a task that moved on without a stream is not
//! shown stale; if the agent cannot answer, the stored task is shown. A task no longer in
//! memory is read from the archive.

use serde::Deserialize;
use serde_json::json;

use super::send_message::record;
use super::{Call, Reply, RpcError, expect_task, find_task, history_length, resolve_agent, task_out};
use crate::a2a::task::{TaskView, task_to_wire};
use crate::agents::UpstreamMethod;
use crate::gateway::Gateway;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    #[serde(alias = "taskId")]
    id: String,
    #[serde(default)]
    history_length: Option<i64>,
}

pub async fn run(gw: &Gateway, call: &Call, p: Params) -> Result<Reply, RpcError> {
    let view = TaskView { history_length: history_length(p.history_length)?, include_artifacts: true };
    let task = find_task(gw, call, &p.id).await?;
    if let Some(archived) = &task.archived {
        return Ok(Reply::plain(task_out(call, task_to_wire(archived, view))));
    }
    if !task.state.is_terminal()
        && let Some(refreshed) = refresh(gw, call, &task.agent_id, &p.id, view).await
    {
        return Ok(Reply::plain(task_out(call, refreshed)));
    }
    let stored = gw
        .replica
        .read(|t| t.task(&p.id).map(|e| task_to_wire(&e.task, view)))
        .ok_or_else(|| RpcError::TaskNotFound(p.id.clone()))?;
    Ok(Reply::plain(task_out(call, stored)))
}

async fn refresh(
    gw: &Gateway,
    call: &Call,
    agent_id: &str,
    task_id: &str,
    view: TaskView,
) -> Option<serde_json::Value> {
    let agent_call = super::Call { scope: super::Scope::Agent(agent_id.to_owned()), ..call.clone() };
    let target = resolve_agent(gw, &agent_call, None).await.ok()?;
    let reply = gw.call_agent(&target.call_target(call), UpstreamMethod::GetTask, json!({"id": task_id})).await;
    match reply {
        Ok(reply) => {
            match async { record(gw, agent_id, expect_task(agent_id, task_id, reply.answer)?, view).await }.await {
                Ok((task, _)) => Some(task),
                Err(e) => {
                    tracing::warn!(task_id, agent_id, error = %e, "task refresh from agent not recorded");
                    None
                }
            }
        }
        Err(e) => {
            tracing::debug!(task_id, agent_id, error = %e, "task refresh from agent failed; serving stored task");
            None
        }
    }
}
