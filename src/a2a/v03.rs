//! A2A 0.3 <-> 1.0 translation, on JSON values.
//!
//! 0.3 differs from 1.0 in: `kind` discriminators (1.0 uses the member present), lowercase
//! enum spellings (`completed` vs `TASK_STATE_COMPLETED`, `user` vs `ROLE_USER`), the Part
//! layout (`{kind:"file", file:{bytes|uri, name, mimeType}}` vs `{raw|url, filename,
//! mediaType}`), bare results (1.0 wraps them: `{task}`, `{message}`, `{statusUpdate}`,
//! `{artifactUpdate}`), `final` on status updates (removed in 1.0), and the send
//! configuration (`blocking` vs `returnImmediately`, `pushNotificationConfig` vs
//! `taskPushNotificationConfig`). Fields both versions share pass through untouched.

use serde_json::{Map, Value, json};

use super::TaskState;

/// A value that does not have the shape its version requires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

pub(super) fn err(msg: impl Into<String>) -> WireError {
    WireError(msg.into())
}

pub(super) fn object(value: Value, what: &str) -> Result<Map<String, Value>, WireError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(err(format!("{what} must be an object"))),
    }
}

// ---------------------------------------------------------------- parts

pub fn part_to_v10(part: Value) -> Result<Value, WireError> {
    let mut p = object(part, "part")?;
    let kind = p.remove("kind");
    let kind = kind.as_ref().and_then(Value::as_str).unwrap_or_else(|| {
        // Be liberal with a 0.3 sender that omitted `kind`: infer it from the member.
        ["text", "file", "data"].into_iter().find(|k| p.contains_key(*k)).unwrap_or("")
    });
    let mut out = Map::new();
    match kind {
        "text" => {
            let text = p.remove("text").filter(Value::is_string);
            out.insert("text".into(), text.ok_or_else(|| err("text part needs a string text"))?);
        }
        "file" => {
            let mut file = object(p.remove("file").unwrap_or(Value::Null), "file part's file")?;
            match (file.remove("bytes"), file.remove("uri")) {
                (Some(b @ Value::String(_)), None) => out.insert("raw".into(), b),
                (None, Some(u @ Value::String(_))) => out.insert("url".into(), u),
                _ => return Err(err("file part needs exactly one of bytes or uri")),
            };
            if let Some(name) = file.remove("name").filter(|v| !v.is_null()) {
                out.insert("filename".into(), name);
            }
            if let Some(mime) = file.remove("mimeType").filter(|v| !v.is_null()) {
                out.insert("mediaType".into(), mime);
            }
        }
        "data" => {
            let data = p.remove("data").ok_or_else(|| err("data part needs data"))?;
            out.insert("data".into(), data);
        }
        other => return Err(err(format!("unknown part kind {other:?}"))),
    }
    if let Some(meta) = p.remove("metadata").filter(|v| !v.is_null()) {
        out.insert("metadata".into(), meta);
    }
    Ok(Value::Object(out))
}

pub fn part_from_v10(part: Value) -> Value {
    let Value::Object(mut p) = part else {
        return part;
    };
    let mut out = Map::new();
    let filename = p.remove("filename").filter(|v| !v.is_null() && v != "");
    let media = p.remove("mediaType").filter(|v| !v.is_null() && v != "");
    if let Some(text) = p.remove("text") {
        out.insert("kind".into(), json!("text"));
        out.insert("text".into(), text);
    } else if let Some(data) = p.remove("data") {
        // 0.3 data parts carry an object; other JSON values are wrapped under "value".
        let data = if data.is_object() { data } else { json!({ "value": data }) };
        out.insert("kind".into(), json!("data"));
        out.insert("data".into(), data);
    } else {
        let mut file = Map::new();
        if let Some(raw) = p.remove("raw") {
            file.insert("bytes".into(), raw);
        } else if let Some(url) = p.remove("url") {
            file.insert("uri".into(), url);
        }
        if let Some(name) = filename {
            file.insert("name".into(), name);
        }
        if let Some(mime) = media {
            file.insert("mimeType".into(), mime);
        }
        out.insert("kind".into(), json!("file"));
        out.insert("file".into(), Value::Object(file));
    }
    if let Some(meta) = p.remove("metadata").filter(|v| !v.is_null()) {
        out.insert("metadata".into(), meta);
    }
    Value::Object(out)
}

fn map_parts(obj: &mut Map<String, Value>, f: impl Fn(Value) -> Result<Value, WireError>) -> Result<(), WireError> {
    if let Some(parts) = obj.get_mut("parts") {
        let Value::Array(items) = parts.take() else {
            return Err(err("parts must be an array"));
        };
        let mapped: Result<Vec<_>, _> = items.into_iter().map(f).collect();
        *parts = Value::Array(mapped?);
    }
    Ok(())
}

// ---------------------------------------------------------------- messages

pub fn message_to_v10(message: Value) -> Result<Value, WireError> {
    let mut m = object(message, "message")?;
    m.remove("kind");
    if let Some(role) = m.get_mut("role") {
        *role = match role.as_str() {
            Some("user") => json!("ROLE_USER"),
            Some("agent") => json!("ROLE_AGENT"),
            _ => return Err(err("message role must be \"user\" or \"agent\"")),
        };
    }
    map_parts(&mut m, part_to_v10)?;
    Ok(Value::Object(m))
}

pub fn message_from_v10(message: Value) -> Value {
    let Value::Object(mut m) = message else {
        return message;
    };
    if let Some(role) = m.get_mut("role") {
        *role = match role.as_str() {
            Some("ROLE_USER") => json!("user"),
            Some("ROLE_AGENT") => json!("agent"),
            _ => role.take(),
        };
    }
    let _ = map_parts(&mut m, |p| Ok(part_from_v10(p)));
    m.insert("kind".into(), json!("message"));
    Value::Object(m)
}

// ---------------------------------------------------------------- tasks

fn status_to_v10(status: &mut Value) -> Result<(), WireError> {
    let state = status["state"].as_str().ok_or_else(|| err("status.state is required"))?;
    let state = TaskState::from_v03(state).ok_or_else(|| err(format!("unknown task state {state:?}")))?;
    status["state"] = json!(state.v10_name());
    if let Some(msg) = status.get_mut("message").filter(|m| !m.is_null()) {
        *msg = message_to_v10(msg.take())?;
    }
    Ok(())
}

fn status_from_v10(status: &mut Value) {
    if let Some(state) = status["state"].as_str().and_then(TaskState::from_v10) {
        status["state"] = json!(state.v03_name());
    }
    if let Some(msg) = status.get_mut("message").filter(|m| !m.is_null()) {
        *msg = message_from_v10(msg.take());
    }
}

pub fn artifact_to_v10(artifact: Value) -> Result<Value, WireError> {
    let mut a = object(artifact, "artifact")?;
    map_parts(&mut a, part_to_v10)?;
    Ok(Value::Object(a))
}

pub fn artifact_from_v10(artifact: Value) -> Value {
    let Value::Object(mut a) = artifact else {
        return artifact;
    };
    let _ = map_parts(&mut a, |p| Ok(part_from_v10(p)));
    Value::Object(a)
}

/// Applies `f` to every item of the array under `key`, if any (null counts as none).
pub(super) fn map_array(
    obj: &mut Map<String, Value>,
    key: &str,
    f: impl Fn(Value) -> Result<Value, WireError>,
) -> Result<(), WireError> {
    if let Some(v) = obj.get_mut(key) {
        match v.take() {
            Value::Array(items) => *v = Value::Array(items.into_iter().map(f).collect::<Result<_, _>>()?),
            Value::Null => {}
            _ => return Err(err(format!("{key} must be an array"))),
        }
    }
    Ok(())
}

pub fn task_to_v10(task: Value) -> Result<Value, WireError> {
    let mut t = object(task, "task")?;
    t.remove("kind");
    status_to_v10(t.get_mut("status").ok_or_else(|| err("task.status is required"))?)?;
    map_array(&mut t, "artifacts", artifact_to_v10)?;
    map_array(&mut t, "history", message_to_v10)?;
    Ok(Value::Object(t))
}

pub fn task_from_v10(task: Value) -> Value {
    let Value::Object(mut t) = task else {
        return task;
    };
    if let Some(status) = t.get_mut("status") {
        status_from_v10(status);
    }
    let _ = map_array(&mut t, "artifacts", |a| Ok(artifact_from_v10(a)));
    let _ = map_array(&mut t, "history", |m| Ok(message_from_v10(m)));
    t.insert("kind".into(), json!("task"));
    Value::Object(t)
}

// ---------------------------------------------------------------- results and events

/// A 0.3 result (bare Task, Message or event, by `kind`) as a 1.0 wrapped result.
pub fn result_to_v10(result: Value) -> Result<Value, WireError> {
    let kind = result["kind"].as_str().unwrap_or("").to_owned();
    match kind.as_str() {
        "task" => Ok(json!({ "task": task_to_v10(result)? })),
        "message" => Ok(json!({ "message": message_to_v10(result)? })),
        "status-update" => {
            let mut e = object(result, "status-update")?;
            e.remove("kind");
            e.remove("final");
            status_to_v10(e.get_mut("status").ok_or_else(|| err("status-update needs status"))?)?;
            Ok(json!({ "statusUpdate": e }))
        }
        "artifact-update" => {
            let mut e = object(result, "artifact-update")?;
            e.remove("kind");
            let artifact = e.remove("artifact").ok_or_else(|| err("artifact-update needs artifact"))?;
            e.insert("artifact".into(), artifact_to_v10(artifact)?);
            Ok(json!({ "artifactUpdate": e }))
        }
        other => Err(err(format!("unknown result kind {other:?}"))),
    }
}

/// A 1.0 wrapped result as a 0.3 bare one. A status update gets `final: true` when its state
/// ends the interaction (terminal or interrupted), as 0.3 clients expect.
pub fn result_from_v10(result: Value) -> Value {
    let Value::Object(mut r) = result else {
        return result;
    };
    if let Some(task) = r.remove("task") {
        return task_from_v10(task);
    }
    if let Some(message) = r.remove("message") {
        return message_from_v10(message);
    }
    if let Some(Value::Object(mut e)) = r.remove("statusUpdate") {
        let state = e.get("status").and_then(|s| s["state"].as_str()).and_then(TaskState::from_v10);
        let last = state.is_some_and(|s| s.is_terminal() || s.is_interrupted());
        if let Some(status) = e.get_mut("status") {
            status_from_v10(status);
        }
        e.insert("kind".into(), json!("status-update"));
        e.insert("final".into(), json!(last));
        return Value::Object(e);
    }
    if let Some(Value::Object(mut e)) = r.remove("artifactUpdate") {
        if let Some(a) = e.remove("artifact") {
            e.insert("artifact".into(), artifact_from_v10(a));
        }
        e.insert("kind".into(), json!("artifact-update"));
        return Value::Object(e);
    }
    Value::Object(r)
}

// ---------------------------------------------------------------- request params

/// 0.3 `MessageSendParams` as 1.0 `SendMessageRequest`. Members the gateway reads for itself
/// (`agentId`, `tenant`, SuperX's top-level `taskId`/`contextId`) pass through.
pub fn send_params_to_v10(params: Value) -> Result<Value, WireError> {
    send_params_to_v10_with(params, message_to_v10, "pushNotificationConfig")
}

/// 0.3 send params of either form as 1.0: the message converted by `message`, `blocking` as
/// `returnImmediately`, the push config taken from `push_key`.
pub(super) fn send_params_to_v10_with(
    params: Value,
    message: fn(Value) -> Result<Value, WireError>,
    push_key: &str,
) -> Result<Value, WireError> {
    let mut p = object(params, "params")?;
    if let Some(m) = p.remove("message") {
        p.insert("message".into(), message(m)?);
    }
    if let Some(cfg) = p.remove("configuration").filter(|c| !c.is_null()) {
        let mut c = object(cfg, "configuration")?;
        match c.remove("blocking") {
            Some(Value::Bool(b)) => {
                c.insert("returnImmediately".into(), json!(!b));
            }
            Some(Value::Null) | None => {}
            Some(_) => return Err(err("configuration.blocking must be a boolean")),
        }
        if let Some(push) = c.remove(push_key) {
            c.insert("taskPushNotificationConfig".into(), push);
        }
        p.insert("configuration".into(), Value::Object(c));
    }
    Ok(Value::Object(p))
}

/// 1.0 `SendMessageRequest` as 0.3 `MessageSendParams`, for a 0.3 agent.
pub fn send_params_from_v10(params: Value) -> Value {
    send_params_from_v10_with(params, message_from_v10, "pushNotificationConfig")
}

/// 1.0 send params in a 0.3 form: the message converted by `message`, `returnImmediately` as
/// `blocking`, the push config under `push_key` (the 0.3 JSON-RPC and ProtoJSON forms differ
/// only in these).
pub(super) fn send_params_from_v10_with(params: Value, message: fn(Value) -> Value, push_key: &str) -> Value {
    let Value::Object(mut p) = params else {
        return params;
    };
    if let Some(m) = p.remove("message") {
        p.insert("message".into(), message(m));
    }
    if let Some(Value::Object(mut c)) = p.remove("configuration") {
        let immediate = c.remove("returnImmediately").and_then(|v| v.as_bool()).unwrap_or(false);
        c.insert("blocking".into(), json!(!immediate));
        if let Some(push) = c.remove("taskPushNotificationConfig") {
            c.insert(push_key.into(), push);
        }
        p.insert("configuration".into(), Value::Object(c));
    }
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v03_task() -> Value {
        json!({
            "kind": "task", "id": "t1", "contextId": "c1",
            "status": {"state": "input-required", "timestamp": "2026-01-01T00:00:00Z",
                "message": {"kind": "message", "messageId": "a1", "role": "agent",
                    "parts": [{"kind": "text", "text": "name?"}]}},
            "artifacts": [{"artifactId": "x", "name": "n", "parts": [
                {"kind": "file", "file": {"uri": "http://f/1", "mimeType": "image/png", "name": "p.png"}},
                {"kind": "file", "file": {"bytes": "aGk="}},
                {"kind": "data", "data": {"k": 1}, "metadata": {"m": true}}]}],
            "history": [{"kind": "message", "messageId": "u1", "role": "user", "taskId": "t1",
                "parts": [{"kind": "text", "text": "hi"}], "extensions": ["urn:x"]}],
            "metadata": {"keep": "me"}
        })
    }

    fn v10_task() -> Value {
        json!({
            "id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_INPUT_REQUIRED", "timestamp": "2026-01-01T00:00:00Z",
                "message": {"messageId": "a1", "role": "ROLE_AGENT", "parts": [{"text": "name?"}]}},
            "artifacts": [{"artifactId": "x", "name": "n", "parts": [
                {"url": "http://f/1", "filename": "p.png", "mediaType": "image/png"},
                {"raw": "aGk="},
                {"data": {"k": 1}, "metadata": {"m": true}}]}],
            "history": [{"messageId": "u1", "role": "ROLE_USER", "taskId": "t1",
                "parts": [{"text": "hi"}], "extensions": ["urn:x"]}],
            "metadata": {"keep": "me"}
        })
    }

    #[test]
    fn task_both_ways() {
        assert_eq!(task_to_v10(v03_task()).unwrap(), v10_task());
        assert_eq!(task_from_v10(v10_task()), v03_task());
    }

    #[test]
    fn results_and_events_both_ways() {
        let v03_status = json!({"kind": "status-update", "taskId": "t", "contextId": "c", "final": true,
            "status": {"state": "completed"}});
        let v10_status = json!({"statusUpdate": {"taskId": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED"}}});
        assert_eq!(result_to_v10(v03_status.clone()).unwrap(), v10_status);
        assert_eq!(result_from_v10(v10_status), v03_status);

        let working =
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}});
        assert_eq!(result_from_v10(working)["final"], json!(false));
        let asking =
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}});
        assert_eq!(result_from_v10(asking)["final"], json!(true));

        let v03_art = json!({"kind": "artifact-update", "taskId": "t", "contextId": "c", "append": true, "lastChunk": true,
            "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "x"}]}});
        let v10_art = json!({"artifactUpdate": {"taskId": "t", "contextId": "c", "append": true, "lastChunk": true,
            "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}});
        assert_eq!(result_to_v10(v03_art.clone()).unwrap(), v10_art);
        assert_eq!(result_from_v10(v10_art), v03_art);

        let v03_msg =
            json!({"kind": "message", "messageId": "m", "role": "agent", "parts": [{"kind": "text", "text": "yo"}]});
        let v10_msg = json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "yo"}]}});
        assert_eq!(result_to_v10(v03_msg.clone()).unwrap(), v10_msg);
        assert_eq!(result_from_v10(v10_msg), v03_msg);
    }

    #[test]
    fn send_params_both_ways() {
        let v03 = json!({"message": {"kind": "message", "messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "x"}]},
            "configuration": {"blocking": false, "historyLength": 2, "pushNotificationConfig": {"url": "http://h"}},
            "metadata": {"a": 1}});
        let v10 = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]},
            "configuration": {"returnImmediately": true, "historyLength": 2, "taskPushNotificationConfig": {"url": "http://h"}},
            "metadata": {"a": 1}});
        assert_eq!(send_params_to_v10(v03.clone()).unwrap(), v10);
        assert_eq!(send_params_from_v10(v10), v03);
    }

    #[test]
    fn malformed_03_is_refused() {
        assert!(message_to_v10(json!({"role": "robot", "parts": []})).is_err());
        assert!(message_to_v10(json!({"role": "user", "parts": [{"kind": "video"}]})).is_err());
        assert!(message_to_v10(json!({"role": "user", "parts": [{"kind": "file", "file": {}}]})).is_err());
        assert!(message_to_v10(json!({"role": "user", "parts": "nope"})).is_err());
        assert!(task_to_v10(json!({"kind": "task", "id": "t", "status": {"state": "sleeping"}})).is_err());
        assert!(result_to_v10(json!({"kind": "weird"})).is_err());
        assert!(send_params_to_v10(json!({"configuration": {"blocking": "yes"}})).is_err());
        assert!(send_params_to_v10(json!([1])).is_err());
    }

    #[test]
    fn non_object_data_is_wrapped_for_03() {
        let p = part_from_v10(json!({"data": [1, 2]}));
        assert_eq!(p, json!({"kind": "data", "data": {"value": [1, 2]}}));
        let p = part_to_v10(json!({"text": "no kind"})).unwrap();
        assert_eq!(p, json!({"text": "no kind"}));
    }
}
