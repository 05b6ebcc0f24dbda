//! The public HTTP API (axum): the router, the JSON-RPC endpoint handler and the plain
//! endpoints (`/health`, `/ready`, `/metrics`). Agent cards are served from [`cards`], the
//! HTTP+JSON binding from [`rest`]; both bindings build the same `rpc::Call` ([`new_call`],
//! [`prepare`]) and run the same `rpc::Method`.
//!
//! The JSON-RPC handler is the edge: it checks the Content-Type, reads a size-limited body,
//! parses the envelope, works out the client's protocol version, and turns every failure into
//! a JSON-RPC error with HTTP 200. Internal errors are logged here, once, and answered with a
//! generic message.

mod cards;
mod rest;
mod sse;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;

use crate::a2a::ProtocolVersion;
use crate::a2a::resume::{LAST_EVENT_ID, parse_last_event_id};
use crate::a2a::{A2A_EXTENSIONS, A2A_VERSION, X_A2A_EXTENSIONS};
use crate::admission::Refused;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::jsonrpc::{self, RpcError};
use crate::rpc::{Call, Method, Outcome, Scope};
use crate::state::ReadMode;
use crate::telemetry::trace::TraceContext;

/// The method label of a request whose envelope could not be read.
const INVALID: &str = "invalid";

pub fn router(gw: Arc<Gateway>) -> Router {
    let router = Router::new()
        .route("/rpc", post(rpc_gateway))
        .route("/agents/{id}", post(rpc_agent))
        .route("/agents/{id}/", post(rpc_agent))
        .route("/agents/{id}/.well-known/agent-card.json", get(cards::agent_card))
        .route("/agents/{id}/.well-known/agent.json", get(cards::agent_card))
        // HTTP+JSON; the routes above (JSON-RPC, cards) are more specific and win.
        .route("/agents/{id}/{*rest}", any(rest::handle))
        .route("/.well-known/agent-card.json", get(cards::gateway_card))
        .route("/.well-known/agent.json", get(cards::gateway_card))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/push/inbound/{agent}/{task}", post(push_inbound))
        .route("/health", get(health))
        .route("/cluster", get(cluster))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics));
    let router = if gw.config.ui.enabled { ui::routes(router) } else { router };
    router
        .layer(axum::middleware::from_fn_with_state(gw.clone(), authenticate))
        .layer(axum::middleware::from_fn(crate::telemetry::layer::middleware))
        .layer(axum::middleware::from_fn_with_state(Admit::new(gw.clone()), admit))
        .layer(axum::middleware::map_request(host_from_authority))
        .with_state(gw)
}

/// HTTP/2 (negotiated over TLS) carries the host in `:authority`, which lands in the URI, not
/// in a `Host` header; the code that reads the host (the cards' base URL) reads the header, so
/// an HTTP/2 request gets one from its authority.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    let host = axum::http::header::HOST;
    if !request.headers().contains_key(&host)
        && let Some(authority) = request.uri().authority()
        && let Ok(value) = axum::http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(host, value);
    }
    request
}

/// The admission layer's state: the gateway, and the JSON-RPC answers to a request over the
/// node's limit in both protocol versions, rendered once. An overloaded node refuses about as
/// many requests as it serves, so that answer costs a reference count, not a render.
#[derive(Clone)]
struct Admit {
    gw: Arc<Gateway>,
    /// By [`ProtocolVersion`]: 0.3, then 1.0.
    full: [Bytes; 2],
    full_retry_after: HeaderValue,
}

impl Admit {
    fn new(gw: Arc<Gateway>) -> Admit {
        let e = gw.admission.refusal(Refused::Full);
        let render = |v| Bytes::from(jsonrpc::failure_bytes(&serde_json::Value::Null, &e, v));
        let full = [render(ProtocolVersion::V03), render(ProtocolVersion::V10)];
        let full_retry_after = HeaderValue::from(e.retry_after_secs().unwrap_or(1));
        Admit { gw, full, full_retry_after }
    }
}

/// Admission, outermost: a request that does work (a JSON-RPC POST, an HTTP+JSON
/// operation of any method) takes a slot before anything else is done for it, and keeps it
/// until its answer is ready (a stream's slot is taken further in). Cards, health and
/// metrics take none. A refusal costs as little as the node can make it: no body read, no
/// span, no request id, one counter, and a full node's answer rendered once.
async fn admit(State(admit): State<Admit>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let rest = rest::operation_path(path).is_some();
    if request.method() != axum::http::Method::POST && !rest {
        return next.run(request).await;
    }
    let refused_as = match admit.gw.admission.try_request() {
        Ok(_slot) => return next.run(request).await,
        Err(r) => r,
    };
    crate::telemetry::metrics::request_refused();
    let version = || ProtocolVersion::from_header(requested_version(request.headers(), request.uri().query()));
    match refused_as {
        _ if rest => {
            let e = admit.gw.admission.refusal(refused_as);
            rest::error_response(&e, request.headers(), ProtocolVersion::V10)
        }
        Refused::Full => {
            let v = version().unwrap_or(ProtocolVersion::V03);
            let body = admit.full[usize::from(v == ProtocolVersion::V10)].clone();
            let mut response = rpc_response(body, None);
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response.headers_mut().insert(header::RETRY_AFTER, admit.full_retry_after.clone());
            response
        }
        Refused::Draining => {
            let e = admit.gw.admission.refusal(refused_as);
            refused(&serde_json::Value::Null, &e, version().unwrap_or(ProtocolVersion::V03))
        }
    }
}

/// Authentication, inside the telemetry span (so a refusal is counted and logged with its
/// request id) and before any body is read: every route that is not public needs a valid
/// credential (401 otherwise, in the binding's error shape, with `WWW-Authenticate`), and an
/// operator route an admin (403). The principal goes into the request's extensions for the
/// handlers' `rpc::Call`, and its name (never the credential) into the request's span. With
/// auth off, every request is made by [`Principal::open`].
async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let route = route.unwrap_or_default();
    if !gw.auth.required() {
        request.extensions_mut().insert(Arc::new(Principal::open()));
        return next.run(request).await;
    }
    if crate::auth::is_public(&gw.config.auth, &route, request.uri().path()) {
        return next.run(request).await;
    }
    let find_key = |id: &str| gw.replica.read(|t| t.keys().get(id).cloned());
    let principal = match gw.auth.authenticate(request.headers(), find_key).await {
        Ok(p) => p,
        Err(e) => return auth_refused(&e, &request),
    };
    tracing::Span::current().record("principal", tracing::field::display(&principal));
    if crate::auth::is_admin_route(&route) && !principal.admin {
        return auth_refused(&crate::auth::forbidden(), &request);
    }
    request.extensions_mut().insert(Arc::new(principal));
    next.run(request).await
}

/// A request refused by authentication, answered in its binding's shape: HTTP+JSON paths a
/// `google.rpc.Status`, everything else a JSON-RPC error (its id unknown: the body is not
/// read), with the HTTP status of the error (401, 403).
fn auth_refused(e: &RpcError, request: &axum::extract::Request) -> Response {
    let (headers, uri) = (request.headers(), request.uri());
    if let Some(tail) = rest::operation_path(uri.path()) {
        return rest::error_response(e, headers, rest::path_version(request.method(), tail));
    }
    let version = ProtocolVersion::from_header(requested_version(headers, uri.query())).unwrap_or(ProtocolVersion::V03);
    let mut response = rpc_response(jsonrpc::failure_bytes(&serde_json::Value::Null, e, version), None);
    with_auth_status(&mut response, e);
    response
}

/// Auth errors keep their HTTP status on JSON-RPC too (spec: auth failures are 401/403 at the
/// HTTP level; SDK clients raise on them), and a 401 says how to authenticate.
fn with_auth_status(response: &mut Response, e: &RpcError) {
    if matches!(e, RpcError::Unauthenticated(_) | RpcError::PermissionDenied(_)) {
        *response.status_mut() = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    }
    if let RpcError::Unauthenticated(_) = e {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
    }
}

/// The challenge of a 401: a bearer token (an API key or a JWT) for the gateway's realm.
pub(super) const WWW_AUTHENTICATE: &str = "Bearer realm=\"superx\"";

/// What the JSON-RPC handlers take from the request besides the path and query.
struct RpcRequest {
    headers: HeaderMap,
    principal: Arc<Principal>,
    /// Set by the telemetry middleware.
    trace: Option<TraceContext>,
    body: Body,
}

async fn rpc_gateway(
    State(gw): State<Arc<Gateway>>,
    query: RawQuery,
    trace: Option<Extension<TraceContext>>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = RpcRequest { headers, principal, trace: trace.map(|t| t.0), body };
    handle_rpc(&gw, Scope::Gateway, query.0.as_deref(), request).await
}

async fn rpc_agent(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    query: RawQuery,
    trace: Option<Extension<TraceContext>>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = RpcRequest { headers, principal, trace: trace.map(|t| t.0), body };
    handle_rpc(&gw, Scope::Agent(id), query.0.as_deref(), request).await
}

/// The client's `A2A-Version`: the header, else the `A2A-Version` query parameter.
pub(super) fn requested_version<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = headers.get(A2A_VERSION) {
        return Some(v.to_str().unwrap_or("?"));
    }
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("a2a-version"))
        .map(|(_, v)| v)
}

/// `SuperX-Read: local` asks for a fast read of this node's tables; anything else (or no
/// header) reads linearizably.
fn read_mode(headers: &HeaderMap) -> ReadMode {
    match headers.get("superx-read").and_then(|v| v.to_str().ok()) {
        Some(v) if v.trim().eq_ignore_ascii_case("local") => ReadMode::Local,
        _ => ReadMode::Linearizable,
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // Lenient with clients that send none; anything that is declared must be JSON.
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Answers one JSON-RPC request and counts it by method and result code.
async fn handle_rpc(gw: &Arc<Gateway>, scope: Scope, query: Option<&str>, request: RpcRequest) -> Response {
    let (response, method, code) = answer_rpc(gw, scope, query, request).await;
    crate::telemetry::metrics::rpc_request(method, code);
    response
}

/// The response, the method's canonical name (`invalid` before one is known) and the error
/// code answered (`None` for a result or an opened stream).
async fn answer_rpc(
    gw: &Arc<Gateway>,
    scope: Scope,
    query: Option<&str>,
    RpcRequest { headers, principal, trace, body }: RpcRequest,
) -> (Response, &'static str, Option<i64>) {
    let headers = &headers;
    let version = ProtocolVersion::from_header(requested_version(headers, query));
    // Until the method is known, errors are rendered in the requested version (0.3 when the
    // header is absent or unsupported).
    let header_version = *version.as_ref().unwrap_or(&ProtocolVersion::V03);
    let fail = |id: &serde_json::Value, e: &RpcError, v, method| {
        let mut response = rpc_response(jsonrpc::failure_bytes(id, e, v), None);
        with_auth_status(&mut response, e);
        (response, method, Some(e.code()))
    };
    let bytes = match read_body(body, gw.config.server.body_bytes_max).await {
        Ok(b) => b,
        Err(e) => return fail(&serde_json::Value::Null, &e, header_version, INVALID),
    };
    if !is_json_content_type(headers) {
        let e = RpcError::ContentTypeNotSupported("Content-Type must be application/json".into());
        let id = jsonrpc::parse_request(&bytes).map(|r| r.id).unwrap_or(serde_json::Value::Null);
        return fail(&id, &e, header_version, INVALID);
    }
    let request = match jsonrpc::parse_request(&bytes) {
        Ok(r) => r,
        Err((id, e)) => return fail(&id, &e, header_version, INVALID),
    };
    let label = crate::rpc::method_label(&request.method);
    // A method name of one generation gets its errors in that generation's form.
    let render_version = crate::rpc::naming_version(&request.method).unwrap_or(header_version);
    let version = match version {
        Ok(v) => v,
        Err(raw) => {
            let e = RpcError::VersionNotSupported(format!("A2A version {raw:?} is not supported; use 1.0 or 0.3"));
            return fail(&request.id, &e, render_version, label);
        }
    };
    let last_event_id = match last_event_id(headers) {
        Ok(id) => id,
        Err(e) => return fail(&request.id, &e, version, label),
    };
    let mut call = new_call(gw, headers, scope, version, trace, last_event_id, principal);
    if let Err(e) = authorize_scope(&call) {
        return fail(&request.id, &e, version, label);
    }
    let method_name = request.method;
    let parsed = Method::parse(&method_name, request.params, &call);
    let parsed = parsed.and_then(|m| crate::auth::authorize_method(&call.principal, m.is_control_plane()).map(|()| m));
    let outcome = match parsed {
        Ok(method) => match prepare(gw, headers, &method, &mut call) {
            Ok(()) => method.run(gw, &call).await,
            Err(e) => return (refused(&request.id, &e, version), label, Some(e.code())),
        },
        Err(e @ RpcError::VersionNotSupported(_)) => return fail(&request.id, &e, render_version, label),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Outcome::Reply(reply)) => {
            (rpc_response(jsonrpc::success_bytes(&request.id, &reply.result), reply.extensions), label, None)
        }
        Ok(Outcome::Stream(stream)) => {
            let framing = sse::Framing::JsonRpc { id: request.id, version };
            (sse::response(stream, framing, stream_open(gw, &mut call)), label, None)
        }
        Err(e) => {
            if let RpcError::Internal(detail) = &e {
                tracing::error!(method = %method_name, %detail, "internal error");
            }
            fail(&request.id, &e, version, label)
        }
    }
}

/// The client's `Last-Event-ID` (a stream it resumes), if any.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, RpcError> {
    match headers.get(LAST_EVENT_ID).map(|v| v.to_str().unwrap_or("?")) {
        None => Ok(None),
        Some(raw) => parse_last_event_id(raw).map_err(RpcError::InvalidParams),
    }
}

/// What a method knows of the request it runs for, whichever binding it came in on.
fn new_call(
    gw: &Gateway,
    headers: &HeaderMap,
    scope: Scope,
    version: ProtocolVersion,
    trace: Option<TraceContext>,
    last_event_id: Option<u64>,
    principal: Arc<Principal>,
) -> Call {
    Call {
        version,
        wire_version: version,
        scope,
        extensions: headers.get(A2A_EXTENSIONS).or_else(|| headers.get(X_A2A_EXTENSIONS)).cloned(),
        base_url: cards::public_base(gw, headers),
        read_mode: read_mode(headers),
        stream_slot: None,
        trace: trace.unwrap_or_else(TraceContext::new_root),
        last_event_id,
        authorization: None,
        credentials: crate::agents::ClientCredentials::of(headers),
        principal,
    }
}

/// A credential scoped to some agents may call only those, at their own endpoints: the
/// path's agent is checked before anything is looked up, so an agent that does not exist and
/// one it may not call answer alike; `/rpc` (which names agents in params and spans all
/// tasks) is refused to it.
fn authorize_scope(call: &Call) -> Result<(), RpcError> {
    let allowed = match &call.scope {
        Scope::Agent(id) => call.principal.may_call(id),
        Scope::Gateway => call.principal.agents.is_none(),
    };
    if allowed { Ok(()) } else { Err(crate::auth::forbidden()) }
}

/// Readies the call for its parsed method: the client's `Authorization` for the one method
/// that forwards it, the rate limits of an A2A call (its credential's and its agent's), a
/// stream slot for a streaming method. An error is the node refusing the call: over a rate
/// limit (429), at its stream limit or draining (503).
fn prepare(gw: &Gateway, headers: &HeaderMap, method: &Method, call: &mut Call) -> Result<(), RpcError> {
    // With auth on, `Authorization` is the caller's credential for the gateway: it never goes
    // to an agent (the agent gets its own bearer).
    if method.forwards_credentials() && !gw.auth.required() {
        call.authorization = headers.get(header::AUTHORIZATION).cloned().map(|mut v| {
            v.set_sensitive(true);
            v
        });
    }
    if !method.is_control_plane() {
        crate::limits::check(gw, &call.principal, method.named_agent(call))?;
    }
    if method.streams() {
        call.stream_slot = Some(Arc::new(gw.admission.stream()?));
    }
    Ok(())
}

/// What an SSE body holds for the stream a call opened: its slot, the drain signal, the
/// keep-alive period.
fn stream_open(gw: &Gateway, call: &mut Call) -> sse::Open {
    let keepalive = std::time::Duration::from_millis(gw.config.streams.keepalive_ms);
    sse::Open { slot: call.stream_slot.take(), drain: gw.admission.watch(), keepalive }
}

/// A request the node did not admit: HTTP 503 (at its limit, or draining) or 429 (over a rate
/// limit) with Retry-After, so load balancers and HTTP clients back off, and the JSON-RPC
/// error saying why.
fn refused(id: &serde_json::Value, e: &RpcError, version: ProtocolVersion) -> Response {
    let mut response = rpc_response(jsonrpc::failure_bytes(id, e, version), None);
    *response.status_mut() = match e {
        RpcError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let retry_after = e.retry_after_secs().unwrap_or(1);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, RpcError> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(RpcError::InvalidRequest(format!("request body exceeds {max} bytes")))
        }
        Err(_) => Err(RpcError::InvalidRequest("request body could not be read".into())),
    }
}

fn rpc_response(body: impl Into<Body>, extensions: Option<HeaderValue>) -> Response {
    let body: Body = body.into();
    let mut response =
        (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
    if let Some(ext) = extensions {
        response.headers_mut().insert(A2A_EXTENSIONS, ext);
    }
    response
}

/// Liveness: the process serves HTTP. Names the node and the cluster's size (raft members)
/// for operators, and the archive's backlog; readiness is `/ready`.
async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "nodeId": gw.config.server.node_id,
        "node": gw.advertise.api,
        "clusterSize": crate::rpc::cluster::cluster_size(&gw),
        "archive": archive_health(&gw),
        "push": push_health(&gw),
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The public key webhook JWTs are signed with (configs that ask for `Bearer` without
/// credentials), as a JWKS; empty until the first leader made the key.
async fn jwks(State(gw): State<Arc<Gateway>>) -> Response {
    let body = gw.replica.read(|t| crate::push::sign::jwks(t.push().signing_key()));
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")];
    (StatusCode::OK, headers, body.to_string()).into_response()
}

/// A push-capable agent's delivery to the gateway's own webhook (`rpc::inbound`): the token
/// is checked before the body is read; 200 once the update is committed (or the task already
/// had it), so an agent sends again whatever else it got (503 above all). The body is an
/// agent's answer, held to `agents.response_bytes_max`.
async fn push_inbound(
    State(gw): State<Arc<Gateway>>,
    Path((agent, task)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use crate::rpc::inbound::{self, Inbound};
    let token = headers.get(crate::push::TOKEN_HEADER).map(HeaderValue::as_bytes);
    if !inbound::verify(&gw, &agent, &task, token) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let bytes = match read_body(body, gw.config.agents.response_bytes_max).await {
        Ok(bytes) => bytes,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    let outcome = inbound::receive(&gw, &agent, &task, &bytes).await;
    let status = match &outcome {
        Inbound::Committed | Inbound::Duplicate => StatusCode::OK,
        Inbound::Unauthorized => StatusCode::UNAUTHORIZED,
        Inbound::Invalid(_) => StatusCode::BAD_REQUEST,
        Inbound::UnknownTask => StatusCode::NOT_FOUND,
        Inbound::WrongAgent => StatusCode::FORBIDDEN,
        Inbound::Refused(_) => StatusCode::CONFLICT,
        Inbound::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let detail = match outcome {
        Inbound::Invalid(why) | Inbound::Refused(why) | Inbound::Unavailable(why) => why,
        other => other.label().to_owned(),
    };
    (status, detail).into_response()
}

/// Push delivery as this node sees it: the configs and the outbox (the same on every node,
/// `outboxOverflowTotal` counting events given up because the outbox was full), and the
/// deliveries this node made while it led.
fn push_health(gw: &Gateway) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    let (configs, outbox, overflow) =
        gw.replica.read(|t| (t.push().config_count(), t.push().outbox_events(), t.push().overflow_total()));
    let stats = &gw.push.stats;
    serde_json::json!({
        "configs": configs,
        "outboxEvents": outbox,
        "outboxEventsMax": crate::state::push::OUTBOX_EVENTS_MAX,
        "outboxOverflowTotal": overflow,
        "delivering": gw.replica.raft().membership().is_leader,
        "deliveredTotal": stats.delivered_total.load(Ordering::Relaxed),
        "givenUpTotal": stats.given_up_total.load(Ordering::Relaxed),
        "attemptsTotal": stats.attempts_total.load(Ordering::Relaxed),
        "refusedTotal": stats.refused_total.load(Ordering::Relaxed),
    })
}

/// The archive's state as this node sees it: the backlog (terminal tasks not archived yet,
/// the same on every node), and, on the leader that archives, its progress and last error.
fn archive_health(gw: &Gateway) -> serde_json::Value {
    use std::sync::atomic::Ordering;
    let (backlog, tasks) = gw.replica.read(|t| (t.unarchived_count(), t.task_count()));
    let Some(archive) = &gw.archive else {
        return serde_json::json!({"enabled": false});
    };
    let stats = &archive.stats;
    let mut body = serde_json::json!({
        "enabled": true,
        "backlog": backlog,
        "tasksInMemory": tasks,
        "memoryMax": gw.config.tasks.memory_max,
        "archiving": gw.replica.raft().membership().is_leader,
        "archivedTotal": stats.archived_total.load(Ordering::Relaxed),
        "writeErrorsTotal": stats.write_errors_total.load(Ordering::Relaxed),
    });
    if let Some((error, ago)) = stats.last_error() {
        body["lastError"] = serde_json::json!(error);
        body["lastErrorAgoMs"] = serde_json::json!(ago.as_millis() as u64);
    }
    body
}

/// SuperX's `GET /cluster`: this node, the members, their load.
async fn cluster(State(gw): State<Arc<Gateway>>) -> Response {
    let body = crate::rpc::cluster::overview(&gw);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    let status = gw.replica.status();
    let ready = gw.is_ready();
    let body = serde_json::json!({"ready": ready, "nodeId": status.node_id, "appliedIndex": status.applied_index});
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Prometheus text exposition of every series (README, "Metrics").
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    // Scanning the tables' clone takes a moment on a large node: off the async workers.
    let body = match tokio::task::spawn_blocking(move || crate::telemetry::metrics::render(&gw)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
