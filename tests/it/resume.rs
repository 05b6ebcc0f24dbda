//! Resumable streams (docs/resumable-streams.md): a client reading a 6-event stream on one
//! node leaves after event 3, reconnects to another node with `Last-Event-ID: 3`, and gets
//! events 4..6 exactly once; the same with the leader killed between the two connections.
//! And a task answered active with no stream reading it is followed upstream (polled).

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::fake_agent;
use crate::support::{Cluster, get_task, wait_until};
use tokio::task::block_in_place as blocking;

/// The fake agent's stream: the task (1), four artifact chunks (2..5), COMPLETED (6).
const CHUNKS: usize = 4;
const EVENTS: u64 = 6;

/// One SSE event as the client sees it: its id and its JSON-RPC result.
#[derive(Debug)]
struct Event {
    id: Option<u64>,
    result: Value,
}

/// Reads SSE events from a response body until `count` arrived or the stream ended.
async fn read_events(response: reqwest::Response, count: usize) -> Vec<Event> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = vec![];
    while events.len() < count {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), body.next()).await else { break };
        buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id: ")).map(|n| n.parse().unwrap());
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let message: Value = serde_json::from_str(data).unwrap();
            assert!(message.get("error").is_none(), "stream error: {message}");
            events.push(Event { id, result: message["result"].clone() });
        }
    }
    // A chunk may carry more events than the reader takes: it stops after `count`.
    events.truncate(count);
    events
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(base: &str, body: Value, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = http().post(format!("{base}/agents/echo")).header("A2A-Version", "1.0").json(&body);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// Starts the 6-event stream on `base`, reads its first 3 events (ids 1..3), and leaves.
/// Answers the task id.
async fn read_half(base: &str, agent: &fake_agent::FakeAgent) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage",
        "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]}}});
    let response = post(base, body, None).await;
    agent.go.add_permits(1);
    let events = read_events(response, 3).await;
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3)], "{events:?}");
    events[0].result["task"]["id"].as_str().unwrap().to_owned()
}

/// Resumes on `base` after event 3 and checks that exactly events 4..6 arrive, ending with
/// the COMPLETED status.
async fn resume_after_3(base: &str, task_id: &str) {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "SubscribeToTask", "params": {"id": task_id}});
    let response = post(base, body, Some("3")).await;
    assert_eq!(response.headers().get("superx-resume").unwrap(), "replayed");
    let events = read_events(response, usize::MAX).await;
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [Some(4), Some(5), Some(6)], "{events:?}");
    for event in &events[..2] {
        assert_eq!(event.result["artifactUpdate"]["taskId"], task_id, "{event:?}");
    }
    assert_eq!(events[2].result["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
}

fn wait_completed(base: &str, task_id: &str) {
    wait_until(Duration::from_secs(20), || {
        get_task(base, task_id, None).is_some_and(|t| t["status"]["state"] == "TASK_STATE_COMPLETED")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_on_another_node_with_exactly_the_missed_events() {
    let agent = fake_agent::start(CHUNKS, 16).await;
    // The cluster's helpers block (processes, a blocking HTTP client): off the async workers.
    let mut cluster = blocking(|| Cluster::new(3, &agent.url, &[]));

    // Node 1, then node 2.
    let task_id = read_half(&cluster.base(1), &agent).await;
    blocking(|| wait_completed(&cluster.base(2), &task_id));
    resume_after_3(&cluster.base(2), &task_id).await;

    // Again, with the leader killed between the two connections: the client reconnects to
    // a node that is not the one it left (unless that is the only one left) nor the dead one.
    let task_id = read_half(&cluster.base(1), &agent).await;
    blocking(|| wait_completed(&cluster.base(3), &task_id));
    let leader = blocking(|| cluster.leader());
    blocking(|| cluster.kill(leader));
    let other = [2, 3, 1].into_iter().find(|n| *n != leader).unwrap();
    resume_after_3(&cluster.base(other), &task_id).await;

    // An id the task never had, or history that is gone, gives the current task instead.
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "SubscribeToTask", "params": {"id": task_id}});
    let response = post(&cluster.base(other), body, Some("99")).await;
    assert_eq!(response.headers().get("superx-resume").unwrap(), "snapshot");
    let events = read_events(response, usize::MAX).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id, Some(EVENTS));
    assert_eq!(events[0].result["task"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(events[0].result["task"]["artifacts"][0]["parts"].as_array().unwrap().len(), CHUNKS);

    // A Last-Event-ID that is not an id is refused.
    let response = post(
        &cluster.base(other),
        json!({"jsonrpc": "2.0", "id": 4, "method": "SubscribeToTask",
        "params": {"id": task_id}}),
        Some("abc"),
    )
    .await;
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32602, "{error}");
}

/// The task as ListTasks shows it: the tables alone (GetTask would ask the agent itself).
fn listed_state(base: &str, task_id: &str) -> Option<String> {
    let reply = crate::support::call(base, "/agents/echo", "ListTasks", json!({"pageSize": 50}), None);
    let tasks = reply["result"]["tasks"].as_array()?.clone();
    tasks.iter().find(|t| t["id"] == task_id).map(|t| t["status"]["state"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_answered_active_is_polled_until_it_ends() {
    let agent = fake_agent::start_not_streaming().await;
    let env = [("SUPERX_STREAMS__FOLLOW_POLL_INITIAL_MS", "20"), ("SUPERX_STREAMS__FOLLOW_POLL_MAX_MS", "100")];
    let cluster = blocking(|| Cluster::new(1, &agent.url, &env));
    let base = cluster.base(1);
    let task = blocking(|| crate::support::send(&base, "later")).unwrap();
    let task_id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["status"]["state"], "TASK_STATE_WORKING");
    assert_eq!(blocking(|| listed_state(&base, &task_id)).as_deref(), Some("TASK_STATE_WORKING"));
    // The agent finishes; nobody asks the gateway about the task: it finds out by itself.
    agent.go.add_permits(1);
    blocking(|| {
        wait_until(Duration::from_secs(20), || listed_state(&base, &task_id).as_deref() == Some("TASK_STATE_COMPLETED"))
    });
}
