//! The CLI's HTTP side: JSON-RPC calls and streams to one gateway node, and the errors they
//! end in, each with the exit code that says what went wrong.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use crate::sse::SseParser;

/// Longest wait for a unary answer (a send waits for the agent).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest stream event the CLI reads.
const STREAM_EVENT_BYTES_MAX: usize = 4 << 20;

/// How a command failed, and the exit code for it (README, "CLI").
#[derive(Debug)]
pub enum CliError {
    /// The gateway could not be reached (connection refused, DNS, timeout): exit 3.
    Unreachable(String),
    /// The agent or task does not exist (or is not the caller's): exit 4.
    NotFound(String),
    /// Credentials missing, wrong or not enough (401/403): exit 5.
    Auth(String),
    /// Busy, breaker open, no leader, rate-limited: try again later: exit 6.
    Retryable(String),
    /// Any other error the gateway answered with, or a task that ended failed: exit 1.
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Unreachable(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Auth(_) => 5,
            CliError::Retryable(_) => 6,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            CliError::Unreachable(m)
            | CliError::NotFound(m)
            | CliError::Auth(m)
            | CliError::Retryable(m)
            | CliError::Failed(m) => m,
        }
    }

    /// A JSON-RPC error object, classed by its code (`jsonrpc::RpcError::code`).
    fn from_rpc(error: &Value) -> CliError {
        let code = error["code"].as_i64().unwrap_or(0);
        let message = format!("{} (code {code})", error["message"].as_str().unwrap_or("error"));
        match code {
            // Task or push config not found; agent not found.
            -32001 | -32010 => CliError::NotFound(message),
            // Unauthenticated; permission denied.
            -32030 | -32031 => CliError::Auth(message),
            // Breaker open; agent overloaded; node overloaded; no leader / unavailable.
            -32012 | -32013 | -32020 | -32021 => CliError::Retryable(message),
            _ => CliError::Failed(message),
        }
    }
}

/// One gateway node, with the caller's credential.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// `url` is the node's base URL; `token` goes out as `Authorization: Bearer` (an API key,
    /// the admin token or a JWT).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, CliError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::Failed(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client { http, base: url.trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn post(&self, path: &str, method: &str, params: &Value) -> reqwest::RequestBuilder {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .header("A2A-Version", "1.0")
            .body(body.to_string());
        if let Some(token) = &self.token
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        request
    }

    /// A unary JSON-RPC call to `path` (`/rpc` or `/agents/<id>`): its `result`.
    pub async fn call(&self, path: &str, method: &str, params: Value) -> Result<Value, CliError> {
        let response =
            self.post(path, method, &params).timeout(CALL_TIMEOUT).send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let answer: Value = serde_json::from_slice(&body).map_err(|_| http_error(status, &body))?;
        if let Some(error) = answer.get("error") {
            return Err(CliError::from_rpc(error));
        }
        answer.get("result").cloned().ok_or_else(|| http_error(status, &body))
    }

    /// A streaming JSON-RPC call: calls `on_event` with each event's `result` until it says
    /// stop, or the stream ends.
    pub async fn stream(
        &self,
        path: &str,
        method: &str,
        params: Value,
        mut on_event: impl FnMut(&Value) -> bool,
    ) -> Result<(), CliError> {
        let response = self
            .post(path, method, &params)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
            return match serde_json::from_slice::<Value>(&body).ok().and_then(|a| a.get("error").cloned()) {
                Some(error) => Err(CliError::from_rpc(&error)),
                None => Err(http_error(status, &body)),
            };
        }
        let mut parser = SseParser::new(STREAM_EVENT_BYTES_MAX);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CliError::Unreachable(format!("the stream broke: {e}")))?;
            let events = parser.push(&chunk).map_err(|e| CliError::Failed(format!("bad stream event: {e:?}")))?;
            for event in events {
                let Ok(answer) = serde_json::from_str::<Value>(&event.data) else { continue };
                if let Some(error) = answer.get("error") {
                    return Err(CliError::from_rpc(error));
                }
                if let Some(result) = answer.get("result")
                    && !on_event(result)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// `GET path` as JSON (operator views such as `/cluster`).
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        let mut request = self.http.get(format!("{}{path}", self.base)).timeout(CALL_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            return Err(http_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| CliError::Failed(format!("{path} answered something that is not JSON: {e}")))
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        CliError::Unreachable(format!(
            "cannot reach the gateway at {} ({cause}); is it running? (--url or SUPERX_URL)",
            self.base
        ))
    }
}

/// A non-JSON-RPC answer (a proxy's page, a 401 from the auth layer).
fn http_error(status: reqwest::StatusCode, body: &[u8]) -> CliError {
    if let Ok(answer) = serde_json::from_slice::<Value>(body)
        && let Some(error) = answer.get("error")
    {
        return CliError::from_rpc(error);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    let message = format!("the gateway answered HTTP {status}: {text}");
    match status.as_u16() {
        401 | 403 => CliError::Auth(message),
        404 => CliError::NotFound(message),
        429 | 503 => CliError::Retryable(message),
        _ => CliError::Failed(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_exit_codes() {
        let code = |c: i64| CliError::from_rpc(&json!({"code": c, "message": "m"})).exit_code();
        assert_eq!((code(-32001), code(-32010)), (4, 4));
        assert_eq!((code(-32030), code(-32031)), (5, 5));
        assert_eq!((code(-32012), code(-32020), code(-32021)), (6, 6, 6));
        assert_eq!((code(-32602), code(-32603)), (1, 1));
        assert_eq!(http_error(reqwest::StatusCode::UNAUTHORIZED, b"no").exit_code(), 5);
        assert_eq!(http_error(reqwest::StatusCode::BAD_GATEWAY, b"x").exit_code(), 1);
    }
}
