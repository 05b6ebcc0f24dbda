//! `superx-fanout`: measures how fast superx fans one task's events out to many
//! `SubscribeToTask` streams, on loopback.
//!
//! It opens `--subscribers` HTTP/1.1 connections to the `--subscribe` URLs
//! (round-robin), then starts a paced stream on `--origin` with
//! `SendStreamingMessage` and the text `pace EVENTS INTERVAL DELAY`, which the
//! bench echo agent (`superx-echo-agent`) answers with the task at once and,
//! DELAY ms later, EVENTS artifact updates INTERVAL ms apart, each carrying the
//! Unix time in nanoseconds at which the agent sent it. As soon as the task id
//! is known every connection subscribes to the task. For each subscriber it
//! checks that the snapshot (the first event) arrived before the first paced
//! event was sent and held no artifact yet (otherwise the subscriber is
//! "late"), and for every (subscriber, event) pair it records the delivery lag:
//! the time the event was received minus the time in its text. The origin
//! stream itself is drained in the background and measured the same way.
//! Everything is bounded: the run ends `--grace` seconds after the last event
//! is due, whatever the streams do.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use superx_bench::http::{Target, connect};
use superx_bench::ids::Uuid;
use superx_bench::sse::DataSplitter;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Longest wait for the origin's first event, and for all connections to open.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest error text kept as a sample.
const SAMPLE_CHARS: usize = 300;

#[derive(Parser, Debug)]
#[command(
    name = "superx-fanout",
    about = "Fan-out benchmark: one paced task stream, many SubscribeToTask subscribers, per-event delivery lag"
)]
struct Args {
    /// Per-agent URL on which the paced stream is started (SendStreamingMessage).
    #[arg(long)]
    origin: String,
    /// Per-agent URLs of the nodes to subscribe on, comma-separated (used round-robin).
    #[arg(long, value_delimiter = ',', required = true)]
    subscribe: Vec<String>,
    /// Number of SubscribeToTask streams (one connection each).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Artifact updates in the paced stream.
    #[arg(long, default_value_t = 50)]
    events: u32,
    /// Milliseconds between two artifact updates.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Milliseconds between the task event and the first artifact update (time for
    /// every subscriber to attach).
    #[arg(long, default_value_t = 3000)]
    delay_ms: u64,
    /// Seconds allowed after the last event is due for every stream to end.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    /// Connections opened at the same time while connecting subscribers.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Tokio worker threads (1 runs a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("superx-fanout: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run_main() -> Result<()> {
    let args = Args::parse();
    ensure!((1..=100_000).contains(&args.subscribers), "--subscribers must be between 1 and 100000");
    ensure!((1..=1_000_000).contains(&args.events), "--events must be between 1 and 1000000");
    ensure!(
        args.interval_ms <= 3_600_000 && args.delay_ms <= 3_600_000,
        "--interval-ms and --delay-ms are at most 1 h"
    );
    ensure!(args.grace.is_finite() && args.grace > 0.0 && args.grace <= 3600.0, "--grace must be in (0, 3600] seconds");
    ensure!((1..=10_000).contains(&args.connect_parallel), "--connect-parallel must be between 1 and 10000");
    ensure!((1..=256).contains(&args.threads), "--threads must be between 1 and 256");
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    let report = runtime.block_on(run(&args))?;
    report.print(&args);
    Ok(())
}

/// Nanoseconds since the Unix epoch, now (the clock the echo agent stamps events with).
fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Why a stream did not deliver everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The TCP connection or HTTP handshake failed.
    Connect,
    /// A non-2xx HTTP status.
    Http,
    /// A JSON-RPC error, as the answer or as an event.
    JsonRpc,
    /// The connection broke mid-stream.
    Transport,
    /// The run's deadline passed with the stream still open.
    Timeout,
    /// An event that is not a JSON-RPC result of the expected shape.
    BadEvent,
    /// The stream ended before a terminal state was seen.
    ClosedEarly,
}

const FAILURES: [Failure; 7] = [
    Failure::Connect,
    Failure::Http,
    Failure::JsonRpc,
    Failure::Transport,
    Failure::Timeout,
    Failure::BadEvent,
    Failure::ClosedEarly,
];

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Http => "http",
            Self::JsonRpc => "jsonrpc",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::BadEvent => "bad_event",
            Self::ClosedEarly => "closed_early",
        }
    }
}

/// What one stream (the origin or a subscriber) saw.
#[derive(Debug, Default)]
struct StreamStats {
    /// When the first task event (the snapshot) arrived, Unix ns.
    snapshot_ns: Option<u64>,
    /// Artifact parts already in that first task event.
    snapshot_parts: usize,
    /// Paced artifact updates received.
    artifacts: u32,
    /// Updates whose timestamp was not above the previous one (duplicates or reordering).
    out_of_order: u32,
    /// The latest timestamp received so far.
    last_ts: u64,
    /// The earliest timestamp received.
    first_ts: Option<u64>,
    /// Delivery lag of every artifact update, µs.
    lags_us: Vec<u64>,
    /// Updates received before the time they were stamped with (clock trouble).
    negative_lags: u32,
    /// Whether a terminal state was seen.
    terminal: bool,
    /// The first failure, with a sample of what was seen.
    failure: Option<(Failure, String)>,
}

impl StreamStats {
    fn failed(failure: Failure, detail: impl Into<String>) -> Self {
        let mut stats = Self::default();
        stats.fail(failure, detail);
        stats
    }

    fn fail(&mut self, failure: Failure, detail: impl Into<String>) {
        if self.failure.is_none() {
            let mut detail: String = detail.into();
            if let Some((cut, _)) = detail.char_indices().nth(SAMPLE_CHARS) {
                detail.truncate(cut);
            }
            self.failure = Some((failure, detail));
        }
    }

    /// Takes one event's JSON-RPC payload received at `now` (Unix ns); the id
    /// of the first task seen goes to `first_task`.
    fn on_event(&mut self, payload: &[u8], now: u64, first_task: &mut Option<oneshot::Sender<String>>) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(err) => return self.fail(Failure::BadEvent, format!("{err}: {}", String::from_utf8_lossy(payload))),
        };
        if let Some(error) = envelope.error {
            return self.fail(Failure::JsonRpc, error.to_string());
        }
        let Some(result) = envelope.result else {
            return self.fail(Failure::BadEvent, String::from_utf8_lossy(payload));
        };
        if let Some(task) = result.task {
            if self.snapshot_ns.is_none() {
                self.snapshot_ns = Some(now);
                self.snapshot_parts = task.artifacts.iter().map(|a| a.parts.len()).sum();
                if let Some(tx) = first_task.take() {
                    let _ = tx.send(task.id);
                }
            }
            self.terminal |= is_terminal(&task.status.state);
        } else if let Some(update) = result.artifact_update {
            let stamp = update.artifact.parts.iter().rev().find_map(|p| p.text.as_deref());
            let Some(ts) = stamp.and_then(|text| text.trim().parse::<u64>().ok()) else {
                return self.fail(Failure::BadEvent, String::from_utf8_lossy(payload));
            };
            self.artifacts += 1;
            if ts <= self.last_ts {
                self.out_of_order += 1;
            }
            self.last_ts = self.last_ts.max(ts);
            self.first_ts = Some(self.first_ts.map_or(ts, |first| first.min(ts)));
            if now < ts {
                self.negative_lags += 1;
            }
            self.lags_us.push(now.saturating_sub(ts) / 1000);
        } else if let Some(update) = result.status_update {
            self.terminal |= is_terminal(&update.status.state);
        } else {
            self.fail(Failure::BadEvent, String::from_utf8_lossy(payload));
        }
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "TASK_STATE_COMPLETED" | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED" | "TASK_STATE_REJECTED")
}

/// The parts of a 1.0 stream event that matter here.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    result: Option<EventProbe>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventProbe {
    #[serde(default)]
    task: Option<TaskProbe>,
    #[serde(default)]
    artifact_update: Option<ArtifactUpdateProbe>,
    #[serde(default)]
    status_update: Option<StatusUpdateProbe>,
}

#[derive(Deserialize)]
struct TaskProbe {
    id: String,
    status: StatusProbe,
    #[serde(default)]
    artifacts: Vec<ArtifactProbe>,
}

#[derive(Deserialize)]
struct StatusProbe {
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct ArtifactUpdateProbe {
    artifact: ArtifactProbe,
}

#[derive(Deserialize)]
struct ArtifactProbe {
    #[serde(default)]
    parts: Vec<PartProbe>,
}

#[derive(Deserialize)]
struct PartProbe {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct StatusUpdateProbe {
    status: StatusProbe,
}

/// Sends one A2A 1.0 JSON-RPC request and, if the answer is an SSE stream,
/// follows it until it ends or `deadline` passes.
async fn stream_call(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    body: &Value,
    deadline: Instant,
    mut first_task: Option<oneshot::Sender<String>>,
) -> StreamStats {
    let req = match target.a2a_stream_request(Bytes::from(body.to_string())) {
        Ok(req) => req,
        Err(err) => return StreamStats::failed(Failure::Http, format!("building the request: {err}")),
    };
    let answer = tokio::time::timeout_at(deadline, async {
        sender.ready().await?;
        sender.send_request(req).await
    })
    .await;
    let response = match answer {
        Err(_) => return StreamStats::failed(Failure::Timeout, "no answer before the deadline"),
        Ok(Err(err)) => return StreamStats::failed(Failure::Transport, err.to_string()),
        Ok(Ok(response)) => response,
    };
    let is_sse = response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !response.status().is_success() || !is_sse {
        return unexpected_answer(response, deadline).await;
    }
    let mut stats = StreamStats::default();
    let mut splitter = DataSplitter::default();
    let mut body = response.into_body();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                stats.fail(Failure::Timeout, "the stream was still open at the deadline");
                break;
            }
            Ok(None) => {
                if !stats.terminal {
                    stats.fail(Failure::ClosedEarly, "the stream ended before a terminal state");
                }
                break;
            }
            Ok(Some(Err(err))) => {
                stats.fail(Failure::Transport, err.to_string());
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        let now = unix_nanos();
        splitter.feed(&data, |payload| stats.on_event(payload, now, &mut first_task));
    }
    stats
}

/// Classifies an answer that is not a 2xx SSE stream.
async fn unexpected_answer(response: Response<Incoming>, deadline: Instant) -> StreamStats {
    let status = response.status();
    let body = match tokio::time::timeout_at(deadline, response.into_body().collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        _ => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let failure = if status != StatusCode::OK {
        Failure::Http
    } else if serde_json::from_slice::<Envelope>(&body).is_ok_and(|e| e.error.is_some()) {
        Failure::JsonRpc
    } else {
        Failure::BadEvent
    };
    StreamStats::failed(failure, format!("HTTP {status}: {text}"))
}

/// Everything measured in one run.
struct Report {
    task_id: String,
    connected: usize,
    connect_ms: f64,
    /// From the first SubscribeToTask sent to the last snapshot received.
    attach_ms: Option<f64>,
    /// Subscribers whose snapshot came after the first paced event was sent or
    /// already held an artifact.
    late: usize,
    /// Subscribers that never got a snapshot.
    no_snapshot: usize,
    subscribers: Vec<StreamStats>,
    origin: StreamStats,
    lag_us: Histogram<u64>,
    origin_lag_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

async fn run(args: &Args) -> Result<Report> {
    let origin = Target::resolve(&args.origin).await?;
    let mut targets = Vec::with_capacity(args.subscribe.len());
    for url in &args.subscribe {
        targets.push(Arc::new(Target::resolve(url).await?));
    }
    ensure!(!targets.is_empty(), "--subscribe needs at least one URL");

    // 1. Connect every subscriber first, so that attaching is only a request each.
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_parallel));
    let mut connecting = JoinSet::new();
    for idx in 0..args.subscribers {
        let target = Arc::clone(&targets[idx % targets.len()]);
        let gate = Arc::clone(&gate);
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let conn = tokio::time::timeout(SETUP_TIMEOUT, connect(target.addr)).await;
            (idx, conn)
        });
    }
    let mut senders: Vec<Option<SendRequest<Full<Bytes>>>> = (0..args.subscribers).map(|_| None).collect();
    let mut connect_failures: Vec<(usize, String)> = Vec::new();
    while let Some(joined) = connecting.join_next().await {
        let (idx, conn) = joined.context("a connecting task failed")?;
        match conn {
            Ok(Ok(sender)) => senders[idx] = Some(sender),
            Ok(Err(err)) => connect_failures.push((idx, format!("{err:#}"))),
            Err(_) => connect_failures.push((idx, "connect timed out".to_owned())),
        }
    }
    let connect_ms = connect_started.elapsed().as_secs_f64() * 1000.0;
    let connected = args.subscribers - connect_failures.len();
    ensure!(connected > 0, "no subscriber could connect: {}", connect_failures[0].1);

    // 2. Start the paced stream and learn the task id from its first event.
    let due = Duration::from_millis(args.delay_ms + args.interval_ms * u64::from(args.events));
    let deadline = Instant::now() + due + Duration::from_secs_f64(args.grace);
    let mut origin_conn = tokio::time::timeout(SETUP_TIMEOUT, connect(origin.addr))
        .await
        .context("connecting to --origin timed out")??;
    let message_id = Uuid::new_v4();
    let start = json!({
        "jsonrpc": "2.0",
        "id": "fanout-origin",
        "method": "SendStreamingMessage",
        "params": {"message": {
            "messageId": message_id.as_str(),
            "role": "ROLE_USER",
            "parts": [{"text": format!("pace {} {} {}", args.events, args.interval_ms, args.delay_ms)}]
        }}
    });
    let (task_tx, task_rx) = oneshot::channel();
    let origin_target = origin.clone();
    let origin_task =
        tokio::spawn(
            async move { stream_call(&mut origin_conn, &origin_target, &start, deadline, Some(task_tx)).await },
        );
    let task_id = match tokio::time::timeout(SETUP_TIMEOUT, task_rx).await {
        Ok(Ok(id)) => id,
        Ok(Err(_)) => {
            let stats = origin_task.await.context("the origin stream task failed")?;
            let why = stats.failure.map_or_else(|| "no task event".to_owned(), |(f, d)| format!("{}: {d}", f.name()));
            bail!("the origin stream gave no task: {why}");
        }
        Err(_) => bail!("no task event on the origin stream within {SETUP_TIMEOUT:?}"),
    };

    // 3. Subscribe everywhere at once.
    let subscribe_started = unix_nanos();
    let mut subscribing = JoinSet::new();
    for (idx, sender) in senders.into_iter().enumerate() {
        let Some(mut sender) = sender else { continue };
        let target = Arc::clone(&targets[idx % targets.len()]);
        let body = json!({"jsonrpc": "2.0", "id": idx, "method": "SubscribeToTask", "params": {"id": task_id}});
        subscribing.spawn(async move { stream_call(&mut sender, &target, &body, deadline, None).await });
    }
    let mut subscribers: Vec<StreamStats> =
        connect_failures.into_iter().map(|(_, detail)| StreamStats::failed(Failure::Connect, detail)).collect();
    while let Some(joined) = subscribing.join_next().await {
        subscribers.push(joined.context("a subscriber task failed")?);
    }
    let origin = origin_task.await.context("the origin stream task failed")?;

    // 4. Judge.
    let first_paced = subscribers.iter().chain([&origin]).filter_map(|s| s.first_ts).min();
    let mut late = 0;
    let mut no_snapshot = 0;
    let mut last_snapshot = None::<u64>;
    let mut lag_us = histogram();
    for sub in &subscribers {
        match sub.snapshot_ns {
            None => no_snapshot += usize::from(sub.failure.as_ref().is_none_or(|(f, _)| *f != Failure::Connect)),
            Some(at) => {
                last_snapshot = Some(last_snapshot.map_or(at, |last| last.max(at)));
                if sub.snapshot_parts > 0 || first_paced.is_some_and(|first| at > first) {
                    late += 1;
                }
            }
        }
        for &lag in &sub.lags_us {
            lag_us.saturating_record(lag);
        }
    }
    let mut origin_lag_us = histogram();
    for &lag in &origin.lags_us {
        origin_lag_us.saturating_record(lag);
    }
    Ok(Report {
        task_id,
        connected,
        connect_ms,
        attach_ms: last_snapshot.map(|last| last.saturating_sub(subscribe_started) as f64 / 1e6),
        late,
        no_snapshot,
        subscribers,
        origin,
        lag_us,
        origin_lag_us,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn lag_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    json!({
        "p50": ms(h.value_at_quantile(0.5)),
        "p90": ms(h.value_at_quantile(0.9)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
    })
}

impl Report {
    fn expected(&self, args: &Args) -> u64 {
        args.subscribers as u64 * u64::from(args.events)
    }

    fn received(&self) -> u64 {
        self.subscribers.iter().map(|s| u64::from(s.artifacts)).sum()
    }

    fn failures(&self) -> Vec<(Failure, usize, Option<&str>)> {
        FAILURES
            .iter()
            .map(|&kind| {
                let mut matching =
                    self.subscribers.iter().filter_map(|s| s.failure.as_ref()).filter(|(f, _)| *f == kind);
                let sample = matching.next().map(|(_, d)| d.as_str());
                (kind, matching.count() + usize::from(sample.is_some()), sample)
            })
            .collect()
    }

    fn to_json(&self, args: &Args) -> Value {
        let failures = self.failures();
        let errors: serde_json::Map<String, Value> =
            failures.iter().map(|(kind, n, _)| (kind.name().to_owned(), json!(n))).collect();
        let samples: serde_json::Map<String, Value> = failures
            .iter()
            .filter_map(|(kind, _, sample)| sample.map(|s| (kind.name().to_owned(), json!(s))))
            .collect();
        let total: usize = failures.iter().map(|(_, n, _)| n).sum();
        let expected = self.expected(args);
        let received = self.received();
        json!({
            "origin_url": args.origin,
            "subscribe_urls": args.subscribe,
            "task_id": self.task_id,
            "subscribers": args.subscribers,
            "connected": self.connected,
            "connect_ms": self.connect_ms,
            "attach_ms": self.attach_ms,
            "late_subscribers": self.late,
            "no_snapshot": self.no_snapshot,
            "paced": {"events": args.events, "interval_ms": args.interval_ms, "delay_ms": args.delay_ms},
            "events": {
                "expected": expected,
                "received": received,
                "missing": expected.saturating_sub(received),
                "out_of_order": self.subscribers.iter().map(|s| u64::from(s.out_of_order)).sum::<u64>(),
                "negative_lag": self.subscribers.iter().map(|s| u64::from(s.negative_lags)).sum::<u64>(),
            },
            "lag_ms": lag_json(&self.lag_us),
            "completed_streams": self.subscribers.iter().filter(|s| s.terminal).count(),
            "origin_stream": {
                "received": self.origin.artifacts,
                "completed": self.origin.terminal,
                "error": self.origin.failure.as_ref().map(|(f, d)| format!("{}: {d}", f.name())),
                "lag_ms": lag_json(&self.origin_lag_us),
            },
            "errors": Value::Object({
                let mut errors = errors;
                errors.insert("total".to_owned(), json!(total));
                errors
            }),
            "error_samples": samples,
            "threads": args.threads,
        })
    }

    fn print(&self, args: &Args) {
        if args.json {
            println!("{}", self.to_json(args));
            return;
        }
        let expected = self.expected(args);
        let received = self.received();
        let q = |h: &Histogram<u64>, p: f64| ms(h.value_at_quantile(p));
        println!(
            "superx-fanout  origin {}  subscribe {}  task {}",
            args.origin,
            args.subscribe.join(","),
            self.task_id
        );
        println!(
            "  paced        {} events every {} ms after {} ms  threads={}",
            args.events, args.interval_ms, args.delay_ms, args.threads
        );
        println!(
            "  subscribers  {} (connected {} in {:.0} ms; all snapshots {} ms after subscribing; late {}; no snapshot {})",
            args.subscribers,
            self.connected,
            self.connect_ms,
            self.attach_ms.map_or_else(|| "-".to_owned(), |a| format!("{a:.0}")),
            self.late,
            self.no_snapshot
        );
        println!(
            "  events       expected {expected}  received {received}  missing {}  out of order {}  streams completed {}",
            expected.saturating_sub(received),
            self.subscribers.iter().map(|s| u64::from(s.out_of_order)).sum::<u64>(),
            self.subscribers.iter().filter(|s| s.terminal).count()
        );
        if !self.lag_us.is_empty() {
            println!(
                "  lag ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (receive time - send time, every subscriber x event)",
                q(&self.lag_us, 0.5),
                q(&self.lag_us, 0.9),
                q(&self.lag_us, 0.99),
                ms(self.lag_us.max())
            );
        }
        if !self.origin_lag_us.is_empty() {
            println!(
                "  origin       {} events  lag ms p50 {:.2}  p99 {:.2}  max {:.2}{}",
                self.origin.artifacts,
                q(&self.origin_lag_us, 0.5),
                q(&self.origin_lag_us, 0.99),
                ms(self.origin_lag_us.max()),
                self.origin.failure.as_ref().map_or_else(String::new, |(f, d)| format!("  error {}: {d}", f.name()))
            );
        }
        let failures = self.failures();
        let total: usize = failures.iter().map(|(_, n, _)| n).sum();
        let counts: Vec<String> = failures.iter().map(|(kind, n, _)| format!("{} {n}", kind.name())).collect();
        println!("  errors       {total}  ({})", counts.join("  "));
        for (kind, _, sample) in &failures {
            if let Some(sample) = sample {
                println!("    e.g. {}: {sample}", kind.name());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stats: &mut StreamStats, json: &str, now: u64) -> Option<String> {
        let (tx, mut rx) = oneshot::channel();
        let mut tx = Some(tx);
        stats.on_event(json.as_bytes(), now, &mut tx);
        rx.try_recv().ok()
    }

    #[test]
    fn measures_events() {
        let mut s = StreamStats::default();
        let id = feed(
            &mut s,
            r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","status":{"state":"TASK_STATE_WORKING"},"history":[]}}}"#,
            100,
        );
        assert_eq!(id.as_deref(), Some("t1"));
        assert_eq!((s.snapshot_ns, s.snapshot_parts), (Some(100), 0));
        let update = |ts: u64| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"artifactUpdate":{{"taskId":"t1","artifact":{{"artifactId":"echo","parts":[{{"text":"{ts}"}}]}},"append":true}}}}}}"#
            )
        };
        feed(&mut s, &update(5_000_000), 7_500_000);
        feed(&mut s, &update(6_000_000), 6_200_000);
        feed(&mut s, &update(6_000_000), 6_300_000);
        assert_eq!(s.artifacts, 3);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.lags_us, [2500, 200, 300]);
        assert_eq!(s.first_ts, Some(5_000_000));
        assert!(!s.terminal);
        feed(
            &mut s,
            r#"{"jsonrpc":"2.0","id":1,"result":{"statusUpdate":{"taskId":"t1","status":{"state":"TASK_STATE_COMPLETED"}}}}"#,
            1,
        );
        assert!(s.terminal);
        assert!(s.failure.is_none());
        feed(&mut s, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32004,"message":"no"}}"#, 1);
        assert_eq!(s.failure.as_ref().map(|f| f.0), Some(Failure::JsonRpc));
    }

    #[test]
    fn a_snapshot_with_artifacts_is_noted() {
        let mut s = StreamStats::default();
        feed(
            &mut s,
            r#"{"result":{"task":{"id":"t","status":{"state":"TASK_STATE_WORKING"},"artifacts":[{"artifactId":"echo","parts":[{"text":"1"},{"text":"2"}]}]}}}"#,
            5,
        );
        assert_eq!(s.snapshot_parts, 2);
        feed(&mut s, "not json", 6);
        assert_eq!(s.failure.as_ref().map(|f| f.0), Some(Failure::BadEvent));
    }
}
