//! A scripted A2A 1.0 agent in the test process, for cases the SDK agents cannot produce
//! on demand: a stream of many large artifact chunks that starts only when the test says go.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub struct FakeAgent {
    pub url: String,
    /// One permit lets the current stream emit its chunks.
    pub go: Arc<Semaphore>,
    /// SubscribeToTask calls the agent answered (the gateway reconnecting).
    pub resubscribes: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Script {
    base: String,
    chunks: usize,
    chunk_bytes: usize,
    /// End the stream early (a dropped connection, as far as the gateway can tell) after
    /// this many chunks.
    drop_after: Option<usize>,
    go: Arc<Semaphore>,
    resubscribes: Arc<AtomicUsize>,
    /// What the card says; a "later" message makes a task that completes once `go` has a
    /// permit, as GetTask then answers (an agent that does not stream is polled).
    streaming: bool,
}

/// Starts an agent whose SendStreamingMessage sends the task, waits for `go`, then sends
/// `chunks` artifact chunks of `chunk_bytes` text each and a COMPLETED status.
pub async fn start(chunks: usize, chunk_bytes: usize) -> FakeAgent {
    start_dropping(chunks, chunk_bytes, None).await
}

/// Like `start`, but each stream ends after `drop_after` chunks; SubscribeToTask then answers
/// with the finished task (all chunks, COMPLETED).
pub async fn start_dropping(chunks: usize, chunk_bytes: usize, drop_after: Option<usize>) -> FakeAgent {
    serve(chunks, chunk_bytes, drop_after, true).await
}

/// An agent that does not stream: SendMessage "later" answers a WORKING task, and GetTask
/// answers it COMPLETED once `go` has a permit.
pub async fn start_not_streaming() -> FakeAgent {
    serve(0, 0, None, false).await
}

async fn serve(chunks: usize, chunk_bytes: usize, drop_after: Option<usize>, streaming: bool) -> FakeAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let go = Arc::new(Semaphore::new(0));
    let resubscribes = Arc::new(AtomicUsize::new(0));
    let script = Script {
        base: base.clone(),
        chunks,
        chunk_bytes,
        drop_after,
        go: go.clone(),
        resubscribes: resubscribes.clone(),
        streaming,
    };
    let app = Router::new().route("/.well-known/agent-card.json", get(card)).route("/", post(rpc)).with_state(script);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeAgent { url: format!("{base}/"), go, resubscribes }
}

async fn card(State(s): State<Script>) -> Response {
    axum::Json(json!({
        "name": "Fake streamer", "description": "scripted", "version": "1",
        "supportedInterfaces": [{"url": format!("{}/", s.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": s.streaming}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"], "skills": []
    }))
    .into_response()
}

fn frame(id: &Value, result: Value) -> Result<axum::body::Bytes, std::convert::Infallible> {
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
    Ok(format!("data: {body}\r\n\r\n").into())
}

async fn rpc(State(s): State<Script>, axum::Json(req): axum::Json<Value>) -> Response {
    let id = req["id"].clone();
    if req["method"] == "SendMessage" && req["params"]["message"]["parts"][0]["text"] == "later" {
        let task = json!({"task": {"id": format!("later-{}", uuid_like()), "contextId": "ctx",
            "status": {"state": "TASK_STATE_WORKING"}}});
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": task})).into_response();
    }
    if req["method"] == "GetTask" && req["params"]["id"].as_str().is_some_and(|t| t.starts_with("later-")) {
        let state = if s.go.available_permits() > 0 { "TASK_STATE_COMPLETED" } else { "TASK_STATE_WORKING" };
        let task = json!({"id": req["params"]["id"], "contextId": "ctx", "status": {"state": state}});
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": task})).into_response();
    }
    if req["method"] == "SendMessage" {
        // Unary sends complete at once: a fresh task echoing the text.
        let text = req["params"]["message"]["parts"][0]["text"].clone();
        let task = json!({"task": {"id": format!("fake-{}", uuid_like()), "contextId": "ctx",
            "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "echo", "parts": [{"text": text}]}]}});
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": task})).into_response();
    }
    if req["method"] == "SubscribeToTask" {
        s.resubscribes.fetch_add(1, Ordering::Relaxed);
        let parts: Vec<Value> = (0..s.chunks).map(|_| json!({"text": "x".repeat(s.chunk_bytes)})).collect();
        let task = json!({"task": {"id": req["params"]["id"], "contextId": "ctx", "status": {"state": "TASK_STATE_COMPLETED"},
            "artifacts": [{"artifactId": "big", "parts": parts}]}});
        let stream = futures::stream::iter([frame(&id, task)]);
        return ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response();
    }
    if req["method"] != "SendStreamingMessage" {
        let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "Task not found"}});
        return axum::Json(error).into_response();
    }
    let task_id = format!("fake-{}", uuid_like());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let task = json!({"task": {"id": task_id, "contextId": "ctx", "status": {"state": "TASK_STATE_WORKING"}}});
        let _ = tx.send(frame(&id, task)).await;
        let _permit = s.go.acquire().await.unwrap();
        let text = "x".repeat(s.chunk_bytes);
        for i in 0..s.chunks {
            if s.drop_after == Some(i) {
                return;
            }
            let chunk = json!({"artifactUpdate": {"taskId": task_id, "contextId": "ctx", "append": i > 0,
                "lastChunk": i + 1 == s.chunks, "artifact": {"artifactId": "big", "parts": [{"text": text}]}}});
            if tx.send(frame(&id, chunk)).await.is_err() {
                return;
            }
            // Paced like a real producer (about 4 chunks a millisecond), not a tight loop.
            if i % 4 == 3 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        let done = json!({"statusUpdate": {"taskId": task_id, "contextId": "ctx", "status": {"state": "TASK_STATE_COMPLETED"}}});
        let _ = tx.send(frame(&id, done)).await;
    });
    let stream = tokio_stream_from(rx);
    ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
}

fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

fn uuid_like() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
