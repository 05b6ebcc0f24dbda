//! The HTTP+JSON (REST) binding as clients call the gateway with it: a request's path under
//! `/agents/{id}/` as an operation, its query and body as the params the JSON-RPC method of
//! that operation takes, the method's result as the REST body, and `google.rpc.Status` error
//! bodies.
//!
//! 1.0 paths have no prefix (`POST message:send`, `GET tasks/{id}`, `GET tasks`, ...) and may
//! start with a `{tenant}/` segment (it becomes `params.tenant`); their bodies are the 1.0
//! JSON that JSON-RPC params and results carry. 0.3 paths sit under `v1/` (no tenant, no
//! ListTasks, `GET v1/card` for the extended card) and carry 0.3 ProtoJSON, which
//! [`super::proto03`] turns into the 1.0 model and back: every operation but the extended
//! card runs in the 1.0 model whatever the path's version, so a 0.3 REST body is translated
//! once each way. Matching follows the SDK's router: a path with a tenant is only tried when
//! the path without one does not match the request's method.

use serde_json::{Map, Value, json};

use super::ProtocolVersion;
use super::proto03;
use super::rest_client::V03_PREFIX;
use super::v03::{WireError, err, object};

/// The HTTP methods the binding uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn parse(method: &str) -> Option<Verb> {
        match method {
            "GET" => Some(Verb::Get),
            "POST" => Some(Verb::Post),
            "DELETE" => Some(Verb::Delete),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }
}

/// The A2A operations the binding routes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    SendMessage,
    SendStreamingMessage,
    GetTask,
    ListTasks,
    CancelTask,
    SubscribeToTask,
    CreatePushConfig,
    GetPushConfig,
    ListPushConfigs,
    DeletePushConfig,
    GetExtendedAgentCard,
}

impl Operation {
    /// The 1.0 JSON-RPC method that performs the operation.
    fn method_name(self) -> &'static str {
        match self {
            Operation::SendMessage => "SendMessage",
            Operation::SendStreamingMessage => "SendStreamingMessage",
            Operation::GetTask => "GetTask",
            Operation::ListTasks => "ListTasks",
            Operation::CancelTask => "CancelTask",
            Operation::SubscribeToTask => "SubscribeToTask",
            Operation::CreatePushConfig => "CreateTaskPushNotificationConfig",
            Operation::GetPushConfig => "GetTaskPushNotificationConfig",
            Operation::ListPushConfigs => "ListTaskPushNotificationConfigs",
            Operation::DeletePushConfig => "DeleteTaskPushNotificationConfig",
            Operation::GetExtendedAgentCard => "GetExtendedAgentCard",
        }
    }

    /// Whether the request body carries params (the others ignore any body).
    pub fn reads_body(self) -> bool {
        matches!(
            self,
            Operation::SendMessage
                | Operation::SendStreamingMessage
                | Operation::CancelTask
                | Operation::CreatePushConfig
        )
    }
}

/// A request's path, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    /// The binding version of the path: 0.3 under `v1/`, else 1.0.
    pub version: ProtocolVersion,
    pub tenant: Option<String>,
    task_id: Option<String>,
    config_id: Option<String>,
}

/// A path the binding does not have, or a method it does not take there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists for these methods only (the `Allow` header).
    MethodNotAllowed(Vec<Verb>),
}

impl RouteError {
    pub fn http_status(&self) -> u16 {
        match self {
            RouteError::NotFound => 404,
            RouteError::MethodNotAllowed(_) => 405,
        }
    }

    /// The `google.rpc.Status` body; both carry `METHOD_NOT_FOUND`, which SDK clients read
    /// as the operation not being offered.
    pub fn status_body(&self, verb: &str, path: &str) -> Value {
        let (status, message) = match self {
            RouteError::NotFound => ("NOT_FOUND", format!("no A2A HTTP+JSON operation at {path}")),
            RouteError::MethodNotAllowed(allow) => {
                ("UNIMPLEMENTED", format!("{path} does not take {verb}; use {}", allow_header(allow)))
            }
        };
        status_body(self.http_status(), status, &message, vec![super::error_info("METHOD_NOT_FOUND")])
    }
}

/// The `Allow` header value for a list of methods.
pub fn allow_header(allow: &[Verb]) -> String {
    allow.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
}

/// A `google.rpc.Status` error body: `{"error": {code, status, message, details}}`, `code`
/// being the HTTP status (as AIP-193 and the SDKs have it).
pub fn status_body(http_status: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut error = json!({"code": http_status, "status": status, "message": message});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json!({ "error": error })
}

/// An error body for a path of `version`. On a 0.3 path the `google.rpc.Status` also names
/// the A2A error the way SDK 1.3.0's 0.3 REST client reads it: a top-level `type` (the
/// error's class name) and `message`; other readers see the same Status.
pub fn error_body(version: ProtocolVersion, status: Value) -> Value {
    if version != ProtocolVersion::V03 {
        return status;
    }
    let reason = status["error"]["details"][0]["reason"].as_str().unwrap_or_default();
    let Some(name) = v03_error_type(reason) else {
        return status;
    };
    let mut body = status;
    body["message"] = body["error"]["message"].clone();
    body["type"] = json!(name);
    body
}

/// The SDK's error class for an `ErrorInfo.reason`.
fn v03_error_type(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "TASK_NOT_FOUND" => "TaskNotFoundError",
        "TASK_NOT_CANCELABLE" => "TaskNotCancelableError",
        "PUSH_NOTIFICATION_NOT_SUPPORTED" => "PushNotificationNotSupportedError",
        "UNSUPPORTED_OPERATION" => "UnsupportedOperationError",
        "CONTENT_TYPE_NOT_SUPPORTED" => "ContentTypeNotSupportedError",
        "INVALID_AGENT_RESPONSE" => "InvalidAgentResponseError",
        "EXTENDED_AGENT_CARD_NOT_CONFIGURED" => "ExtendedAgentCardNotConfiguredError",
        "VERSION_NOT_SUPPORTED" => "VersionNotSupportedError",
        "INVALID_PARAMS" => "InvalidParamsError",
        "INVALID_REQUEST" => "InvalidRequestError",
        "METHOD_NOT_FOUND" => "MethodNotFoundError",
        "INTERNAL_ERROR" => "InternalError",
        _ => return None,
    })
}

/// One way a path could be read: the operation, the methods it takes, its ids.
struct Candidate {
    operation: Operation,
    verbs: &'static [Verb],
    task_id: Option<String>,
    config_id: Option<String>,
}

fn candidate(operation: Operation, verbs: &'static [Verb], task_id: Option<&str>) -> Candidate {
    Candidate { operation, verbs, task_id: task_id.map(str::to_owned), config_id: None }
}

/// The operations a path (after any tenant or `v1`) names.
fn candidates(segments: &[String], version: ProtocolVersion) -> Vec<Candidate> {
    use Operation::*;
    use Verb::*;
    let v10 = version == ProtocolVersion::V10;
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["message:send"] => vec![candidate(SendMessage, &[Post], None)],
        ["message:stream"] => vec![candidate(SendStreamingMessage, &[Post], None)],
        ["tasks"] if v10 => vec![candidate(ListTasks, &[Get], None)],
        ["extendedAgentCard"] if v10 => vec![candidate(GetExtendedAgentCard, &[Get], None)],
        ["card"] if !v10 => vec![candidate(GetExtendedAgentCard, &[Get], None)],
        ["tasks", id] => {
            let mut out = Vec::new();
            if let Some(task) = id.strip_suffix(":cancel").filter(|t| !t.is_empty()) {
                out.push(candidate(CancelTask, &[Post], Some(task)));
            }
            if let Some(task) = id.strip_suffix(":subscribe").filter(|t| !t.is_empty()) {
                out.push(candidate(SubscribeToTask, &[Get, Post], Some(task)));
            }
            if !id.is_empty() {
                out.push(candidate(GetTask, &[Get], Some(id)));
            }
            out
        }
        ["tasks", id, "pushNotificationConfigs"] if !id.is_empty() => {
            vec![candidate(CreatePushConfig, &[Post], Some(id)), candidate(ListPushConfigs, &[Get], Some(id))]
        }
        ["tasks", id, "pushNotificationConfigs", config] if !id.is_empty() && !config.is_empty() => {
            [candidate(GetPushConfig, &[Get], Some(id)), candidate(DeletePushConfig, &[Delete], Some(id))]
                .into_iter()
                .map(|c| Candidate { config_id: Some((*config).to_owned()), ..c })
                .collect()
        }
        _ => vec![],
    }
}

/// Reads a request: `tail` is the raw (still percent-encoded) path after `/agents/{id}/`.
/// `verb` is `None` for a method the binding never uses.
pub fn route(verb: Option<Verb>, tail: &str) -> Result<Route, RouteError> {
    let segments: Vec<String> = tail.split('/').map(percent_decode).collect();
    // (segments, version, tenant) in the order the SDK's router tries them.
    let mut readings: Vec<(&[String], ProtocolVersion, Option<&String>)> = Vec::new();
    match segments.split_first() {
        Some((first, rest)) if first == V03_PREFIX => readings.push((rest, ProtocolVersion::V03, None)),
        _ => readings.push((&segments, ProtocolVersion::V10, None)),
    }
    if let Some((tenant, rest)) = segments.split_first().filter(|(t, r)| !t.is_empty() && !r.is_empty()) {
        readings.push((rest, ProtocolVersion::V10, Some(tenant)));
    }
    let mut allowed: Vec<Verb> = Vec::new();
    for (segs, version, tenant) in readings {
        for c in candidates(segs, version) {
            if verb.is_some_and(|v| c.verbs.contains(&v)) {
                return Ok(Route {
                    operation: c.operation,
                    version,
                    tenant: tenant.cloned(),
                    task_id: c.task_id,
                    config_id: c.config_id,
                });
            }
            for v in c.verbs {
                if !allowed.contains(v) {
                    allowed.push(*v);
                }
            }
        }
    }
    if allowed.is_empty() { Err(RouteError::NotFound) } else { Err(RouteError::MethodNotAllowed(allowed)) }
}

impl Route {
    /// The JSON-RPC method that performs the operation, and the protocol version it runs in:
    /// the 1.0 model for everything but the 0.3 extended card (the 0.3 card is served as is).
    pub fn method(&self) -> (&'static str, ProtocolVersion) {
        match (self.version, self.operation) {
            (ProtocolVersion::V03, Operation::GetExtendedAgentCard) => {
                ("agent/getAuthenticatedExtendedCard", ProtocolVersion::V03)
            }
            (_, op) => (op.method_name(), ProtocolVersion::V10),
        }
    }

    /// The method's params (1.0 model) from the path, the raw query and the body (`None` for
    /// an operation without one, or an empty body).
    pub fn params(&self, query: Option<&str>, body: Option<Value>) -> Result<Value, WireError> {
        let body = body.map(json_names);
        let mut params = match (body, self.version, self.operation) {
            (None, ..) => Map::new(),
            (Some(b), ProtocolVersion::V03, Operation::SendMessage | Operation::SendStreamingMessage) => {
                object(proto03::send_params_to_v10(proto03::request_as_message(b))?, "body")?
            }
            (Some(b), ProtocolVersion::V03, Operation::CreatePushConfig) => {
                object(proto03::push_config_to_v10(b)?, "body")?
            }
            // The other 0.3 bodies hold nothing the gateway reads (the path has the ids).
            (Some(_), ProtocolVersion::V03, _) => Map::new(),
            (Some(b), ProtocolVersion::V10, _) => object(b, "body")?,
        };
        let query = query_pairs(query);
        match self.operation {
            Operation::GetTask => copy_query(&mut params, &query, &[("historyLength", Kind::Int)])?,
            Operation::ListTasks => copy_query(&mut params, &query, LIST_TASKS_QUERY)?,
            Operation::ListPushConfigs => {
                copy_query(&mut params, &query, &[("pageSize", Kind::Int), ("pageToken", Kind::Str)])?
            }
            _ => {}
        }
        match self.operation {
            Operation::GetPushConfig | Operation::DeletePushConfig => {
                params.insert("taskId".into(), json!(self.task_id));
                params.insert("id".into(), json!(self.config_id));
            }
            Operation::CreatePushConfig | Operation::ListPushConfigs => {
                params.insert("taskId".into(), json!(self.task_id));
            }
            _ => {
                if let Some(id) = &self.task_id {
                    params.insert("id".into(), json!(id));
                }
            }
        }
        if let Some(tenant) = &self.tenant {
            params.insert("tenant".into(), json!(tenant));
        }
        Ok(Value::Object(params))
    }

    /// The REST body of the method's result (the JSON-RPC `result` in the version
    /// [`Route::method`] ran it in).
    pub fn answer_body(&self, result: Value) -> Value {
        match (self.version, self.operation) {
            (_, Operation::DeletePushConfig) if result.is_null() => json!({}),
            (ProtocolVersion::V03, Operation::SendMessage) => proto03::wrapped_from_v10(result),
            (ProtocolVersion::V03, Operation::GetTask | Operation::CancelTask) => proto03::task_from_v10(result),
            (ProtocolVersion::V03, Operation::CreatePushConfig | Operation::GetPushConfig) => {
                proto03::push_config_from_v10(result)
            }
            (ProtocolVersion::V03, Operation::ListPushConfigs) => proto03::push_config_list_from_v10(result),
            _ => result,
        }
    }
}

/// The `data` of one SSE event: the bare `StreamResponse` (1.0 model in, the path's version
/// out).
pub fn stream_event(version: ProtocolVersion, result: Value) -> Value {
    match version {
        ProtocolVersion::V10 => result,
        ProtocolVersion::V03 => proto03::wrapped_from_v10(result),
    }
}

/// A ProtoJSON body with the JSON names of its fields: parsers take a field's proto name as
/// well (`message_id` for `messageId`), which the SDK's 0.3 REST client sends. Free-form
/// values (`metadata`, a data part's `data`) are left as they are.
fn json_names(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k == "metadata" || k == "data" { v } else { json_names(v) };
                    (camel_case(&k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(json_names).collect()),
        other => other,
    }
}

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// ListTasks' query parameters (the `ListTasksRequest` fields in camelCase).
const LIST_TASKS_QUERY: &[(&str, Kind)] = &[
    ("contextId", Kind::Str),
    ("status", Kind::Str),
    ("pageSize", Kind::Int),
    ("pageToken", Kind::Str),
    ("historyLength", Kind::Int),
    ("statusTimestampAfter", Kind::Str),
    ("includeArtifacts", Kind::Bool),
];

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
}

/// Copies the named query parameters into params, typed (the last of repeated ones wins, as
/// in the SDK); others are ignored (`A2A-Version` among them).
fn copy_query(
    params: &mut Map<String, Value>,
    query: &[(String, String)],
    names: &[(&str, Kind)],
) -> Result<(), WireError> {
    for (name, kind) in names {
        let Some((_, raw)) = query.iter().rev().find(|(k, _)| k == name) else {
            continue;
        };
        let value = match kind {
            Kind::Str => json!(raw),
            Kind::Int => json!(raw.parse::<i64>().map_err(|_| err(format!("{name} must be an integer, not {raw:?}")))?),
            Kind::Bool => match raw.to_ascii_lowercase().as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => return Err(err(format!("{name} must be true or false, not {raw:?}"))),
            },
        };
        params.insert((*name).to_owned(), value);
    }
    Ok(())
}

/// A raw query as decoded pairs (`+` is a space in a query).
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode(&s.replace('+', " "));
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// Decodes `%XX` escapes; a malformed escape or invalid UTF-8 is kept as it was.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V10: ProtocolVersion = ProtocolVersion::V10;
    const V03: ProtocolVersion = ProtocolVersion::V03;

    fn op(verb: Verb, tail: &str) -> (Operation, ProtocolVersion, Option<String>, Option<String>) {
        let r = route(Some(verb), tail).unwrap_or_else(|e| panic!("{tail}: {e:?}"));
        (r.operation, r.version, r.tenant, r.task_id)
    }

    #[test]
    fn paths_name_operations() {
        use Operation::*;
        let t = |s: &str| Some(s.to_owned());
        assert_eq!(op(Verb::Post, "message:send"), (SendMessage, V10, None, None));
        assert_eq!(op(Verb::Post, "message:stream"), (SendStreamingMessage, V10, None, None));
        assert_eq!(op(Verb::Get, "tasks/t1"), (GetTask, V10, None, t("t1")));
        assert_eq!(op(Verb::Get, "tasks"), (ListTasks, V10, None, None));
        assert_eq!(op(Verb::Post, "tasks/t1:cancel"), (CancelTask, V10, None, t("t1")));
        assert_eq!(op(Verb::Post, "tasks/t1:subscribe"), (SubscribeToTask, V10, None, t("t1")));
        assert_eq!(op(Verb::Get, "tasks/t1:subscribe"), (SubscribeToTask, V10, None, t("t1")));
        assert_eq!(op(Verb::Get, "tasks/t1:cancel"), (GetTask, V10, None, t("t1:cancel")), "GET reads the id whole");
        assert_eq!(op(Verb::Get, "extendedAgentCard"), (GetExtendedAgentCard, V10, None, None));
        assert_eq!(op(Verb::Post, "tasks/t1/pushNotificationConfigs"), (CreatePushConfig, V10, None, t("t1")));
        assert_eq!(op(Verb::Get, "tasks/t1/pushNotificationConfigs"), (ListPushConfigs, V10, None, t("t1")));
        assert_eq!(op(Verb::Get, "tasks/t1/pushNotificationConfigs/c"), (GetPushConfig, V10, None, t("t1")));
        assert_eq!(op(Verb::Delete, "tasks/t1/pushNotificationConfigs/c"), (DeletePushConfig, V10, None, t("t1")));
        // Percent-encoded ids are decoded per segment, so an id may hold a slash.
        assert_eq!(op(Verb::Get, "tasks/a%2Fb%20c"), (GetTask, V10, None, t("a/b c")));
    }

    #[test]
    fn tenants_and_v03() {
        use Operation::*;
        let t = |s: &str| Some(s.to_owned());
        assert_eq!(op(Verb::Post, "acme/message:send"), (SendMessage, V10, t("acme"), None));
        assert_eq!(op(Verb::Get, "acme/tasks/t1"), (GetTask, V10, t("acme"), t("t1")));
        assert_eq!(op(Verb::Get, "acme/tasks"), (ListTasks, V10, t("acme"), None));
        // The path without a tenant wins when it takes the method; else the tenant reading.
        assert_eq!(op(Verb::Post, "tasks/message:send"), (SendMessage, V10, t("tasks"), None));
        assert_eq!(op(Verb::Post, "v1/message:send"), (SendMessage, V03, None, None));
        assert_eq!(op(Verb::Get, "v1/tasks/t1"), (GetTask, V03, None, t("t1")));
        assert_eq!(op(Verb::Post, "v1/tasks/t1:cancel"), (CancelTask, V03, None, t("t1")));
        assert_eq!(op(Verb::Get, "v1/card"), (GetExtendedAgentCard, V03, None, None));
        // 0.3 has no ListTasks: `v1` is then read as a tenant.
        assert_eq!(op(Verb::Get, "v1/tasks"), (ListTasks, V10, t("v1"), None));
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        assert_eq!(route(Some(Verb::Get), "nope"), Err(RouteError::NotFound));
        assert_eq!(route(Some(Verb::Get), "a/b/c/d/e/f"), Err(RouteError::NotFound));
        assert_eq!(route(Some(Verb::Get), "tasks/:cancel/x"), Err(RouteError::NotFound));
        assert_eq!(route(Some(Verb::Get), "card"), Err(RouteError::NotFound), "card is 0.3 only");
        assert_eq!(route(Some(Verb::Get), "message:send"), Err(RouteError::MethodNotAllowed(vec![Verb::Post])));
        assert_eq!(route(Some(Verb::Delete), "tasks/t1"), Err(RouteError::MethodNotAllowed(vec![Verb::Get])));
        assert_eq!(
            route(Some(Verb::Delete), "tasks/t1:subscribe"),
            Err(RouteError::MethodNotAllowed(vec![Verb::Get, Verb::Post]))
        );
        assert_eq!(route(None, "tasks"), Err(RouteError::MethodNotAllowed(vec![Verb::Get])));
        let e = RouteError::MethodNotAllowed(vec![Verb::Get, Verb::Post]);
        let body = e.status_body("PUT", "/agents/a/tasks/t:subscribe");
        assert_eq!(
            (body["error"]["code"].as_u64(), allow_header(&[Verb::Get, Verb::Post])),
            (Some(405), "GET, POST".into())
        );
        assert_eq!(body["error"]["details"][0]["reason"], "METHOD_NOT_FOUND");
    }

    fn params(verb: Verb, tail: &str, query: Option<&str>, body: Option<Value>) -> Result<Value, WireError> {
        route(Some(verb), tail).unwrap().params(query, body)
    }

    #[test]
    fn params_from_path_query_and_body() {
        assert_eq!(
            params(Verb::Get, "acme/tasks/t1", Some("historyLength=2&A2A-Version=1.0"), None).unwrap(),
            json!({"id": "t1", "historyLength": 2, "tenant": "acme"})
        );
        let list = params(
            Verb::Get,
            "tasks",
            Some("contextId=c+1&status=TASK_STATE_WORKING&pageSize=5&pageSize=7&pageToken=x&historyLength=0&statusTimestampAfter=2026-01-01T00%3A00%3A00Z&includeArtifacts=TRUE&other=1"),
            None,
        )
        .unwrap();
        assert_eq!(
            list,
            json!({"contextId": "c 1", "status": "TASK_STATE_WORKING", "pageSize": 7, "pageToken": "x",
                "historyLength": 0, "statusTimestampAfter": "2026-01-01T00:00:00Z", "includeArtifacts": true})
        );
        assert!(params(Verb::Get, "tasks", Some("pageSize=abc"), None).is_err());
        assert!(params(Verb::Get, "tasks/t", Some("historyLength=1.5"), None).is_err());
        assert!(params(Verb::Get, "tasks", Some("includeArtifacts=yes"), None).is_err());
        // A negative length is the method's to refuse, as over JSON-RPC.
        assert_eq!(params(Verb::Get, "tasks/t", Some("historyLength=-1"), None).unwrap()["historyLength"], -1);
        let cancel = params(Verb::Post, "tasks/t1:cancel", None, Some(json!({"metadata": {"k": 1}}))).unwrap();
        assert_eq!(cancel, json!({"metadata": {"k": 1}, "id": "t1"}));
        let send = params(Verb::Post, "message:send", None, Some(json!({"message": {"messageId": "m"}}))).unwrap();
        assert_eq!(send, json!({"message": {"messageId": "m"}}));
        assert!(params(Verb::Post, "message:send", None, Some(json!([1]))).is_err());
        let push = params(Verb::Delete, "tasks/t1/pushNotificationConfigs/c1", None, None).unwrap();
        assert_eq!(push, json!({"taskId": "t1", "id": "c1"}));
    }

    #[test]
    fn v03_error_bodies_name_the_error_class() {
        let status =
            status_body(404, "NOT_FOUND", "task not found: t", vec![super::super::error_info("TASK_NOT_FOUND")]);
        assert_eq!(error_body(V10, status.clone()), status);
        let v03 = error_body(V03, status.clone());
        assert_eq!(
            (v03["type"].as_str(), v03["message"].as_str()),
            (Some("TaskNotFoundError"), Some("task not found: t"))
        );
        assert_eq!(v03["error"], status["error"]);
        let bare = status_body(500, "INTERNAL", "x", vec![]);
        assert_eq!(error_body(V03, bare.clone()), bare);
    }

    #[test]
    fn proto_field_names_are_read_as_json_names() {
        let body = json!({"request": {"message_id": "m", "role": "ROLE_USER", "content": [{"text": "hi"}],
            "metadata": {"keep_me": 1}}, "configuration": {"accepted_output_modes": ["text/plain"], "blocking": true}});
        let p = params(Verb::Post, "v1/message:send", None, Some(body)).unwrap();
        assert_eq!(
            p,
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}], "metadata": {"keep_me": 1}},
                "configuration": {"acceptedOutputModes": ["text/plain"], "returnImmediately": false}})
        );
        let v10 = json!({"message": {"message_id": "m", "parts": [{"data": {"a_b": 1}}]}});
        let p = params(Verb::Post, "message:send", None, Some(v10)).unwrap();
        assert_eq!(p, json!({"message": {"messageId": "m", "parts": [{"data": {"a_b": 1}}]}}));
    }

    #[test]
    fn v03_bodies_are_protojson() {
        let body = json!({"message": {"messageId": "m", "role": "ROLE_USER", "content": [{"text": "hi"}]},
            "configuration": {"blocking": false}});
        let p = params(Verb::Post, "v1/message:stream", None, Some(body)).unwrap();
        assert_eq!(
            p,
            json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]},
                "configuration": {"returnImmediately": true}})
        );
        let r = route(Some(Verb::Get), "v1/tasks/t").unwrap();
        assert_eq!(r.method(), ("GetTask", V10));
        let task = json!({"id": "t", "status": {"state": "TASK_STATE_CANCELED"}});
        assert_eq!(r.answer_body(task)["status"]["state"], "TASK_STATE_CANCELLED");
        assert_eq!(route(Some(Verb::Get), "v1/card").unwrap().method(), ("agent/getAuthenticatedExtendedCard", V03));
        let sent = route(Some(Verb::Post), "v1/message:send").unwrap();
        let answer =
            sent.answer_body(json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}]}}));
        assert_eq!(answer["message"]["content"], json!([{"text": "x"}]));
        let update = json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_COMPLETED"}}});
        assert_eq!(stream_event(V03, update.clone())["statusUpdate"]["final"], true);
        assert_eq!(stream_event(V10, update.clone()), update);
        let deleted = route(Some(Verb::Delete), "tasks/t/pushNotificationConfigs/c").unwrap();
        assert_eq!(deleted.answer_body(Value::Null), json!({}));
    }
}
