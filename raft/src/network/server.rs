//! The internal raft listener (axum): peers' raft RPCs, forwarded writes and read-index
//! requests land here and go straight into the local openraft instance.
//!
//! A forwarded write is committed here or refused with `NotLeader`; it is never forwarded
//! again, so a write crosses at most one hop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::auth::ServerAuth;
use super::{
    APPEND_PATH, ELECT_PATH, FORWARD_PATH, ForwardRequest, INITIALIZED_PATH, READ_INDEX_PATH, ReadIndexRequest,
    SNAPSHOT_PATH, VOTE_PATH,
};
use crate::codec;
use crate::types::{Batch, Raft};
use crate::{propose, read};

/// What every handler needs.
#[derive(Clone)]
struct ServerState {
    raft: Raft,
    /// The leader is handing over: forwarded writes are refused as "not leader".
    handing_off: Arc<AtomicBool>,
    /// Cap on how long a forwarded write or read-index request may hold a handler.
    forward_timeout: Duration,
}

/// The raft listener's routes; with `auth`, every request must carry the cluster's tag
/// (`auth.rs`) and every answer gets one.
pub(crate) fn router(
    raft: Raft,
    handing_off: Arc<AtomicBool>,
    forward_timeout: Duration,
    body_bytes_max: usize,
    auth: Option<Arc<ServerAuth>>,
) -> Router {
    let state = ServerState { raft, handing_off, forward_timeout };
    let router = Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(FORWARD_PATH, post(forward_write))
        .route(READ_INDEX_PATH, post(read_index))
        .route(INITIALIZED_PATH, post(initialized))
        .route(ELECT_PATH, post(elect))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .with_state(state);
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, super::auth::authenticate)),
        None => router,
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()> + Send + 'static) {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "raft listener stopped");
    }
}

/// Decodes the body, runs `handle`, encodes its answer.
async fn rpc<Req, Resp, Fut>(body: Bytes, handle: impl FnOnce(Req) -> Fut) -> Response
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Resp>,
{
    let request = match codec::decode::<Req>(&body) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match codec::encode(&handle(request).await) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a raft reply");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn append(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |req| async move { s.raft.append_entries(req).await }).await
}

async fn vote(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |req| async move { s.raft.vote(req).await }).await
}

async fn snapshot(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |req| async move { s.raft.install_snapshot(req).await }).await
}

async fn forward_write(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |req: ForwardRequest<Batch>| async move {
        let timeout = Duration::from_millis(req.timeout_ms).min(s.forward_timeout);
        propose::commit_here(&s.raft, &s.handing_off, req.batch, timeout).await
    })
    .await
}

async fn read_index(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |req: ReadIndexRequest| async move {
        let timeout = Duration::from_millis(req.timeout_ms).min(s.forward_timeout);
        read::read_index_here(&s.raft, timeout).await
    })
    .await
}

async fn initialized(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |()| async move { s.raft.is_initialized().await.unwrap_or(false) }).await
}

/// Campaigns at once (the leader is handing over); true when the election started.
async fn elect(State(s): State<ServerState>, body: Bytes) -> Response {
    rpc(body, |()| async move { s.raft.trigger().elect().await.is_ok() }).await
}
