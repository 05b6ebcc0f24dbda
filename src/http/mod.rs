//! The public HTTP API (axum): the router, the JSON-RPC endpoint handler and the plain
//! endpoints (`/health`, `/ready`, `/metrics`). Agent cards are served from [`cards`].
//!
//! The JSON-RPC handler is the edge: it checks the Content-Type, reads a size-limited body,
//! parses the envelope, works out the client's protocol version, and turns every failure into
//! a JSON-RPC error with HTTP 200. Internal errors are logged here, once, and answered with a
//! generic message.

mod cards;
mod sse;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;

use crate::a2a::ProtocolVersion;
use crate::agents::client::{A2A_EXTENSIONS, A2A_VERSION, X_A2A_EXTENSIONS};
use crate::gateway::Gateway;
use crate::jsonrpc::{self, RpcError};
use crate::rpc::{Call, Method, Outcome, Scope};
use crate::state::ReadMode;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/rpc", post(rpc_gateway))
        .route("/agents/{id}", post(rpc_agent))
        .route("/agents/{id}/", post(rpc_agent))
        .route("/agents/{id}/.well-known/agent-card.json", get(cards::agent_card))
        .route("/agents/{id}/.well-known/agent.json", get(cards::agent_card))
        .route("/.well-known/agent-card.json", get(cards::gateway_card))
        .route("/.well-known/agent.json", get(cards::gateway_card))
        .route("/health", get(health))
        .route("/cluster", get(cluster))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(gw)
}

async fn rpc_gateway(State(gw): State<Arc<Gateway>>, query: RawQuery, headers: HeaderMap, body: Body) -> Response {
    handle_rpc(&gw, Scope::Gateway, query.0.as_deref(), &headers, body).await
}

async fn rpc_agent(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    query: RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle_rpc(&gw, Scope::Agent(id), query.0.as_deref(), &headers, body).await
}

/// The client's `A2A-Version`: the header, else the `A2A-Version` query parameter.
fn requested_version<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
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

async fn handle_rpc(gw: &Arc<Gateway>, scope: Scope, query: Option<&str>, headers: &HeaderMap, body: Body) -> Response {
    let version = ProtocolVersion::from_header(requested_version(headers, query));
    // Until the method is known, errors are rendered in the requested version (0.3 when the
    // header is absent or unsupported).
    let header_version = *version.as_ref().unwrap_or(&ProtocolVersion::V03);
    let fail = |id: &serde_json::Value, e: &RpcError, v| rpc_response(jsonrpc::failure_bytes(id, e, v), None);
    // Admitted before the body is read: a refused request costs the node next to nothing.
    let _request_slot = match gw.admission.request() {
        Ok(slot) => slot,
        Err(e) => return refused(&serde_json::Value::Null, &e, header_version),
    };
    let bytes = match read_body(body, gw.config.server.body_bytes_max).await {
        Ok(b) => b,
        Err(e) => return fail(&serde_json::Value::Null, &e, header_version),
    };
    if !is_json_content_type(headers) {
        let e = RpcError::ContentTypeNotSupported("Content-Type must be application/json".into());
        let id = jsonrpc::parse_request(&bytes).map(|r| r.id).unwrap_or(serde_json::Value::Null);
        return fail(&id, &e, header_version);
    }
    let request = match jsonrpc::parse_request(&bytes) {
        Ok(r) => r,
        Err((id, e)) => return fail(&id, &e, header_version),
    };
    // A method name of one generation gets its errors in that generation's form.
    let render_version = crate::rpc::naming_version(&request.method).unwrap_or(header_version);
    let version = match version {
        Ok(v) => v,
        Err(raw) => {
            let e = RpcError::VersionNotSupported(format!("A2A version {raw:?} is not supported; use 1.0 or 0.3"));
            return fail(&request.id, &e, render_version);
        }
    };
    let call = Call {
        version,
        scope,
        extensions: headers.get(A2A_EXTENSIONS).or_else(|| headers.get(X_A2A_EXTENSIONS)).cloned(),
        base_url: cards::public_base(gw, headers),
        read_mode: read_mode(headers),
        stream_slot: None,
    };
    let method_name = request.method;
    let parsed = Method::parse(&method_name, request.params, &call);
    let mut call = call;
    let outcome = match parsed {
        Ok(method) if method.streams() => match gw.admission.stream() {
            Ok(slot) => {
                call.stream_slot = Some(Arc::new(slot));
                method.run(gw, &call).await
            }
            Err(e) => return refused(&request.id, &e, version),
        },
        Ok(method) => method.run(gw, &call).await,
        Err(e @ RpcError::VersionNotSupported(_)) => return fail(&request.id, &e, render_version),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Outcome::Reply(reply)) => rpc_response(jsonrpc::success_bytes(&request.id, &reply.result), reply.extensions),
        Ok(Outcome::Stream(stream)) => {
            let keepalive = std::time::Duration::from_millis(gw.config.streams.keepalive_ms);
            let open = sse::Open { slot: call.stream_slot.take(), drain: gw.admission.watch(), keepalive };
            sse::response(stream, request.id, version, open)
        }
        Err(e) => {
            if let RpcError::Internal(detail) = &e {
                tracing::error!(method = %method_name, %detail, "internal error");
            }
            fail(&request.id, &e, version)
        }
    }
}

/// A request the node did not admit (at its limit, or draining): HTTP 503 with Retry-After,
/// so load balancers and HTTP clients back off, and the JSON-RPC error saying why.
fn refused(id: &serde_json::Value, e: &RpcError, version: ProtocolVersion) -> Response {
    let mut response = rpc_response(jsonrpc::failure_bytes(id, e, version), None);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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

fn rpc_response(body: Vec<u8>, extensions: Option<HeaderValue>) -> Response {
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
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
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

/// Prometheus text exposition of the node's counters.
async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering;
    let (tasks, evicted, applied, agents) =
        gw.replica.read(|t| (t.task_count(), t.tasks_evicted_total(), t.applied_commands(), t.agents().count()));
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE superx_tasks_in_memory gauge\nsuperx_tasks_in_memory {tasks}");
    let _ = writeln!(out, "# TYPE superx_tasks_evicted_total counter\nsuperx_tasks_evicted_total {evicted}");
    let _ = writeln!(out, "# TYPE superx_commands_applied_total counter\nsuperx_commands_applied_total {applied}");
    let _ = writeln!(out, "# TYPE superx_agents gauge\nsuperx_agents {agents}");
    if let Some(archive) = &gw.archive {
        let backlog = gw.replica.read(|t| t.unarchived_count());
        let s = &archive.stats;
        let _ = writeln!(out, "# TYPE superx_archive_backlog_tasks gauge\nsuperx_archive_backlog_tasks {backlog}");
        for (name, kind, value) in [
            ("superx_archive_tasks_total", "counter", s.archived_total.load(Ordering::Relaxed)),
            ("superx_archive_batches_total", "counter", s.batches_total.load(Ordering::Relaxed)),
            ("superx_archive_write_errors_total", "counter", s.write_errors_total.load(Ordering::Relaxed)),
            ("superx_archive_read_errors_total", "counter", s.read_errors_total.load(Ordering::Relaxed)),
            ("superx_archive_evicted_total", "counter", s.evicted_total.load(Ordering::Relaxed)),
            ("superx_archive_retention_deleted_total", "counter", s.retention_deleted_total.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
        }
        let last = s.last_batch_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ =
            writeln!(out, "# TYPE superx_archive_last_batch_seconds gauge\nsuperx_archive_last_batch_seconds {last}");
    }
    let _ = writeln!(out, "# TYPE superx_agent_calls_total counter");
    let stats = gw.stats.snapshot();
    for (id, c) in &stats {
        let _ = writeln!(out, "superx_agent_calls_total{{agent=\"{id}\"}} {}", c.calls_total.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# TYPE superx_agent_call_failures_total counter");
    for (id, c) in &stats {
        let _ = writeln!(
            out,
            "superx_agent_call_failures_total{{agent=\"{id}\"}} {}",
            c.failures_total.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(out, "# TYPE superx_agent_calls_in_flight gauge");
    for (id, c) in &stats {
        let _ = writeln!(out, "superx_agent_calls_in_flight{{agent=\"{id}\"}} {}", c.in_flight.load(Ordering::Relaxed));
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
