//! 0.3 ProtoJSON (the JSON of the 0.3 gRPC messages, which the 0.3 HTTP+JSON binding carries)
//! <-> the 1.0 model, both ways: toward agents ([`super::rest_client`]) and toward clients
//! ([`super::rest`]).
//!
//! Close to 1.0, but messages hold `content` instead of `parts`, file and data parts nest one
//! level deeper, `TASK_STATE_CANCELLED` is spelled with two Ls, blocking is `blocking` and the
//! push config is `pushNotification`; a status update still carries `final`.

use serde_json::{Map, Value, json};

use super::TaskState;
use super::v03::{WireError, err, map_array as map_items, object};

/// 1.0 `SendMessageRequest` as the 0.3 ProtoJSON `SendMessageRequest`.
pub fn send_params_from_v10(params: Value) -> Value {
    crate::a2a::v03::send_params_from_v10_with(params, message_from_v10, "pushNotification")
}

fn message_from_v10(message: Value) -> Value {
    let Value::Object(mut m) = message else {
        return message;
    };
    if let Some(Value::Array(parts)) = m.remove("parts") {
        m.insert("content".into(), Value::Array(parts.into_iter().map(part_from_v10).collect()));
    }
    Value::Object(m)
}

fn part_from_v10(part: Value) -> Value {
    let Value::Object(mut p) = part else {
        return part;
    };
    let mut out = Map::new();
    if let Some(text) = p.remove("text") {
        out.insert("text".into(), text);
    } else if let Some(data) = p.remove("data") {
        // A 0.3 DataPart holds a Struct; other JSON values are wrapped under "value".
        let data = if data.is_object() { data } else { json!({"value": data}) };
        out.insert("data".into(), json!({"data": data}));
    } else {
        let mut file = Map::new();
        if let Some(raw) = p.remove("raw") {
            file.insert("fileWithBytes".into(), raw);
        } else if let Some(url) = p.remove("url") {
            file.insert("fileWithUri".into(), url);
        }
        if let Some(name) = p.remove("filename") {
            file.insert("name".into(), name);
        }
        if let Some(media) = p.remove("mediaType") {
            file.insert("mimeType".into(), media);
        }
        out.insert("file".into(), Value::Object(file));
    }
    if let Some(meta) = p.remove("metadata").filter(|v| !v.is_null()) {
        out.insert("metadata".into(), meta);
    }
    Value::Object(out)
}

fn part_to_v10(part: Value) -> Result<Value, WireError> {
    let mut p = object(part, "part")?;
    let mut out = Map::new();
    if let Some(text) = p.remove("text") {
        out.insert("text".into(), text);
    } else if let Some(data) = p.remove("data") {
        let mut data = object(data, "data part's data")?;
        out.insert("data".into(), data.remove("data").unwrap_or_else(|| json!({})));
    } else if let Some(file) = p.remove("file") {
        let mut file = object(file, "file part's file")?;
        match (file.remove("fileWithBytes"), file.remove("fileWithUri")) {
            (Some(b), None) => out.insert("raw".into(), b),
            (None, Some(u)) => out.insert("url".into(), u),
            _ => return Err(err("file part needs exactly one of fileWithBytes or fileWithUri")),
        };
        if let Some(name) = file.remove("name") {
            out.insert("filename".into(), name);
        }
        if let Some(mime) = file.remove("mimeType") {
            out.insert("mediaType".into(), mime);
        }
    } else {
        return Err(err("part is not a text, file or data part"));
    }
    if let Some(meta) = p.remove("metadata").filter(|v| !v.is_null()) {
        out.insert("metadata".into(), meta);
    }
    Ok(Value::Object(out))
}

fn message_to_v10(message: Value) -> Result<Value, WireError> {
    let mut m = object(message, "message")?;
    let content = m.remove("content").unwrap_or_else(|| json!([]));
    m.insert("parts".into(), content);
    map_items(&mut m, "parts", part_to_v10)?;
    Ok(Value::Object(m))
}

fn status_to_v10(status: Value) -> Result<Value, WireError> {
    let mut s = object(status, "status")?;
    let state = s.get("state").and_then(Value::as_str).ok_or_else(|| err("status.state is required"))?;
    let state = match state {
        "TASK_STATE_CANCELLED" => TaskState::Canceled,
        other => TaskState::from_v10(other).ok_or_else(|| err(format!("unknown task state {other:?}")))?,
    };
    s.insert("state".into(), json!(state.v10_name()));
    if let Some(message) = s.remove("message").filter(|m| !m.is_null()) {
        s.insert("message".into(), message_to_v10(message)?);
    }
    Ok(Value::Object(s))
}

fn artifact_to_v10(artifact: Value) -> Result<Value, WireError> {
    let mut a = object(artifact, "artifact")?;
    map_items(&mut a, "parts", part_to_v10)?;
    Ok(Value::Object(a))
}

pub fn task_to_v10(task: Value) -> Result<Value, WireError> {
    let mut t = object(task, "task")?;
    let status = t.remove("status").ok_or_else(|| err("task.status is required"))?;
    t.insert("status".into(), status_to_v10(status)?);
    map_items(&mut t, "artifacts", artifact_to_v10)?;
    map_items(&mut t, "history", message_to_v10)?;
    Ok(Value::Object(t))
}

pub fn wrapped_to_v10(body: Value) -> Result<Value, WireError> {
    let mut b = object(body, "response")?;
    if let Some(task) = b.remove("task") {
        return Ok(json!({"task": task_to_v10(task)?}));
    }
    if let Some(message) = b.remove("message") {
        return Ok(json!({"message": message_to_v10(message)?}));
    }
    if let Some(update) = b.remove("statusUpdate") {
        let mut u = object(update, "statusUpdate")?;
        // 1.0 has no `final`: the end of a stream is its close.
        u.remove("final");
        let status = u.remove("status").ok_or_else(|| err("statusUpdate.status is required"))?;
        u.insert("status".into(), status_to_v10(status)?);
        return Ok(json!({"statusUpdate": u}));
    }
    if let Some(update) = b.remove("artifactUpdate") {
        let mut u = object(update, "artifactUpdate")?;
        let artifact = u.remove("artifact").ok_or_else(|| err("artifactUpdate.artifact is required"))?;
        u.insert("artifact".into(), artifact_to_v10(artifact)?);
        return Ok(json!({"artifactUpdate": u}));
    }
    Err(err("response is not a task, message or update"))
}

/// A 0.3 `SendMessageRequest` whose message is under its proto name (`request`; its JSON name
/// is `message`), as the JSON name.
pub fn request_as_message(body: Value) -> Value {
    match body {
        Value::Object(mut b) if !b.contains_key("message") => {
            if let Some(message) = b.remove("request") {
                b.insert("message".into(), message);
            }
            Value::Object(b)
        }
        other => other,
    }
}

/// A 0.3 ProtoJSON `SendMessageRequest` (a client's `v1/message:send` body) as 1.0. Absent
/// scalars are proto3 defaults, read as the SDK's 0.3 REST server reads them: a
/// configuration without `blocking` does not block, a `historyLength` of 0 is none given.
pub fn send_params_to_v10(params: Value) -> Result<Value, WireError> {
    let mut params = params;
    if let Some(Value::Object(config)) = params.get_mut("configuration") {
        config.entry("blocking").or_insert(json!(false));
        if config.get("historyLength").and_then(Value::as_i64) == Some(0) {
            config.remove("historyLength");
        }
    }
    crate::a2a::v03::send_params_to_v10_with(params, message_to_v10, "pushNotification")
}

fn status_from_v10(status: Value) -> Value {
    let Value::Object(mut s) = status else {
        return status;
    };
    if let Some(state) = s.get("state").and_then(Value::as_str).and_then(TaskState::from_v10) {
        let name = if state == TaskState::Canceled { "TASK_STATE_CANCELLED" } else { state.v10_name() };
        s.insert("state".into(), json!(name));
    }
    if let Some(message) = s.remove("message").filter(|m| !m.is_null()) {
        s.insert("message".into(), message_from_v10(message));
    }
    Value::Object(s)
}

fn artifact_from_v10(artifact: Value) -> Value {
    let Value::Object(mut a) = artifact else {
        return artifact;
    };
    let _ = map_items(&mut a, "parts", |p| Ok(part_from_v10(p)));
    Value::Object(a)
}

/// A 0.3 ProtoJSON `CreateTaskPushNotificationConfigRequest` (`{parent, configId, config:
/// {name, pushNotificationConfig}}`: a client's `v1/tasks/{id}/pushNotificationConfigs` body)
/// as the 1.0 flat config; the task id comes from the path. A bare `TaskPushNotificationConfig`
/// is read too.
pub fn push_config_to_v10(body: Value) -> Result<Value, WireError> {
    let mut b = object(body, "body")?;
    let config_id = b.remove("configId").filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let mut config = match b.remove("config") {
        Some(c) => object(c, "config")?,
        None => b,
    };
    let inner =
        config.remove("pushNotificationConfig").ok_or_else(|| err("config.pushNotificationConfig is required"))?;
    let mut inner = object(inner, "pushNotificationConfig")?;
    if let Some(id) = config_id {
        inner.insert("id".into(), id);
    }
    if let Some(auth) = inner.remove("authentication").filter(|a| !a.is_null()) {
        let mut a = object(auth, "authentication")?;
        let scheme = match a.remove("schemes") {
            Some(Value::Array(schemes)) => schemes.into_iter().next(),
            _ => None,
        };
        if let Some(scheme) = scheme {
            a.insert("scheme".into(), scheme);
        }
        inner.insert("authentication".into(), Value::Object(a));
    }
    Ok(Value::Object(inner))
}

/// A 1.0 `TaskPushNotificationConfig` (flat) as the 0.3 ProtoJSON one: `{name:
/// "tasks/{task}/pushNotificationConfigs/{id}", pushNotificationConfig}`.
pub fn push_config_from_v10(config: Value) -> Value {
    let Value::Object(mut c) = config else {
        return config;
    };
    let task_id = c.remove("taskId").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let id = c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    c.remove("tenant");
    if let Some(Value::Object(mut a)) = c.remove("authentication") {
        if let Some(scheme) = a.remove("scheme") {
            a.insert("schemes".into(), json!([scheme]));
        }
        c.insert("authentication".into(), Value::Object(a));
    }
    json!({"name": format!("tasks/{task_id}/pushNotificationConfigs/{id}"), "pushNotificationConfig": c})
}

/// A 1.0 `ListTaskPushNotificationConfigsResponse` as the 0.3 ProtoJSON one.
pub fn push_config_list_from_v10(list: Value) -> Value {
    let Value::Object(mut l) = list else {
        return list;
    };
    let _ = map_items(&mut l, "configs", |c| Ok(push_config_from_v10(c)));
    Value::Object(l)
}

/// A 1.0 `Task` as a 0.3 ProtoJSON `Task`.
pub fn task_from_v10(task: Value) -> Value {
    let Value::Object(mut t) = task else {
        return task;
    };
    if let Some(status) = t.remove("status") {
        t.insert("status".into(), status_from_v10(status));
    }
    let _ = map_items(&mut t, "artifacts", |a| Ok(artifact_from_v10(a)));
    let _ = map_items(&mut t, "history", |m| Ok(message_from_v10(m)));
    Value::Object(t)
}

/// A 1.0 `SendMessageResponse` or `StreamResponse` as its 0.3 ProtoJSON form. A status update
/// gets `final: true` when its state ends the interaction (terminal or interrupted), as 0.3
/// clients expect.
pub fn wrapped_from_v10(body: Value) -> Value {
    let Value::Object(mut b) = body else {
        return body;
    };
    if let Some(task) = b.remove("task") {
        return json!({"task": task_from_v10(task)});
    }
    if let Some(message) = b.remove("message") {
        return json!({"message": message_from_v10(message)});
    }
    if let Some(Value::Object(mut u)) = b.remove("statusUpdate") {
        let state = u.get("status").and_then(|s| s["state"].as_str()).and_then(TaskState::from_v10);
        let last = state.is_some_and(|s| s.is_terminal() || s.is_interrupted());
        if let Some(status) = u.remove("status") {
            u.insert("status".into(), status_from_v10(status));
        }
        u.insert("final".into(), json!(last));
        return json!({"statusUpdate": u});
    }
    if let Some(Value::Object(mut u)) = b.remove("artifactUpdate") {
        if let Some(artifact) = u.remove("artifact") {
            u.insert("artifact".into(), artifact_from_v10(artifact));
        }
        return json!({"artifactUpdate": u});
    }
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_configs_translate_both_ways() {
        // As SDK 1.3.0's 0.3 REST client sends it (proto names already made JSON names).
        let body = json!({"parent": "tasks/t1", "configId": "c1", "config": {
            "name": "tasks/t1/pushNotificationConfigs/c1",
            "pushNotificationConfig": {"url": "https://h/hook", "token": "tok",
                "authentication": {"schemes": ["Bearer"], "credentials": "x"}}}});
        let v10 = push_config_to_v10(body).unwrap();
        assert_eq!(
            v10,
            json!({"id": "c1", "url": "https://h/hook", "token": "tok",
                "authentication": {"scheme": "Bearer", "credentials": "x"}})
        );
        assert!(push_config_to_v10(json!({"config": {}})).is_err(), "no pushNotificationConfig");
        let stored = json!({"id": "c1", "taskId": "t1", "url": "https://h/hook", "token": "tok",
            "authentication": {"scheme": "Bearer", "credentials": "x"}});
        let v03 = push_config_from_v10(stored.clone());
        assert_eq!(
            v03,
            json!({"name": "tasks/t1/pushNotificationConfigs/c1", "pushNotificationConfig": {
                "id": "c1", "url": "https://h/hook", "token": "tok",
                "authentication": {"schemes": ["Bearer"], "credentials": "x"}}})
        );
        let list = push_config_list_from_v10(json!({"configs": [stored], "nextPageToken": ""}));
        assert_eq!(list, json!({"configs": [v03], "nextPageToken": ""}));
    }

    #[test]
    fn client_send_params_become_v10() {
        let body = json!({
            "message": {"messageId": "m1", "role": "ROLE_USER", "content": [
                {"text": "hi"}, {"file": {"fileWithUri": "http://f", "mimeType": "text/plain"}}, {"data": {"data": {"a": 1}}}
            ]},
            "configuration": {"blocking": true, "pushNotification": {"url": "http://h"}, "historyLength": 1}
        });
        assert_eq!(
            send_params_to_v10(body).unwrap(),
            json!({
                "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [
                    {"text": "hi"}, {"url": "http://f", "mediaType": "text/plain"}, {"data": {"a": 1}}
                ]},
                "configuration": {"returnImmediately": false, "taskPushNotificationConfig": {"url": "http://h"}, "historyLength": 1}
            })
        );
        assert!(send_params_to_v10(json!({"message": {"content": [{"video": 1}]}})).is_err());
        // proto3 defaults: an empty configuration does not block; no configuration is the default.
        let empty =
            send_params_to_v10(json!({"message": {"content": []}, "configuration": {"historyLength": 0}})).unwrap();
        assert_eq!(empty["configuration"], json!({"returnImmediately": true}));
        let none = send_params_to_v10(json!({"message": {"content": []}})).unwrap();
        assert!(none.get("configuration").is_none());
        assert!(send_params_to_v10(json!([])).is_err());
    }

    #[test]
    fn v10_answers_become_protojson() {
        let task = json!({"id": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_CANCELED", "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "bye"}]}},
            "artifacts": [{"artifactId": "a", "parts": [{"data": {"x": 1}}, {"raw": "aGk=", "filename": "f"}]}],
            "history": [{"messageId": "h", "role": "ROLE_USER", "parts": [{"text": "hi"}]}]});
        let out = task_from_v10(task.clone());
        assert_eq!(out["status"]["state"], "TASK_STATE_CANCELLED");
        assert_eq!(out["status"]["message"]["content"], json!([{"text": "bye"}]));
        assert_eq!(
            out["artifacts"][0]["parts"],
            json!([{"data": {"data": {"x": 1}}}, {"file": {"fileWithBytes": "aGk=", "name": "f"}}])
        );
        assert_eq!(out["history"][0]["content"], json!([{"text": "hi"}]));
        // Both ways: what the gateway sends back reads as what it was.
        assert_eq!(task_to_v10(out).unwrap(), task);
        let done = json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED"}}});
        assert_eq!(wrapped_from_v10(done)["statusUpdate"]["final"], json!(true));
        let working =
            json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}}});
        assert_eq!(wrapped_from_v10(working)["statusUpdate"]["final"], json!(false));
        let message = json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}]}});
        assert_eq!(wrapped_from_v10(message)["message"]["content"], json!([{"text": "x"}]));
        let chunk = json!({"artifactUpdate": {"taskId": "t", "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}, "append": true}});
        assert_eq!(wrapped_from_v10(chunk.clone()), chunk);
    }
}
