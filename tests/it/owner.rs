//! Tasks belong to the caller that created them (`auth.mode = "required"`): with two API keys,
//! neither caller gets, cancels, subscribes to, resumes, continues, lists or sets push configs
//! on the other's task, on either binding, and every answer is byte for byte the answer for a
//! task that does not exist (A2A's security note); an admin sees every task. On a 3-node
//! cluster the owner is in the log: a follower filters alike.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_agent;
use crate::support::{Cluster, call_as, start, wait_until};

pub const ADMIN: &str = "admin-token-for-the-owner-tests";

fn http() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// An answer as the client got it: HTTP status, content type, the body's bytes.
#[derive(Debug, PartialEq)]
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

fn raw(r: reqwest::blocking::Response) -> Raw {
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    Raw { status, content_type, body: r.text().unwrap() }
}

/// The answer with the task id it is about replaced, so a missing task's answer (about
/// another id) compares byte for byte.
fn about(mut r: Raw, id: &str) -> Raw {
    r.body = r.body.replace(id, "<TASK>");
    r
}

/// A JSON-RPC call with an API key and extra headers, as bytes.
pub fn rpc_raw(base: &str, method: &str, params: Value, key: &str, headers: &[(&str, &str)]) -> Raw {
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params});
    let mut req = http().post(format!("{base}/agents/echo")).header("A2A-Version", "1.0").header("x-api-key", key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    raw(req.json(&body).send().unwrap())
}

/// An HTTP+JSON call under `/agents/echo/`.
fn rest_raw(base: &str, verb: reqwest::Method, path: &str, body: Option<Value>, key: &str) -> Raw {
    let mut req = http()
        .request(verb, format!("{base}/agents/echo/{path}"))
        .header("A2A-Version", "1.0")
        .header("x-api-key", key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    raw(req.send().unwrap())
}

pub fn create_key(base: &str, name: &str) -> String {
    let r = call_as(base, "/rpc", "keys/create", json!({"name": name}), Some(ADMIN));
    r["result"]["key"].as_str().unwrap_or_else(|| panic!("keys/create: {r}")).to_owned()
}

fn message(text: &str, task: Option<&str>) -> Value {
    let mut m = json!({"messageId": format!("m-{text}"), "role": "ROLE_USER", "parts": [{"text": text}]});
    if let Some(task) = task {
        m["taskId"] = json!(task);
    }
    json!({"message": m})
}

/// Sends a message as `key`; answers the task's id.
pub fn send_as(base: &str, key: &str, text: &str) -> String {
    let r = rpc_raw(base, "SendMessage", message(text, None), key, &[]);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    body["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("SendMessage: {r:?}")).to_owned()
}

pub fn list(base: &str, key: &str) -> (Vec<String>, u64) {
    let r = rpc_raw(base, "ListTasks", json!({"pageSize": 100}), key, &[("SuperX-Read", "local")]);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    let ids = body["result"]["tasks"].as_array().unwrap_or_else(|| panic!("ListTasks: {r:?}"));
    (ids.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect(), body["result"]["totalSize"].as_u64().unwrap())
}

/// Every way to reach one task, as `key`, on both bindings: the answers, each with the id
/// replaced.
fn every_way_to(base: &str, key: &str, id: &str) -> Vec<(String, Raw)> {
    let cfg = json!({"taskId": id, "url": "https://hooks.example/x", "token": "t"});
    let jsonrpc = [
        ("GetTask", json!({"id": id}), vec![]),
        ("CancelTask", json!({"id": id}), vec![]),
        ("SubscribeToTask", json!({"id": id}), vec![]),
        ("SubscribeToTask", json!({"id": id}), vec![("Last-Event-ID", "1")]),
        ("SendMessage", message("more", Some(id)), vec![]),
        ("SendStreamingMessage", message("more", Some(id)), vec![]),
        ("CreateTaskPushNotificationConfig", cfg, vec![]),
        ("GetTaskPushNotificationConfig", json!({"taskId": id, "id": "c"}), vec![]),
        ("ListTaskPushNotificationConfigs", json!({"taskId": id}), vec![]),
        ("DeleteTaskPushNotificationConfig", json!({"taskId": id, "id": "c"}), vec![]),
    ];
    let mut answers: Vec<(String, Raw)> = jsonrpc
        .into_iter()
        .map(|(method, params, headers)| {
            let label = format!("JSON-RPC {method} {headers:?}");
            (label, about(rpc_raw(base, method, params, key, &headers), id))
        })
        .collect();
    use reqwest::Method as M;
    let rest = [
        (M::GET, format!("tasks/{id}"), None),
        (M::POST, format!("tasks/{id}:cancel"), Some(json!({}))),
        (M::POST, format!("tasks/{id}:subscribe"), Some(json!({}))),
        (M::POST, "message:send".to_owned(), Some(message("more", Some(id)))),
        (M::POST, format!("tasks/{id}/pushNotificationConfigs"), Some(json!({"url": "https://hooks.example/x"}))),
        (M::GET, format!("tasks/{id}/pushNotificationConfigs"), None),
        (M::GET, format!("tasks/{id}/pushNotificationConfigs/c"), None),
        (M::DELETE, format!("tasks/{id}/pushNotificationConfigs/c"), None),
    ];
    for (verb, path, body) in rest {
        let label = format!("HTTP+JSON {verb} {}", path.replace(id, "<TASK>"));
        answers.push((label, about(rest_raw(base, verb, &path, body, key), id)));
    }
    answers
}

/// Another caller's task answers every way exactly as a task that does not exist.
pub fn assert_hidden(base: &str, key: &str, theirs: &str) {
    let missing = format!("no-such-task-{}", theirs.len());
    let hidden = every_way_to(base, key, theirs);
    let absent = every_way_to(base, key, &missing);
    for ((label, h), (_, a)) in hidden.iter().zip(&absent) {
        assert_eq!(h, a, "{label}: another caller's task answers unlike a missing one");
        assert!(h.status == 404 || h.body.contains("-32001"), "{label}: not a task-not-found answer: {h:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_callers_task_answers_like_a_missing_one() {
    let agent = fake_agent::start_not_streaming().await;
    tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let agents = tmp.path().join("agents.yml");
        std::fs::write(&agents, format!("agents:\n  echo:\n    url: {}\n", agent.url)).unwrap();
        let env = [("SUPERX_AUTH__MODE", "required"), ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN)];
        let node = start(&tmp.path().join("node"), &["--agents-file", agents.to_str().unwrap()], &env);
        let base = node.base.as_str();
        let (alice, bob) = (create_key(base, "alice"), create_key(base, "bob"));
        // Alice's tasks: one still running (the agent is polled), one done.
        let running = send_as(base, &alice, "later");
        let done = send_as(base, &alice, "hello");
        let bobs = send_as(base, &bob, "mine");

        assert_hidden(base, &bob, &running);
        assert_hidden(base, &bob, &done);
        assert_hidden(base, &alice, &bobs);

        // Each sees its own, lists only its own and counts only its own.
        let get = |key: &str, id: &str| rpc_raw(base, "GetTask", json!({"id": id}), key, &[]);
        assert_eq!(get(&alice, &running).status, 200);
        assert!(get(&alice, &running).body.contains(&running));
        let (ids, total) = list(base, &alice);
        assert_eq!((ids.len(), total), (2, 2), "{ids:?}");
        assert!(ids.contains(&running) && ids.contains(&done));
        assert_eq!(list(base, &bob), (vec![bobs.clone()], 1));
        // The admin sees every task.
        let (ids, total) = list(base, ADMIN);
        assert_eq!((ids.len(), total), (3, 3), "{ids:?}");
        assert!(call_as(base, "/agents/echo", "GetTask", json!({"id": bobs}), Some(ADMIN))["result"]["id"] == bobs);

        // Bob's attempts changed nothing: Alice's task is still running, with no config.
        let task: Value = serde_json::from_str(&get(&alice, &running).body).unwrap();
        assert_eq!(task["result"]["status"]["state"], "TASK_STATE_WORKING", "{task}");
        let configs = rpc_raw(base, "ListTaskPushNotificationConfigs", json!({"taskId": running}), &alice, &[]);
        assert!(configs.body.contains("\"configs\":[]"), "{configs:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_is_in_the_log_and_a_follower_filters_alike() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let env = [("SUPERX_AUTH__MODE", "required"), ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN)];
        let cluster = Cluster::new(3, &agent.url, &env);
        let leader = cluster.leader();
        let follower = leader % 3 + 1;
        let (lb, fb) = (cluster.base(leader), cluster.base(follower));
        let (alice, bob) = (create_key(&lb, "alice"), create_key(&lb, "bob"));
        let task = send_as(&lb, &alice, "on the leader");
        // A local read on the follower: once it has applied the task, it filters by owner.
        let local = |key: &str| call_with_read(&fb, key, json!({"id": task}));
        wait_until(Duration::from_secs(10), || local(&alice)["result"]["id"] == json!(task));
        let hidden = local(&bob);
        assert_eq!(hidden["error"]["code"], -32001, "{hidden}");
        assert_eq!(list(&fb, &alice).1, 1);
        assert_eq!(list(&fb, &bob).1, 0);
        assert_hidden(&fb, &bob, &task);
    })
    .await
    .unwrap();
}

fn call_with_read(base: &str, key: &str, params: Value) -> Value {
    let r = rpc_raw(base, "GetTask", params, key, &[("SuperX-Read", "local")]);
    serde_json::from_str(&r.body).unwrap()
}
