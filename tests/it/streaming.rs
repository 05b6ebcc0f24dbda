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
    assert_eq!(last["error"]["code"], -32603, "it ends with an error: {last}");
    assert!(last["error"]["message"].as_str().unwrap().contains("behind"), "{last}");
}
