//! The HTTP+JSON (REST) edge: `/agents/{id}/{operation path}` (A2A 1.0 paths, `{tenant}/`
//! ones, 0.3 `v1/` ones). What a path, query and body mean, and every body shape, is
//! [`crate::a2a::rest`]'s; this file does the HTTP: the method and route errors (404, 405
//! with `Allow`), the version check, the Content-Type (415), the size-limited body, the
//! `Call`, and statuses with `Retry-After`. The operation runs as the JSON-RPC method of the
//! same name (`rpc::Method`), so both bindings answer alike.
//!
//! Version: a 1.0 path needs `A2A-Version: 1.0` (header or query) and a `v1/` path 0.3 (or
//! none). As SDK 1.3.0's REST server does, a 1.0 path without the header is read as 0.3
//! (spec §3.6.2: empty means 0.3) and refused with VERSION_NOT_SUPPORTED: the path says
//! which version a client speaks, and a client that omits the header is not a 1.0 client.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{INVALID, is_json_content_type, last_event_id, new_call, prepare, read_body, requested_version, sse};
use crate::a2a::A2A_EXTENSIONS;
use crate::a2a::ProtocolVersion;
use crate::a2a::card::A2A_JSON;
use crate::a2a::rest::{self as wire, Route, RouteError, Verb};
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;
use crate::rpc::{Call, Method, Outcome, Scope};
use crate::telemetry::trace::TraceContext;

/// The operation path of a request under `/agents/{id}/` (raw, after that prefix), if it is
/// one: not empty (that is the JSON-RPC endpoint) and not a card.
pub(super) fn operation_path(path: &str) -> Option<&str> {
    let tail = path.strip_prefix("/agents/")?.split_once('/')?.1;
    (!tail.is_empty() && !tail.starts_with(".well-known/")).then_some(tail)
}

/// The binding version of an operation path (1.0 when it is no route: errors of a path
/// nothing serves are 1.0-shaped).
pub(super) fn path_version(method: &HttpMethod, tail: &str) -> ProtocolVersion {
    wire::route(Verb::parse(method.as_str()), tail).map_or(ProtocolVersion::V10, |r| r.version)
}

/// What a request to an operation path takes besides the agent id and its body.
struct RestRequest {
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    trace: Option<TraceContext>,
    principal: Arc<Principal>,
}

// Each argument is an axum extractor; a struct of them would only move the list.
#[allow(clippy::too_many_arguments)]
pub(super) async fn handle(
    State(gw): State<Arc<Gateway>>,
    Path((agent, _)): Path<(String, String)>,
    method: HttpMethod,
    uri: Uri,
    trace: Option<Extension<TraceContext>>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = RestRequest { method, uri, headers, trace: trace.map(|t| t.0), principal };
    let (response, label, code) = answer(&gw, agent, &request, body).await;
    crate::telemetry::metrics::rpc_request(label, code);
    response
}

/// The response, the operation's method name (`invalid` for a route error) and the error
/// code answered (`None` for a result or an opened stream).
async fn answer(
    gw: &Arc<Gateway>,
    agent: String,
    request: &RestRequest,
    body: Body,
) -> (Response, &'static str, Option<i64>) {
    let RestRequest { method, uri, headers, .. } = request;
    let tail = operation_path(uri.path()).unwrap_or_default();
    let route = match wire::route(Verb::parse(method.as_str()), tail) {
        Ok(route) => route,
        Err(e) => return (route_error(&e, method.as_str(), uri.path(), headers), INVALID, None),
    };
    let (name, _) = route.method();
    let label = crate::rpc::method_label(name);
    match run(gw, agent, &route, request, body).await {
        Ok((Outcome::Reply(reply), _)) => {
            let mut response = json_response(StatusCode::OK, &route.answer_body(reply.result), headers);
            if let Some(ext) = reply.extensions {
                response.headers_mut().insert(A2A_EXTENSIONS, ext);
            }
            (response, label, None)
        }
        Ok((Outcome::Stream(stream), mut call)) => {
            let framing = sse::Framing::Rest { version: route.version };
            (sse::response(stream, framing, super::stream_open(gw, &mut call)), label, None)
        }
        Err(e) => {
            if let RpcError::Internal(detail) = &e {
                tracing::error!(method = name, %detail, "internal error");
            }
            (error_response(&e, headers, route.version), label, Some(e.code()))
        }
    }
}

/// Runs a routed request: its version, body and params, then the operation's method. Also
/// answers the call it ran with (a stream's body holds its slot).
async fn run(
    gw: &Arc<Gateway>,
    agent: String,
    route: &Route,
    request: &RestRequest,
    body: Body,
) -> Result<(Outcome, Call), RpcError> {
    let RestRequest { method, uri, headers, trace, principal } = request;
    let (name, version) = route.method();
    let last_event_id = last_event_id(headers)?;
    let mut call = new_call(gw, headers, Scope::Agent(agent), version, trace.clone(), last_event_id, principal.clone());
    call.wire_version = route.version;
    super::authorize_scope(&call)?;
    check_version(route, headers, uri.query())?;
    let body = read_params_body(gw, route, method, headers, body).await?;
    let params = route.params(uri.query(), body).map_err(|e| RpcError::InvalidParams(e.0))?;
    let method = Method::parse(name, params, &call)?;
    prepare(gw, headers, &method, &mut call)?;
    let outcome = method.run(gw, &call).await?;
    Ok((outcome, call))
}

/// The path's version must be the one the client asks for (`A2A-Version`, empty = 0.3).
fn check_version(route: &Route, headers: &HeaderMap, query: Option<&str>) -> Result<(), RpcError> {
    let requested = requested_version(headers, query);
    match ProtocolVersion::from_header(requested) {
        Ok(v) if v == route.version => Ok(()),
        _ => {
            let asked = requested.map(str::trim).filter(|v| !v.is_empty());
            let asked =
                asked.map_or_else(|| "no A2A-Version (read as 0.3)".to_owned(), |v| format!("A2A version {v:?}"));
            let wanted = match route.version {
                ProtocolVersion::V10 => "paths without /v1/ are A2A 1.0: send A2A-Version: 1.0",
                ProtocolVersion::V03 => "/v1/ paths are A2A 0.3: send A2A-Version: 0.3 or none",
            };
            Err(RpcError::VersionNotSupported(format!("{asked} does not fit this path; {wanted}")))
        }
    }
}

/// The JSON body of an operation that reads one (`None` when it has none or it is empty):
/// size-limited, declared as JSON (`application/json`, `application/a2a+json`, or no
/// Content-Type at all), parsed.
async fn read_params_body(
    gw: &Gateway,
    route: &Route,
    method: &HttpMethod,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<Value>, RpcError> {
    if !route.operation.reads_body() || method != HttpMethod::POST {
        return Ok(None);
    }
    let bytes = read_body(body, gw.config.server.body_bytes_max).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !is_json_content_type(headers) {
        return Err(RpcError::ContentTypeNotSupported(
            "Content-Type must be application/json or application/a2a+json".into(),
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| RpcError::Parse(format!("invalid JSON: {e}")))
}

/// The media type of JSON answers: `application/a2a+json` to a client that used it (in
/// `Content-Type` or `Accept`), else `application/json`.
fn answer_type(headers: &HeaderMap) -> &'static str {
    let names = |h| headers.get_all(h).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains(A2A_JSON));
    if names(header::CONTENT_TYPE) || names(header::ACCEPT) { A2A_JSON } else { "application/json" }
}

fn json_response(status: StatusCode, body: &Value, headers: &HeaderMap) -> Response {
    let content_type = HeaderValue::from_static(answer_type(headers));
    (status, [(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// An error as its HTTP status and `google.rpc.Status` body (for a path of `version`), with
/// `Retry-After` when the same request may succeed later.
pub(super) fn error_response(e: &RpcError, headers: &HeaderMap, version: ProtocolVersion) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &wire::error_body(version, e.to_status_body()), headers);
    if let Some(secs) = e.retry_after_secs() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let RpcError::Unauthenticated(_) = e {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(super::WWW_AUTHENTICATE));
    }
    response
}

fn route_error(e: &RouteError, method: &str, path: &str, headers: &HeaderMap) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::NOT_FOUND);
    let mut response = json_response(status, &e.status_body(method, path), headers);
    if let RouteError::MethodNotAllowed(allow) = e
        && let Ok(value) = HeaderValue::from_str(&wire::allow_header(allow))
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_paths() {
        assert_eq!(operation_path("/agents/a/message:send"), Some("message:send"));
        assert_eq!(operation_path("/agents/a/t/tasks/x%2Fy"), Some("t/tasks/x%2Fy"));
        assert_eq!(operation_path("/agents/a/"), None, "the JSON-RPC endpoint");
        assert_eq!(operation_path("/agents/a"), None);
        assert_eq!(operation_path("/agents/a/.well-known/agent-card.json"), None);
        assert_eq!(operation_path("/rpc"), None);
        assert_eq!(operation_path("/health"), None);
    }

    #[test]
    fn errors_carry_status_and_retry_after() {
        let headers = HeaderMap::new();
        let busy = error_response(&RpcError::Overloaded("full".into()), &headers, ProtocolVersion::V10);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let missing = error_response(&RpcError::TaskNotFound("t".into()), &headers, ProtocolVersion::V10);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/json");
        let mut a2a = HeaderMap::new();
        a2a.insert(header::ACCEPT, HeaderValue::from_static("application/a2a+json"));
        assert_eq!(
            error_response(&RpcError::TaskNotFound("t".into()), &a2a, ProtocolVersion::V10).headers()
                [header::CONTENT_TYPE],
            A2A_JSON
        );
        let wrong = route_error(&RouteError::MethodNotAllowed(vec![Verb::Get, Verb::Post]), "PUT", "/x", &headers);
        assert_eq!(
            (wrong.status(), wrong.headers()[header::ALLOW].to_str().unwrap()),
            (StatusCode::METHOD_NOT_ALLOWED, "GET, POST")
        );
    }
}
