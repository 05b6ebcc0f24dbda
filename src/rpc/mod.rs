//! The RPC layer: one closed [`Method`] enum for every JSON-RPC method the gateway answers,
//! parsed once (one `match` on the name, with the version rules) and run once.
//!
//! A request's life: `http` reads the envelope and builds a [`Call`] (client protocol version,
//! scope, forwarded extensions); [`Method::parse`] checks the name against the version,
//! translates 0.3 params to the 1.0 model and types them; [`Method::run`] hands them to the
//! method's file, which answers in the client's version.

mod agents;
mod cancel_task;
pub mod cluster;
mod extended_card;
mod follow;
mod get_task;
pub mod inbound;
mod keys;
mod list_tasks;
pub mod push_config;
mod send_message;
mod stream_message;
mod subscribe;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::a2a::ProtocolVersion;
use crate::agents::{Answer, CallTarget};
use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;
use crate::state::{ProposeError, ReadMode, Task, Upstream};
use crate::telemetry::trace::TraceContext;

/// Which endpoint a call came in on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `POST /agents/{id}`: the agent is given by the path; only A2A methods.
    Agent(String),
    /// `POST /rpc`: the agent is named by `params.agentId` (or found from the task); A2A
    /// methods and the control plane.
    Gateway,
}

/// What the gateway knows about one call besides its params.
#[derive(Clone, Debug)]
pub struct Call {
    /// The client's protocol version (from `A2A-Version`; absent means 0.3): the model the
    /// method's params and result are in.
    pub version: ProtocolVersion,
    /// The version of the client's own wire format: `version`, except on HTTP+JSON 0.3
    /// paths, which run in the 1.0 model and translate at the edge. What the gateway sends
    /// the client later, outside this call (webhook payloads), is in this version.
    pub wire_version: ProtocolVersion,
    pub scope: Scope,
    /// The client's `A2A-Extensions`, forwarded to the agent.
    pub extensions: Option<HeaderValue>,
    /// The gateway's public base URL as this client sees it.
    pub base_url: String,
    /// How fresh the state this call reads must be (the `SuperX-Read` header).
    pub read_mode: ReadMode,
    /// A streaming call's slot on this node (admission). Whatever serves the stream holds a
    /// clone of the call, so the slot frees when the last of them ends: the client's SSE body,
    /// and the pump that goes on recording the agent's stream after its client left.
    pub stream_slot: Option<Arc<crate::admission::Permit>>,
    /// The request's trace; agent calls are its child spans.
    pub trace: TraceContext,
    /// The client's `Last-Event-ID`: it resumes a stream after that event.
    pub last_event_id: Option<u64>,
    /// The client's `Authorization`, kept only for a method that forwards it
    /// ([`Method::forwards_credentials`]); marked sensitive so it never shows in logs.
    pub authorization: Option<HeaderValue>,
    /// The client's credentials (`Authorization`, `X-API-Key`), sent only to an agent
    /// configured with `forwardCredentials` (`Target::call_target`); marked sensitive.
    pub credentials: crate::agents::ClientCredentials,
    /// Who makes the call (`auth::Principal`, authenticated by `http::authenticate`).
    pub principal: Arc<crate::auth::Principal>,
}

/// What a method answers with: one result, or a stream of them (SSE).
pub enum Outcome {
    Reply(Reply),
    Stream(StreamReply),
}

/// A stream of results for the client, each already in its version.
pub struct StreamReply {
    pub frames: tokio::sync::mpsc::Receiver<StreamFrame>,
    pub extensions: Option<HeaderValue>,
    /// For a stream the client asked to resume: how it starts.
    pub resume: Option<crate::a2a::Resume>,
}

/// One event of a stream to the client: a result, or the error that ends the stream.
#[derive(Debug)]
pub enum StreamFrame {
    /// A result that is not a committed task event (a message).
    Result(Value),
    /// A committed task event, with its number (the task's event count after it): the SSE
    /// `id:` a client resumes from with `Last-Event-ID`.
    Event(u64, Value),
    Error(RpcError),
}

impl StreamFrame {
    /// A result, numbered when its event number is known.
    pub fn result(result: Value, event: Option<u64>) -> StreamFrame {
        match event {
            Some(n) => StreamFrame::Event(n, result),
            None => StreamFrame::Result(result),
        }
    }
}

/// A method's answer: its JSON-RPC `result`, in the client's version.
pub struct Reply {
    pub result: Value,
    /// The agent's `A2A-Extensions`, passed back.
    pub extensions: Option<HeaderValue>,
}

impl Reply {
    pub fn plain(result: Value) -> Self {
        Reply { result, extensions: None }
    }
}

/// The operation behind a method name, and which naming family the name belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    SendMessage,
    SendStreamingMessage,
    GetTask,
    ListTasks,
    CancelTask,
    SubscribeToTask,
    PushCreate,
    PushGet,
    PushList,
    PushDelete,
    GetExtendedAgentCard,
    AgentsList,
    AgentsGet,
    AgentsUpsert,
    AgentsDelete,
    AgentsHealth,
    AgentsRefreshCard,
    ClusterStatus,
    ClusterLeave,
    KeysCreate,
    KeysList,
    KeysRevoke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// PascalCase: A2A 1.0 only.
    V10,
    /// slash names: A2A 0.3 only.
    V03,
    /// SuperX's dotted aliases: shapes follow the client's version.
    Dotted,
    /// The gateway's control plane (`/rpc` only).
    Control,
}

fn lookup(name: &str) -> Option<(Op, Family)> {
    use Family::*;
    use Op::*;
    Some(match name {
        "SendMessage" => (SendMessage, V10),
        "message/send" => (SendMessage, V03),
        "message.send" => (SendMessage, Dotted),
        "SendStreamingMessage" => (SendStreamingMessage, V10),
        "message/stream" => (SendStreamingMessage, V03),
        "message.stream" => (SendStreamingMessage, Dotted),
        "GetTask" => (GetTask, V10),
        "tasks/get" => (GetTask, V03),
        "tasks.get" => (GetTask, Dotted),
        "ListTasks" => (ListTasks, V10),
        "tasks/list" => (ListTasks, V03),
        "tasks.list" => (ListTasks, Dotted),
        "CancelTask" => (CancelTask, V10),
        "tasks/cancel" => (CancelTask, V03),
        "tasks.cancel" => (CancelTask, Dotted),
        "SubscribeToTask" => (SubscribeToTask, V10),
        "tasks/resubscribe" => (SubscribeToTask, V03),
        "tasks/subscribe" | "tasks.subscribe" => (SubscribeToTask, Dotted),
        // The 1.0 names, with the legacy aliases of the spec's Appendix A.
        "CreateTaskPushNotificationConfig" | "SetTaskPushNotificationConfig" => (PushCreate, V10),
        "GetTaskPushNotificationConfig" => (PushGet, V10),
        "ListTaskPushNotificationConfigs" | "ListTaskPushNotificationConfig" => (PushList, V10),
        "DeleteTaskPushNotificationConfig" => (PushDelete, V10),
        "tasks/pushNotificationConfig/set" => (PushCreate, V03),
        "tasks/pushNotificationConfig/get" => (PushGet, V03),
        "tasks/pushNotificationConfig/list" => (PushList, V03),
        "tasks/pushNotificationConfig/delete" => (PushDelete, V03),
        "tasks.pushNotificationConfig.set" => (PushCreate, Dotted),
        "tasks.pushNotificationConfig.get" => (PushGet, Dotted),
        "tasks.pushNotificationConfig.list" => (PushList, Dotted),
        "tasks.pushNotificationConfig.delete" => (PushDelete, Dotted),
        "GetExtendedAgentCard" => (GetExtendedAgentCard, V10),
        "agent/getAuthenticatedExtendedCard" => (GetExtendedAgentCard, V03),
        "agents/list" | "agents.list" => (AgentsList, Control),
        "agents/get" | "agents.get" => (AgentsGet, Control),
        "agents/upsert" | "agents.upsert" => (AgentsUpsert, Control),
        "agents/delete" | "agents.delete" => (AgentsDelete, Control),
        "agents/health" | "agents.health" => (AgentsHealth, Control),
        "agents/refreshCard" | "agents.refreshCard" => (AgentsRefreshCard, Control),
        "cluster/status" | "cluster.status" => (ClusterStatus, Control),
        "cluster/leave" | "cluster.leave" => (ClusterLeave, Control),
        "keys/create" | "keys.create" => (KeysCreate, Control),
        "keys/list" | "keys.list" => (KeysList, Control),
        "keys/revoke" | "keys.revoke" => (KeysRevoke, Control),
        _ => return None,
    })
}

impl From<ProposeError> for RpcError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Unavailable(m) => RpcError::Unavailable(m),
            ProposeError::Overloaded(m) => RpcError::Overloaded(m),
            // What an agent sent that the gateway cannot store: the agent's fault, not a bug.
            ProposeError::Refused(crate::state::Refusal::Transition(e)) => {
                RpcError::InvalidAgentResponse(e.to_string())
            }
            ProposeError::Refused(crate::state::Refusal::AgentNotFound(id)) => RpcError::AgentNotFound(id),
            ProposeError::Refused(crate::state::Refusal::TaskNotFound(id)) => RpcError::TaskNotFound(id),
            // The agent's answer, not the caller's doing; neither the task nor its owner shown.
            ProposeError::Refused(crate::state::Refusal::OtherOwner(_)) => {
                RpcError::InvalidAgentResponse("the agent answered with a task this caller did not create".into())
            }
            ProposeError::Refused(r @ crate::state::Refusal::PushConfigsPerTaskFull(_)) => {
                RpcError::InvalidParams(r.to_string())
            }
            ProposeError::Refused(r @ crate::state::Refusal::PushConfigsFull(_)) => RpcError::Overloaded(r.to_string()),
            ProposeError::Refused(r @ crate::state::Refusal::KeysFull(_)) => RpcError::InvalidParams(r.to_string()),
            ProposeError::Refused(crate::state::Refusal::TableFull(n)) => RpcError::Overloaded(format!(
                "no room for a new task: all {n} tasks in memory are active or waiting for the archive; retry later"
            )),
            other => RpcError::Internal(other.to_string()),
        }
    }
}

impl Op {
    /// The name metrics count the operation under, whichever spelling the client used: the
    /// A2A 1.0 name, or the control plane's slash name.
    fn label(self) -> &'static str {
        match self {
            Op::SendMessage => "SendMessage",
            Op::SendStreamingMessage => "SendStreamingMessage",
            Op::GetTask => "GetTask",
            Op::ListTasks => "ListTasks",
            Op::CancelTask => "CancelTask",
            Op::SubscribeToTask => "SubscribeToTask",
            Op::PushCreate => "CreateTaskPushNotificationConfig",
            Op::PushGet => "GetTaskPushNotificationConfig",
            Op::PushList => "ListTaskPushNotificationConfigs",
            Op::PushDelete => "DeleteTaskPushNotificationConfig",
            Op::GetExtendedAgentCard => "GetExtendedAgentCard",
            Op::AgentsList => "agents/list",
            Op::AgentsGet => "agents/get",
            Op::AgentsUpsert => "agents/upsert",
            Op::AgentsDelete => "agents/delete",
            Op::AgentsHealth => "agents/health",
            Op::AgentsRefreshCard => "agents/refreshCard",
            Op::ClusterStatus => "cluster/status",
            Op::ClusterLeave => "cluster/leave",
            Op::KeysCreate => "keys/create",
            Op::KeysList => "keys/list",
            Op::KeysRevoke => "keys/revoke",
        }
    }
}

/// A method name as a metrics label: its operation's canonical name, `unknown` for a name
/// the gateway does not know (so clients cannot create series).
pub fn method_label(name: &str) -> &'static str {
    lookup(name).map_or("unknown", |(op, _)| op.label())
}

/// The protocol generation a method name belongs to, if it belongs to one (SuperX's dotted
/// names and the control plane do not).
pub fn naming_version(name: &str) -> Option<ProtocolVersion> {
    match lookup(name)?.1 {
        Family::V10 => Some(ProtocolVersion::V10),
        Family::V03 => Some(ProtocolVersion::V03),
        Family::Dotted | Family::Control => None,
    }
}

/// Every method, with its params typed and in the 1.0 model.
pub enum Method {
    SendMessage(send_message::Params),
    SendStreamingMessage(send_message::Params),
    SubscribeToTask(subscribe::Params),
    GetTask(get_task::Params),
    ListTasks(list_tasks::Params),
    CancelTask(cancel_task::Params),
    GetExtendedAgentCard(extended_card::Params),
    CreatePushConfig(push_config::CreateParams),
    GetPushConfig(push_config::ConfigParams),
    ListPushConfigs(push_config::ListParams),
    DeletePushConfig(push_config::ConfigParams),
    AgentsList,
    AgentsGet(agents::IdParams),
    AgentsUpsert(Box<agents::UpsertParams>),
    AgentsDelete(agents::IdParams),
    AgentsHealth(agents::HealthParams),
    AgentsRefreshCard(agents::IdParams),
    ClusterStatus,
    ClusterLeave,
    KeysCreate(keys::CreateParams),
    KeysList,
    KeysRevoke(keys::RevokeParams),
}

impl Method {
    /// Parses a method name and its params for a call. Unknown names are -32601; a name of
    /// the other protocol version is -32009; bad params are -32602.
    pub fn parse(name: &str, params: Value, call: &Call) -> Result<Method, RpcError> {
        let (op, family) = lookup(name).ok_or_else(|| RpcError::MethodNotFound(name.to_owned()))?;
        match (family, call.version, &call.scope) {
            (Family::V10, ProtocolVersion::V03, _) => {
                return Err(RpcError::VersionNotSupported(format!(
                    "method {name} is A2A 1.0: send it with the header A2A-Version: 1.0"
                )));
            }
            (Family::V03, ProtocolVersion::V10, _) => {
                return Err(RpcError::VersionNotSupported(format!(
                    "method {name} is A2A 0.3: with A2A-Version: 1.0 use its 1.0 name"
                )));
            }
            (Family::Control, _, Scope::Agent(_)) => {
                return Err(RpcError::MethodNotFound(name.to_owned()));
            }
            _ => {}
        }
        Ok(match op {
            Op::SendMessage => Method::SendMessage(send_message::Params::parse(params, call)?),
            Op::GetTask => Method::GetTask(typed(params)?),
            Op::ListTasks => Method::ListTasks(list_tasks::Params::parse(params, call)?),
            Op::CancelTask => Method::CancelTask(typed(params)?),
            Op::SendStreamingMessage => Method::SendStreamingMessage(send_message::Params::parse(params, call)?),
            Op::SubscribeToTask => {
                let mut p: subscribe::Params = typed(params)?;
                p.snapshot_if_terminal = matches!(name, "tasks/subscribe" | "tasks.subscribe");
                Method::SubscribeToTask(p)
            }
            Op::PushCreate => {
                Method::CreatePushConfig(push_config::CreateParams::parse(params, push_family(family, call))?)
            }
            Op::PushGet => Method::GetPushConfig(push_config::ConfigParams::parse(params, push_family(family, call))?),
            Op::PushList => Method::ListPushConfigs(push_config::ListParams::parse(params, push_family(family, call))?),
            Op::PushDelete => {
                Method::DeletePushConfig(push_config::ConfigParams::parse(params, push_family(family, call))?)
            }
            Op::GetExtendedAgentCard => Method::GetExtendedAgentCard(typed(params)?),
            Op::AgentsList => Method::AgentsList,
            Op::AgentsGet => Method::AgentsGet(typed(params)?),
            Op::AgentsUpsert => Method::AgentsUpsert(Box::new(agents::UpsertParams::parse(params)?)),
            Op::AgentsDelete => Method::AgentsDelete(typed(params)?),
            Op::AgentsHealth => Method::AgentsHealth(typed_or_default(params)?),
            Op::AgentsRefreshCard => Method::AgentsRefreshCard(typed(params)?),
            Op::ClusterStatus => Method::ClusterStatus,
            Op::ClusterLeave => Method::ClusterLeave,
            Op::KeysCreate => Method::KeysCreate(keys::CreateParams::parse(params)?),
            Op::KeysList => Method::KeysList,
            Op::KeysRevoke => Method::KeysRevoke(typed(params)?),
        })
    }

    /// Whether the method answers with a stream (it then needs a stream slot on this node).
    pub fn streams(&self) -> bool {
        matches!(self, Method::SendStreamingMessage(_) | Method::SubscribeToTask(_))
    }

    /// Whether the method is the gateway's control plane (agents, keys, cluster), which only
    /// an admin may call when auth is on.
    pub fn is_control_plane(&self) -> bool {
        matches!(
            self,
            Method::AgentsList
                | Method::AgentsGet(_)
                | Method::AgentsUpsert(_)
                | Method::AgentsDelete(_)
                | Method::AgentsHealth(_)
                | Method::AgentsRefreshCard(_)
                | Method::ClusterStatus
                | Method::ClusterLeave
                | Method::KeysCreate(_)
                | Method::KeysList
                | Method::KeysRevoke(_)
        )
    }

    /// The agent a call names before anything is looked up: the path's, else `agentId` in
    /// the params on `/rpc`. A call on `/rpc` that finds its agent through a task names none.
    pub fn named_agent<'a>(&'a self, call: &'a Call) -> Option<&'a str> {
        if let Scope::Agent(id) = &call.scope {
            return Some(id);
        }
        match self {
            Method::SendMessage(p) | Method::SendStreamingMessage(p) => p.agent_id.as_deref(),
            Method::GetExtendedAgentCard(p) => p.agent_id.as_deref(),
            _ => None,
        }
    }

    /// Whether the method sends the client's `Authorization` to the agent (in place of the
    /// agent's bearer): only the extended card, which is about the caller.
    pub fn forwards_credentials(&self) -> bool {
        matches!(self, Method::GetExtendedAgentCard(_))
    }

    /// Whether the method reads state that must reflect every acknowledged write.
    fn reads_state(&self) -> bool {
        match self {
            Method::SendMessage(p) | Method::SendStreamingMessage(p) => p.task_id.is_some(),
            Method::SubscribeToTask(_)
            | Method::GetTask(_)
            | Method::ListTasks(_)
            | Method::CancelTask(_)
            | Method::CreatePushConfig(_)
            | Method::GetPushConfig(_)
            | Method::ListPushConfigs(_)
            | Method::DeletePushConfig(_)
            | Method::AgentsList
            | Method::AgentsGet(_)
            | Method::KeysList
            | Method::KeysRevoke(_) => true,
            _ => false,
        }
    }

    /// Runs the method: reads first wait for a linearizable barrier unless the client asked
    /// for a local read.
    pub async fn run(self, gw: &Arc<Gateway>, call: &Call) -> Result<Outcome, RpcError> {
        if self.reads_state() {
            gw.replica.barrier(call.read_mode).await?;
        }
        let reply = match self {
            Method::SendStreamingMessage(p) => return stream_message::run(gw, call, p).await,
            Method::SubscribeToTask(p) => return subscribe::run(gw, call, p).await,
            Method::SendMessage(p) => send_message::run(gw, call, p).await,
            Method::GetTask(p) => get_task::run(gw, call, p).await,
            Method::ListTasks(p) => list_tasks::run(gw, call, p).await,
            Method::CancelTask(p) => cancel_task::run(gw, call, p).await,
            Method::GetExtendedAgentCard(p) => extended_card::run(gw, call, p).await,
            Method::CreatePushConfig(p) => push_config::create(gw, call, p).await,
            Method::GetPushConfig(p) => push_config::get(gw, call, p).await,
            Method::ListPushConfigs(p) => push_config::list(gw, call, p).await,
            Method::DeletePushConfig(p) => push_config::delete(gw, call, p).await,
            Method::AgentsList => Ok(Reply::plain(agents::list(gw, call))),
            Method::AgentsGet(p) => agents::get(gw, call, p).map(Reply::plain),
            Method::AgentsUpsert(p) => agents::upsert(gw, call, *p).await.map(Reply::plain),
            Method::AgentsDelete(p) => agents::delete(gw, p).await.map(Reply::plain),
            Method::AgentsHealth(p) => agents::health(gw, p).map(Reply::plain),
            Method::AgentsRefreshCard(p) => agents::refresh_card(gw, call, p).await.map(Reply::plain),
            Method::ClusterStatus => Ok(Reply::plain(cluster::status(gw))),
            Method::ClusterLeave => crate::membership::leave::leave(gw).await.map(Reply::plain),
            Method::KeysCreate(p) => keys::create(gw, call, p).await.map(Reply::plain),
            Method::KeysList => Ok(Reply::plain(keys::list(gw))),
            Method::KeysRevoke(p) => keys::revoke(gw, call, p).await.map(Reply::plain),
        };
        reply.map(Outcome::Reply)
    }
}

/// The answer shape of a push config method: its family's.
fn push_family(family: Family, call: &Call) -> push_config::Family {
    use crate::a2a::push::Shape;
    let shape = match family {
        Family::V10 => Shape::V10,
        Family::V03 => Shape::V03,
        Family::Dotted | Family::Control => Shape::SuperX,
    };
    push_config::Family { shape, version: call.version }
}

/// Deserializes params into a typed struct; missing or mistyped members are -32602.
fn typed<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { Value::Object(Default::default()) } else { params };
    serde_json::from_value(params).map_err(|e| RpcError::InvalidParams(format!("invalid params: {e}")))
}

fn typed_or_default<T: DeserializeOwned + Default>(params: Value) -> Result<T, RpcError> {
    if params.is_null() { Ok(T::default()) } else { typed(params) }
}

/// A `historyLength` as given (`None` = all).
fn history_length(value: Option<i64>) -> Result<Option<usize>, RpcError> {
    match value {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as usize)),
        Some(_) => Err(RpcError::InvalidParams("historyLength must not be negative".into())),
    }
}

/// Renders a 1.0 Task for the client.
fn task_out(call: &Call, task: Value) -> Value {
    crate::a2a::task_for(call.version, task)
}

/// An agent call target, owned, resolved from the tables.
#[derive(Clone)]
struct Target {
    agent_id: String,
    upstream: Upstream,
    bearer: Option<String>,
    auth: crate::state::AgentAuth,
    timeout: Duration,
    limits: crate::agents::Limits,
}

impl Target {
    fn call_target<'a>(&'a self, call: &'a Call) -> CallTarget<'a> {
        CallTarget {
            agent_id: &self.agent_id,
            upstream: &self.upstream,
            bearer: self.bearer.as_deref(),
            timeout: self.timeout,
            extensions: call.extensions.as_ref(),
            authorization: None,
            // The client's own credentials go to this agent only if it is configured to get them.
            forwarded: self.auth.forward_credentials.then_some(&call.credentials),
            oauth2: self.auth.oauth2.as_ref(),
            trace: Some(&call.trace),
            limits: self.limits,
        }
    }
}

/// Finds the agent a call goes to: the path's agent, or `params.agentId` on `/rpc`.
///
/// Routing must see acknowledged writes: an agent registered through another node a moment
/// ago may not be applied here yet. A miss therefore waits for a linearizable barrier and
/// looks again before answering "agent not found"; so does a hit on an agent whose card is not
/// applied here yet (the card decides the upstream binding). A hit with a card costs nothing.
async fn resolve_agent(gw: &Gateway, call: &Call, agent_id: Option<&str>) -> Result<Target, RpcError> {
    let fresh_enough = |found: &Result<(Target, bool), RpcError>| match found {
        Err(RpcError::AgentNotFound(_)) | Ok((_, false)) => call.read_mode == ReadMode::Local,
        _ => true,
    };
    let mut found = lookup_agent(gw, call, agent_id);
    if !fresh_enough(&found) {
        gw.replica.barrier(ReadMode::Linearizable).await?;
        found = lookup_agent(gw, call, agent_id);
    }
    found.map(|(target, _)| target)
}

/// The agent's target, and whether its card is applied here.
fn lookup_agent(gw: &Gateway, call: &Call, agent_id: Option<&str>) -> Result<(Target, bool), RpcError> {
    let id = match (&call.scope, agent_id) {
        (Scope::Agent(id), _) => id.as_str(),
        (Scope::Gateway, Some(id)) => id,
        (Scope::Gateway, None) => {
            return Err(RpcError::InvalidParams("agentId is required".into()));
        }
    };
    gw.replica.read(|t| {
        let entry = t.agent(id).ok_or_else(|| RpcError::AgentNotFound(id.to_owned()))?;
        let timeout_ms = entry.record.settings.call_timeout_ms.unwrap_or(gw.config.agents.call_timeout_ms);
        let target = Target {
            agent_id: id.to_owned(),
            upstream: entry.upstream.clone(),
            bearer: entry.record.bearer.clone(),
            auth: entry.auth.clone(),
            timeout: Duration::from_millis(timeout_ms),
            limits: crate::agents::Limits::of(&gw.config.agents, &entry.record.settings),
        };
        Ok((target, entry.card.is_some()))
    })
}

/// The task an agent answered GetTask or CancelTask with, which must be the one asked for.
fn expect_task(agent_id: &str, task_id: &str, answer: Answer) -> Result<Task, RpcError> {
    match answer {
        Answer::Task(task) if task.id == task_id => Ok(task),
        Answer::Task(task) => Err(RpcError::InvalidAgentResponse(format!(
            "agent {agent_id} answered with task {} instead of {task_id}",
            task.id
        ))),
        Answer::Message(_) | Answer::Card(_) | Answer::Config(_) => Err(RpcError::InvalidAgentResponse(format!(
            "agent {agent_id} answered with something else than task {task_id}"
        ))),
    }
}

/// What a call needs to know of a stored task before acting on it.
struct TaskRef {
    agent_id: String,
    /// Who created it (`state::TaskEntry::owner`).
    owner: Option<String>,
    context_id: String,
    state: crate::a2a::TaskState,
    /// The whole task, when it was read from the archive (it is no longer in memory).
    archived: Option<crate::state::Task>,
}

/// A read of the archive failed: retryable, and never answered as "task not found".
fn archive_unavailable(e: crate::archive::ArchiveError) -> RpcError {
    tracing::warn!(error = %e, "archive read failed");
    RpcError::Unavailable(format!("the task archive is unavailable ({e}); retry"))
}

/// Looks a task up, as the caller may see it: a task of another agent than the path's, or
/// one another caller created (`auth::Principal::task_scope`), is "not found", the very
/// answer of a task that does not exist (A2A's security note: its existence is not revealed).
/// Every method about one task starts here: GetTask, CancelTask, SubscribeToTask (and so a
/// resumed stream), a follow-up message, the push config methods.
async fn find_task(gw: &Gateway, call: &Call, task_id: &str) -> Result<TaskRef, RpcError> {
    let in_memory = gw.replica.read(|t| {
        t.task(task_id).map(|e| TaskRef {
            agent_id: e.agent_id.clone(),
            owner: e.owner.clone(),
            context_id: e.task.context_id.clone(),
            state: e.task.status.state,
            archived: None,
        })
    });
    let found = match (in_memory, &gw.archive) {
        (Some(task), _) => Some(task),
        (None, None) => None,
        (None, Some(archive)) => archive.get(task_id).await.map_err(archive_unavailable)?.map(|a| TaskRef {
            agent_id: a.agent_id,
            owner: a.owner,
            context_id: a.task.context_id.clone(),
            state: a.task.status.state,
            archived: Some(a.task),
        }),
    };
    match (found, &call.scope) {
        (Some(task), Scope::Agent(agent)) if task.agent_id != *agent => Err(RpcError::TaskNotFound(task_id.to_owned())),
        (Some(task), _) if !call.principal.task_scope().sees(task.owner.as_deref()) => {
            Err(RpcError::TaskNotFound(task_id.to_owned()))
        }
        (Some(task), _) => Ok(task),
        (None, _) => Err(RpcError::TaskNotFound(task_id.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(version: ProtocolVersion, scope: Scope) -> Call {
        Call {
            version,
            wire_version: version,
            scope,
            extensions: None,
            base_url: "http://gw".into(),
            read_mode: ReadMode::Local,
            stream_slot: None,
            trace: TraceContext::new_root(),
            last_event_id: None,
            authorization: None,
            credentials: Default::default(),
            principal: Arc::new(crate::auth::Principal::open()),
        }
    }

    fn code(name: &str, params: Value, c: &Call) -> i64 {
        match Method::parse(name, params, c) {
            Ok(_) => 0,
            Err(e) => e.code(),
        }
    }

    #[test]
    fn names_versions_and_scopes() {
        let v10 = call(ProtocolVersion::V10, Scope::Agent("a".into()));
        let v03 = call(ProtocolVersion::V03, Scope::Agent("a".into()));
        let rpc = call(ProtocolVersion::V03, Scope::Gateway);
        let get = json!({"id": "t"});
        assert_eq!(code("GetTask", get.clone(), &v10), 0);
        assert_eq!(code("GetTask", get.clone(), &v03), -32009);
        assert_eq!(code("tasks/get", get.clone(), &v10), -32009);
        assert_eq!(code("tasks/get", get.clone(), &v03), 0);
        assert_eq!(code("tasks.get", json!({"taskId": "t"}), &v10), 0);
        assert_eq!(code("NoSuchMethod", get.clone(), &v10), -32601);
        assert_eq!(code("agents/list", Value::Null, &v03), -32601, "control plane only on /rpc");
        assert_eq!(code("agents/list", Value::Null, &rpc), 0);
        assert_eq!(code("agents.list", Value::Null, &rpc), 0);
        assert_eq!(code("GetTask", json!({"id": 5}), &v10), -32602);
        assert_eq!(code("GetTask", json!({}), &v10), -32602);
        assert_eq!(code("GetTask", json!({"id": "t", "historyLength": "x"}), &v10), -32602);
    }

    #[test]
    fn every_spelling_counts_under_one_label() {
        for name in ["SendMessage", "message/send", "message.send"] {
            assert_eq!(method_label(name), "SendMessage");
        }
        assert_eq!(method_label("agents.list"), "agents/list");
        assert_eq!(method_label("tasks/pushNotificationConfig/get"), "GetTaskPushNotificationConfig");
        assert_eq!(method_label("tasks.pushNotificationConfig.set"), "CreateTaskPushNotificationConfig");
        assert_eq!(method_label("no/such/method"), "unknown");
    }

    #[test]
    fn push_config_methods_parse_in_every_family() {
        let v10 = call(ProtocolVersion::V10, Scope::Agent("a".into()));
        let v03 = call(ProtocolVersion::V03, Scope::Agent("a".into()));
        let rpc = call(ProtocolVersion::V03, Scope::Gateway);
        let create = json!({"taskId": "t", "url": "https://h/x", "token": "tok"});
        assert_eq!(code("CreateTaskPushNotificationConfig", create.clone(), &v10), 0);
        assert_eq!(code("CreateTaskPushNotificationConfig", json!({"taskId": "t"}), &v10), -32602);
        assert_eq!(code("CreateTaskPushNotificationConfig", json!({"url": "https://h/x"}), &v10), -32602);
        assert_eq!(code("GetTaskPushNotificationConfig", json!({"taskId": "t", "id": "c"}), &v10), 0);
        assert_eq!(code("GetTaskPushNotificationConfig", json!({"taskId": "t"}), &v10), -32602);
        assert_eq!(code("ListTaskPushNotificationConfigs", json!({"taskId": "t", "pageSize": -1}), &v10), -32602);
        let set03 = json!({"taskId": "t", "pushNotificationConfig": {"url": "https://h/x"}});
        assert_eq!(code("tasks/pushNotificationConfig/set", set03, &v03), 0);
        assert_eq!(code("tasks/pushNotificationConfig/get", json!({"id": "t"}), &v03), 0);
        assert_eq!(code("tasks/pushNotificationConfig/list", json!({"id": "t"}), &v03), 0);
        assert_eq!(code("tasks/pushNotificationConfig/delete", json!({"id": "t"}), &v03), 0);
        let superx = json!({"taskId": "t", "config": {"url": "https://h/x", "token": "tok"}});
        assert_eq!(code("tasks.pushNotificationConfig.set", superx, &rpc), 0);
        let signed = json!({"taskId": "t", "config": {"url": "https://h/x", "hmacSecret": "h", "jwtSecret": "k"}});
        assert_eq!(code("tasks.pushNotificationConfig.set", signed, &rpc), 0);
        let unsigned_claims = json!({"taskId": "t", "config": {"url": "https://h/x", "jwtIssuer": "me"}});
        assert_eq!(code("tasks.pushNotificationConfig.set", unsigned_claims, &rpc), -32602);
        assert_eq!(code("tasks.pushNotificationConfig.get", json!({"taskId": "t", "configId": "c"}), &rpc), 0);
    }
}
