//! 1.0 wire JSON <-> the stored `state::Task`, and validation of 1.0 messages.
//!
//! Agents' tasks arrive as wire JSON (already in 1.0 shape, see `v03` for the other way) and
//! are stored typed; clients get them back rendered here, with `historyLength` and
//! `includeArtifacts` applied.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use super::TaskState;
use super::v03::WireError;
use crate::codec::Json;
use crate::state::{Artifact, ArtifactUpdate, StatusUpdate, Task, TaskChange, TaskStatus};

fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, WireError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(err(format!("{key} must be a string"))),
    }
}

fn required_string(obj: &mut Map<String, Value>, key: &str, what: &str) -> Result<String, WireError> {
    take_string(obj, key)?.filter(|s| !s.is_empty()).ok_or_else(|| err(format!("{what}.{key} is required")))
}

fn take_array(obj: &mut Map<String, Value>, key: &str) -> Result<Vec<Value>, WireError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(err(format!("{key} must be an array"))),
    }
}

fn take_object(value: Value, what: &str) -> Result<Map<String, Value>, WireError> {
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(err(format!("{what} must be an object"))),
    }
}

fn status_from_wire(value: Value) -> Result<TaskStatus, WireError> {
    let mut s = take_object(value, "status")?;
    let name = required_string(&mut s, "state", "status")?;
    let state = TaskState::from_v10(&name).ok_or_else(|| err(format!("unknown task state {name:?}")))?;
    let message = s.remove("message").filter(|m| !m.is_null()).map(Json);
    let timestamp = take_string(&mut s, "timestamp")?;
    Ok(TaskStatus { state, message, timestamp })
}

fn artifact_from_wire(value: Value) -> Result<Artifact, WireError> {
    let mut a = take_object(value, "artifact")?;
    let artifact_id = required_string(&mut a, "artifactId", "artifact")?;
    let parts = take_array(&mut a, "parts")?.into_iter().map(Json).collect();
    Ok(Artifact { artifact_id, parts, rest: Json(Value::Object(a)) })
}

/// A 1.0 `Task` from an agent, as the gateway stores it.
pub fn task_from_wire(value: Value) -> Result<Task, WireError> {
    let mut t = take_object(value, "task")?;
    let id = required_string(&mut t, "id", "task")?;
    let context_id = take_string(&mut t, "contextId")?.unwrap_or_default();
    let status = status_from_wire(t.remove("status").ok_or_else(|| err("task.status is required"))?)?;
    let artifacts = take_array(&mut t, "artifacts")?.into_iter().map(artifact_from_wire).collect::<Result<_, _>>()?;
    let history = take_array(&mut t, "history")?.into_iter().map(Json).collect();
    let metadata = t.remove("metadata").filter(|m| !m.is_null()).map(Json);
    Ok(Task { id, context_id, status, artifacts, history, metadata })
}

/// What a client asked to see of a task.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskView {
    /// `None`: all history; `Some(0)`: none; `Some(n)`: the last n messages.
    pub history_length: Option<usize>,
    pub include_artifacts: bool,
}

impl TaskView {
    pub const FULL: TaskView = TaskView { history_length: None, include_artifacts: true };
}

pub fn status_to_wire(status: &TaskStatus) -> Value {
    let mut s = Map::new();
    s.insert("state".into(), json!(status.state.v10_name()));
    if let Some(m) = &status.message {
        s.insert("message".into(), m.0.clone());
    }
    if let Some(ts) = &status.timestamp {
        s.insert("timestamp".into(), json!(ts));
    }
    Value::Object(s)
}

pub fn artifact_to_wire(artifact: &Artifact) -> Value {
    let mut a = match &artifact.rest.0 {
        Value::Object(rest) => rest.clone(),
        _ => Map::new(),
    };
    a.insert("artifactId".into(), json!(artifact.artifact_id));
    a.insert("parts".into(), Value::Array(artifact.parts.iter().map(|p| p.0.clone()).collect()));
    Value::Object(a)
}

/// A 1.0 `statusUpdate` stream result.
fn status_event(task_id: &str, context_id: &str, status: &TaskStatus, metadata: Option<&Json>) -> Value {
    let mut e = json!({"taskId": task_id, "contextId": context_id, "status": status_to_wire(status)});
    if let Some(m) = metadata {
        e["metadata"] = m.0.clone();
    }
    json!({ "statusUpdate": e })
}

/// A 1.0 `artifactUpdate` stream result.
fn artifact_event(task_id: &str, context_id: &str, artifact: &Artifact, append: bool, last_chunk: bool) -> Value {
    json!({ "artifactUpdate": {
        "taskId": task_id,
        "contextId": context_id,
        "artifact": artifact_to_wire(artifact),
        "append": append,
        "lastChunk": last_chunk,
    }})
}

/// A 1.0 `{"task": ..}` result (SendMessage, a stream's first event).
pub fn task_result(task: Value) -> Value {
    json!({ "task": task })
}

/// A 1.0 `{"message": ..}` result: an agent's direct answer, passed on as it is.
pub fn message_result(message: Value) -> Value {
    json!({ "message": message })
}

/// A task's current status as a 1.0 `statusUpdate` stream result.
pub fn current_status_to_wire(task: &Task) -> Value {
    status_event(&task.id, &task.context_id, &task.status, None)
}

/// A status update event as a 1.0 stream result.
pub fn status_update_to_wire(update: &StatusUpdate) -> Value {
    status_event(&update.task_id, &update.context_id, &update.status, update.metadata.as_ref())
}

/// An artifact update event as a 1.0 stream result.
pub fn artifact_update_to_wire(update: &ArtifactUpdate) -> Value {
    artifact_event(&update.task_id, &update.context_id, &update.artifact, update.append, update.last_chunk)
}

/// One applied change of a task as a 1.0 stream result. `Created` has none: the task itself
/// is the first event of a stream.
pub fn change_to_wire(task_id: &str, context_id: &str, change: &TaskChange) -> Option<Value> {
    match change {
        TaskChange::Created => None,
        TaskChange::Status { status, metadata } => Some(status_event(task_id, context_id, status, metadata.as_ref())),
        TaskChange::Artifact { artifact, append, last_chunk } => {
            Some(artifact_event(task_id, context_id, artifact, *append, *last_chunk))
        }
    }
}

/// A task's line in the dashboard's feed (SuperX's shape, not an A2A object): which task and
/// whose, its 1.0 state, when it last changed, its place in the update order and its event
/// count. Never its messages or artifacts: the dashboard reads those with GetTask.
pub struct TaskLine<'a> {
    pub id: &'a str,
    pub context_id: &'a str,
    pub agent_id: &'a str,
    pub state: TaskState,
    pub updated_at_ms: u64,
    pub seq: u64,
    pub events: u64,
}

pub fn task_line_to_wire(line: &TaskLine<'_>) -> Value {
    let updated = std::time::UNIX_EPOCH + std::time::Duration::from_millis(line.updated_at_ms);
    json!({
        "id": line.id,
        "contextId": line.context_id,
        "agentId": line.agent_id,
        "state": line.state.v10_name(),
        "updatedAt": humantime::format_rfc3339_millis(updated).to_string(),
        "seq": line.seq,
        "events": line.events,
    })
}

/// Renders a stored task as a 1.0 `Task`.
pub fn task_to_wire(task: &Task, view: TaskView) -> Value {
    let mut t = Map::new();
    t.insert("id".into(), json!(task.id));
    t.insert("contextId".into(), json!(task.context_id));
    t.insert("status".into(), status_to_wire(&task.status));
    if view.include_artifacts && !task.artifacts.is_empty() {
        t.insert("artifacts".into(), task.artifacts.iter().map(artifact_to_wire).collect());
    }
    let keep = view.history_length.unwrap_or(usize::MAX).min(task.history.len());
    if keep > 0 {
        let skip = task.history.len() - keep;
        t.insert("history".into(), task.history[skip..].iter().map(|m| m.0.clone()).collect());
    }
    if let Some(m) = &task.metadata {
        t.insert("metadata".into(), m.0.clone());
    }
    Value::Object(t)
}

/// A stored task as a 1.0 `Task`, serialized straight from its fields: the same JSON as
/// `task_to_wire` (keys in another order) without building and dropping a `Value` tree.
/// For output that is only written out (the archive's rows).
pub struct WireTask<'a> {
    pub task: &'a Task,
    pub view: TaskView,
}

impl Serialize for WireTask<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (task, view) = (self.task, self.view);
        let keep = view.history_length.unwrap_or(usize::MAX).min(task.history.len());
        let mut t = serializer.serialize_map(None)?;
        t.serialize_entry("id", &task.id)?;
        t.serialize_entry("contextId", &task.context_id)?;
        t.serialize_entry("status", &WireStatus(&task.status))?;
        if view.include_artifacts && !task.artifacts.is_empty() {
            let artifacts: Vec<WireArtifact> = task.artifacts.iter().map(WireArtifact).collect();
            t.serialize_entry("artifacts", &artifacts)?;
        }
        if keep > 0 {
            let history: Vec<&Value> = task.history[task.history.len() - keep..].iter().map(|m| &m.0).collect();
            t.serialize_entry("history", &history)?;
        }
        if let Some(m) = &task.metadata {
            t.serialize_entry("metadata", &m.0)?;
        }
        t.end()
    }
}

struct WireStatus<'a>(&'a TaskStatus);

impl Serialize for WireStatus<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_map(None)?;
        s.serialize_entry("state", self.0.state.v10_name())?;
        if let Some(m) = &self.0.message {
            s.serialize_entry("message", &m.0)?;
        }
        if let Some(ts) = &self.0.timestamp {
            s.serialize_entry("timestamp", ts)?;
        }
        s.end()
    }
}

struct WireArtifact<'a>(&'a Artifact);

impl Serialize for WireArtifact<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let artifact = self.0;
        let mut a = serializer.serialize_map(None)?;
        if let Value::Object(rest) = &artifact.rest.0 {
            for (k, v) in rest.iter().filter(|(k, _)| !matches!(k.as_str(), "artifactId" | "parts")) {
                a.serialize_entry(k, v)?;
            }
        }
        a.serialize_entry("artifactId", &artifact.artifact_id)?;
        let parts: Vec<&Value> = artifact.parts.iter().map(|p| &p.0).collect();
        a.serialize_entry("parts", &parts)?;
        a.end()
    }
}

/// A 1.0 `TaskStatusUpdateEvent` from an agent.
pub fn status_update_from_wire(value: Value) -> Result<StatusUpdate, WireError> {
    let mut e = take_object(value, "statusUpdate")?;
    let task_id = required_string(&mut e, "taskId", "statusUpdate")?;
    let context_id = take_string(&mut e, "contextId")?.unwrap_or_default();
    let status = status_from_wire(e.remove("status").ok_or_else(|| err("statusUpdate.status is required"))?)?;
    let metadata = e.remove("metadata").filter(|m| !m.is_null()).map(Json);
    Ok(StatusUpdate { task_id, context_id, status, metadata })
}

/// A 1.0 `TaskArtifactUpdateEvent` from an agent.
pub fn artifact_update_from_wire(value: Value) -> Result<ArtifactUpdate, WireError> {
    let mut e = take_object(value, "artifactUpdate")?;
    let task_id = required_string(&mut e, "taskId", "artifactUpdate")?;
    let context_id = take_string(&mut e, "contextId")?.unwrap_or_default();
    let artifact = artifact_from_wire(e.remove("artifact").ok_or_else(|| err("artifactUpdate.artifact is required"))?)?;
    let flag = |e: &Map<String, Value>, k: &str| e.get(k).and_then(Value::as_bool).unwrap_or(false);
    Ok(ArtifactUpdate { append: flag(&e, "append"), last_chunk: flag(&e, "lastChunk"), task_id, context_id, artifact })
}

/// Checks a client's 1.0 `Message`: an object with a messageId, a role and at least one part,
/// each part carrying exactly one of text, raw, url or data.
pub fn validate_message(message: &Value) -> Result<(), WireError> {
    let m = message.as_object().ok_or_else(|| err("message must be an object"))?;
    match m.get("messageId") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(err("message.messageId is required")),
    }
    match m.get("role").and_then(Value::as_str) {
        Some("ROLE_USER" | "ROLE_AGENT") => {}
        _ => return Err(err("message.role must be ROLE_USER or ROLE_AGENT")),
    }
    for key in ["taskId", "contextId"] {
        if m.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
            return Err(err(format!("message.{key} must be a string")));
        }
    }
    let parts = m.get("parts").and_then(Value::as_array).ok_or_else(|| err("message.parts must be an array"))?;
    if parts.is_empty() {
        return Err(err("message.parts must not be empty"));
    }
    for (i, part) in parts.iter().enumerate() {
        let p = part.as_object().ok_or_else(|| err(format!("message.parts[{i}] must be an object")))?;
        let members = ["text", "raw", "url", "data"].iter().filter(|k| p.contains_key(**k)).count();
        if members != 1 {
            return Err(err(format!("message.parts[{i}] needs exactly one of text, raw, url, data")));
        }
        for key in ["text", "raw", "url"] {
            if p.get(key).is_some_and(|v| !v.is_string()) {
                return Err(err(format!("message.parts[{i}].{key} must be a string")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> Value {
        json!({
            "id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED", "message": {"messageId": "d", "role": "ROLE_AGENT", "parts": [{"text": "done"}]}, "timestamp": "2026-11-25T02:02:08.468538Z"},
            "artifacts": [{"artifactId": "echo", "name": "echo", "parts": [{"text": "hello "}, {"text": "world"}]}],
            "history": [
                {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello world"}]},
                {"messageId": "m2", "role": "ROLE_AGENT", "parts": [{"text": "echoing..."}]}
            ],
            "metadata": {"k": "v"}
        })
    }

    #[test]
    fn round_trip_is_lossless() {
        let task = task_from_wire(wire()).unwrap();
        assert_eq!(task.status.state, TaskState::Completed);
        assert_eq!(task_to_wire(&task, TaskView::FULL), wire());
    }

    #[test]
    fn views_trim_history_and_artifacts() {
        let task = task_from_wire(wire()).unwrap();
        let none = task_to_wire(&task, TaskView { history_length: Some(0), include_artifacts: false });
        assert!(none.get("history").is_none() && none.get("artifacts").is_none());
        let last = task_to_wire(&task, TaskView { history_length: Some(1), include_artifacts: true });
        assert_eq!(last["history"], json!([wire()["history"][1]]));
        let more = task_to_wire(&task, TaskView { history_length: Some(10), include_artifacts: true });
        assert_eq!(more["history"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_borrowed_renderer_writes_what_task_to_wire_builds() {
        let mut with_clashing_rest = wire();
        with_clashing_rest["artifacts"][0]["description"] = json!("d");
        let mut task = task_from_wire(with_clashing_rest).unwrap();
        task.artifacts[0].rest = Json(json!({"name": "echo", "artifactId": "stale", "parts": [], "description": "d"}));
        let views = [
            TaskView::FULL,
            TaskView { history_length: Some(0), include_artifacts: false },
            TaskView { history_length: Some(1), include_artifacts: true },
            TaskView { history_length: Some(10), include_artifacts: false },
        ];
        for view in views {
            let text = serde_json::to_string(&WireTask { task: &task, view }).unwrap();
            let parsed: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, task_to_wire(&task, view), "{view:?}");
        }
        let bare = Task { artifacts: vec![], history: vec![], metadata: None, ..task.clone() };
        let text = serde_json::to_string(&WireTask { task: &bare, view: TaskView::FULL }).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), task_to_wire(&bare, TaskView::FULL));
    }

    #[test]
    fn bad_tasks_are_refused() {
        for bad in [
            json!([]),
            json!({"contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}),
            json!({"id": "t", "status": {"state": "working"}}),
            json!({"id": "t"}),
            json!({"id": "t", "status": {"state": "TASK_STATE_WORKING"}, "artifacts": {}}),
            json!({"id": "t", "status": {"state": "TASK_STATE_WORKING"}, "artifacts": [{"parts": []}]}),
            json!({"id": 5, "status": {"state": "TASK_STATE_WORKING"}}),
        ] {
            assert!(task_from_wire(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_validation() {
        let ok = json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}, {"data": [1]}, {"url": "http://x", "mediaType": "a/b"}]});
        assert!(validate_message(&ok).is_ok());
        for bad in [
            json!("hi"),
            json!({"role": "ROLE_USER", "parts": [{"text": "x"}]}),
            json!({"messageId": "m", "role": "user", "parts": [{"text": "x"}]}),
            json!({"messageId": "m", "role": "ROLE_USER", "parts": []}),
            json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x", "data": 1}]}),
            json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"mediaType": "x"}]}),
            json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": 5}]}),
            json!({"messageId": "m", "role": "ROLE_USER", "taskId": 5, "parts": [{"text": "x"}]}),
        ] {
            assert!(validate_message(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_from_wire() {
        let s = status_update_from_wire(
            json!({"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}),
        )
        .unwrap();
        assert_eq!(s.status.state, TaskState::Working);
        let a = artifact_update_from_wire(json!({"taskId": "t", "contextId": "c", "append": true,
            "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}))
        .unwrap();
        assert!(a.append && !a.last_chunk);
        assert!(artifact_update_from_wire(json!({"taskId": "t", "artifact": {"parts": []}})).is_err());
    }
}
