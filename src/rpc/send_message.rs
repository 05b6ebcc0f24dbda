//! `SendMessage` / `message/send` / `message.send`: forward a message to its agent and record
//! the task it answers with.
//!
//! A message with a `taskId` continues that task: it goes to the task's agent, its
//! `contextId` must match (or is filled in), and a terminal task refuses it (-32004). The
//! call is blocking unless the client asked otherwise (`returnImmediately` in 1.0,
//! `blocking:false` in 0.3); the agent does the waiting. A returned Task is committed before
//! the client sees it; a returned Message is passed on as it is.

use serde_json::{Map, Value, json};

use super::{Call, Reply, RpcError, history_length, resolve_agent};
use crate::a2a::push::ConfigRequest;
use crate::a2a::task::{TaskView, message_result, task_result, task_to_wire, validate_message};
use crate::a2a::{ProtocolVersion, v03};
use crate::agents::{Answer, UpstreamMethod};
use crate::gateway::Gateway;
use crate::state::{Command, ProposeError, PushConfig, Refusal, Task, TransitionError};

pub struct Params {
    /// `params.agentId` (on `/rpc`).
    pub(super) agent_id: Option<String>,
    /// The 1.0 `SendMessageRequest` forwarded to the agent (gateway-only members removed).
    pub(super) request: Map<String, Value>,
    pub(super) task_id: Option<String>,
    pub(super) history_length: Option<usize>,
    /// Webhooks the message sets for its task (`configuration.taskPushNotificationConfig`,
    /// 0.3 `pushNotificationConfig`, SuperX's `pushNotificationConfig` and `metadata.webhook`),
    /// kept by the gateway, never forwarded to the agent.
    pub(super) push: Vec<ConfigRequest>,
}

impl Params {
    pub fn parse(params: Value, call: &Call) -> Result<Params, RpcError> {
        let bad = |e: v03::WireError| RpcError::InvalidParams(e.0);
        let params = match call.version {
            ProtocolVersion::V03 => v03::send_params_to_v10(params).map_err(bad)?,
            ProtocolVersion::V10 => params,
        };
        let Value::Object(mut request) = params else {
            return Err(RpcError::InvalidParams("params must be an object with a message".into()));
        };
        let agent_id = take_opt_string(&mut request, "agentId")?;
        // SuperX's `message.send` may carry taskId/contextId beside the message.
        let outer_task = take_opt_string(&mut request, "taskId")?;
        let outer_context = take_opt_string(&mut request, "contextId")?;
        let message =
            request.get_mut("message").ok_or_else(|| RpcError::InvalidParams("message is required".into()))?;
        validate_message(message).map_err(bad)?;
        for (key, value) in [("taskId", outer_task), ("contextId", outer_context)] {
            if let Some(v) = value {
                message.as_object_mut().expect("validated").entry(key).or_insert(json!(v));
            }
        }
        let task_id = message["taskId"].as_str().map(str::to_owned);
        let config = request.get("configuration").cloned().unwrap_or(Value::Null);
        if !config.is_null() && !config.is_object() {
            return Err(RpcError::InvalidParams("configuration must be an object".into()));
        }
        if config.get("returnImmediately").is_some_and(|v| !v.is_boolean()) {
            return Err(RpcError::InvalidParams("configuration.returnImmediately must be a boolean".into()));
        }
        let history = match config.get("historyLength") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| RpcError::InvalidParams("configuration.historyLength must be an integer".into()))?,
            ),
        };
        let push = take_push_configs(&mut request, call.version)?;
        Ok(Params { agent_id, request, task_id, history_length: history_length(history)?, push })
    }
}

/// Removes the message's webhooks from the request (the agent never sees them) and reads
/// them in the 1.0 model. SuperX's webhook without an id gets the id `webhook`.
fn take_push_configs(
    request: &mut Map<String, Value>,
    version: ProtocolVersion,
) -> Result<Vec<ConfigRequest>, RpcError> {
    let bad = |e: v03::WireError| RpcError::InvalidParams(e.0);
    let mut push = Vec::new();
    let in_configuration = request
        .get_mut("configuration")
        .and_then(Value::as_object_mut)
        .and_then(|c| c.remove("taskPushNotificationConfig"))
        .filter(|v| !v.is_null());
    if let Some(config) = in_configuration {
        push.push(
            match version {
                ProtocolVersion::V10 => crate::a2a::push::config_from_v10(config),
                ProtocolVersion::V03 => crate::a2a::push::inner_from_v03(config),
            }
            .map_err(bad)?,
        );
    }
    if let Some(config) = request.remove("pushNotificationConfig").filter(|v| !v.is_null()) {
        push.push(crate::a2a::push::config_from_superx(config).map_err(bad)?);
    }
    let webhook = request.get_mut("metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("webhook"));
    if let Some(config) = webhook.filter(|v| !v.is_null()) {
        let mut config = crate::a2a::push::config_from_superx(config).map_err(bad)?;
        config.id.get_or_insert_with(|| "webhook".to_owned());
        push.push(config);
    }
    Ok(push)
}

fn take_opt_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, RpcError> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RpcError::InvalidParams(format!("{key} must be a string"))),
    }
}

pub async fn run(gw: &std::sync::Arc<Gateway>, call: &Call, mut p: Params) -> Result<Reply, RpcError> {
    let agent_id = match &p.task_id {
        Some(task_id) => Some(continue_task(gw, call, task_id, &mut p.request).await?),
        None => p.agent_id.take(),
    };
    let target = resolve_agent(gw, call, agent_id.as_deref()).await?;
    let push = push_configs(gw, call, &p).await?;
    let reply = gw.call_agent(&target.call_target(call), UpstreamMethod::SendMessage, Value::Object(p.request)).await?;
    let result = match reply.answer {
        Answer::Task(task) => {
            let view = TaskView { history_length: p.history_length, include_artifacts: true };
            let (task_id, state) = (task.id.clone(), task.status.state);
            let recorded = record_with_push(gw, call, &target.agent_id, task, view, push).await?.0;
            if !(state.is_terminal() || state.is_interrupted()) {
                // Still running at the agent, and no stream follows it: this node does.
                super::follow::start(gw, call, target, task_id, super::follow::Via::Stream);
            }
            task_result(recorded)
        }
        Answer::Message(message) => message_result(message),
        Answer::Card(_) | Answer::Config(_) => {
            return Err(RpcError::InvalidAgentResponse(format!(
                "agent {} answered with neither a task nor a message",
                target.agent_id
            )));
        }
    };
    Ok(Reply { result: crate::a2a::result_for(call.version, result), extensions: reply.extensions })
}

/// Checks a follow-up message against its task and returns the task's agent.
pub(super) async fn continue_task(
    gw: &Gateway,
    call: &Call,
    task_id: &str,
    request: &mut Map<String, Value>,
) -> Result<String, RpcError> {
    let task = super::find_task(gw, call, task_id).await?;
    let message = request["message"].as_object_mut().expect("validated message");
    match message.get("contextId").and_then(Value::as_str) {
        Some(ctx) if ctx != task.context_id => {
            return Err(RpcError::InvalidParams(format!(
                "contextId {ctx} does not match the context of task {task_id}"
            )));
        }
        Some(_) => {}
        None if !task.context_id.is_empty() => {
            message.insert("contextId".into(), json!(task.context_id));
        }
        None => {}
    }
    if task.state.is_terminal() {
        return Err(RpcError::UnsupportedOperation(format!(
            "task {task_id} is in a terminal state and accepts no more messages"
        )));
    }
    Ok(task.agent_id)
}

/// The message's webhooks, screened (SSRF) before the agent is called. On a follow-up the
/// task exists: they are committed now and none is left to record with the task; else they
/// go with the task's first record (`Command::RecordTaskWithPush`), ids still to fill.
pub(super) async fn push_configs(gw: &Gateway, call: &Call, p: &Params) -> Result<Vec<PushConfig>, RpcError> {
    for config in &p.push {
        gw.push.guard.screen(&config.url).await.map_err(RpcError::InvalidParams)?;
    }
    let task_id = p.task_id.as_deref().unwrap_or("");
    let stored: Vec<PushConfig> =
        p.push.iter().map(|c| super::push_config::to_stored(c.clone(), task_id, call.wire_version)).collect();
    // Past a limit the agent is not called: its work would be lost with the refused record
    // (apply checks again, for configs committed meanwhile).
    if !stored.is_empty() {
        gw.replica
            .read(|t| t.push().check_room(task_id, &stored))
            .map_err(|r| RpcError::from(ProposeError::Refused(r)))?;
    }
    if p.task_id.is_none() {
        return Ok(stored);
    }
    for config in stored {
        gw.replica.propose(Command::SetPushConfig { config, at_ms: gw.now_ms() }).await?;
    }
    Ok(vec![])
}

/// Who records a task snapshot: the caller it is recorded for (whose owner a new task
/// gets), or the gateway itself refreshing a task it holds (a poll, a cancel's answer, an
/// agent's webhook), which never creates one for anybody.
#[derive(Clone, Copy)]
pub(super) enum RecordedBy<'a> {
    Caller(&'a crate::auth::Principal),
    Gateway,
}

/// The command recording a task snapshot, with the webhooks its message set, if any, and
/// the caller's owner when auth is on.
pub(super) fn record_command(
    agent_id: String,
    task: Task,
    at_ms: u64,
    push: Vec<PushConfig>,
    by: RecordedBy<'_>,
) -> Command {
    let owner = match by {
        RecordedBy::Caller(p) => p.owner().map(|owner| (owner, p.admin)),
        RecordedBy::Gateway => None,
    };
    match (owner, push.is_empty()) {
        (Some((owner, sees_all)), _) => Command::RecordOwnedTask { agent_id, task, at_ms, push, owner, sees_all },
        (None, true) => Command::RecordTask { agent_id, task, at_ms },
        (None, false) => Command::RecordTaskWithPush { agent_id, task, at_ms, push },
    }
}

/// Commits a task snapshot from an agent and renders what is stored for the client.
pub(super) async fn record(
    gw: &Gateway,
    agent_id: &str,
    task: Task,
    view: TaskView,
) -> Result<(Value, Option<u64>), RpcError> {
    record_as(gw, RecordedBy::Gateway, agent_id, task, view, vec![]).await
}

/// [`record`] for a caller, with the webhooks its message set for the task.
pub(super) async fn record_with_push(
    gw: &Gateway,
    call: &Call,
    agent_id: &str,
    task: Task,
    view: TaskView,
    push: Vec<PushConfig>,
) -> Result<(Value, Option<u64>), RpcError> {
    record_as(gw, RecordedBy::Caller(&call.principal), agent_id, task, view, push).await
}

async fn record_as(
    gw: &Gateway,
    by: RecordedBy<'_>,
    agent_id: &str,
    task: Task,
    view: TaskView,
    push: Vec<PushConfig>,
) -> Result<(Value, Option<u64>), RpcError> {
    // Rendered before the task moves into the command: the client sees exactly what is stored.
    let rendered = task_to_wire(&task, view);
    let task_id = task.id.clone();
    let command = record_command(agent_id.to_owned(), task, gw.now_ms(), push, by);
    match gw.replica.propose(command).await {
        Ok(events) => Ok((rendered, events)),
        // The stored task is terminal and stays as it is: answer with it.
        Err(ProposeError::Refused(Refusal::Transition(TransitionError::Terminal(_)))) => gw
            .replica
            .read(|t| t.task(&task_id).map(|e| (task_to_wire(&e.task, view), Some(e.events))))
            .ok_or(RpcError::TaskNotFound(task_id)),
        Err(ProposeError::Refused(Refusal::OwnedByOtherAgent { task, .. })) => Err(RpcError::InvalidAgentResponse(
            format!("agent {agent_id} answered with task {task}, which belongs to another agent"),
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(version: ProtocolVersion) -> Call {
        Call {
            version,
            wire_version: version,
            scope: super::super::Scope::Gateway,
            extensions: None,
            base_url: "http://gw".into(),
            read_mode: crate::state::ReadMode::Local,
            stream_slot: None,
            trace: crate::telemetry::trace::TraceContext::new_root(),
            last_event_id: None,
            authorization: None,
            credentials: Default::default(),
            principal: std::sync::Arc::new(crate::auth::Principal::open()),
        }
    }

    #[test]
    fn webhooks_in_a_message_are_read_in_every_form_and_never_forwarded() {
        let params = json!({"agentId": "a",
            "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]},
            "configuration": {"taskPushNotificationConfig": {"url": "https://h/1", "token": "t1"}},
            "pushNotificationConfig": {"url": "https://h/2", "id": "superx"},
            "metadata": {"webhook": "https://h/3", "keep": true}});
        let p = Params::parse(params, &call(ProtocolVersion::V10)).unwrap();
        let urls: Vec<_> = p.push.iter().map(|c| (c.url.as_str(), c.id.as_deref())).collect();
        assert_eq!(urls, [("https://h/1", None), ("https://h/2", Some("superx")), ("https://h/3", Some("webhook"))]);
        let forwarded = Value::Object(p.request).to_string();
        assert!(!forwarded.contains("https://h/") && !forwarded.contains("t1"), "{forwarded}");
        assert!(forwarded.contains("keep"));
        // 0.3: the inner config with `schemes`.
        let params = json!({"message": {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "x"}]},
            "configuration": {"pushNotificationConfig": {"url": "https://h/4",
                "authentication": {"schemes": ["Bearer"], "credentials": "c"}}}});
        let p = Params::parse(params, &call(ProtocolVersion::V03)).unwrap();
        assert_eq!(
            p.push[0].auth,
            vec![crate::state::PushAuth::Scheme { scheme: "Bearer".into(), credentials: Some("c".into()) }]
        );
        let bad = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]},
            "configuration": {"taskPushNotificationConfig": {"url": "ftp://h"}}});
        assert!(matches!(Params::parse(bad, &call(ProtocolVersion::V10)), Err(RpcError::InvalidParams(_))));
    }
}
