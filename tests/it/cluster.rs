//! Replicated state with real processes: crash recovery of a single node, and a three-node
//! cluster on distinct loopback addresses (127.0.0.1-3): reads on every node right after a
//! write, forwarding from followers, a leader killed under load (with a history check of
//! every acknowledged write and every read), and a restarted node catching up from a
//! snapshot.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_agent;
use crate::support::{Cluster, call, get_task, send, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_survives_kill_9_with_every_acknowledged_task() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let mut cluster = Cluster::new(1, &agent.url, &[]);
        let base = cluster.base(1);
        let acked: Vec<Value> = (0..50).map(|i| send(&base, &format!("task-{i}")).expect("send")).collect();
        cluster.kill(1);
        cluster.spawn(1);
        cluster.wait_ready(1);
        for task in &acked {
            let id = task["id"].as_str().unwrap();
            let got = get_task(&base, id, None).unwrap_or_else(|| panic!("task {id} lost after kill -9"));
            assert_eq!(got["status"], task["status"]);
            assert_eq!(got["artifacts"], task["artifacts"]);
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_read_after_write_everywhere_and_forward_from_followers() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let cluster = Cluster::new(3, &agent.url, &[]);
        let leader = cluster.leader();
        for via in 1..=3u64 {
            let task = send(&cluster.base(via), &format!("via-{via}")).expect("send");
            let id = task["id"].as_str().unwrap();
            for reader in 1..=3u64 {
                let got = get_task(&cluster.base(reader), id, None);
                assert!(got.is_some(), "task {id} written via {via} (leader {leader}) not readable on {reader}");
            }
        }
        let status = cluster.status(leader);
        assert_eq!(status["voters"].as_array().unwrap().len(), 3, "{status}");
    })
    .await
    .unwrap();
}

/// What the load saw: acknowledged writes, and for each task the reads that found it.
#[derive(Default)]
struct History {
    acked: Vec<(String, Instant)>,
    errors: usize,
    /// Tasks some read found: a later read of the same task must find it too.
    seen: HashSet<String>,
    backwards: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_load_loses_no_acknowledged_write() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let env = [("SUPERX_RAFT__SNAPSHOT_LOGS_SINCE_LAST", "20"), ("SUPERX_RAFT__SNAPSHOT_LOGS_KEEP", "0")];
        let mut cluster = Cluster::new(3, &agent.url, &env);
        let leader = cluster.leader();
        let bases: Vec<(u64, String)> = (1..=3).map(|id| (id, cluster.base(id))).collect();
        let history = Arc::new(Mutex::new(History::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (history, stop, bases) = (history.clone(), stop.clone(), bases.clone());
            std::thread::spawn(move || run_load(&bases, &history, &stop))
        };
        wait_until(Duration::from_secs(30), || history.lock().unwrap().acked.len() >= 30);
        eprintln!("load running: {} acked; killing leader {leader}", history.lock().unwrap().acked.len());
        let killed_at = Instant::now();
        cluster.kill(leader);
        wait_until(Duration::from_secs(30), || history.lock().unwrap().acked.iter().any(|(_, t)| *t > killed_at));
        eprintln!("writes resumed after the kill");
        let resumed = history.lock().unwrap().acked.iter().find(|(_, t)| *t > killed_at).map(|(_, t)| *t - killed_at);
        wait_until(Duration::from_secs(30), || history.lock().unwrap().acked.len() >= 150);
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        let h = history.lock().unwrap();
        eprintln!("writes resumed {resumed:?} after the leader kill; {} acked, {} errors", h.acked.len(), h.errors);
        assert!(h.backwards.is_empty(), "reads went backwards: {:?}", h.backwards);
        let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        for id in &survivors {
            for (task, _) in &h.acked {
                let reply = call(&cluster.base(*id), "/agents/echo", "GetTask", json!({"id": task}), None);
                assert!(reply.get("result").is_some(), "acknowledged task {task} missing on node {id}: {reply}");
            }
        }
        // The killed node comes back and catches up (its log was purged meanwhile, so from a
        // snapshot): a local read there finds every acknowledged task.
        cluster.spawn(leader);
        cluster.wait_ready(leader);
        let base = cluster.base(leader);
        wait_until(Duration::from_secs(30), || {
            h.acked.iter().all(|(t, _)| get_task(&base, t, Some("local")).is_some())
        });
        let status = cluster.status(leader);
        assert!(status["snapshotIndex"].as_u64().unwrap() > 0, "caught up without a snapshot? {status}");
    })
    .await
    .unwrap();
}

/// Sends writes round-robin over the nodes and reads back earlier ones, recording everything.
fn run_load(bases: &[(u64, String)], history: &Mutex<History>, stop: &AtomicBool) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (_, base) = &bases[i % bases.len()];
        i += 1;
        match send(base, &format!("load-{i}")) {
            Ok(task) => {
                let id = task["id"].as_str().unwrap().to_owned();
                history.lock().unwrap().acked.push((id, Instant::now()));
            }
            Err(_) => history.lock().unwrap().errors += 1,
        }
        let sample = {
            let h = history.lock().unwrap();
            h.acked.get(i * 7 % h.acked.len().max(1)).map(|(id, _)| id.clone())
        };
        if let Some(id) = sample {
            let (_, reader) = &bases[(i + 1) % bases.len()];
            match get_task(reader, &id, None) {
                Some(_) => {
                    history.lock().unwrap().seen.insert(id);
                }
                None => {
                    // A read that fails is fine while its node is down; one that answers
                    // "not found" for an acknowledged task is a lost write.
                    let reply = call(reader, "/agents/echo", "GetTask", json!({"id": id}), None);
                    if reply["error"]["code"] == -32001 {
                        history.lock().unwrap().backwards.push(id);
                    }
                }
            }
        }
    }
}

/// The `data:` events of an SSE body, parsed.
pub fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

pub async fn open_stream(base: &str, method: &str, params: Value) -> reqwest::Response {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = json!({"jsonrpc": "2.0", "id": "s", "method": method, "params": params});
    let url = format!("{base}/agents/echo");
    reqwest::Client::new().post(url).header("A2A-Version", "1.0").json(&body).send().await.unwrap()
}

/// Reads a stream's first event (its task snapshot), then the rest in the background.
pub async fn first_then_rest(resp: reqwest::Response) -> (Value, tokio::task::JoinHandle<Vec<Value>>) {
    use futures::StreamExt;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while !buf.contains("\n\n") {
        let chunk = body.next().await.expect("a first event").unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (first, rest) = buf.split_once("\n\n").unwrap();
    let first = sse_events(&format!("{first}\n\n")).remove(0);
    let rest = rest.to_owned();
    let handle = tokio::spawn(async move {
        let mut text = rest;
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        sse_events(&text)
    });
    (first, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_other_nodes_see_the_same_events_in_the_same_order() {
    const CHUNKS: usize = 20;
    let agent = fake_agent::start(CHUNKS, 100).await;
    let url = agent.url.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::new(3, &url, &[])).await.unwrap();
    let message = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]}});
    let (origin_first, origin_rest) =
        first_then_rest(open_stream(&cluster.base(1), "SendStreamingMessage", message).await).await;
    let task_id = origin_first["result"]["task"]["id"].as_str().unwrap().to_owned();
    let mut followers = Vec::new();
    for node in [2u64, 3] {
        let resp = open_stream(&cluster.base(node), "SubscribeToTask", json!({"id": task_id})).await;
        let (snapshot, rest) = first_then_rest(resp).await;
        assert_eq!(snapshot["result"]["task"]["id"], task_id.as_str(), "node {node} starts with the task");
        followers.push(rest);
    }
    agent.go.add_permits(1);
    let origin: Vec<Value> = origin_rest.await.unwrap().into_iter().map(|e| e["result"].clone()).collect();
    for (node, rest) in [2u64, 3].into_iter().zip(followers) {
        let events: Vec<Value> = rest.await.unwrap().into_iter().map(|e| e["result"].clone()).collect();
        assert_eq!(events, origin, "node {node} saw the stream's events, in order");
    }
    assert_eq!(origin.len(), CHUNKS + 1);
    assert_eq!(origin.last().unwrap()["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    let finals: Vec<Value> = tokio::task::spawn_blocking(move || {
        (1..=3u64).map(|id| get_task(&cluster.base(id), &task_id, None).expect("task on every node")).collect()
    })
    .await
    .unwrap();
    assert_eq!(finals[0]["artifacts"][0]["parts"].as_array().unwrap().len(), CHUNKS, "chunks appended");
    assert!(finals.iter().all(|t| *t == finals[0]), "every node has the same final task");
}
