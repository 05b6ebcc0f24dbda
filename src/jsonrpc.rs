//! JSON-RPC 2.0: the request envelope, the one error enum of the public API, and the one
//! place error codes are chosen ([`RpcError::code`]).
//!
//! Errors go out with HTTP 200. In A2A 1.0 an error's `data` is an array holding a
//! `google.rpc.ErrorInfo`; in 0.3 it is free-form (the gateway leaves it out, or passes an
//! agent's through).

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
            Self::Internal(_) | Self::AgentUnavailable(_) | Self::Overloaded(_) | Self::Unavailable(_) => -32603,
            Self::TaskNotFound(_) => -32001,
            Self::TaskNotCancelable(_) => -32002,
            Self::PushNotSupported => -32003,
            Self::UnsupportedOperation(_) => -32004,
            Self::ContentTypeNotSupported(_) => -32005,
            Self::InvalidAgentResponse(_) => -32006,
            Self::ExtendedCardNotConfigured => -32007,
            Self::VersionNotSupported(_) => -32009,
            Self::AgentNotFound(_) => -32010,
            Self::Upstream { code, .. } => *code,
        }
    }

    /// Conditions that share the internal-error code but are worth retrying get their own
    /// `ErrorInfo.reason`, so a 1.0 client can tell "retry" from "bug".
    fn retryable_reason(&self) -> Option<&'static str> {
        match self {
            Self::Overloaded(_) => Some("OVERLOADED"),
            Self::Unavailable(_) => Some("UNAVAILABLE"),
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
            (_, ProtocolVersion::V10) => self.retryable_reason().or(Self::reason(code)).map(|r| json!([error_info(r)])),
            (_, ProtocolVersion::V03) => None,
        };
        if let Some(data) = data {
            error["data"] = data;
        }
        error
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
