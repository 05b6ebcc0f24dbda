//! JSON-RPC 2.0: the request envelope, the one error enum of the public API, and the one
//! place error codes are chosen ([`RpcError::code`]).
//!
//! Errors go out with HTTP 200. In A2A 1.0 an error's `data` is an array holding a
//! `google.rpc.ErrorInfo`; in 0.3 it is free-form (the gateway leaves it out, or passes an
//! agent's through). [`RpcError::http_status`], [`RpcError::grpc_status`] and
//! [`RpcError::retry_after_secs`] give the status, the `google.rpc.Status` code and
//! `Retry-After` the HTTP+JSON binding answers with ([`RpcError::to_status_body`]).
//!
//! The gateway's own codes sit in the JSON-RPC server range, outside A2A's -32001..-32009:
//!
//! | code | reason | retryable | meaning |
//! |---|---|---|---|
//! | -32010 | AGENT_NOT_FOUND | no | no agent with that id (SuperX's -32010) |
//! | -32012 | AGENT_CIRCUIT_OPEN | yes, after Retry-After | the agent's breaker is open (SuperX's -32002) |
//! | -32013 | AGENT_OVERLOADED | yes | the agent's `maxInFlight` calls are in flight (SuperX's -32003) |
//! | -32014 | AGENT_AUTH_REFUSED | no | the agent refused the caller's credentials (401/403) on a call made with them |
//! | -32030 | UNAUTHENTICATED | no | no valid credential for the gateway (HTTP 401 on both bindings, `WWW-Authenticate`) |
//! | -32031 | PERMISSION_DENIED | no | a valid credential not allowed this call: the control plane, another agent (HTTP 403) |
//! | -32020 | OVERLOADED | yes | the gateway is at a limit (memory table full, slow stream reader) |
//! | -32022 | RATE_LIMITED | yes, after Retry-After | the credential's or agent's rate limit (HTTP 429 on both bindings) |
//! | -32021 | UNAVAILABLE | yes | no raft leader or majority, archive unreachable |
//! | -32099 | AGENT_UNAVAILABLE | yes | the agent failed: unreachable, timed out, HTTP error (SuperX's -32099) |

use serde::Serialize;
use serde_json::{Value, json};

use crate::a2a::{ProtocolVersion, error_info};

/// A parsed request envelope.
#[derive(Debug)]
pub struct Request {
    pub id: Value,
    pub method: String,
    /// `Value::Null` when absent.
    pub params: Value,
}

/// Parses a request body. On failure, the id to answer with (null when unknown) and the error.
pub fn parse_request(body: &[u8]) -> Result<Request, (Value, RpcError)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| (Value::Null, RpcError::Parse(format!("invalid JSON: {e}"))))?;
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err((Value::Null, invalid("batch requests are not supported"))),
        _ => return Err((Value::Null, invalid("a request must be a JSON object"))),
    };
    let id = match obj.remove("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => id,
        Some(_) => {
            return Err((Value::Null, invalid("id must be a string, a number or null")));
        }
        None => {
            return Err((Value::Null, invalid("notifications (requests without an id) are not supported")));
        }
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, invalid("jsonrpc must be \"2.0\"")));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err((id, invalid("method must be a string"))),
    };
    let params = obj.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Object(_) | Value::Null) {
        return Err((id, RpcError::InvalidParams("params must be an object".into())));
    }
    Ok(Request { id, method, params })
}

fn invalid(msg: &str) -> RpcError {
    RpcError::InvalidRequest(msg.to_owned())
}

/// Every error the public API answers with. A variant exists where a caller or a client
/// branches on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("method not found: {0}")]
    MethodNotFound(String),
    #[error("{0}")]
    InvalidParams(String),
    /// An internal fault. Clients see a generic message; the detail is logged once.
    #[error("internal error")]
    Internal(String),
    #[error("task not found: {0}")]
    TaskNotFound(String),
    /// A push config id the task does not have: A2A's TaskNotFoundError, as the SDK answers.
    #[error("push notification config {config} not found for task {task}")]
    PushConfigNotFound { task: String, config: String },
    #[error("task {0} is in a terminal state and cannot be canceled")]
    TaskNotCancelable(String),
    #[error("push notifications are not supported")]
    PushNotSupported,
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    ContentTypeNotSupported(String),
    #[error("invalid agent response: {0}")]
    InvalidAgentResponse(String),
    #[error("extended agent card is not configured")]
    ExtendedCardNotConfigured,
    #[error("{0}")]
    VersionNotSupported(String),
    /// The named agent is not registered (a gateway code, outside A2A's reserved range).
    #[error("agent not found: {0}")]
    AgentNotFound(String),
    /// The agent could not be reached or did not answer well (HTTP status, timeout).
    #[error("{0}")]
    AgentUnavailable(String),
    /// The agent's circuit breaker is open: the gateway did not call it. Retryable after
    /// `retry_after_secs` (the rest of the cooldown).
    #[error("agent {agent} is failing and its circuit breaker is open; retry in {retry_after_secs} s")]
    AgentCircuitOpen { agent: String, retry_after_secs: u64 },
    /// The agent already has `max_in_flight` calls in flight on this node. Retryable.
    #[error("agent {agent} is overloaded: {max_in_flight} calls in flight (maxInFlight); retry later")]
    AgentOverloaded { agent: String, max_in_flight: u32 },
    /// The agent answered 401/403 to a call made with the client's credentials (the extended
    /// card): the caller is refused; the agent did not fail.
    #[error("agent {agent} refused the caller's credentials (HTTP {status})")]
    AgentAuthRefused { agent: String, status: u16 },
    /// The gateway is at a limit for this request (a full subscriber list, a stream reader
    /// too slow to keep up). Retryable later.
    #[error("{0}")]
    Overloaded(String),
    /// Over a rate limit (`crate::limits`): the credential's or the agent's. Retryable after
    /// `retry_after_secs`, when the bucket has a token again.
    #[error("rate limit of this {scope} exceeded; retry in {retry_after_secs} s")]
    RateLimited { scope: &'static str, retry_after_secs: u64 },
    /// The cluster cannot take the request right now (no leader during an election, no
    /// majority). Retryable.
    #[error("{0}")]
    Unavailable(String),
    /// No valid credential for the gateway (`crate::auth`). HTTP 401 on both bindings.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential that may not make this call. HTTP 403 on both bindings; the same
    /// answer whether or not the agent it names exists.
    #[error("{0}")]
    PermissionDenied(String),
    /// An error the agent answered with, passed on.
    #[error("{message}")]
    Upstream { code: i64, message: String, data: Option<Value> },
}

impl RpcError {
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => -32700,
            Self::InvalidRequest(_) => -32600,
            Self::MethodNotFound(_) => -32601,
            Self::InvalidParams(_) => -32602,
            Self::Internal(_) => -32603,
            Self::TaskNotFound(_) | Self::PushConfigNotFound { .. } => -32001,
            Self::TaskNotCancelable(_) => -32002,
            Self::PushNotSupported => -32003,
            Self::UnsupportedOperation(_) => -32004,
            Self::ContentTypeNotSupported(_) => -32005,
            Self::InvalidAgentResponse(_) => -32006,
            Self::ExtendedCardNotConfigured => -32007,
            Self::VersionNotSupported(_) => -32009,
            Self::AgentNotFound(_) => -32010,
            Self::AgentCircuitOpen { .. } => -32012,
            Self::AgentOverloaded { .. } => -32013,
            Self::AgentAuthRefused { .. } => -32014,
            Self::Unauthenticated(_) => -32030,
            Self::PermissionDenied(_) => -32031,
            Self::Overloaded(_) => -32020,
            Self::Unavailable(_) => -32021,
            Self::RateLimited { .. } => -32022,
            Self::AgentUnavailable(_) => -32099,
            Self::Upstream { code, .. } => *code,
        }
    }

    /// Whether the same request may succeed later without change (a limit, a failing agent,
    /// an election), as opposed to a bug or a bad request.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::AgentCircuitOpen { .. }
                | Self::AgentOverloaded { .. }
                | Self::Overloaded(_)
                | Self::Unavailable(_)
                | Self::RateLimited { .. }
                | Self::AgentUnavailable(_)
        )
    }

    /// The HTTP status the HTTP+JSON binding answers this error with. JSON-RPC answers every
    /// error with 200, as A2A's JSON-RPC binding says.
    pub fn http_status(&self) -> u16 {
        self.statuses().0
    }

    /// The `google.rpc.Code` name (`status` of a `google.rpc.Status`) for the HTTP+JSON
    /// binding (and gRPC).
    pub fn grpc_status(&self) -> &'static str {
        self.statuses().1
    }

    /// The HTTP status and gRPC code, one table (spec §5.4 for A2A's errors). Deliberate
    /// departures, as a gateway: a request body of the wrong media type is 415 (the spec's 400
    /// is for parts of a media type an agent refuses, which come back as the agent's own
    /// error); an agent that answered badly or not at all is 502 (the gateway's upstream
    /// failed, not the gateway).
    fn statuses(&self) -> (u16, &'static str) {
        const INVALID: (u16, &str) = (400, "INVALID_ARGUMENT");
        const PRECONDITION: (u16, &str) = (400, "FAILED_PRECONDITION");
        const NOT_FOUND: (u16, &str) = (404, "NOT_FOUND");
        const INTERNAL: (u16, &str) = (500, "INTERNAL");
        const UNAVAILABLE: (u16, &str) = (503, "UNAVAILABLE");
        match self {
            Self::Parse(_) | Self::InvalidRequest(_) | Self::InvalidParams(_) => INVALID,
            Self::MethodNotFound(_)
            | Self::TaskNotFound(_)
            | Self::PushConfigNotFound { .. }
            | Self::AgentNotFound(_) => NOT_FOUND,
            Self::TaskNotCancelable(_)
            | Self::PushNotSupported
            | Self::UnsupportedOperation(_)
            | Self::ExtendedCardNotConfigured
            | Self::VersionNotSupported(_) => PRECONDITION,
            Self::ContentTypeNotSupported(_) => (415, "INVALID_ARGUMENT"),
            Self::Internal(_) => INTERNAL,
            Self::InvalidAgentResponse(_) => (502, "INTERNAL"),
            Self::AgentUnavailable(_) => (502, "UNAVAILABLE"),
            Self::AgentOverloaded { .. } | Self::RateLimited { .. } => (429, "RESOURCE_EXHAUSTED"),
            Self::AgentAuthRefused { status: 401, .. } => (401, "UNAUTHENTICATED"),
            Self::AgentAuthRefused { status, .. } => (*status, "PERMISSION_DENIED"),
            Self::Unauthenticated(_) => (401, "UNAUTHENTICATED"),
            Self::PermissionDenied(_) => (403, "PERMISSION_DENIED"),
            Self::AgentCircuitOpen { .. } | Self::Overloaded(_) | Self::Unavailable(_) => UNAVAILABLE,
            Self::Upstream { code, .. } => match code {
                -32001 | -32601 => NOT_FOUND,
                -32700 | -32600 | -32602 | -32005 => INVALID,
                -32006 => INTERNAL,
                -32009..=-32002 => PRECONDITION,
                _ => INTERNAL,
            },
        }
    }

    /// The `Retry-After` seconds to send with [`Self::http_status`]: the rest of the
    /// breaker's cooldown, or a second for the other retryable limits.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::AgentCircuitOpen { retry_after_secs, .. } | Self::RateLimited { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::AgentOverloaded { .. } | Self::Overloaded(_) | Self::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    /// The agent a gateway error is about, for `ErrorInfo.metadata.agentId`.
    fn agent(&self) -> Option<&str> {
        match self {
            Self::AgentCircuitOpen { agent, .. } | Self::AgentOverloaded { agent, .. } => Some(agent),
            Self::AgentNotFound(agent) | Self::AgentAuthRefused { agent, .. } => Some(agent),
            _ => None,
        }
    }

    /// The `ErrorInfo.reason` for a code (SDK 1.3.0's names), if it has one.
    fn reason(code: i64) -> Option<&'static str> {
        Some(match code {
            -32700 => "PARSE_ERROR",
            -32600 => "INVALID_REQUEST",
            -32602 => "INVALID_PARAMS",
            -32603 => "INTERNAL_ERROR",
            -32001 => "TASK_NOT_FOUND",
            -32002 => "TASK_NOT_CANCELABLE",
            -32003 => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            -32004 => "UNSUPPORTED_OPERATION",
            -32005 => "CONTENT_TYPE_NOT_SUPPORTED",
            -32006 => "INVALID_AGENT_RESPONSE",
            -32007 => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            -32008 => "EXTENSION_SUPPORT_REQUIRED",
            -32009 => "VERSION_NOT_SUPPORTED",
            -32010 => "AGENT_NOT_FOUND",
            -32012 => "AGENT_CIRCUIT_OPEN",
            -32013 => "AGENT_OVERLOADED",
            -32014 => "AGENT_AUTH_REFUSED",
            -32030 => "UNAUTHENTICATED",
            -32031 => "PERMISSION_DENIED",
            -32020 => "OVERLOADED",
            -32021 => "UNAVAILABLE",
            -32022 => "RATE_LIMITED",
            -32099 => "AGENT_UNAVAILABLE",
            _ => return None,
        })
    }

    /// The HTTP+JSON binding's `google.rpc.Status` body, the same for 1.0 and 0.3 paths (as
    /// SDK 1.3.0 answers both). Its `ErrorInfo` is the one 1.0 JSON-RPC `data` carries (with
    /// `METHOD_NOT_FOUND` too, which SDK REST clients read); an agent's own details pass
    /// through.
    pub fn to_status_body(&self) -> Value {
        let code = self.code();
        let details = match self {
            Self::Upstream { data: Some(Value::Array(details)), .. } => details.clone(),
            Self::Upstream { .. } if (-32099..=-32010).contains(&code) => vec![],
            _ => Self::reason(code)
                .or((code == -32601).then_some("METHOD_NOT_FOUND"))
                .map(|r| vec![self.error_info(r)])
                .unwrap_or_default(),
        };
        crate::a2a::rest::status_body(self.http_status(), self.grpc_status(), &self.to_string(), details)
    }

    /// The JSON-RPC `error` object, in the client's protocol version.
    pub fn to_error_object(&self, version: ProtocolVersion) -> Value {
        let code = self.code();
        let mut error = json!({ "code": code, "message": self.to_string() });
        let data = match (self, version) {
            (Self::Upstream { data: Some(d), .. }, ProtocolVersion::V10) if d.is_array() => Some(d.clone()),
            (Self::Upstream { data: Some(d), .. }, ProtocolVersion::V03) if !d.is_array() => Some(d.clone()),
            // An agent's error gets a reason only for the standard and A2A codes: the
            // gateway's own codes mean what the gateway says, not what an agent reused them for.
            (Self::Upstream { .. }, ProtocolVersion::V10) if (-32099..=-32010).contains(&code) => None,
            (_, ProtocolVersion::V10) => Self::reason(code).map(|r| json!([self.error_info(r)])),
            (_, ProtocolVersion::V03) => None,
        };
        if let Some(data) = data {
            error["data"] = data;
        }
        error
    }

    /// The `ErrorInfo` with the agent and the retry hint in its metadata (string values, as
    /// `google.rpc.ErrorInfo` has them).
    fn error_info(&self, reason: &str) -> Value {
        let mut info = error_info(reason);
        if let Some(agent) = self.agent() {
            info["metadata"]["agentId"] = json!(agent);
        }
        if let Some(secs) = self.retry_after_secs() {
            info["metadata"]["retryAfterSeconds"] = json!(secs.to_string());
        }
        info
    }
}

#[derive(Serialize)]
struct Success<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a Value,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: Value,
}

/// A success response, serialized.
pub fn success_bytes(id: &Value, result: &Value) -> Vec<u8> {
    serde_json::to_vec(&Success { jsonrpc: "2.0", id, result }).expect("JSON values serialize")
}

/// An error response, serialized.
pub fn failure_bytes(id: &Value, error: &RpcError, version: ProtocolVersion) -> Vec<u8> {
    let failure = Failure { jsonrpc: "2.0", id, error: error.to_error_object(version) };
    serde_json::to_vec(&failure).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(body: &str) -> (Value, i64) {
        let (id, e) = parse_request(body.as_bytes()).unwrap_err();
        (id, e.code())
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(parse_err("{"), (Value::Null, -32700));
        assert_eq!(parse_err("[]"), (Value::Null, -32600));
        assert_eq!(parse_err("3"), (Value::Null, -32600));
        assert_eq!(parse_err(r#"{"jsonrpc":"2.0","method":"x"}"#), (Value::Null, -32600));
        assert_eq!(parse_err(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#), (Value::Null, -32600));
        assert_eq!(parse_err(r#"{"id":1,"method":"x"}"#), (json!(1), -32600));
        assert_eq!(parse_err(r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#), (json!("a"), -32600));
        assert_eq!(parse_err(r#"{"jsonrpc":"2.0","id":1,"method":5}"#), (json!(1), -32600));
        assert_eq!(parse_err(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#), (json!(1), -32602));
        let ok = parse_request(br#"{"jsonrpc":"2.0","id":null,"method":"GetTask"}"#).unwrap();
        assert_eq!((ok.id, ok.method.as_str(), ok.params), (Value::Null, "GetTask", Value::Null));
    }

    #[test]
    fn error_data_by_version() {
        let e = RpcError::TaskNotFound("t".into());
        let v10 = e.to_error_object(ProtocolVersion::V10);
        assert_eq!(v10["code"], -32001);
        assert_eq!(v10["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(v10["data"][0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
        assert!(e.to_error_object(ProtocolVersion::V03).get("data").is_none());
        let nf = RpcError::MethodNotFound("x".into()).to_error_object(ProtocolVersion::V10);
        assert!(nf.get("data").is_none());
        let internal = RpcError::Internal("secret detail".into()).to_error_object(ProtocolVersion::V03);
        assert_eq!(internal["message"], "internal error");
    }

    #[test]
    fn limits_and_failures_have_their_own_codes_outside_a2a() {
        let open = RpcError::AgentCircuitOpen { agent: "a".into(), retry_after_secs: 7 };
        let busy = RpcError::AgentOverloaded { agent: "a".into(), max_in_flight: 2 };
        let cases = [
            (open.clone(), -32012, "AGENT_CIRCUIT_OPEN", 503, Some(7)),
            (busy, -32013, "AGENT_OVERLOADED", 429, Some(1)),
            (RpcError::Overloaded("full".into()), -32020, "OVERLOADED", 503, Some(1)),
            (RpcError::Unavailable("no leader".into()), -32021, "UNAVAILABLE", 503, Some(1)),
            (RpcError::RateLimited { scope: "agent", retry_after_secs: 3 }, -32022, "RATE_LIMITED", 429, Some(3)),
            (RpcError::AgentUnavailable("down".into()), -32099, "AGENT_UNAVAILABLE", 502, None),
            (RpcError::Internal("bug".into()), -32603, "INTERNAL_ERROR", 500, None),
        ];
        for (e, code, reason, status, retry) in cases {
            assert!(!(-32009..=-32001).contains(&code), "{code} is A2A's");
            let v10 = e.to_error_object(ProtocolVersion::V10);
            assert_eq!((v10["code"].as_i64(), v10["data"][0]["reason"].as_str()), (Some(code), Some(reason)), "{e:?}");
            assert_eq!((e.http_status(), e.retry_after_secs()), (status, retry), "{e:?}");
            assert_eq!(e.is_retryable(), code != -32603, "{e:?}");
        }
        let v10 = open.to_error_object(ProtocolVersion::V10);
        assert_eq!(v10["data"][0]["metadata"], json!({"agentId": "a", "retryAfterSeconds": "7"}));
        assert!(v10["message"].as_str().unwrap().contains("agent a"), "{v10}");
        assert!(open.to_error_object(ProtocolVersion::V03).get("data").is_none());
    }

    #[test]
    fn status_bodies_for_http_json() {
        let cases = [
            (RpcError::TaskNotFound("t".into()), 404, "NOT_FOUND", Some("TASK_NOT_FOUND")),
            (RpcError::TaskNotCancelable("t".into()), 400, "FAILED_PRECONDITION", Some("TASK_NOT_CANCELABLE")),
            (RpcError::PushNotSupported, 400, "FAILED_PRECONDITION", Some("PUSH_NOTIFICATION_NOT_SUPPORTED")),
            (RpcError::UnsupportedOperation("x".into()), 400, "FAILED_PRECONDITION", Some("UNSUPPORTED_OPERATION")),
            (
                RpcError::ContentTypeNotSupported("x".into()),
                415,
                "INVALID_ARGUMENT",
                Some("CONTENT_TYPE_NOT_SUPPORTED"),
            ),
            (RpcError::VersionNotSupported("x".into()), 400, "FAILED_PRECONDITION", Some("VERSION_NOT_SUPPORTED")),
            (RpcError::InvalidParams("x".into()), 400, "INVALID_ARGUMENT", Some("INVALID_PARAMS")),
            (RpcError::Parse("x".into()), 400, "INVALID_ARGUMENT", Some("PARSE_ERROR")),
            (RpcError::MethodNotFound("x".into()), 404, "NOT_FOUND", Some("METHOD_NOT_FOUND")),
            (RpcError::AgentNotFound("a".into()), 404, "NOT_FOUND", Some("AGENT_NOT_FOUND")),
            (RpcError::InvalidAgentResponse("x".into()), 502, "INTERNAL", Some("INVALID_AGENT_RESPONSE")),
            (RpcError::AgentUnavailable("x".into()), 502, "UNAVAILABLE", Some("AGENT_UNAVAILABLE")),
            (
                RpcError::AgentOverloaded { agent: "a".into(), max_in_flight: 1 },
                429,
                "RESOURCE_EXHAUSTED",
                Some("AGENT_OVERLOADED"),
            ),
            (
                RpcError::AgentAuthRefused { agent: "a".into(), status: 401 },
                401,
                "UNAUTHENTICATED",
                Some("AGENT_AUTH_REFUSED"),
            ),
            (
                RpcError::AgentAuthRefused { agent: "a".into(), status: 403 },
                403,
                "PERMISSION_DENIED",
                Some("AGENT_AUTH_REFUSED"),
            ),
            (RpcError::Unavailable("x".into()), 503, "UNAVAILABLE", Some("UNAVAILABLE")),
            (
                RpcError::RateLimited { scope: "credential", retry_after_secs: 1 },
                429,
                "RESOURCE_EXHAUSTED",
                Some("RATE_LIMITED"),
            ),
            (RpcError::Internal("secret".into()), 500, "INTERNAL", Some("INTERNAL_ERROR")),
            (
                RpcError::Upstream { code: -32001, message: "m".into(), data: None },
                404,
                "NOT_FOUND",
                Some("TASK_NOT_FOUND"),
            ),
            (
                RpcError::Upstream { code: -32005, message: "m".into(), data: None },
                400,
                "INVALID_ARGUMENT",
                Some("CONTENT_TYPE_NOT_SUPPORTED"),
            ),
            (
                RpcError::Upstream { code: -32006, message: "m".into(), data: None },
                500,
                "INTERNAL",
                Some("INVALID_AGENT_RESPONSE"),
            ),
            (
                RpcError::Upstream { code: -32008, message: "m".into(), data: None },
                400,
                "FAILED_PRECONDITION",
                Some("EXTENSION_SUPPORT_REQUIRED"),
            ),
            (RpcError::Upstream { code: -32050, message: "m".into(), data: None }, 500, "INTERNAL", None),
            (RpcError::Upstream { code: 7, message: "m".into(), data: None }, 500, "INTERNAL", None),
        ];
        for (e, http, status, reason) in cases {
            let body = e.to_status_body();
            let err = &body["error"];
            assert_eq!((err["code"].as_u64(), err["status"].as_str()), (Some(http), Some(status)), "{e:?}");
            assert_eq!(err["message"].as_str(), Some(e.to_string().as_str()), "{e:?}");
            assert_eq!(err["details"][0]["reason"].as_str(), reason, "{e:?}");
            if reason.is_some() {
                assert_eq!(err["details"][0]["domain"], "a2a-protocol.org");
            }
        }
        let open = RpcError::AgentCircuitOpen { agent: "a".into(), retry_after_secs: 7 }.to_status_body();
        assert_eq!(open["error"]["details"][0]["metadata"], json!({"agentId": "a", "retryAfterSeconds": "7"}));
        // An agent's own details pass through.
        let info = json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TASK_NOT_FOUND", "metadata": {"x": "1"}});
        let upstream = RpcError::Upstream { code: -32001, message: "m".into(), data: Some(json!([info])) };
        assert_eq!(upstream.to_status_body()["error"]["details"][0]["metadata"]["x"], "1");
    }

    #[test]
    fn upstream_data_passes_in_its_own_shape() {
        let arr =
            RpcError::Upstream { code: -32001, message: "m".into(), data: Some(json!([error_info("TASK_NOT_FOUND")])) };
        assert!(arr.to_error_object(ProtocolVersion::V10)["data"].is_array());
        assert!(arr.to_error_object(ProtocolVersion::V03).get("data").is_none());
        let free = RpcError::Upstream { code: -32099, message: "m".into(), data: Some(json!({"why": 1})) };
        assert_eq!(free.to_error_object(ProtocolVersion::V03)["data"], json!({"why": 1}));
        assert!(free.to_error_object(ProtocolVersion::V10).get("data").is_none());
    }
}
