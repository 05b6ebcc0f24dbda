//! `superx-load`: a bounded HTTP/1.1 JSON-RPC load generator for benchmarking
//! superx and A2A agents on loopback.
//!
//! It POSTs to exactly one URL over `--connections` keep-alive connections
//! (one request in flight per connection, hyper 1 client connections driven
//! directly), for `--warmup` seconds unmeasured and then `--duration` seconds
//! measured, and stops by itself. Without `--rate` it runs closed-loop at
//! maximum throughput; with `--rate R` it runs open-loop, scheduling R
//! requests/s in total and measuring latency from the scheduled send time
//! (coordinated-omission correction: a request that waits behind a slow one
//! is charged for the wait, but this process's own timer slack is not). Bodies are built-in A2A
//! requests (`--method`: JSON-RPC, or HTTP+JSON with `rest-*`) or a
//! file (`--body`) in which `{{messageId}}` is replaced by a unique id per
//! request. SSE responses are recognised by their content type: a request is
//! done when its stream ends, and events and first-event latency are counted.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::IgnoredAny;
use superx_bench::sse::{EventCounter, for_each_data};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Replaced by a unique id in every request body.
const PLACEHOLDER: &str = "{{messageId}}";
/// How long after the end of the run an in-flight request may still finish.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BuiltIn {
    /// A2A 1.0 SendMessage (header A2A-Version: 1.0).
    #[value(name = "send1")]
    Send1,
    /// A2A 0.3 message/send.
    #[value(name = "send03")]
    Send03,
    /// A2A 1.0 SendStreamingMessage (SSE).
    #[value(name = "stream1")]
    Stream1,
    /// A2A 0.3 message/stream (SSE).
    #[value(name = "stream03")]
    Stream03,
    /// A2A 1.0 SendMessage over HTTP+JSON (POST `…/message:send`; `--url` names it).
    #[value(name = "rest-send1")]
    RestSend1,
    /// A2A 1.0 SendStreamingMessage over HTTP+JSON (POST `…/message:stream`, SSE).
    #[value(name = "rest-stream1")]
    RestStream1,
}

impl BuiltIn {
    fn name(self) -> &'static str {
        match self {
            Self::Send1 => "send1",
            Self::Send03 => "send03",
            Self::Stream1 => "stream1",
            Self::Stream03 => "stream03",
            Self::RestSend1 => "rest-send1",
            Self::RestStream1 => "rest-stream1",
        }
    }

    fn is_v1(self) -> bool {
        !matches!(self, Self::Send03 | Self::Stream03)
    }

    fn is_stream(self) -> bool {
        matches!(self, Self::Stream1 | Self::Stream03 | Self::RestStream1)
    }

    /// The request body (JSON-RPC, or the HTTP+JSON SendMessageRequest), with the
    /// placeholder for the ids.
    fn body(self, text: &str) -> String {
        let (method, message) = match self {
            Self::RestSend1 | Self::RestStream1 => {
                let message = serde_json::json!({
                    "messageId": PLACEHOLDER,
                    "role": "ROLE_USER",
                    "parts": [{"text": text}]
                });
                return serde_json::json!({"message": message}).to_string();
            }
            Self::Send1 | Self::Stream1 => (
                if self.is_stream() { "SendStreamingMessage" } else { "SendMessage" },
                serde_json::json!({
                    "messageId": PLACEHOLDER,
                    "role": "ROLE_USER",
                    "parts": [{"text": text}]
                }),
            ),
            Self::Send03 | Self::Stream03 => (
                if self.is_stream() { "message/stream" } else { "message/send" },
                serde_json::json!({
                    "kind": "message",
                    "messageId": PLACEHOLDER,
                    "role": "user",
                    "parts": [{"kind": "text", "text": text}]
                }),
            ),
        };
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": PLACEHOLDER,
            "method": method,
            "params": {"message": message}
        })
        .to_string()
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "superx-load",
    about = "Bounded HTTP/1.1 JSON-RPC load generator for A2A endpoints (closed- or open-loop)"
)]
struct Args {
    /// Target URL (http:// only); every request is a POST to it and nothing else is contacted.
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before the measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Total requests per second, open-loop with coordinated-omission correction
    /// (default: closed-loop at maximum throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// Request body file; every `{{messageId}}` in it is replaced by a unique id.
    #[arg(long, conflicts_with = "method")]
    body: Option<PathBuf>,
    /// Built-in A2A JSON-RPC request (default send1).
    #[arg(long, value_enum)]
    method: Option<BuiltIn>,
    /// Extra request header `K:V` (repeatable; overrides the defaults).
    #[arg(long = "header", value_name = "K:V")]
    headers: Vec<String>,
    /// Length in bytes of the message text in built-in bodies.
    #[arg(long, default_value_t = 32)]
    text_bytes: usize,
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
            eprintln!("superx-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run_main() -> Result<()> {
    let args = Args::parse();
    ensure!((1..=10_000).contains(&args.connections), "--connections must be between 1 and 10000");
    ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0,
        "--duration must be in (0, 3600] seconds"
    );
    ensure!(
        args.warmup.is_finite() && args.warmup >= 0.0 && args.warmup <= 3600.0,
        "--warmup must be in [0, 3600] seconds"
    );
    if let Some(rate) = args.rate {
        ensure!(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0, "--rate must be in (0, 1e7] requests/s");
    }
    ensure!((1..=256).contains(&args.threads), "--threads must be between 1 and 256");
    ensure!(args.text_bytes <= 16 << 20, "--text-bytes is at most 16 MiB");
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    runtime.block_on(run(args))
}

/// A request body split at each placeholder.
struct Template {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Template {
    fn new(text: &str) -> Self {
        let pieces: Vec<Bytes> =
            text.split(PLACEHOLDER).map(|piece| Bytes::copy_from_slice(piece.as_bytes())).collect();
        let len = pieces.iter().map(Bytes::len).sum();
        Self { pieces, len }
    }

    fn render(&self, id: &str) -> Bytes {
        if self.pieces.len() == 1 {
            return self.pieces[0].clone();
        }
        let mut out = Vec::with_capacity(self.len + id.len() * (self.pieces.len() - 1));
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(id.as_bytes());
            }
            out.extend_from_slice(piece);
        }
        Bytes::from(out)
    }
}

/// Everything the workers share.
struct Plan {
    addr: SocketAddr,
    path: Uri,
    headers: HeaderMap,
    template: Template,
    id_prefix: String,
    /// Start of the run (warmup begins).
    t0: Instant,
    /// Start of the measured window.
    measure_from: Instant,
    /// End of the run: no request starts after it.
    end: Instant,
    /// Per-connection interval between scheduled sends (open-loop only).
    interval: Option<Duration>,
    rate: Option<f64>,
}

impl Plan {
    fn in_window(&self, start: Instant) -> bool {
        start >= self.measure_from && start < self.end
    }

    fn request(&self, id: &str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.template.render(id)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.path.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Per-worker (and then merged) results.
struct Stats {
    latency: Histogram<u64>,
    first_event: Histogram<u64>,
    requests: u64,
    ok: u64,
    http_errors: u64,
    transport_errors: u64,
    rpc_errors: u64,
    bad_bodies: u64,
    events: u64,
    missed: u64,
}

impl Stats {
    fn new() -> Self {
        let hist = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
        Self {
            latency: hist(),
            first_event: hist(),
            requests: 0,
            ok: 0,
            http_errors: 0,
            transport_errors: 0,
            rpc_errors: 0,
            bad_bodies: 0,
            events: 0,
            missed: 0,
        }
    }

    fn merge(&mut self, other: &Self) {
        let _ = self.latency.add(&other.latency);
        let _ = self.first_event.add(&other.first_event);
        self.requests += other.requests;
        self.ok += other.ok;
        self.http_errors += other.http_errors;
        self.transport_errors += other.transport_errors;
        self.rpc_errors += other.rpc_errors;
        self.bad_bodies += other.bad_bodies;
        self.events += other.events;
        self.missed += other.missed;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The target's socket address, authority and origin-form path.
fn parse_target(url: &str) -> Result<(String, u16, String, Uri)> {
    let uri: Uri = url.parse().with_context(|| format!("invalid --url {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("--url scheme {other:?} is not supported (http only)"),
        None => bail!("--url must be absolute, e.g. http://127.0.0.1:4000/"),
    }
    let authority = uri.authority().context("--url has no host")?;
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let path: Uri = uri.path_and_query().map_or("/", |pq| pq.as_str()).parse().context("invalid --url path")?;
    Ok((host, port, authority.as_str().to_owned(), path))
}

fn build_headers(args: &Args, authority: &str, stream: bool) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(authority)?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static(if stream { "text/event-stream" } else { "application/json" }));
    if args.method.is_some_and(BuiltIn::is_v1) || (args.method.is_none() && args.body.is_none()) {
        headers.insert("a2a-version", HeaderValue::from_static("1.0"));
    }
    for header in &args.headers {
        let (name, value) = header.split_once(':').with_context(|| format!("--header {header:?} is not K:V"))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("bad header name in {header:?}"))?;
        let value = HeaderValue::from_str(value.trim()).with_context(|| format!("bad header value in {header:?}"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn run(args: Args) -> Result<()> {
    let (host, port, authority, path) = parse_target(&args.url)?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let (body_text, label) = match &args.body {
        Some(file) => (
            std::fs::read_to_string(file).with_context(|| format!("reading --body {}", file.display()))?,
            format!("file:{}", file.display()),
        ),
        None => {
            let method = args.method.unwrap_or(BuiltIn::Send1);
            let text: String = "superx bench echo ".chars().cycle().take(args.text_bytes).collect();
            (method.body(&text), method.name().to_owned())
        }
    };
    let stream_hint = args.method.is_some_and(BuiltIn::is_stream);
    let headers = build_headers(&args, &authority, stream_hint)?;

    let mut senders = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        senders.push(connect(addr).await.with_context(|| format!("connecting to {addr} for {}", args.url))?);
    }

    let t0 = Instant::now();
    let measure_from = t0 + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let plan = Arc::new(Plan {
        addr,
        path,
        headers,
        template: Template::new(&body_text),
        id_prefix: format!("load-{:08x}", fastrand::u32(..)),
        t0,
        measure_from,
        end,
        interval: args.rate.map(|rate| Duration::from_secs_f64(args.connections as f64 / rate)),
        rate: args.rate,
    });
    let workers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(idx, sender)| tokio::spawn(worker(idx, Arc::clone(&plan), sender)))
        .collect();
    let mut total = Stats::new();
    for handle in workers {
        match tokio::time::timeout_at(end + GRACE + Duration::from_secs(5), handle).await {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(err)) => bail!("a worker failed: {err}"),
            Err(_) => bail!("workers did not stop in time"),
        }
    }
    report(&args, &label, &total);
    Ok(())
}

/// The outcome of one HTTP exchange.
struct Exchange {
    status: StatusCode,
    is_sse: bool,
    events: u64,
    first_event: Option<Instant>,
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    buf: &mut Vec<u8>,
) -> Result<Exchange, hyper::Error> {
    let response = sender.send_request(req).await?;
    let status = response.status();
    let is_sse = response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut body = response.into_body();
    buf.clear();
    let mut counter = EventCounter::default();
    let mut events = 0;
    let mut first_event = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if is_sse {
                let done = counter.feed(&data);
                if done > 0 && first_event.is_none() {
                    first_event = Some(Instant::now());
                }
                events += done;
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Exchange { status, is_sse, events, first_event })
}

/// The top-level members of an answer that matter here: a JSON-RPC response's `result` or
/// `error`, or an HTTP+JSON body (a SendMessageResponse or StreamResponse member, or a
/// google.rpc.Status `error`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default)]
    task: Option<IgnoredAny>,
    #[serde(default)]
    message: Option<IgnoredAny>,
    #[serde(default)]
    status_update: Option<IgnoredAny>,
    #[serde(default)]
    artifact_update: Option<IgnoredAny>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    RpcError,
    Bad,
}

fn probe(json: &[u8]) -> Verdict {
    match serde_json::from_slice::<Probe>(json) {
        Ok(Probe { error: Some(_), .. }) => Verdict::RpcError,
        Ok(Probe { result: Some(_), .. }) => Verdict::Ok,
        Ok(p)
            if p.task.is_some() || p.message.is_some() || p.status_update.is_some() || p.artifact_update.is_some() =>
        {
            Verdict::Ok
        }
        _ => Verdict::Bad,
    }
}

/// Judges a whole 2xx body: for SSE, every event's JSON-RPC response.
fn judge(exchange: &Exchange, body: &[u8], scratch: &mut Vec<u8>) -> Verdict {
    if !exchange.is_sse {
        return probe(body);
    }
    let mut verdict = Verdict::Ok;
    let mut seen = 0u64;
    for_each_data(body, scratch, |data| {
        seen += 1;
        match probe(data) {
            Verdict::Ok => {}
            Verdict::RpcError => {
                if verdict == Verdict::Ok {
                    verdict = Verdict::RpcError;
                }
            }
            Verdict::Bad => verdict = Verdict::Bad,
        }
    });
    if seen == 0 { Verdict::Bad } else { verdict }
}

/// Slots `first, first + interval, …` that fall in the measured window before `end`.
fn missed_slots(plan: &Plan, first: Instant, interval: Duration) -> u64 {
    let mut slot = first;
    let mut missed = 0;
    while slot < plan.end {
        if slot >= plan.measure_from {
            missed += 1;
        }
        slot += interval;
    }
    missed
}

async fn worker(idx: usize, plan: Arc<Plan>, sender: SendRequest<Full<Bytes>>) -> Stats {
    let mut stats = Stats::new();
    let mut sender = Some(sender);
    let mut buf = Vec::with_capacity(16 << 10);
    let mut scratch = Vec::with_capacity(4 << 10);
    let mut id = String::with_capacity(64);
    let mut seq = 0u64;
    // Open-loop: connection `idx` owns the global slots idx, idx + C, idx + 2C, …
    let mut next_slot = plan.rate.map(|rate| plan.t0 + Duration::from_secs_f64(idx as f64 / rate));
    // Open-loop only: when the previous request on this connection would have
    // completed had every request been sent exactly on schedule.
    let mut ideal_done = plan.t0;
    loop {
        let now = Instant::now();
        let scheduled = match (next_slot, plan.interval) {
            (Some(slot), Some(interval)) => {
                if slot >= plan.end {
                    break;
                }
                if now >= plan.end {
                    stats.missed += missed_slots(&plan, slot, interval);
                    break;
                }
                if now < slot {
                    tokio::time::sleep_until(slot).await;
                }
                next_slot = Some(slot + interval);
                Some(slot)
            }
            _ => {
                if now >= plan.end {
                    break;
                }
                None
            }
        };
        // Coordinated-omission correction (open-loop): request k is deemed sent
        // at max(slot k, ideal completion of k-1) and to take as long as it
        // really took, so a server backlog counts fully in the latency while
        // this process's own timer slack does not. `queued` is the time from
        // the slot to that ideal send; closed-loop it is zero.
        let started = Instant::now();
        let queued = scheduled.map_or(Duration::ZERO, |slot| ideal_done.saturating_duration_since(slot));
        let counted = plan.in_window(scheduled.unwrap_or(started));
        let mut finish = |at: Instant| {
            if let Some(slot) = scheduled {
                ideal_done = slot + queued + (at - started);
            }
            queued + (at - started)
        };

        let reconnect = sender.as_ref().is_none_or(SendRequest::is_closed);
        if reconnect {
            sender = None;
            match connect(plan.addr).await {
                Ok(fresh) => sender = Some(fresh),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    finish(Instant::now());
                    if counted {
                        stats.requests += 1;
                        stats.transport_errors += 1;
                    }
                    continue;
                }
            }
        }
        let Some(conn) = sender.as_mut() else {
            continue;
        };
        seq += 1;
        id.clear();
        let _ = write!(id, "{}-{idx}-{seq}", plan.id_prefix);
        let req = plan.request(&id);
        let outcome = tokio::time::timeout_at(plan.end + GRACE, async {
            conn.ready().await?;
            exchange(conn, req, &mut buf).await
        })
        .await;
        let done = Instant::now();
        let latency = finish(done);
        let exchanged = match outcome {
            Ok(Ok(exchanged)) => exchanged,
            Ok(Err(_)) | Err(_) => {
                sender = None;
                if counted {
                    stats.requests += 1;
                    stats.transport_errors += 1;
                }
                if done >= plan.end {
                    break;
                }
                continue;
            }
        };
        if !counted {
            continue;
        }
        stats.requests += 1;
        if !exchanged.status.is_success() {
            stats.http_errors += 1;
            continue;
        }
        match judge(&exchanged, &buf, &mut scratch) {
            Verdict::Ok => {
                stats.ok += 1;
                stats.latency.saturating_record(micros(latency));
                if exchanged.is_sse {
                    stats.events += exchanged.events;
                    if let Some(first) = exchanged.first_event {
                        stats.first_event.saturating_record(micros(queued + (first - started)));
                    }
                }
            }
            Verdict::RpcError => stats.rpc_errors += 1,
            Verdict::Bad => stats.bad_bodies += 1,
        }
    }
    stats
}

fn report(args: &Args, label: &str, stats: &Stats) {
    let secs = args.duration;
    let lat = &stats.latency;
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    let streaming = stats.events > 0;
    if args.json {
        let stream = streaming.then(|| {
            serde_json::json!({
                "events": stats.events,
                "events_per_sec": stats.events as f64 / secs,
                "first_event_us": {
                    "p50": q(&stats.first_event, 0.5),
                    "p99": q(&stats.first_event, 0.99),
                },
            })
        });
        let out = serde_json::json!({
            "url": args.url,
            "method": label,
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "rate": args.rate,
            "connections": args.connections,
            "threads": args.threads,
            "warmup_s": args.warmup,
            "duration_s": secs,
            "requests": stats.requests,
            "ok": stats.ok,
            "errors": {
                "http": stats.http_errors,
                "transport": stats.transport_errors,
                "jsonrpc": stats.rpc_errors,
                "bad_body": stats.bad_bodies,
                "total": stats.http_errors + stats.transport_errors + stats.rpc_errors + stats.bad_bodies,
            },
            "missed_slots": stats.missed,
            "req_per_sec": stats.requests as f64 / secs,
            "ok_per_sec": stats.ok as f64 / secs,
            "latency_us": {
                "p50": q(lat, 0.5),
                "p90": q(lat, 0.9),
                "p99": q(lat, 0.99),
                "p999": q(lat, 0.999),
                "max": lat.max(),
                "mean": lat.mean(),
            },
            "stream": stream,
        });
        println!("{out}");
        return;
    }
    let mode = match args.rate {
        Some(rate) => format!("open-loop at {rate} req/s"),
        None => "closed-loop".to_owned(),
    };
    println!(
        "superx-load  POST {}  method={label}  connections={}  threads={}  {mode}  warmup={}s duration={}s",
        args.url, args.connections, args.threads, args.warmup, secs
    );
    println!("  requests     {} (ok {})", stats.requests, stats.ok);
    println!(
        "  errors       http {}  transport {}  json-rpc {}  bad body {}",
        stats.http_errors, stats.transport_errors, stats.rpc_errors, stats.bad_bodies
    );
    if args.rate.is_some() {
        println!("  missed slots {}", stats.missed);
    }
    println!("  throughput   {:.1} req/s", stats.requests as f64 / secs);
    println!(
        "  latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (ok responses)",
        q(lat, 0.5),
        q(lat, 0.9),
        q(lat, 0.99),
        q(lat, 0.999),
        lat.max()
    );
    if streaming {
        println!(
            "  stream       {} events ({:.1}/s)  first event µs p50 {}  p99 {}",
            stats.events,
            stats.events as f64 / secs,
            q(&stats.first_event, 0.5),
            q(&stats.first_event, 0.99)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_replaces_every_placeholder() {
        let t = Template::new("a{{messageId}}b{{messageId}}");
        assert_eq!(&t.render("X")[..], b"aXbX");
        let t = Template::new("plain");
        assert_eq!(&t.render("X")[..], b"plain");
    }

    #[test]
    fn builtin_bodies_are_json_rpc() {
        for m in [BuiltIn::Send1, BuiltIn::Send03, BuiltIn::Stream1, BuiltIn::Stream03] {
            let body = Template::new(&m.body("hi")).render("id-1");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["id"], "id-1");
            assert_eq!(v["params"]["message"]["messageId"], "id-1");
        }
    }

    #[test]
    fn probes_json_rpc_responses() {
        assert!(probe(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#) == Verdict::Ok);
        assert!(probe(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#) == Verdict::RpcError);
        assert!(probe(br#"{"task":{"id":"t"}}"#) == Verdict::Ok);
        assert!(probe(br#"{"statusUpdate":{"taskId":"t"}}"#) == Verdict::Ok);
        assert!(probe(br#"{"error":{"code":404,"status":"NOT_FOUND"}}"#) == Verdict::RpcError);
        assert!(probe(br#"{"other":1}"#) == Verdict::Bad);
        assert!(probe(b"nope") == Verdict::Bad);
    }

    #[test]
    fn parses_targets() {
        let (host, port, authority, path) = parse_target("http://127.0.0.1:4000/agents/echo").expect("valid");
        assert_eq!((host.as_str(), port, authority.as_str()), ("127.0.0.1", 4000, "127.0.0.1:4000"));
        assert_eq!(path, "/agents/echo");
        assert!(parse_target("https://x/").is_err());
    }
}
