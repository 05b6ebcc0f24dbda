//! The dashboard at `/ui`: static files compiled into the binary (plain HTML, CSS and
//! JavaScript under `ui/`, no build step, nothing from elsewhere), its settings
//! (`/ui/config.json`) and its live feed of task changes (`/ui/events`).
//!
//! The page reads what every operator reads, the control plane on `/rpc` (`agents/list`,
//! `agents/health`, `cluster/status`), plus the feed and `/ui/tasks/{id}` (a task as this node
//! holds it: unlike GetTask it never asks the agent, so looking changes nothing), with the
//! credential the operator typed (kept in the tab's `sessionStorage`, sent as
//! `Authorization: Bearer`). The files and the settings are public (they hold no data); the
//! feed and the task are operator routes (`auth` requires an admin, as for `/cluster`). Browsers' `EventSource` cannot send a header, so the page reads
//! the feed with `fetch()` and parses the SSE itself: no credential ever goes in a URL.
//!
//! The feed: `event: snapshot` first (the `ui.feed_snapshot_tasks` most recently updated tasks
//! in this node's memory), then `event: task` for every change applied on this node, in
//! apply order, from `tasks::Feed`. A dashboard that falls `ui.feed_buffer_events` behind gets
//! a new snapshot (`"resync": true`) and goes on from there. Lines carry no messages or
//! artifacts (`a2a::task::task_line_to_wire`); the page fetches a task it shows in full.
//!
//! Read-only unless `ui.admin_actions`: the page offers cancel and remove buttons only then
//! (they call the same control-plane methods as any admin client). Every response carries a
//! strict Content-Security-Policy: scripts, styles and connections to this origin only, no
//! inline script, no framing.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;

use crate::a2a::task::{TaskLine, TaskView, task_line_to_wire, task_to_wire};
use crate::gateway::Gateway;
use crate::state::{TaskEntry, TaskEvent};
use crate::tasks::feed::FeedReceiver;

/// Feed events that are already waiting go out in one body chunk of at most this size.
const CHUNK_BYTES_MAX: usize = 64 << 10;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: &str = "index.html";

const ASSETS: [Asset; 4] = [
    Asset { name: INDEX, content_type: "text/html; charset=utf-8", body: include_bytes!("ui/index.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("ui/app.js") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("ui/app.css") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("ui/favicon.svg") },
];

/// Each asset's `ETag`: a hash of its bytes (and so of the build).
static ETAGS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| format!("\"{}\"", hex(&Sha256::digest(a.body)[..12]))).collect());

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The dashboard's routes, added when `ui.enabled`.
pub(super) fn routes(router: Router<Arc<Gateway>>) -> Router<Arc<Gateway>> {
    router
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/config.json", get(config))
        .route("/ui/events", get(events))
        .route("/ui/tasks/{id}", get(task))
        .route("/ui/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(INDEX, &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&file, &headers)
}

/// An asset with its `ETag` (304 on a match); `no-cache`, so a new build shows at once.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return secured((StatusCode::NOT_FOUND, "not found").into_response());
    };
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let cache = [(header::ETAG, etag.as_str()), (header::CACHE_CONTROL, "no-cache")];
    if matches_etag(headers, etag) {
        return secured((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    secured((StatusCode::OK, cache, [(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response())
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// The headers every dashboard response carries.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// What the page needs before it asks for anything: whether to ask for a credential, and
/// whether to show the buttons that change something.
async fn config(State(gw): State<Arc<Gateway>>) -> Response {
    let body = json!({
        "authRequired": gw.auth.required(),
        "adminActions": gw.config.ui.admin_actions,
        "nodeId": gw.config.server.node_id,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
    secured((StatusCode::OK, headers, body.to_string()).into_response())
}

/// The feed of task changes as SSE (see the module doc). 503 with `Retry-After` when the node
/// has no stream slot or the feed has its most clients.
async fn events(State(gw): State<Arc<Gateway>>) -> Response {
    let slot = match gw.admission.stream() {
        Ok(slot) => slot,
        Err(e) => return unavailable(&e.to_string(), e.retry_after_secs().unwrap_or(1)),
    };
    let feed = match gw.replica.subscriptions().feed().subscribe() {
        Ok(feed) => feed,
        Err(e) => return unavailable(&e.to_string(), 1),
    };
    let keepalive = Duration::from_millis(gw.config.streams.keepalive_ms);
    let state = FeedState { gw: gw.clone(), feed, after: 0, resync: Some(false), ended: false, _slot: slot };
    let drain = gw.admission.watch();
    let stream = futures::stream::unfold((state, drain), move |(mut state, mut drain)| async move {
        let chunk = state.next_chunk(&mut drain, keepalive).await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), (state, drain)))
    });
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ];
    secured((StatusCode::OK, headers, Body::from_stream(stream)).into_response())
}

/// A task as this node holds it (memory, else the archive), with its agent: what the
/// dashboard shows when a task is opened. Unlike GetTask it never asks the agent, so looking
/// at a task changes nothing.
async fn task(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let tables = gw.replica.read(|t| t.clone());
    let body = match tables.task(&id) {
        Some(e) => json!({
            "task": task_to_wire(&e.task, TaskView::FULL),
            "agentId": e.agent_id,
            "events": e.events,
            "archived": false,
        }),
        None => match &gw.archive {
            None => return not_found(&id),
            Some(archive) => match archive.get(&id).await {
                Ok(Some(a)) => {
                    json!({"task": task_to_wire(&a.task, TaskView::FULL), "agentId": a.agent_id, "archived": true})
                }
                Ok(None) => return not_found(&id),
                Err(e) => return unavailable(&format!("the archive cannot be read: {e}"), 1),
            },
        },
    };
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
    secured((StatusCode::OK, headers, body.to_string()).into_response())
}

fn not_found(id: &str) -> Response {
    let body = json!({"error": format!("task {id} is not on this node")});
    secured((StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

fn unavailable(message: &str, retry_after: u64) -> Response {
    let headers = [(header::RETRY_AFTER, retry_after.to_string())];
    secured((StatusCode::SERVICE_UNAVAILABLE, headers, message.to_owned()).into_response())
}

/// One dashboard's feed.
struct FeedState {
    gw: Arc<Gateway>,
    feed: FeedReceiver,
    /// Changes at or below this update sequence are in the snapshot sent.
    after: u64,
    /// A snapshot is due (`Some(resync)`): at the start, and after falling behind.
    resync: Option<bool>,
    ended: bool,
    /// Its stream slot on this node (admission), held until the feed ends.
    _slot: crate::admission::Permit,
}

impl FeedState {
    /// The next body chunk: the snapshot that is due, the changes that arrived (as many as
    /// are waiting, up to a chunk), a keep-alive comment, or the end (the node drains).
    async fn next_chunk(
        &mut self,
        drain: &mut tokio::sync::watch::Receiver<bool>,
        keepalive: Duration,
    ) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let mut out = Vec::new();
        if let Some(resync) = self.resync.take() {
            self.after = snapshot(&self.gw, resync, &mut out);
            return Some(Bytes::from(out));
        }
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(keepalive, self.feed.events.recv()) => next,
                _ = drain.wait_for(|d| *d) => {
                    self.ended = true;
                    super::sse::push_event(&mut out, None, Some("end"), br#"{"reason":"this node is shutting down"}"#);
                    return Some(Bytes::from(out));
                }
            };
            match next {
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                Ok(Err(RecvError::Closed)) => return None,
                Ok(Err(RecvError::Lagged(_))) => {
                    self.after = snapshot(&self.gw, true, &mut out);
                    return Some(Bytes::from(out));
                }
                Ok(Ok(event)) if event.seq <= self.after => continue,
                Ok(Ok(event)) => {
                    push_line(&mut out, &event);
                    break;
                }
            }
        }
        while out.len() < CHUNK_BYTES_MAX {
            match self.feed.events.try_recv() {
                Ok(event) if event.seq <= self.after => continue,
                Ok(event) => push_line(&mut out, &event),
                // Lagged is seen (and answered with a snapshot) at the next recv.
                Err(_) => break,
            }
        }
        Some(Bytes::from(out))
    }
}

fn push_line(out: &mut Vec<u8>, e: &TaskEvent) {
    let line = TaskLine {
        id: &e.task_id,
        context_id: &e.context_id,
        agent_id: &e.agent_id,
        state: e.state,
        updated_at_ms: e.at_ms,
        seq: e.seq,
        events: e.events,
    };
    let json = serde_json::to_vec(&task_line_to_wire(&line)).expect("JSON values serialize");
    super::sse::push_event(out, None, Some("task"), &json);
}

/// Writes the snapshot event (the most recent tasks, newest first) and answers the update
/// sequence it covers: the tables are cloned under the lock, listed and rendered after.
fn snapshot(gw: &Gateway, resync: bool, out: &mut Vec<u8>) -> u64 {
    let tables = gw.replica.read(|t| t.clone());
    let entries: Vec<&TaskEntry> = tables.recent_tasks(gw.config.ui.feed_snapshot_tasks).collect();
    let lines: Vec<Value> = entries.iter().map(|e| task_line_to_wire(&line_of(e))).collect();
    let body = json!({"tasks": lines, "resync": resync, "nodeId": gw.config.server.node_id});
    let json = serde_json::to_vec(&body).expect("JSON values serialize");
    super::sse::push_event(out, None, Some("snapshot"), &json);
    entries.first().map_or(0, |e| e.seq)
}

fn line_of(e: &TaskEntry) -> TaskLine<'_> {
    TaskLine {
        id: &e.task.id,
        context_id: &e.task.context_id,
        agent_id: &e.agent_id,
        state: e.task.status.state,
        updated_at_ms: e.updated_at_ms,
        seq: e.seq,
        events: e.events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_exactly_weakly_or_by_star() {
        let etag = &ETAGS[0];
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(matches_etag(&headers(etag), etag));
        assert!(matches_etag(&headers(&format!("\"x\", W/{etag}")), etag));
        assert!(matches_etag(&headers("*"), etag));
        assert!(!matches_etag(&headers("\"x\""), etag));
        assert!(!matches_etag(&HeaderMap::new(), etag));
    }

    /// An attribute like ` onclick=`.
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    #[test]
    fn assets_have_no_inline_script_and_name_only_this_origin() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(html.contains("<script src=\"/ui/app.js\""), "the script is a file");
        assert!(!html.contains("<script>") && !has_handler_attribute(html), "no inline script or handlers: {html}");
        for asset in &ASSETS {
            let text = String::from_utf8_lossy(asset.body).replace("http://www.w3.org/2000/svg", "");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} loads nothing from elsewhere",
                asset.name
            );
        }
        assert!(!std::str::from_utf8(ASSETS[1].body).unwrap().contains("innerHTML"), "data is set as text");
    }
}
