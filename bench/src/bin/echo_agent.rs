//! `superx-echo-agent`: a small, fast, stateless A2A agent used as the backend
//! in superx benchmarks.
//!
//! It serves an agent card at `/.well-known/agent-card.json` and JSON-RPC 2.0
//! on `POST /`, in the A2A 1.0 dialect when the request carries
//! `A2A-Version: 1.0` and in the 0.3 dialect when it carries no version or
//! `A2A-Version: 0.3`. Every message is answered by echoing its first text part
//! back, either as a completed task or as a six-event SSE stream (submitted
//! task, working, three artifact chunks, completed). It keeps no task state, so
//! task lookups and cancellations answer "task not found".
//!
//! Paced mode (for fan-out measurements): an A2A 1.0 `SendStreamingMessage`
//! whose first text part starts with `pace N MS DELAY` (e.g. `pace 50 20 1500`)
//! is answered with the task (WORKING) at once, then, after DELAY ms, N
//! artifact updates spaced MS ms apart, each carrying one text part with the
//! Unix time in nanoseconds at which it was sent (`append` after the first,
//! `lastChunk` on the last), then a COMPLETED status update.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use superx_bench::ids::{Timestamp, Uuid};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;
/// Most artifact updates a paced stream may ask for.
const PACE_EVENTS_MAX: u32 = 1_000_000;
/// Longest interval or delay (ms) a paced stream may ask for.
const PACE_MS_MAX: u64 = 3_600_000;

#[derive(Parser, Debug)]
#[command(
    name = "superx-echo-agent",
    about = "Fast stateless A2A echo agent (JSON-RPC, A2A 1.0 and 0.3) for benchmarks"
)]
struct Args {
    /// Address to listen on; the agent card advertises http://ADDR/.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: SocketAddr,
    /// Tokio worker threads (1 runs a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!((1..=1024).contains(&args.workers), "--workers must be between 1 and 1024");
    let runtime = if args.workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.workers).enable_all().build()?
    };
    runtime.block_on(serve(args))
}

/// What every connection shares.
struct AgentState {
    /// The serialized agent card.
    card: Bytes,
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let state = Arc::new(AgentState { card: agent_card(local) });
    eprintln!("superx-echo-agent listening on http://{local}/ ({} worker thread(s))", args.workers);
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("superx-echo-agent: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The agent card: A2A 1.0 fields plus the 0.3 compatibility fields.
fn agent_card(addr: SocketAddr) -> Bytes {
    let url = format!("http://{addr}/");
    let card = serde_json::json!({
        "name": "Bench Echo",
        "description": "Stateless echo agent for superx benchmarks: replies with the text it was sent",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}
        ],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [
            {"id": "echo", "name": "Echo", "description": "Echoes text", "tags": ["echo"]}
        ],
        "url": url,
        "protocolVersion": "0.3.0",
        "preferredTransport": "JSONRPC"
    });
    Bytes::from(serde_json::to_vec(&card).expect("the card serializes"))
}

async fn handle(req: Request<Incoming>, state: &AgentState) -> Response<RespBody> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/.well-known/agent-card.json" | "/.well-known/agent.json") => json_response(state.card.clone()),
        (&Method::POST, "/") => rpc(req).await,
        (_, "/" | "/.well-known/agent-card.json" | "/.well-known/agent.json") => {
            status_response(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => status_response(StatusCode::NOT_FOUND),
    }
}

/// The A2A protocol dialect of a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dialect {
    V1,
    V03,
}

impl Dialect {
    /// From the `A2A-Version` header (absent means 0.3); `None` if unsupported.
    fn from_header(value: Option<&HeaderValue>) -> Option<Self> {
        let Some(value) = value else {
            return Some(Self::V03);
        };
        match value.to_str().map(str::trim) {
            Ok("" | "0.3" | "0.3.0") => Some(Self::V03),
            Ok("1.0" | "1" | "1.0.0") => Some(Self::V1),
            _ => None,
        }
    }

    fn state(self, state: State) -> &'static str {
        match (self, state) {
            (Self::V1, State::Submitted) => "TASK_STATE_SUBMITTED",
            (Self::V1, State::Working) => "TASK_STATE_WORKING",
            (Self::V1, State::Completed) => "TASK_STATE_COMPLETED",
            (Self::V03, State::Submitted) => "submitted",
            (Self::V03, State::Working) => "working",
            (Self::V03, State::Completed) => "completed",
        }
    }

    /// The 0.3 `kind` discriminator (1.0 has none).
    fn kind(self, kind: &'static str) -> Option<&'static str> {
        match self {
            Self::V1 => None,
            Self::V03 => Some(kind),
        }
    }
}

#[derive(Clone, Copy)]
enum State {
    Submitted,
    Working,
    Completed,
}

/// The operations this agent implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Send,
    Stream,
    /// GetTask, CancelTask and resubscription: always "task not found".
    TaskLookup,
}

fn op_v1(method: &str) -> Option<Op> {
    match method {
        "SendMessage" => Some(Op::Send),
        "SendStreamingMessage" => Some(Op::Stream),
        "GetTask" | "CancelTask" | "SubscribeToTask" => Some(Op::TaskLookup),
        _ => None,
    }
}

fn op_v03(method: &str) -> Option<Op> {
    match method {
        "message/send" => Some(Op::Send),
        "message/stream" => Some(Op::Stream),
        "tasks/get" | "tasks/cancel" | "tasks/resubscribe" => Some(Op::TaskLookup),
        _ => None,
    }
}

fn is_v1_method(method: &str) -> bool {
    op_v1(method).is_some()
        || matches!(
            method,
            "ListTasks"
                | "CreateTaskPushNotificationConfig"
                | "GetTaskPushNotificationConfig"
                | "ListTaskPushNotificationConfigs"
                | "DeleteTaskPushNotificationConfig"
                | "GetExtendedAgentCard"
        )
}

fn is_v03_method(method: &str) -> bool {
    op_v03(method).is_some()
        || method.starts_with("tasks/pushNotificationConfig/")
        || method == "agent/getAuthenticatedExtendedCard"
}

/// The parts of a JSON-RPC request this agent reads.
#[derive(Deserialize)]
struct RpcRequest<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    id: Value,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(default)]
    params: Option<Value>,
}

async fn rpc(req: Request<Incoming>) -> Response<RespBody> {
    let dialect = Dialect::from_header(req.headers().get("a2a-version"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return status_response(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let request: RpcRequest<'_> = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            let (code, message) = match err.classify() {
                serde_json::error::Category::Data => (-32600, "Invalid Request"),
                _ => (-32700, "Parse error"),
            };
            return error_response(&Value::Null, dialect, code, message, None);
        }
    };
    let id = &request.id;
    if request.jsonrpc.as_deref() != Some("2.0") {
        return error_response(id, dialect, -32600, "Invalid Request", None);
    }
    let method = request.method.as_ref();
    let Some(dialect) = dialect else {
        return error_response(id, None, -32009, "Unsupported A2A-Version", Some("VERSION_NOT_SUPPORTED"));
    };
    let (op, other_dialect) = match dialect {
        Dialect::V1 => (op_v1(method), is_v03_method(method)),
        Dialect::V03 => (op_v03(method), is_v1_method(method)),
    };
    match op {
        Some(Op::Send) => send(id, dialect, request.params, false),
        Some(Op::Stream) => send(id, dialect, request.params, true),
        Some(Op::TaskLookup) => error_response(id, Some(dialect), -32001, "Task not found", Some("TASK_NOT_FOUND")),
        None if other_dialect => error_response(
            id,
            Some(dialect),
            -32009,
            "Method does not belong to the requested A2A version",
            Some("VERSION_NOT_SUPPORTED"),
        ),
        None => error_response(id, Some(dialect), -32601, "Method not found", None),
    }
}

/// Handles SendMessage / message/send and their streaming forms.
fn send(id: &Value, dialect: Dialect, params: Option<Value>, stream: bool) -> Response<RespBody> {
    let message = match params {
        Some(Value::Object(mut params)) => match params.remove("message") {
            Some(Value::Object(message)) => Some(message),
            _ => None,
        },
        _ => None,
    };
    let Some(mut message) = message else {
        return error_response(id, Some(dialect), -32602, "Invalid params: params.message must be an object", None);
    };
    let task_id = Uuid::new_v4();
    if !matches!(message.get("contextId"), Some(Value::String(_))) {
        message.insert("contextId".to_owned(), Value::String(Uuid::new_v4().as_str().to_owned()));
    }
    message.insert("taskId".to_owned(), Value::String(task_id.as_str().to_owned()));
    if dialect == Dialect::V03 && !message.contains_key("kind") {
        message.insert("kind".to_owned(), Value::String("message".to_owned()));
    }
    let context_id = message.get("contextId").and_then(Value::as_str).unwrap_or_default();
    let text = first_text(&message);
    if stream
        && dialect == Dialect::V1
        && let Some(pace) = Pace::parse(text)
    {
        return paced_stream(id.clone(), task_id, message, pace);
    }
    let echo =
        EchoTask { dialect, task_id: task_id.as_str(), context_id, timestamp: Timestamp::now(), message: &message };
    if stream {
        echo.stream(id)
    } else {
        let mut buf = BytesMut::with_capacity(1024);
        echo.write(&mut buf, id, &Event::Task(echo.task(State::Completed, Some(text))));
        json_response(buf.freeze())
    }
}

/// A paced stream's shape, from `pace N MS DELAY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pace {
    /// Artifact updates to send.
    events: u32,
    /// Time between two artifact updates.
    interval: Duration,
    /// Time between the task event and the first artifact update.
    delay: Duration,
}

impl Pace {
    /// Reads `pace N MS DELAY` at the start of `text` (more words may follow);
    /// `None` if the text does not start that way or a number is out of range.
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_ascii_whitespace();
        if words.next()? != "pace" {
            return None;
        }
        let events: u32 = words.next()?.parse().ok()?;
        let interval_ms: u64 = words.next()?.parse().ok()?;
        let delay_ms: u64 = words.next()?.parse().ok()?;
        (events <= PACE_EVENTS_MAX && interval_ms <= PACE_MS_MAX && delay_ms <= PACE_MS_MAX).then(|| Self {
            events,
            interval: Duration::from_millis(interval_ms),
            delay: Duration::from_millis(delay_ms),
        })
    }
}

/// Nanoseconds since the Unix epoch, now.
fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The paced SSE response (A2A 1.0): a task that sends its events on schedule
/// into a channel that the response body drains. It stops early if the client
/// goes away.
fn paced_stream(id: Value, task_id: Uuid, message: Map<String, Value>, pace: Pace) -> Response<RespBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let context_id = message.get("contextId").and_then(Value::as_str).unwrap_or_default();
        let echo = |timestamp| EchoTask {
            dialect: Dialect::V1,
            task_id: task_id.as_str(),
            context_id,
            timestamp,
            message: &message,
        };
        let frame = |echo: &EchoTask<'_>, event: &Event<'_>| {
            let mut buf = BytesMut::with_capacity(1024);
            buf.put_slice(b"data: ");
            echo.write(&mut buf, &id, event);
            buf.put_slice(b"\r\n\r\n");
            buf.freeze()
        };
        let now = echo(Timestamp::now());
        if tx.send(frame(&now, &Event::Task(now.task(State::Working, None)))).await.is_err() {
            return;
        }
        tokio::time::sleep(pace.delay).await;
        let start = Instant::now();
        let mut text = String::with_capacity(24);
        for i in 0..pace.events {
            tokio::time::sleep_until(start + pace.interval * i).await;
            let now = echo(Timestamp::now());
            text.clear();
            text.push_str(&unix_nanos().to_string());
            let update = now.artifact_update(&text, i > 0, i + 1 == pace.events);
            if tx.send(frame(&now, &Event::ArtifactUpdate(update))).await.is_err() {
                return;
            }
        }
        let now = echo(Timestamp::now());
        let _ = tx.send(frame(&now, &Event::StatusUpdate(now.status_update(State::Completed, true)))).await;
    });
    let mut response = Response::new(RespBody::Paced(rx));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The text of the first part that has a string `text`, or "".
fn first_text(message: &Map<String, Value>) -> &str {
    message
        .get("parts")
        .and_then(Value::as_array)
        .and_then(|parts| parts.iter().find_map(|part| part.get("text").and_then(Value::as_str)))
        .unwrap_or_default()
}

/// Splits `text` into three nearly equal pieces on character boundaries.
fn split3(text: &str) -> [&str; 3] {
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let a = floor(text.len() / 3);
    let b = floor(text.len() * 2 / 3).max(a);
    [&text[..a], &text[a..b], &text[b..]]
}

/// Everything needed to render one echo task in either dialect.
struct EchoTask<'a> {
    dialect: Dialect,
    task_id: &'a str,
    context_id: &'a str,
    timestamp: Timestamp,
    message: &'a Map<String, Value>,
}

impl<'a> EchoTask<'a> {
    fn status(&self, state: State) -> Status<'_> {
        Status { state: self.dialect.state(state), timestamp: self.timestamp.as_str() }
    }

    fn artifact(&self, text: &'a str) -> Artifact<'a> {
        Artifact { artifact_id: "echo", parts: [Part { kind: self.dialect.kind("text"), text }] }
    }

    fn task(&self, state: State, text: Option<&'a str>) -> Task<'_> {
        Task {
            id: self.task_id,
            context_id: self.context_id,
            status: self.status(state),
            artifacts: text.map(|text| [self.artifact(text)]),
            history: [self.message],
            kind: self.dialect.kind("task"),
        }
    }

    fn status_update(&self, state: State, last: bool) -> StatusUpdate<'_> {
        StatusUpdate {
            task_id: self.task_id,
            context_id: self.context_id,
            status: self.status(state),
            is_final: (self.dialect == Dialect::V03).then_some(last),
            kind: self.dialect.kind("status-update"),
        }
    }

    fn artifact_update(&self, text: &'a str, append: bool, last_chunk: bool) -> ArtifactUpdate<'_> {
        ArtifactUpdate {
            task_id: self.task_id,
            context_id: self.context_id,
            artifact: self.artifact(text),
            append,
            last_chunk,
            kind: self.dialect.kind("artifact-update"),
        }
    }

    /// Appends the JSON-RPC response carrying `event` to `buf`.
    fn write(&self, buf: &mut BytesMut, id: &Value, event: &Event<'_>) {
        let result = RpcResult { jsonrpc: "2.0", id, result: Versioned { dialect: self.dialect, event } };
        serde_json::to_writer(buf.writer(), &result).expect("serializing to memory cannot fail");
    }

    /// The six-event SSE response.
    fn stream(&self, id: &Value) -> Response<RespBody> {
        let text = first_text(self.message);
        let [a, b, c] = split3(text);
        let events = [
            Event::Task(self.task(State::Submitted, None)),
            Event::StatusUpdate(self.status_update(State::Working, false)),
            Event::ArtifactUpdate(self.artifact_update(a, false, false)),
            Event::ArtifactUpdate(self.artifact_update(b, true, false)),
            Event::ArtifactUpdate(self.artifact_update(c, true, true)),
            Event::StatusUpdate(self.status_update(State::Completed, true)),
        ];
        let mut buf = BytesMut::with_capacity(4096);
        let chunks = events.map(|event| {
            buf.put_slice(b"data: ");
            self.write(&mut buf, id, &event);
            buf.put_slice(b"\r\n\r\n");
            buf.split().freeze()
        });
        let mut response = Response::new(RespBody::Chunks(chunks.into_iter()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[derive(Serialize)]
struct RpcResult<'a, T> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: T,
}

#[derive(Serialize)]
struct RpcError<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<[ErrorInfo<'a>; 1]>,
}

/// A `google.rpc.ErrorInfo` detail, as A2A 1.0 puts in JSON-RPC error data.
#[derive(Serialize)]
struct ErrorInfo<'a> {
    #[serde(rename = "@type")]
    type_url: &'static str,
    reason: &'a str,
    domain: &'static str,
    metadata: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Task<'a> {
    id: &'a str,
    context_id: &'a str,
    status: Status<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<[Artifact<'a>; 1]>,
    history: [&'a Map<String, Value>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Serialize)]
struct Status<'a> {
    state: &'static str,
    timestamp: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Artifact<'a> {
    artifact_id: &'static str,
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusUpdate<'a> {
    task_id: &'a str,
    context_id: &'a str,
    status: Status<'a>,
    #[serde(rename = "final", skip_serializing_if = "Option::is_none")]
    is_final: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactUpdate<'a> {
    task_id: &'a str,
    context_id: &'a str,
    artifact: Artifact<'a>,
    append: bool,
    last_chunk: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

/// One result object: in 1.0 wrapped as `{"task":…}`, `{"statusUpdate":…}` or
/// `{"artifactUpdate":…}`; in 0.3 bare (the `kind` field tells them apart).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Event<'a> {
    Task(Task<'a>),
    StatusUpdate(StatusUpdate<'a>),
    ArtifactUpdate(ArtifactUpdate<'a>),
}

struct Versioned<'a> {
    dialect: Dialect,
    event: &'a Event<'a>,
}

impl Serialize for Versioned<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.dialect, self.event) {
            (Dialect::V1, event) => event.serialize(serializer),
            (Dialect::V03, Event::Task(task)) => task.serialize(serializer),
            (Dialect::V03, Event::StatusUpdate(update)) => update.serialize(serializer),
            (Dialect::V03, Event::ArtifactUpdate(update)) => update.serialize(serializer),
        }
    }
}

/// A JSON-RPC error response; `reason` adds 1.0 `ErrorInfo` data when the
/// dialect is 1.0 (or unknown).
fn error_response(
    id: &Value,
    dialect: Option<Dialect>,
    code: i64,
    message: &str,
    reason: Option<&str>,
) -> Response<RespBody> {
    let data = reason.filter(|_| dialect != Some(Dialect::V03)).map(|reason| {
        [ErrorInfo {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo",
            reason,
            domain: "a2a-protocol.org",
            metadata: Map::new(),
        }]
    });
    let body = RpcError { jsonrpc: "2.0", id, error: ErrorObject { code, message, data } };
    json_response(Bytes::from(serde_json::to_vec(&body).expect("serializing to memory cannot fail")))
}

fn json_response(body: Bytes) -> Response<RespBody> {
    let mut response = Response::new(RespBody::Full(Some(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn status_response(status: StatusCode) -> Response<RespBody> {
    let mut response = Response::new(RespBody::Full(None));
    *response.status_mut() = status;
    response
}

/// Response bodies: one buffer (sent with a content length), a fixed list of
/// chunks (sent with chunked transfer encoding, one chunk per SSE event), or
/// chunks that arrive over time from a paced stream's task.
enum RespBody {
    Full(Option<Bytes>),
    Chunks(std::array::IntoIter<Bytes, 6>),
    Paced(mpsc::Receiver<Bytes>),
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            Self::Full(body) => body.take(),
            Self::Chunks(chunks) => chunks.next(),
            Self::Paced(rx) => match rx.poll_recv(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(next.map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(body) => body.is_none(),
            Self::Chunks(chunks) => chunks.len() == 0,
            Self::Paced(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(body) => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Chunks(_) | Self::Paced(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split3_keeps_all_text_on_char_boundaries() {
        for text in ["", "a", "ab", "hello world", "héllo wörld ✓✓✓"] {
            let parts = split3(text);
            assert_eq!(parts.concat(), text);
        }
        assert_eq!(split3("abcdef"), ["ab", "cd", "ef"]);
    }

    #[test]
    fn pace_parses() {
        let pace = Pace::parse("pace 50 20 1500").expect("valid");
        assert_eq!(pace.events, 50);
        assert_eq!(pace.interval, Duration::from_millis(20));
        assert_eq!(pace.delay, Duration::from_millis(1500));
        assert!(Pace::parse("  pace 1 0 0 and more").is_some());
        for text in ["", "pace", "pace 1 2", "pacer 1 2 3", "pace -1 2 3", "pace 1 2 x", "echo pace 1 2 3"] {
            assert_eq!(Pace::parse(text), None, "{text:?}");
        }
        assert_eq!(Pace::parse("pace 1 1 3600001"), None);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(Dialect::from_header(None), Some(Dialect::V03));
        let v = |s| Dialect::from_header(Some(&HeaderValue::from_static(s)));
        assert_eq!(v("1.0"), Some(Dialect::V1));
        assert_eq!(v("0.3"), Some(Dialect::V03));
        assert_eq!(v("2.0"), None);
    }
}
