//! Agent protection against a real `superx` process: the circuit breaker opens on a failing
//! agent, rejects without calling it, lets exactly one probe through after the cooldown and
//! closes or re-opens on its outcome; `maxInFlight` rejects a third call (unary or while two
//! streams are open) and lets calls through again once the slow ones end.
//!
//! The agent is scripted in-process: it fails on command, holds calls until the test releases
//! them, and counts every request it receives.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::{Node, start};

const DEADLINE: Duration = Duration::from_secs(20);

/// The scripted agent's controls and counters.
#[derive(Clone)]
struct Agent {
    base: String,
    /// Answer HTTP 500 to every call.
    fail: Arc<AtomicBool>,
    /// Hold every call until the test adds a permit to `go`.
    hold: Arc<AtomicBool>,
    go: Arc<Semaphore>,
    /// Requests received (calls and streams).
    requests: Arc<AtomicUsize>,
    /// Calls waiting on `go` right now.
    held: Arc<AtomicUsize>,
}

async fn start_agent() -> Agent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let agent = Agent {
        base,
        fail: Arc::default(),
        hold: Arc::default(),
        go: Arc::new(Semaphore::new(0)),
        requests: Arc::default(),
        held: Arc::default(),
    };
    let app =
        Router::new().route("/.well-known/agent-card.json", get(card)).route("/", post(rpc)).with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    agent
}

async fn card(State(a): State<Agent>) -> Response {
    axum::Json(json!({
        "name": "Scripted", "description": "fails and stalls on command", "version": "1",
        "supportedInterfaces": [{"url": format!("{}/", a.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": true}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"], "skills": []
    }))
    .into_response()
}

impl Agent {
    async fn wait_for_go(&self) {
        if self.hold.load(Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            self.go.acquire().await.unwrap().forget();
            self.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn rpc(State(a): State<Agent>, axum::Json(req): axum::Json<Value>) -> Response {
    a.requests.fetch_add(1, Ordering::SeqCst);
    let id = req["id"].clone();
    if a.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let task_id = format!("p-{}", next_id());
    if req["method"] == "SendStreamingMessage" {
        let working = json!({"jsonrpc": "2.0", "id": id, "result": {"task": {"id": task_id, "contextId": "c",
            "status": {"state": "TASK_STATE_WORKING"}}}});
        let done = json!({"jsonrpc": "2.0", "id": id, "result": {"statusUpdate": {"taskId": task_id, "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED"}}}});
        let stream =
            futures::stream::once(async move { Ok::<_, std::convert::Infallible>(format!("data: {working}\n\n")) })
                .chain(futures::stream::once(async move {
                    a.wait_for_go().await;
                    Ok(format!("data: {done}\n\n"))
                }));
        return ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response();
    }
    a.wait_for_go().await;
    let task = json!({"task": {"id": task_id, "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}});
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": task})).into_response()
}

/// A node with one agent `a` and its per-agent knobs (YAML flow mapping).
async fn node_with(agent: &Agent, knobs: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.yml");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "agents:\n  a: {{url: '{}/', {knobs}}}\n", agent.base).unwrap();
    let (data, path) = (dir.path().join("node"), file.to_str().unwrap().to_owned());
    let node = tokio::task::spawn_blocking(move || start(&data, &["--agents-file", &path], &[])).await.unwrap();
    (node, dir)
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(DEADLINE).build().unwrap()
}

fn send_body(method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": method,
        "params": {"message": {"messageId": format!("m{}", next_id()), "role": "ROLE_USER", "parts": [{"text": "hi"}]}}})
}

/// POSTs a fresh `method` request to agent `a` and reads the JSON answer (an error, for a
/// stream the gateway refused before it started).
async fn post_json(base: &str, method: &str) -> Value {
    let request = http().post(format!("{base}/agents/a")).header("A2A-Version", "1.0").json(&send_body(method));
    request.send().await.unwrap().json().await.unwrap()
}

/// A SendStreamingMessage the gateway answers with a JSON-RPC error instead of a stream.
async fn refused_stream(base: &str) -> Value {
    post_json(base, "SendStreamingMessage").await
}

/// A SendMessage through the gateway: the task, or the error.
async fn send(base: &str) -> Result<Value, Value> {
    let reply = post_json(base, "SendMessage").await;
    match reply.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(reply["error"].clone()),
    }
}

async fn health(base: &str) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "agents/health", "params": {"id": "a"}});
    let reply: Value = http().post(format!("{base}/rpc")).json(&body).send().await.unwrap().json().await.unwrap();
    reply["result"].clone()
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut ok: impl FnMut() -> F) {
    let started = tokio::time::Instant::now();
    while !ok().await {
        assert!(started.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn code(error: &Value) -> i64 {
    error["code"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_probes_once_closes_and_reopens() {
    let agent = start_agent().await;
    let (node, _dir) = node_with(&agent, "failureThreshold: 3, failureWindowMs: 60000, cooldownMs: 300").await;
    let base = node.base.clone();
    let requests = || agent.requests.load(Ordering::SeqCst);

    // Three failures open the breaker; further calls never reach the agent.
    agent.fail.store(true, Ordering::SeqCst);
    let before = requests();
    for _ in 0..3 {
        assert_eq!(code(&send(&base).await.unwrap_err()), -32099);
    }
    assert_eq!(requests(), before + 3);
    let rejected = send(&base).await.unwrap_err();
    assert_eq!(code(&rejected), -32012, "{rejected}");
    assert_eq!(rejected["data"][0]["reason"], "AGENT_CIRCUIT_OPEN", "{rejected}");
    assert_eq!(rejected["data"][0]["metadata"]["agentId"], "a", "{rejected}");
    assert!(rejected["message"].as_str().unwrap().contains("agent a"), "{rejected}");
    for _ in 0..10 {
        assert_eq!(code(&send(&base).await.unwrap_err()), -32012);
    }
    assert_eq!(requests(), before + 3, "rejected calls do not reach the agent");
    let h = health(&base).await;
    assert_eq!((h["breakerState"].as_str(), h["recentFailures"].as_u64()), (Some("open"), Some(3)), "{h}");

    // After the cooldown: 50 concurrent calls, exactly one probe reaches the (now healthy,
    // stalling) agent; the rest are rejected while it runs; its success closes the breaker.
    agent.fail.store(false, Ordering::SeqCst);
    agent.hold.store(true, Ordering::SeqCst);
    wait_until("half-open", || async { health(&base).await["breakerState"] == "half_open" }).await;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn({
                let b = base.clone();
                async move { send(&b).await }
            })
        })
        .collect();
    wait_until("the probe held at the agent", || async { agent.held.load(Ordering::SeqCst) == 1 }).await;
    wait_until("the other 49 answered", || {
        let finished = calls.iter().filter(|c| c.is_finished()).count();
        async move { finished == 49 }
    })
    .await;
    agent.go.add_permits(1);
    let mut probes = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => probes += 1,
            Err(error) => assert_eq!(code(&error), -32012, "rejected while the probe runs: {error}"),
        }
    }
    assert_eq!(probes, 1, "exactly one probe");
    assert_eq!(requests(), before + 4, "one probe reached the agent");
    agent.hold.store(false, Ordering::SeqCst);
    assert_eq!(health(&base).await["breakerState"], "closed");
    send(&base).await.expect("closed: calls pass");

    // Failing again (a stream that fails to open counts too): open, then a failed probe
    // re-opens for a new cooldown.
    agent.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(code(&send(&base).await.unwrap_err()), -32099);
    }
    let stream = refused_stream(&base).await;
    assert_eq!(code(&stream["error"]), -32099, "{stream}");
    assert_eq!(code(&send(&base).await.unwrap_err()), -32012);
    wait_until("half-open again", || async { health(&base).await["breakerState"] == "half_open" }).await;
    let at_probe = requests();
    assert_eq!(code(&send(&base).await.unwrap_err()), -32099, "the probe reaches the failing agent");
    assert_eq!(code(&send(&base).await.unwrap_err()), -32012, "a failed probe re-opens at once");
    assert_eq!(requests(), at_probe + 1);
    let h = health(&base).await;
    assert_eq!(h["breakerState"], "open", "{h}");
    assert!(h["lastError"].as_str().unwrap().contains("HTTP 500"), "{h}");
}

/// Opens a stream through the gateway and returns it once its first event (the task) came.
async fn open_stream(base: &str) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> {
    let resp = http()
        .post(format!("{base}/agents/a"))
        .header("A2A-Version", "1.0")
        .json(&send_body("SendStreamingMessage"))
        .send()
        .await
        .unwrap();
    let content_type = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("TASK_STATE_WORKING"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_rejects_a_third_call_or_stream_and_recovers() {
    let agent = start_agent().await;
    let (node, _dir) = node_with(&agent, "maxInFlight: 2").await;
    let base = node.base.clone();
    agent.hold.store(true, Ordering::SeqCst);

    // Two slow unary calls fill the agent's slots; a third is rejected at once.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let b = base.clone();
                async move { send(&b).await }
            })
        })
        .collect();
    wait_until("two calls held at the agent", || async { agent.held.load(Ordering::SeqCst) == 2 }).await;
    let before = agent.requests.load(Ordering::SeqCst);
    let error = send(&base).await.unwrap_err();
    assert_eq!(code(&error), -32013, "{error}");
    assert_eq!(error["data"][0]["reason"], "AGENT_OVERLOADED", "{error}");
    assert_eq!(error["data"][0]["metadata"]["agentId"], "a", "{error}");
    assert_eq!(agent.requests.load(Ordering::SeqCst), before, "the rejected call did not reach the agent");
    assert_eq!(health(&base).await["inFlight"], 2);
    agent.go.add_permits(2);
    for call in slow {
        call.await.unwrap().expect("the slow calls complete");
    }
    agent.hold.store(false, Ordering::SeqCst);
    send(&base).await.expect("calls pass again");

    // Two open streams hold both slots until they end.
    agent.hold.store(true, Ordering::SeqCst);
    let streams = vec![open_stream(&base).await, open_stream(&base).await];
    let h = health(&base).await;
    assert_eq!((h["inFlight"].as_u64(), h["maxInFlight"].as_u64()), (Some(2), Some(2)), "{h}");
    assert_eq!(code(&send(&base).await.unwrap_err()), -32013, "a unary call while two streams are open");
    let third = refused_stream(&base).await;
    assert_eq!(code(&third["error"]), -32013, "a third stream: {third}");
    agent.go.add_permits(2);
    for mut stream in streams {
        while stream.next().await.is_some() {}
    }
    agent.hold.store(false, Ordering::SeqCst);
    wait_until("the streams' slots freed", || async { health(&base).await["inFlight"] == 0 }).await;
    send(&base).await.expect("calls pass after the streams ended");
}
