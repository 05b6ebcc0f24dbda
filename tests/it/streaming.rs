//! Streaming under load: a subscriber too slow for its bounded buffer is cut off with an
//! error, while a fast subscriber of the same task gets every event.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::fake_agent;
use crate::support::start;

const CHUNKS: usize = 2000;
const CHUNK_BYTES: usize = 2 * 1024;

fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

/// A TCP connection whose receive buffer is a few KiB, so a reader that stops reading
/// pushes back on the gateway after little data rather than megabytes of kernel buffers.
fn small_window_socket(addr: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

fn subscribe_body(task_id: &str) -> String {
    json!({"jsonrpc": "2.0", "id": "sub", "method": "SubscribeToTask", "params": {"id": task_id}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_cut_off_and_fast_one_gets_everything() {
    let agent = fake_agent::start(CHUNKS, CHUNK_BYTES).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agents = tempfile::NamedTempFile::new().unwrap();
    writeln!(agents, "agents:\n  big:\n    url: {}\n", agent.url).unwrap();
    let path = agents.path().to_str().unwrap().to_owned();
    let node = tokio::task::spawn_blocking(move || {
        start(
            &dir.path().join("node"),
            &["--agents-file", &path],
            &[("SUPERX_STREAMS__SUBSCRIBER_BUFFER_EVENTS", "64")],
        )
    })
    .await
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = format!("{}/agents/big", node.base);

    // The client that starts the stream gets the task first.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]}}});
    let resp = http.post(&url).header("A2A-Version", "1.0").json(&body).send().await.unwrap();
    let mut origin = resp.bytes_stream();
    let first = String::from_utf8(origin.next().await.unwrap().unwrap().to_vec()).unwrap();
    let task_id = sse_events(&first)[0]["result"]["task"]["id"].as_str().unwrap().to_owned();
    let drain_origin = tokio::spawn(async move { while origin.next().await.is_some() {} });

    // A slow subscriber: a raw socket with a small receive window that reads nothing for now.
    let addr = node.base.trim_start_matches("http://").to_owned();
    let mut slow = small_window_socket(&addr);
    let sub = subscribe_body(&task_id);
    write!(slow, "POST /agents/big HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nA2A-Version: 1.0\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{sub}", sub.len()).unwrap();

    // A fast subscriber reads everything.
    let fast = http
        .post(&url)
        .header("A2A-Version", "1.0")
        .header("Content-Type", "application/json")
        .body(sub.clone())
        .send()
        .await
        .unwrap();
    let fast_read = tokio::spawn(async move { fast.text().await.unwrap() });
    // Both subscriptions have their snapshot before the chunks flow: the fast one's response
    // headers arrived (it is registered); the slow one is registered when its first byte is readable.
    let mut first_byte = [0u8; 1];
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow.read_exact(&mut first_byte).unwrap();
    agent.go.add_permits(1);

    let fast_text = tokio::time::timeout(Duration::from_secs(60), fast_read).await.unwrap().unwrap();
    let fast_events = sse_events(&fast_text);
    let chunks = fast_events.iter().filter(|e| e["result"].get("artifactUpdate").is_some()).count();
    assert_eq!(chunks, CHUNKS, "the fast subscriber gets every chunk; it ended with {}", fast_events.last().unwrap());
    assert_eq!(fast_events.last().unwrap()["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    drain_origin.await.unwrap();

    // Now read what the slow one got: far fewer chunks, then the error that closed it.
    let slow_text = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        let _ = slow.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
    .unwrap();
    let slow_events = sse_events(&slow_text);
    let slow_chunks = slow_events.iter().filter(|e| e["result"].get("artifactUpdate").is_some()).count();
    let last = slow_events.last().expect("the slow subscriber got at least its snapshot");
    assert!(slow_chunks < CHUNKS, "the slow subscriber was cut off ({slow_chunks} chunks)");
    assert_eq!(last["error"]["code"], -32020, "it ends with an overload error: {last}");
    assert!(last["error"]["message"].as_str().unwrap().contains("behind"), "{last}");
}

/// A gateway node with the scripted agent registered as `big`.
async fn node_with(agent: &fake_agent::FakeAgent) -> (crate::support::Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let agents = dir.path().join("agents.yml");
    std::fs::write(&agents, format!("agents:\n  big:\n    url: {}\n", agent.url)).unwrap();
    let data = dir.path().join("node");
    let node = tokio::task::spawn_blocking(move || start(&data, &["--agents-file", agents.to_str().unwrap()], &[]))
        .await
        .unwrap();
    (node, dir)
}

async fn stored_task(base: &str, task_id: &str) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}});
    let url = format!("{base}/agents/big");
    let reply: Value = reqwest::Client::new()
        .post(url)
        .header("A2A-Version", "1.0")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["result"].clone()
}

async fn wait_completed(base: &str, task_id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let task = stored_task(base, task_id).await;
        if task["status"]["state"] == "TASK_STATE_COMPLETED" {
            return task;
        }
        assert!(std::time::Instant::now() < deadline, "task never completed: {task}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_stream(base: &str) -> (String, reqwest::Response) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]}}});
    let resp = reqwest::Client::new()
        .post(format!("{base}/agents/big"))
        .header("A2A-Version", "1.0")
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp;
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(&String::from_utf8_lossy(&stream.chunk().await.unwrap().expect("first event")));
    }
    let task_id = sse_events(&text)[0]["result"]["task"]["id"].as_str().unwrap().to_owned();
    (task_id, stream)
}

/// The agent's stream is recorded to the end even when the client that started it leaves
/// after the first event. (The scripted agent answers GetTask with -32001, so the stored task
/// can only be complete if the gateway kept reading the stream.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_recorded_to_the_end_after_its_client_leaves() {
    let agent = fake_agent::start(50, 64).await;
    let (node, _dir) = node_with(&agent).await;
    let (task_id, stream) = start_stream(&node.base).await;
    drop(stream);
    agent.go.add_permits(1);
    let task = wait_completed(&node.base, &task_id).await;
    assert_eq!(task["artifacts"][0]["parts"].as_array().unwrap().len(), 50);
}

/// When the agent's stream ends before the task does, the gateway resubscribes to the agent
/// and records the task from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_agent_stream_is_resumed_with_subscribe_to_task() {
    let agent = fake_agent::start_dropping(10, 64, Some(3)).await;
    let (node, _dir) = node_with(&agent).await;
    let (task_id, mut stream) = start_stream(&node.base).await;
    agent.go.add_permits(1);
    let mut text = String::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = sse_events(&text);
    let last = events.last().unwrap();
    assert!(last.get("error").is_none(), "the client's stream ends without an error: {last}");
    assert_eq!(last["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED", "{last}");
    // start_stream took the first event (the task); after it, across the reconnect, the
    // client sees only updates.
    let tasks = events.iter().filter(|e| e["result"].get("task").is_some()).count();
    assert_eq!(tasks, 0, "no second task event across the reconnect");
    assert_eq!(agent.resubscribes.load(std::sync::atomic::Ordering::Relaxed), 1);
    let task = wait_completed(&node.base, &task_id).await;
    assert_eq!(task["artifacts"][0]["parts"].as_array().unwrap().len(), 10);
}
