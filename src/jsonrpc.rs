//! JSON-RPC 2.0: the request envelope, the one error enum of the public API, and the one
//! place error codes are chosen ([`RpcError::code`]).
//!
//! Errors go out with HTTP 200. In A2A 1.0 an error's `data` is an array holding a
//! `google.rpc.ErrorInfo`; in 0.3 it is free-form (the gateway leaves it out, or passes an
//! agent's through). [`RpcError::http_status`] and [`RpcError::retry_after_secs`] give the
//! status and `Retry-After` a binding with HTTP statuses (HTTP+JSON) answers with.
//!
//! The gateway's own codes sit in the JSON-RPC server range, outside A2A's -32001..-32009:
//!
//! | code | reason | retryable | meaning |
//! |---|---|---|---|
//! | -32010 | AGENT_NOT_FOUND | no | no agent with that id (SuperX's -32010) |
//! | -32012 | AGENT_CIRCUIT_OPEN | yes, after Retry-After | the agent's breaker is open (SuperX's -32002) |
//! | -32013 | AGENT_OVERLOADED | yes | the agent's `maxInFlight` calls are in flight (SuperX's -32003) |
//! | -32014 | AGENT_AUTH_REFUSED | no | the agent refused the caller's credentials (401/403) on a call made with them |
//! | -32020 | OVERLOADED | yes | the gateway is at a limit (memory table full, slow stream reader) |
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
    /// The cluster cannot take the request right now (no leader during an election, no
    /// majority). Retryable.
    #[error("{0}")]
    Unavailable(String),
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
            Self::Overloaded(_) => -32020,
            Self::Unavailable(_) => -32021,
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
                | Self::AgentUnavailable(_)
        )
    }

    /// The HTTP status a binding with statuses (HTTP+JSON) answers this error with. JSON-RPC
    /// answers every error with 200, as A2A's JSON-RPC binding says.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Parse(_) | Self::InvalidRequest(_) | Self::InvalidParams(_) => 400,
            Self::MethodNotFound(_)
            | Self::TaskNotFound(_)
            | Self::PushConfigNotFound { .. }
            | Self::AgentNotFound(_) => 404,
            Self::TaskNotCancelable(_)
            | Self::PushNotSupported
            | Self::UnsupportedOperation(_)
            | Self::ExtendedCardNotConfigured
            | Self::VersionNotSupported(_) => 400,
            Self::ContentTypeNotSupported(_) => 415,
            Self::Internal(_) => 500,
            Self::InvalidAgentResponse(_) | Self::AgentUnavailable(_) => 502,
            Self::AgentOverloaded { .. } => 429,
            Self::AgentAuthRefused { status, .. } => *status,
            Self::AgentCircuitOpen { .. } | Self::Overloaded(_) | Self::Unavailable(_) => 503,
            Self::Upstream { code, .. } => match code {
                -32001 => 404,
                -32700 | -32600 | -32602 | -32009..=-32002 => 400,
                _ => 500,
            },
        }
    }

    /// The `Retry-After` seconds to send with [`Self::http_status`]: the rest of the
    /// breaker's cooldown, or a second for the other retryable limits.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::AgentCircuitOpen { retry_after_secs, .. } => Some(*retry_after_secs),
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
            -32020 => "OVERLOADED",
            -32021 => "UNAVAILABLE",
            -32099 => "AGENT_UNAVAILABLE",
            _ => return None,
        })
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
