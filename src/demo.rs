//! `superx serve --demo`: a small echo agent on a loopback port of its own, registered as
//! agent `echo` (source `demo`), so the first command a newcomer runs shows the gateway doing
//! its job. It is labelled a demo everywhere it shows (card, agents list, startup banner).
//! Its A2A JSON is `a2a::echo`; this module is the HTTP around it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::a2a::TaskState;
use crate::a2a::echo::{self, Ask, codes};
use crate::agents::spec::AgentSpec;

/// The demo agent's id at the gateway.
pub const AGENT_ID: &str = "echo";

/// Tasks the demo agent remembers for GetTask and CancelTask (oldest forgotten first).
const TASKS_MAX: usize = 1_000;

/// Largest request body the demo agent reads.
const BODY_MAX: usize = 64 * 1024;

/// Words a stream sends back at most (the rest are dropped from the echo).
const STREAM_WORDS_MAX: usize = 200;

/// Pause between two words of a stream, so a person sees the task work.
const WORD_PAUSE: Duration = Duration::from_millis(150);

/// A running demo agent.
pub struct DemoAgent {
    /// Its JSON-RPC URL (`http://127.0.0.1:<port>/`).
    pub url: String,
}

impl DemoAgent {
    /// The spec that registers it with the gateway.
    pub fn spec(&self) -> AgentSpec {
        let mut spec = AgentSpec::from_env(&self.url, None);
        spec.id = AGENT_ID.to_string();
        spec.metadata = Some(json!({"demo": true, "description": "built-in demo echo agent (superx serve --demo)"}));
        spec.source = "demo".to_string();
        spec
    }
}

#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, Value>,
    order: VecDeque<String>,
}

impl Tasks {
    fn put(&mut self, id: &str, task: Value) {
        if self.by_id.insert(id.to_string(), task).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > TASKS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

type Shared = Arc<Mutex<Tasks>>;

/// Starts the demo agent on a free loopback port.
pub async fn start() -> anyhow::Result<DemoAgent> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let card = Bytes::from(serde_json::to_vec(&echo::card(&url))?);
    let app = Router::new()
        .route("/.well-known/agent-card.json", get(move || async move { json_response(card.clone()) }))
        .route("/", post(rpc))
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .with_state(Shared::default());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the demo agent stopped");
        }
    });
    Ok(DemoAgent { url })
}

async fn rpc(State(tasks): State<Shared>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_value(echo::rpc_error(&Value::Null, codes::PARSE, "Parse error", "PARSE_ERROR"));
    };
    let id = request["id"].clone();
    let params = &request["params"];
    match request["method"].as_str().unwrap_or_default() {
        "SendMessage" => match echo::read_ask(params) {
            Ok(ask) => {
                let task_id = uuid::Uuid::new_v4().to_string();
                let words: Vec<&str> = ask.text.split_whitespace().collect();
                let task = echo::task(&task_id, &ask, TaskState::Completed, &words);
                tasks.lock().expect("demo tasks").put(&task_id, task.clone());
                json_value(echo::rpc_result(&id, json!({"task": task})))
            }
            Err(message) => json_value(echo::rpc_error(&id, codes::INVALID_PARAMS, &message, "INVALID_PARAMS")),
        },
        "SendStreamingMessage" => match echo::read_ask(params) {
            Ok(ask) => stream(tasks, id, ask),
            Err(message) => json_value(echo::rpc_error(&id, codes::INVALID_PARAMS, &message, "INVALID_PARAMS")),
        },
        "GetTask" => match find(&tasks, params) {
            Some(task) => json_value(echo::rpc_result(&id, task)),
            None => json_value(echo::rpc_error(&id, codes::TASK_NOT_FOUND, "Task not found", "TASK_NOT_FOUND")),
        },
        "CancelTask" => cancel(&tasks, &id, params),
        _ => json_value(echo::rpc_error(&id, codes::METHOD_NOT_FOUND, "Method not found", "METHOD_NOT_FOUND")),
    }
}

fn find(tasks: &Shared, params: &Value) -> Option<Value> {
    let id = params["id"].as_str()?;
    tasks.lock().expect("demo tasks").by_id.get(id).cloned()
}

/// A working task (a stream under way) becomes canceled; the stream sees it and stops.
fn cancel(tasks: &Shared, id: &Value, params: &Value) -> Response {
    let mut tasks = tasks.lock().expect("demo tasks");
    let Some(task) = params["id"].as_str().and_then(|t| tasks.by_id.get_mut(t)) else {
        return json_value(echo::rpc_error(id, codes::TASK_NOT_FOUND, "Task not found", "TASK_NOT_FOUND"));
    };
    let terminal = task["status"]["state"].as_str().and_then(TaskState::from_v10).is_none_or(TaskState::is_terminal);
    if terminal {
        return json_value(echo::rpc_error(
            id,
            codes::TASK_NOT_CANCELABLE,
            "Task cannot be canceled",
            "TASK_NOT_CANCELABLE",
        ));
    }
    task["status"]["state"] = json!(TaskState::Canceled.v10_name());
    json_value(echo::rpc_result(id, task.clone()))
}

/// The SSE answer: the task working, one artifact chunk per word, then completed (or canceled,
/// if a CancelTask came meanwhile).
fn stream(tasks: Shared, id: Value, ask: Ask) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let task_id = uuid::Uuid::new_v4().to_string();
        let words: Vec<String> = ask.text.split_whitespace().take(STREAM_WORDS_MAX).map(str::to_string).collect();
        let frame = |result: Value| Bytes::from(format!("data: {}\n\n", echo::rpc_result(&id, result)));
        let working = echo::task(&task_id, &ask, TaskState::Working, &[]);
        tasks.lock().expect("demo tasks").put(&task_id, working.clone());
        if tx.send(frame(json!({"task": working}))).await.is_err() {
            return;
        }
        let canceled = echo::status_update(&task_id, &ask, TaskState::Canceled);
        for (i, word) in words.iter().enumerate() {
            tokio::time::sleep(WORD_PAUSE).await;
            // GetTask meanwhile (the gateway refreshes an active task from its agent) sees
            // the words sent so far.
            let so_far: Vec<&str> = words[..=i].iter().map(String::as_str).collect();
            if !advance(&tasks, &task_id, echo::task(&task_id, &ask, TaskState::Working, &so_far)) {
                let _ = tx.send(frame(canceled)).await;
                return;
            }
            let update = echo::artifact_update(&task_id, &ask, word, i == 0, i + 1 == words.len());
            if tx.send(frame(update)).await.is_err() {
                return;
            }
        }
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        if !advance(&tasks, &task_id, echo::task(&task_id, &ask, TaskState::Completed, &refs)) {
            let _ = tx.send(frame(canceled)).await;
            return;
        }
        let _ = tx.send(frame(echo::status_update(&task_id, &ask, TaskState::Completed))).await;
    });
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Stores the task's next state, unless a CancelTask came meanwhile (then false, and the task
/// stays canceled): the check and the write under one lock.
fn advance(tasks: &Shared, task_id: &str, next: Value) -> bool {
    let mut tasks = tasks.lock().expect("demo tasks");
    let canceled = tasks.by_id.get(task_id).is_some_and(|t| t["status"]["state"] == TaskState::Canceled.v10_name());
    if !canceled {
        tasks.put(task_id, next);
    }
    !canceled
}

fn json_value(value: Value) -> Response {
    json_response(Bytes::from(value.to_string()))
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
