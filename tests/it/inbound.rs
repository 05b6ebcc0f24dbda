//! The gateway's own webhook at a push-capable agent (`/push/inbound/{agent}/{task}`): a
//! scripted agent whose card says `pushNotifications` gets the gateway's registration when
//! the gateway follows its task; deliveries without that token, or with it at another
//! agent's URL, are refused with 401 and change nothing; a delivery with it commits the
//! update, a repeat of it commits nothing, a body about another task is refused, and a late
//! update older than the task's status never moves it back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::{Cluster, call, get_task, wait_until};

/// The configs the agent was given (CreateTaskPushNotificationConfig params).
#[derive(Clone, Default)]
struct PushAgent {
    base: String,
    registered: Arc<Mutex<Vec<Value>>>,
}

async fn start_agent() -> PushAgent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let agent = PushAgent { base: format!("http://{addr}"), registered: Arc::default() };
    let app =
        Router::new().route("/.well-known/agent-card.json", get(card)).route("/", post(rpc)).with_state(agent.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    agent
}

async fn card(State(a): State<PushAgent>) -> Response {
    axum::Json(json!({
        "name": "Fake pusher", "description": "scripted", "version": "1",
        "supportedInterfaces": [{"url": format!("{}/", a.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": false, "pushNotifications": true}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"], "skills": []
    }))
    .into_response()
}

/// SendMessage answers a WORKING task `pushed-1`; CreateTaskPushNotificationConfig keeps the
/// config; GetTask fails, so the gateway serves the stored task (it refreshes an active task
/// from its agent otherwise) and the test sees what the deliveries committed.
async fn rpc(State(a): State<PushAgent>, axum::Json(req): axum::Json<Value>) -> Response {
    let id = req["id"].clone();
    let task = json!({"id": "pushed-1", "contextId": "ctx", "status": {"state": "TASK_STATE_WORKING"}});
    let result = match req["method"].as_str().unwrap_or_default() {
        "SendMessage" => json!({"task": task}),
        "CreateTaskPushNotificationConfig" => {
            a.registered.lock().unwrap().push(req["params"].clone());
            req["params"].clone()
        }
        _ => {
            let error = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "not today"}});
            return axum::Json(error).into_response();
        }
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// A node whose safety-net poll of a pushing agent waits longer than the test runs, so only
/// the deliveries change the task.
fn node(agent_url: &str) -> Cluster {
    let url = agent_url.to_owned();
    let env = [("SUPERX_STREAMS__FOLLOW_POLL_MAX_MS", "600000")];
    std::thread::spawn(move || Cluster::new(1, &url, &env)).join().unwrap()
}

fn status_update(task_id: &str, state: &str, text: &str, timestamp: &str) -> Value {
    json!({"statusUpdate": {"taskId": task_id, "contextId": "ctx", "status": {"state": state,
        "message": {"messageId": text, "role": "ROLE_AGENT", "parts": [{"text": text}]}, "timestamp": timestamp}}})
}

/// POSTs a delivery; answers the HTTP status.
fn deliver(url: &str, token: Option<&str>, body: &Value) -> u16 {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut request = client.post(url).json(body);
    if let Some(token) = token {
        request = request.header("X-A2A-Notification-Token", token);
    }
    request.send().unwrap().status().as_u16()
}

fn status_text(base: &str, task_id: &str) -> (Value, Value, usize) {
    let task = get_task(base, task_id, None).expect("the task is stored");
    let history = task["history"].as_array().map_or(0, Vec::len);
    (task["status"]["state"].clone(), task["status"]["message"]["parts"][0]["text"].clone(), history)
}

fn inbound_count(base: &str, outcome: &str) -> u64 {
    let (_, text) = crate::support::get(&format!("{base}/metrics")).expect("metrics answer");
    let prefix = format!("superx_push_inbound_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_webhook_commits_only_what_the_task_token_carries() {
    let agent = start_agent().await;
    let cluster = node(&format!("{}/", agent.base));
    let base = cluster.base(1);
    tokio::task::block_in_place(|| {
        let params = json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "go"}]},
            "configuration": {"returnImmediately": true}});
        let reply = call(&base, "/agents/echo", "SendMessage", params, None);
        let task_id = reply["result"]["task"]["id"].as_str().expect("a task").to_owned();
        wait_until(Duration::from_secs(10), || !agent.registered.lock().unwrap().is_empty());
        let config = agent.registered.lock().unwrap()[0].clone();
        let url = config["url"].as_str().unwrap().to_owned();
        let token = config["token"].as_str().unwrap().to_owned();
        assert_eq!(url, format!("{base}/push/inbound/echo/{task_id}"));
        assert_eq!(config["taskId"], task_id.as_str());

        let step1 = status_update(&task_id, "TASK_STATE_WORKING", "step 1", "2026-01-01T00:00:01Z");
        let before = status_text(&base, &task_id);
        assert_eq!(deliver(&url, None, &step1), 401);
        assert_eq!(deliver(&url, Some("0123"), &step1), 401);
        let elsewhere = format!("{base}/push/inbound/other/{task_id}");
        assert_eq!(deliver(&elsewhere, Some(&token), &step1), 401, "the token is the agent's and the task's");
        assert_eq!(status_text(&base, &task_id), before, "a refused delivery changes nothing");

        assert_eq!(deliver(&url, Some(&token), &step1), 200);
        let (state, text, history) = status_text(&base, &task_id);
        assert_eq!((state, text), (json!("TASK_STATE_WORKING"), json!("step 1")));
        assert_eq!(deliver(&url, Some(&token), &step1), 200, "a repeat is answered");
        assert_eq!(status_text(&base, &task_id).2, history, "and commits nothing");
        assert_eq!(inbound_count(&base, "duplicate"), 1);

        let other = status_update("someone-else", "TASK_STATE_COMPLETED", "x", "2026-01-01T00:00:02Z");
        assert_eq!(deliver(&url, Some(&token), &other), 400, "the body is about the URL's task");
        assert_eq!(deliver(&url, Some(&token), &json!({"hello": 1})), 400);

        let done = status_update(&task_id, "TASK_STATE_COMPLETED", "done", "2026-01-01T00:00:03Z");
        assert_eq!(deliver(&url, Some(&token), &done), 200);
        let late = status_update(&task_id, "TASK_STATE_WORKING", "step 2", "2026-01-01T00:00:02Z");
        assert_eq!(deliver(&url, Some(&token), &late), 200, "a late update is known already");
        let (state, text, _) = status_text(&base, &task_id);
        assert_eq!((state, text), (json!("TASK_STATE_COMPLETED"), json!("done")));
        assert_eq!(inbound_count(&base, "committed"), 2);
        assert_eq!(inbound_count(&base, "unauthorized"), 3);
    });
}
