//! The HTTP+JSON (REST) binding as the gateway calls agents with it: each operation's route,
//! query and body from the gateway's 1.0-shaped params, the agent's answers and stream events
//! back into the 1.0 model, and its error bodies as the JSON-RPC errors the JSON-RPC path sees.
//!
//! 1.0 routes have no prefix (`POST message:send`, `GET tasks/{id}`, ...) and carry the 1.0
//! JSON that JSON-RPC results carry, so answers need no translation. 0.3 routes sit under
//! `v1/` and carry the ProtoJSON of the 0.3 gRPC messages (as the SDKs send and serve them):
//! close to 1.0, but messages hold `content` instead of `parts`, file and data parts nest one
//! level deeper, `TASK_STATE_CANCELLED` is spelled with two Ls and blocking is `blocking`.
//! Errors are `google.rpc.Status` bodies (`{"error": {code, status, message, details}}`)
//! whose `ErrorInfo.reason` names the A2A error.

use serde_json::{Value, json};

use super::ProtocolVersion;
use super::proto03;
use super::v03::WireError;

/// The 0.3 binding's path prefix (dropped in 1.0).
pub(super) const V03_PREFIX: &str = "v1";
/// The `@type` of a `google.rpc.ErrorInfo` detail.
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// The HTTP method of a REST call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// One REST call: appended to the interface URL as path segments, with its query and body.
#[derive(Clone, Debug, PartialEq)]
pub struct RestRequest {
    pub verb: Verb,
    /// Path segments after the interface URL, unescaped (the caller escapes each).
    pub segments: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

fn route(version: ProtocolVersion, verb: Verb, path: &[&str]) -> RestRequest {
    let prefix = (version == ProtocolVersion::V03).then_some(V03_PREFIX);
    let segments = prefix.into_iter().chain(path.iter().copied()).map(str::to_owned).collect();
    RestRequest { verb, segments, query: vec![], body: None }
}

fn task_id(params: &Value) -> Result<&str, WireError> {
    params["id"].as_str().filter(|id| !id.is_empty()).ok_or_else(|| WireError("params need a task id".into()))
}

/// `SendMessage` (`message:send`) or `SendStreamingMessage` (`message:stream`).
pub fn send_message(version: ProtocolVersion, params: Value, stream: bool) -> RestRequest {
    let action = if stream { "message:stream" } else { "message:send" };
    let mut request = route(version, Verb::Post, &[action]);
    request.body = Some(match version {
        ProtocolVersion::V10 => params,
        ProtocolVersion::V03 => proto03::send_params_from_v10(params),
    });
    request
}

/// `GetTask`: `GET tasks/{id}?historyLength=n`.
pub fn get_task(version: ProtocolVersion, params: &Value) -> Result<RestRequest, WireError> {
    let mut request = route(version, Verb::Get, &["tasks", task_id(params)?]);
    if let Some(n) = params["historyLength"].as_i64() {
        request.query.push(("historyLength", n.to_string()));
    }
    Ok(request)
}

/// `CancelTask`: `POST tasks/{id}:cancel` (1.0 with the request's metadata as its body).
pub fn cancel_task(version: ProtocolVersion, params: &Value) -> Result<RestRequest, WireError> {
    let mut request = route(version, Verb::Post, &["tasks", &format!("{}:cancel", task_id(params)?)]);
    request.body = Some(match (version, params.get("metadata")) {
        (ProtocolVersion::V10, Some(metadata)) => json!({"metadata": metadata}),
        _ => json!({}),
    });
    Ok(request)
}

/// `SubscribeToTask`: `POST tasks/{id}:subscribe` (the spec's verb; the SDKs serve GET too).
pub fn subscribe_to_task(version: ProtocolVersion, params: &Value) -> Result<RestRequest, WireError> {
    let mut request = route(version, Verb::Post, &["tasks", &format!("{}:subscribe", task_id(params)?)]);
    request.body = Some(json!({}));
    Ok(request)
}

/// `CreateTaskPushNotificationConfig`: `POST tasks/{taskId}/pushNotificationConfigs`, the
/// 1.0 config as the body; 0.3 sends the ProtoJSON `CreateTaskPushNotificationConfigRequest`
/// (`{parent, configId, config: {name, pushNotificationConfig}}`), as the SDK's client does.
pub fn create_push_config(version: ProtocolVersion, params: Value) -> Result<RestRequest, WireError> {
    let task_id = params["taskId"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| WireError("params need a task id".into()))?
        .to_owned();
    let mut request = route(version, Verb::Post, &["tasks", &task_id, "pushNotificationConfigs"]);
    request.body = Some(match version {
        ProtocolVersion::V10 => params,
        ProtocolVersion::V03 => {
            let config_id = params["id"].clone();
            json!({"parent": format!("tasks/{task_id}"), "configId": config_id,
                "config": proto03::push_config_from_v10(params)})
        }
    });
    Ok(request)
}

/// `GetExtendedAgentCard`: `GET extendedAgentCard` (1.0), `GET v1/card` (0.3).
pub fn extended_agent_card(version: ProtocolVersion) -> RestRequest {
    match version {
        ProtocolVersion::V10 => route(version, Verb::Get, &["extendedAgentCard"]),
        ProtocolVersion::V03 => route(version, Verb::Get, &["card"]),
    }
}

/// A `SendMessageResponse` or `StreamResponse` body (`{task}`, `{message}`, `{statusUpdate}`,
/// `{artifactUpdate}`) in the 1.0 model.
pub fn wrapped_to_v10(version: ProtocolVersion, body: Value) -> Result<Value, WireError> {
    match version {
        ProtocolVersion::V10 => Ok(body),
        ProtocolVersion::V03 => proto03::wrapped_to_v10(body),
    }
}

/// A `Task` body (GetTask, CancelTask) in the 1.0 model.
pub fn task_to_v10(version: ProtocolVersion, body: Value) -> Result<Value, WireError> {
    match version {
        ProtocolVersion::V10 => Ok(body),
        ProtocolVersion::V03 => proto03::task_to_v10(body),
    }
}

/// The A2A error an agent's REST error body names, as a JSON-RPC error object (`code`,
/// `message`, and the `details` as 1.0 `data`), so it is judged exactly like a JSON-RPC
/// agent's error; `None` when the body names no A2A error (the caller then goes by the HTTP
/// status alone).
pub fn error_object(body: &Value) -> Option<Value> {
    let status = body.get("error")?;
    let details = status["details"].as_array();
    let reason =
        details.into_iter().flatten().find(|d| d["@type"] == ERROR_INFO_TYPE).and_then(|d| d["reason"].as_str())?;
    let code = reason_code(reason)?;
    let message = status["message"].as_str().filter(|m| !m.is_empty()).unwrap_or(reason);
    let mut error = json!({"code": code, "message": message});
    if let Some(details) = details {
        error["data"] = Value::Array(details.clone());
    }
    Some(error)
}

/// The JSON-RPC code of an A2A `ErrorInfo.reason` (spec §5.4, SDK 1.3.0's names).
fn reason_code(reason: &str) -> Option<i64> {
    Some(match reason {
        "TASK_NOT_FOUND" => -32001,
        "TASK_NOT_CANCELABLE" => -32002,
        "PUSH_NOTIFICATION_NOT_SUPPORTED" => -32003,
        "UNSUPPORTED_OPERATION" => -32004,
        "CONTENT_TYPE_NOT_SUPPORTED" => -32005,
        "INVALID_AGENT_RESPONSE" => -32006,
        "EXTENDED_AGENT_CARD_NOT_CONFIGURED" => -32007,
        "EXTENSION_SUPPORT_REQUIRED" => -32008,
        "VERSION_NOT_SUPPORTED" => -32009,
        "PARSE_ERROR" => -32700,
        "INVALID_REQUEST" => -32600,
        "METHOD_NOT_FOUND" => -32601,
        "INVALID_PARAMS" => -32602,
        "INTERNAL_ERROR" => -32603,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V10: ProtocolVersion = ProtocolVersion::V10;
    const V03: ProtocolVersion = ProtocolVersion::V03;

    #[test]
    fn routes_per_version() {
        let get = get_task(V10, &json!({"id": "t/1", "historyLength": 2})).unwrap();
        assert_eq!(
            (get.verb, get.segments.clone(), get.query.clone()),
            (Verb::Get, vec!["tasks".into(), "t/1".into()], vec![("historyLength", "2".into())])
        );
        let get = get_task(V03, &json!({"id": "t1"})).unwrap();
        assert_eq!((get.segments, get.query), (vec!["v1".to_owned(), "tasks".into(), "t1".into()], vec![]));
        let cancel = cancel_task(V10, &json!({"id": "t1", "metadata": {"k": 1}})).unwrap();
        assert_eq!(
            (cancel.verb, cancel.segments, cancel.body),
            (Verb::Post, vec!["tasks".to_owned(), "t1:cancel".into()], Some(json!({"metadata": {"k": 1}})))
        );
        let sub = subscribe_to_task(V03, &json!({"id": "t1"})).unwrap();
        assert_eq!(sub.segments, ["v1", "tasks", "t1:subscribe"]);
        assert!(get_task(V10, &json!({})).is_err());
        assert_eq!(send_message(V10, json!({"message": {}}), true).segments, ["message:stream"]);
        assert_eq!(send_message(V03, json!({"message": {}}), false).segments, ["v1", "message:send"]);
        let config = json!({"taskId": "t1", "id": "c", "url": "http://gw/x", "token": "k"});
        let create = create_push_config(V10, config.clone()).unwrap();
        assert_eq!(
            (create.verb, create.segments, create.body),
            (Verb::Post, vec!["tasks".to_owned(), "t1".into(), "pushNotificationConfigs".into()], Some(config.clone()))
        );
        let create = create_push_config(V03, config).unwrap();
        assert_eq!(create.segments, ["v1", "tasks", "t1", "pushNotificationConfigs"]);
        let body = create.body.unwrap();
        assert_eq!((body["parent"].as_str(), body["configId"].as_str()), (Some("tasks/t1"), Some("c")));
        assert_eq!(body["config"]["pushNotificationConfig"]["url"], "http://gw/x");
        assert!(create_push_config(V10, json!({"url": "http://gw/x"})).is_err());
    }

    #[test]
    fn v03_send_params_are_protojson() {
        let params = json!({
            "message": {"messageId": "m1", "role": "ROLE_USER", "parts": [
                {"text": "hi"},
                {"url": "http://f", "mediaType": "text/plain", "filename": "f.txt"},
                {"raw": "aGk=", "metadata": {"k": "v"}},
                {"data": {"a": 1}},
                {"data": [1, 2]}
            ]},
            "configuration": {"returnImmediately": true, "acceptedOutputModes": ["text/plain"]}
        });
        let body = send_message(V03, params, false).body.unwrap();
        assert_eq!(
            body,
            json!({
                "message": {"messageId": "m1", "role": "ROLE_USER", "content": [
                    {"text": "hi"},
                    {"file": {"fileWithUri": "http://f", "mimeType": "text/plain", "name": "f.txt"}},
                    {"file": {"fileWithBytes": "aGk="}, "metadata": {"k": "v"}},
                    {"data": {"data": {"a": 1}}},
                    {"data": {"data": {"value": [1, 2]}}}
                ]},
                "configuration": {"blocking": false, "acceptedOutputModes": ["text/plain"]}
            })
        );
    }

    #[test]
    fn v03_answers_become_v10() {
        let task = json!({"id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_CANCELLED", "message": {"messageId": "m", "role": "ROLE_AGENT", "content": [{"text": "bye"}]}},
            "artifacts": [{"artifactId": "a", "parts": [{"data": {"data": {"x": 1}}}, {"file": {"fileWithUri": "u"}}]}],
            "history": [{"messageId": "h", "role": "ROLE_USER", "content": [{"text": "hi"}]}]});
        let v10 = task_to_v10(V03, task.clone()).unwrap();
        assert_eq!(
            v10["status"],
            json!({"state": "TASK_STATE_CANCELED", "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "bye"}]}})
        );
        assert_eq!(v10["artifacts"][0]["parts"], json!([{"data": {"x": 1}}, {"url": "u"}]));
        assert_eq!(v10["history"][0]["parts"], json!([{"text": "hi"}]));
        assert_eq!(wrapped_to_v10(V03, json!({"task": task})).unwrap()["task"], v10);
        let update = json!({"statusUpdate": {"taskId": "t1", "contextId": "c1", "final": true, "status": {"state": "TASK_STATE_COMPLETED"}}});
        assert_eq!(
            wrapped_to_v10(V03, update).unwrap(),
            json!({"statusUpdate": {"taskId": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_COMPLETED"}}})
        );
        let message = json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "content": [{"text": "x"}]}});
        assert_eq!(wrapped_to_v10(V03, message).unwrap()["message"]["parts"], json!([{"text": "x"}]));
        assert!(wrapped_to_v10(V03, json!({"other": 1})).is_err());
        assert!(task_to_v10(V03, json!({"id": "t", "status": {"state": "TASK_STATE_BOGUS"}})).is_err());
        // 1.0 bodies are already the model.
        assert_eq!(wrapped_to_v10(V10, json!({"x": 1})).unwrap(), json!({"x": 1}));
    }

    #[test]
    fn error_bodies_map_to_jsonrpc_errors() {
        let info =
            json!({"@type": ERROR_INFO_TYPE, "reason": "TASK_NOT_FOUND", "domain": "a2a-protocol.org", "metadata": {}});
        let body = json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Task not found", "details": [info.clone()]}});
        assert_eq!(error_object(&body), Some(json!({"code": -32001, "message": "Task not found", "data": [info]})));
        for (reason, code) in [
            ("TASK_NOT_CANCELABLE", -32002),
            ("UNSUPPORTED_OPERATION", -32004),
            ("VERSION_NOT_SUPPORTED", -32009),
            ("INVALID_PARAMS", -32602),
            ("METHOD_NOT_FOUND", -32601),
        ] {
            let body = json!({"error": {"code": 400, "message": "", "details": [{"@type": ERROR_INFO_TYPE, "reason": reason}]}});
            let error = error_object(&body).unwrap();
            assert_eq!((error["code"].as_i64(), error["message"].as_str()), (Some(code), Some(reason)));
        }
        // No ErrorInfo, an unknown reason, not a Status: no A2A error (the HTTP status decides).
        assert_eq!(
            error_object(&json!({"error": {"code": 500, "status": "INTERNAL", "message": "unknown exception"}})),
            None
        );
        assert_eq!(error_object(&json!({"error": {"details": [{"@type": ERROR_INFO_TYPE, "reason": "QUOTA"}]}})), None);
        assert_eq!(error_object(&json!({"detail": "Not Found"})), None);
    }
}
