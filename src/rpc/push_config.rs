//! The push notification config methods: Create/Get/List/Delete TaskPushNotificationConfig
//! (1.0), `tasks/pushNotificationConfig/set|get|list|delete` (0.3) and SuperX's dotted
//! `tasks.pushNotificationConfig.*`.
//!
//! The gateway relays push for every agent (it delivers committed task updates itself), so
//! every card says `pushNotifications: true` and these methods never answer -32003. A config
//! is committed through raft like every state change; a task that does not exist (or belongs
//! to another agent than the path's) is -32001, and so is a config id the task does not have
//! (as the SDK answers). A config goes back to its creator with its token and credentials, in
//! the family's shape; SuperX's shape adds the config's delivery status.

use serde_json::{Map, Value};

use super::{Call, Reply, RpcError, TaskRef, find_task};
use crate::a2a::ProtocolVersion;
use crate::a2a::push::{self as wire, ConfigRequest, Shape};
use crate::gateway::Gateway;
use crate::state::{Command, PushConfig, PushFormat};

/// Configs one list page holds at most (a task has at most `PUSH_CONFIGS_PER_TASK_MAX`).
const PAGE_SIZE_MAX: usize = 100;

/// Which method family a call used, with the client's version.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub shape: Shape,
    pub version: ProtocolVersion,
}

pub struct CreateParams {
    task_id: String,
    config: ConfigRequest,
    family: Family,
}

/// Get and Delete: one config of a task.
pub struct ConfigParams {
    task_id: String,
    config_id: String,
    family: Family,
}

pub struct ListParams {
    task_id: String,
    page_size: usize,
    page_token: Option<String>,
    family: Family,
}

fn bad(e: crate::a2a::v03::WireError) -> RpcError {
    RpcError::InvalidParams(e.0)
}

fn object(params: Value) -> Result<Map<String, Value>, RpcError> {
    match params {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(RpcError::InvalidParams("params must be an object".into())),
    }
}

/// A string member, required unless `optional`.
fn member(p: &Map<String, Value>, key: &str) -> Result<Option<String>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RpcError::InvalidParams(format!("{key} must be a string"))),
    }
}

fn required(p: &Map<String, Value>, key: &str) -> Result<String, RpcError> {
    member(p, key)?.ok_or_else(|| RpcError::InvalidParams(format!("{key} is required")))
}

/// The config's payload format: the version the client spoke.
fn format(version: ProtocolVersion) -> PushFormat {
    match version {
        ProtocolVersion::V10 => PushFormat::V10,
        ProtocolVersion::V03 => PushFormat::V03,
    }
}

/// A client's config as stored: an absent id is the task's id (as the SDK does), so a 0.3
/// get without a config id finds a config set without one.
pub fn to_stored(request: ConfigRequest, task_id: &str, version: ProtocolVersion) -> PushConfig {
    PushConfig {
        id: request.id.unwrap_or_else(|| task_id.to_owned()),
        task_id: task_id.to_owned(),
        url: request.url,
        token: request.token,
        auth: request.auth,
        format: format(version),
    }
}

impl CreateParams {
    /// For a binding that reads the task id and the config apart (HTTP+JSON: the task id
    /// from the path, the config from the body).
    pub fn new(task_id: String, config: ConfigRequest, family: Family) -> CreateParams {
        CreateParams { task_id, config, family }
    }

    pub fn parse(params: Value, family: Family) -> Result<CreateParams, RpcError> {
        let mut p = object(params)?;
        let config = match family.shape {
            Shape::V10 => wire::config_from_v10(Value::Object(p)),
            Shape::V03 => wire::config_from_v03(Value::Object(p)),
            Shape::SuperX => match p.remove("config") {
                Some(config) => {
                    let task_id = member(&p, "taskId")?;
                    wire::config_from_superx(config)
                        .map(|c| ConfigRequest { task_id: task_id.or(c.task_id.clone()), ..c })
                }
                None if family.version == ProtocolVersion::V03 && p.contains_key("pushNotificationConfig") => {
                    wire::config_from_v03(Value::Object(p))
                }
                None => wire::config_from_v10(Value::Object(p)),
            },
        }
        .map_err(bad)?;
        let task_id = config.task_id.clone().ok_or_else(|| RpcError::InvalidParams("taskId is required".into()))?;
        Ok(CreateParams { task_id, config, family })
    }
}

impl ConfigParams {
    pub fn new(task_id: String, config_id: String, family: Family) -> ConfigParams {
        ConfigParams { task_id, config_id, family }
    }

    /// 1.0 `{taskId, id}`; 0.3 `{id: task, pushNotificationConfigId}` (absent: the task's
    /// id, the SDK's default config id); SuperX `{taskId, configId}`.
    pub fn parse(params: Value, family: Family) -> Result<ConfigParams, RpcError> {
        let p = object(params)?;
        let (task_id, config_id) = match family.shape {
            Shape::V10 => (required(&p, "taskId")?, required(&p, "id")?),
            Shape::V03 => {
                let task_id = required(&p, "id")?;
                let config_id = member(&p, "pushNotificationConfigId")?.unwrap_or_else(|| task_id.clone());
                (task_id, config_id)
            }
            Shape::SuperX => {
                let task_id = required(&p, "taskId")?;
                let config_id = match member(&p, "configId")? {
                    Some(id) => id,
                    None => member(&p, "id")?.unwrap_or_else(|| task_id.clone()),
                };
                (task_id, config_id)
            }
        };
        Ok(ConfigParams { task_id, config_id, family })
    }
}

impl ListParams {
    /// `page_size` 0 means the largest page.
    pub fn new(task_id: String, page_size: usize, page_token: Option<String>, family: Family) -> ListParams {
        let page_size = if page_size == 0 { PAGE_SIZE_MAX } else { page_size.min(PAGE_SIZE_MAX) };
        ListParams { task_id, page_size, page_token, family }
    }

    pub fn parse(params: Value, family: Family) -> Result<ListParams, RpcError> {
        let p = object(params)?;
        let task_id = match family.shape {
            Shape::V03 => required(&p, "id")?,
            Shape::V10 | Shape::SuperX => required(&p, "taskId")?,
        };
        let page_size = match p.get("pageSize") {
            None | Some(Value::Null) => PAGE_SIZE_MAX,
            Some(v) => match v.as_i64() {
                Some(0) => PAGE_SIZE_MAX,
                Some(n) if n > 0 => (n as usize).min(PAGE_SIZE_MAX),
                _ => return Err(RpcError::InvalidParams("pageSize must be a positive integer".into())),
            },
        };
        Ok(ListParams { task_id, page_size, page_token: member(&p, "pageToken")?, family })
    }
}

/// The task a config method is about, which must be in memory (an archived task sends no
/// more updates and keeps no configs).
async fn live_task(gw: &Gateway, call: &Call, task_id: &str) -> Result<TaskRef, RpcError> {
    let task = find_task(gw, call, task_id).await?;
    if task.archived.is_some() {
        return Err(RpcError::UnsupportedOperation(format!(
            "task {task_id} ended and is archived: it has no push notification configs and sends no more updates"
        )));
    }
    Ok(task)
}

pub async fn create(gw: &Gateway, call: &Call, p: CreateParams) -> Result<Reply, RpcError> {
    live_task(gw, call, &p.task_id).await?;
    gw.push.guard.screen(&p.config.url).await.map_err(RpcError::InvalidParams)?;
    let config = to_stored(p.config, &p.task_id, call.wire_version);
    let config_id = config.id.clone();
    gw.replica.propose(Command::SetPushConfig { config, at_ms: gw.now_ms() }).await?;
    let stored =
        gw.replica.read(|t| t.push().config(&p.task_id, &config_id).map(|c| wire::config_to_wire(c, p.family.shape)));
    // Deleted again between the commit and this read: answered as it was set.
    stored.map(Reply::plain).ok_or(RpcError::PushConfigNotFound { task: p.task_id, config: config_id })
}

pub async fn get(gw: &Gateway, call: &Call, p: ConfigParams) -> Result<Reply, RpcError> {
    live_task(gw, call, &p.task_id).await?;
    gw.replica
        .read(|t| t.push().config(&p.task_id, &p.config_id).map(|c| wire::config_to_wire(c, p.family.shape)))
        .map(Reply::plain)
        .ok_or(RpcError::PushConfigNotFound { task: p.task_id, config: p.config_id })
}

pub async fn list(gw: &Gateway, call: &Call, p: ListParams) -> Result<Reply, RpcError> {
    live_task(gw, call, &p.task_id).await?;
    let (configs, more) = gw.replica.read(|t| {
        let mut after = t
            .push()
            .configs(&p.task_id)
            .filter(|c| p.page_token.as_ref().is_none_or(|token| c.config.id > *token))
            .map(|c| (c.config.id.clone(), wire::config_to_wire(c, p.family.shape)));
        let page: Vec<_> = after.by_ref().take(p.page_size).collect();
        (page, after.next().is_some())
    });
    let next = if more { configs.last().map(|(id, _)| id.clone()).unwrap_or_default() } else { String::new() };
    let configs = configs.into_iter().map(|(_, c)| c).collect();
    Ok(Reply::plain(wire::config_list_to_wire(configs, next, p.family.shape)))
}

/// Idempotent: deleting a config that is not there answers as deleting it did.
pub async fn delete(gw: &Gateway, call: &Call, p: ConfigParams) -> Result<Reply, RpcError> {
    live_task(gw, call, &p.task_id).await?;
    let command = Command::DeletePushConfig { task_id: p.task_id.clone(), config_id: p.config_id.clone() };
    gw.replica.propose(command).await?;
    Ok(Reply::plain(wire::deleted(p.family.shape)))
}
