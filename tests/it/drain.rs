//! Admission control and the drain on SIGTERM, against real processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{first_then_rest, open_stream};
use crate::fake_agent;
use crate::support::{Cluster, call, send, wait_until};

/// The drain timeout the tests configure; a node must be gone well within it.
const DRAIN_MS: u64 = 4000;

/// A failure a client may simply retry: the node was unreachable (code 0 from `call`), or
/// the error says overloaded or unavailable. Anything else (an internal error, a task not
/// found) is a bug showing through the drain.
fn retryable(error: &Value) -> bool {
    let reason = error["data"][0]["reason"].as_str().unwrap_or("");
    error["code"] == 0 || matches!(reason, "UNAVAILABLE" | "OVERLOADED")
}

fn message(text: &str) -> Value {
    json!({"message": {"messageId": text, "role": "ROLE_USER", "parts": [{"text": text}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_stream_limit_a_stream_is_refused_at_once_with_503_and_retry_after() {
    let agent = fake_agent::start(1, 10).await;
    let env = [("SUPERX_SERVER__STREAMS_IN_FLIGHT_MAX", "1")];
    let url = agent.url.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::new(1, &url, &env)).await.unwrap();
    let base = cluster.base(1);
    // The agent holds the first stream open until `go`.
    let (first, rest) = first_then_rest(open_stream(&base, "SendStreamingMessage", message("one")).await).await;
    assert!(first["result"]["task"]["id"].is_string(), "{first}");
    let refused = open_stream(&base, "SendStreamingMessage", message("two")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["data"][0]["reason"], "OVERLOADED", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("streams_in_flight_max"), "{body}");
    // Over HTTP+JSON the same refusal is a google.rpc.Status, with the same status and header.
    let rest_refused = reqwest::Client::new()
        .post(format!("{base}/agents/echo/message:stream"))
        .header("A2A-Version", "1.0")
        .json(&message("rest"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest_refused.status(), 503);
    assert_eq!(rest_refused.headers()["retry-after"], "1");
    let body: Value = rest_refused.json().await.unwrap();
    assert_eq!(
        (&body["error"]["status"], &body["error"]["details"][0]["reason"]),
        (&json!("UNAVAILABLE"), &json!("OVERLOADED"))
    );
    // Unary calls are not streams: they still pass.
    let unary = tokio::task::spawn_blocking({
        let base = base.clone();
        move || send(&base, "unary")
    });
    assert!(unary.await.unwrap().is_ok());
    // Once the first stream ends, its slot is free again.
    agent.go.add_permits(1);
    let events = rest.await.unwrap();
    assert!(events.last().unwrap()["result"]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED");
    let (third, _) = first_then_rest(open_stream(&base, "SendStreamingMessage", message("three")).await).await;
    assert!(third["result"]["task"]["id"].is_string(), "{third}");
    drop(cluster);
}

/// POSTs `body` to `path` with `headers`; answers the status, Retry-After and JSON body.
async fn post(base: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_request_limit_a_request_is_refused_at_once_with_503_in_its_callers_version() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = fake_agent::start(1, 10).await;
    let env = [("SUPERX_SERVER__REQUESTS_IN_FLIGHT_MAX", "1")];
    let url = agent.url.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::new(1, &url, &env)).await.unwrap();
    let base = cluster.base(1);
    let list = json!({"jsonrpc": "2.0", "id": 7, "method": "ListTasks", "params": {}});
    // A request whose body has not all arrived holds the node's only slot (admission comes
    // before the body is read).
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let body = serde_json::to_vec(&list).unwrap();
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /agents/echo HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nA2A-Version: 1.0\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    held.write_all(head.as_bytes()).await.unwrap();
    held.write_all(&body[..5]).await.unwrap();
    let v10 = [("A2A-Version", "1.0")];
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry_after, refused) = loop {
        let answer = post(&base, "/agents/echo", &v10, &list).await;
        if answer.0 == 503 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{refused}");
    assert_eq!((&refused["id"], &refused["error"]["code"]), (&Value::Null, &json!(-32020)), "{refused}");
    assert_eq!(refused["error"]["data"][0]["reason"], "OVERLOADED", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("requests_in_flight_max"), "{refused}");
    // A 0.3 caller gets the same refusal in 0.3's error shape.
    let (status, _, refused_03) = post(&base, "/agents/echo", &[], &list).await;
    assert_eq!((status, &refused_03["error"]["code"]), (503, &json!(-32020)), "{refused_03}");
    assert_eq!(refused_03["error"]["message"], refused["error"]["message"]);
    // Over HTTP+JSON it is a google.rpc.Status.
    let (status, retry_after, rest) = post(&base, "/agents/echo/message:send", &v10, &message("rest")).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "{rest}");
    assert_eq!(
        (&rest["error"]["status"], &rest["error"]["details"][0]["reason"]),
        (&json!("UNAVAILABLE"), &json!("OVERLOADED"))
    );
    // The held request completes once its body does, and its slot serves the next one.
    held.write_all(&body[5..]).await.unwrap();
    let mut answer = String::new();
    held.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, _, listed) = post(&base, "/agents/echo", &v10, &list).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed["result"]["tasks"].is_array(), "{listed}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_with_a_retryable_error_and_exits_within_the_drain_timeout() {
    let agent = fake_agent::start(1, 10).await;
    let drain = DRAIN_MS.to_string();
    let url = agent.url.clone();
    let mut cluster = tokio::task::spawn_blocking(move || {
        Cluster::new(1, &url, &[("SUPERX_SERVER__DRAIN_TIMEOUT_MS", drain.as_str())])
    })
    .await
    .unwrap();
    let base = cluster.base(1);
    let (first, rest) = first_then_rest(open_stream(&base, "SendStreamingMessage", message("held")).await).await;
    assert!(first["result"]["task"]["id"].is_string(), "{first}");
    // The agent never lets the stream go on: only the drain can end it.
    let (took, status) =
        tokio::task::spawn_blocking(move || cluster.terminate(1, Duration::from_millis(DRAIN_MS))).await.unwrap();
    let events = tokio::time::timeout(Duration::from_secs(5), rest).await.expect("the stream ended").unwrap();
    let last = events.last().expect("a last event");
    assert!(retryable(&last["error"]), "the stream must end with a retryable error: {last}");
    assert!(status.success(), "exit status {status:?}");
    eprintln!("node with an open stream exited {took:?} after SIGTERM");
    drop(agent);
}

#[derive(Default)]
struct Seen {
    acked: Vec<(String, Instant)>,
    errors: Vec<Value>,
}

#[test]
fn sigterm_on_the_leader_under_load_loses_no_acknowledged_write_and_clients_see_only_retryable_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let agent = runtime.block_on(fake_agent::start(0, 0));
    let drain = DRAIN_MS.to_string();
    let mut cluster = Cluster::new(3, &agent.url, &[("SUPERX_SERVER__DRAIN_TIMEOUT_MS", drain.as_str())]);
    let leader = cluster.leader();
    let bases: Vec<String> = (1..=3).map(|id| cluster.base(id)).collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (seen, stop, bases) = (seen.clone(), stop.clone(), bases.clone());
            std::thread::spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    i += 4;
                    match send(&bases[i % bases.len()], &format!("drain-{i}")) {
                        Ok(task) => {
                            let id = task["id"].as_str().unwrap().to_owned();
                            seen.lock().unwrap().acked.push((id, Instant::now()));
                        }
                        Err(e) => seen.lock().unwrap().errors.push(e),
                    }
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), || seen.lock().unwrap().acked.len() >= 100);
    let signalled = Instant::now();
    let (took, status) = cluster.terminate(leader, Duration::from_millis(DRAIN_MS));
    assert!(status.success(), "exit status {status:?}");
    // The leader handed over before it exited: a survivor already leads, with no election
    // timeout to wait out (asked at once, not waited for).
    let leaders: Vec<u64> =
        (1..=3).filter(|id| *id != leader).filter(|id| cluster.status(*id)["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "no survivor leads right after the old leader exited: {leaders:?}");
    wait_until(Duration::from_secs(10), || seen.lock().unwrap().acked.iter().any(|(_, at)| *at > signalled + took));
    let resumed =
        seen.lock().unwrap().acked.iter().find(|(_, at)| *at > signalled + took).map(|(_, at)| *at - signalled);
    let acked_at_stop = seen.lock().unwrap().acked.len();
    wait_until(Duration::from_secs(30), || seen.lock().unwrap().acked.len() >= acked_at_stop + 100);
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());
    let seen = seen.lock().unwrap();
    eprintln!(
        "leader {leader} exited {took:?} after SIGTERM; writes on the survivors {resumed:?} after it; {} acked, {} errors",
        seen.acked.len(),
        seen.errors.len()
    );
    let bad: Vec<&Value> = seen.errors.iter().filter(|e| !retryable(e)).collect();
    assert!(bad.is_empty(), "clients saw errors that are not retryable: {bad:?}");
    for id in (1..=3).filter(|id| *id != leader) {
        for (task, _) in &seen.acked {
            let reply = call(&cluster.base(id), "/agents/echo", "GetTask", json!({"id": task}), None);
            assert!(reply.get("result").is_some(), "acknowledged task {task} missing on node {id}: {reply}");
        }
    }
    drop(cluster);
    drop(runtime);
}

#[test]
fn a_node_without_anything_open_exits_at_once_on_sigterm() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let agent = runtime.block_on(fake_agent::start(0, 0));
    let cluster = Cluster::new(1, &agent.url, &[]);
    send(&cluster.base(1), "one").expect("a write");
    let mut cluster = cluster;
    // The default drain timeout is 15 s; with nothing in flight the node must not wait for it.
    let (took, status) = cluster.terminate(1, Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("idle node exited {took:?} after SIGTERM");
    drop(runtime);
}
