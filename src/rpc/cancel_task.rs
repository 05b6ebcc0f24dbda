//! `CancelTask` / `tasks/cancel` / `tasks.cancel`: ask the task's agent to cancel it and
//! record the answer. A terminal task cannot be canceled (-32002) and is not sent upstream.

use serde::Deserialize;
use serde_json::{Value, json};

use super::send_message::record;
use super::{Call, Reply, RpcError, Scope, expect_task, find_task, resolve_agent, task_out};
use crate::a2a::task::TaskView;
use crate::agents::UpstreamMethod;
use crate::gateway::Gateway;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    #[serde(alias = "taskId")]
    id: String,
    #[serde(default)]
    metadata: Option<Value>,
}

pub async fn run(gw: &Gateway, call: &Call, p: Params) -> Result<Reply, RpcError> {
    let task = find_task(gw, call, &p.id).await?;
    if task.state.is_terminal() {
        return Err(RpcError::TaskNotCancelable(p.id));
    }
    let agent_call = Call { scope: Scope::Agent(task.agent_id.clone()), ..call.clone() };
    let target = resolve_agent(gw, &agent_call, None).await?;
    let mut params = json!({"id": p.id});
    if let Some(metadata) = p.metadata {
        params["metadata"] = metadata;
    }
    let reply = gw.call_agent(&target.call_target(call), UpstreamMethod::CancelTask, params).await?;
    let answered = expect_task(&task.agent_id, &p.id, reply.answer)?;
    let (task, _) = record(gw, &task.agent_id, answered, TaskView::FULL).await?;
    Ok(Reply { result: task_out(call, task), extensions: reply.extensions })
}
