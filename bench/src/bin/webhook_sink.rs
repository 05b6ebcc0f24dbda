//! `superx-webhook-sink`: a fast webhook receiver for push benchmarks.
//!
//! Answers every POST with 204 and records its `SuperX-Event-Id` header with the arrival time
//! on CLOCK_MONOTONIC (the clock every process on the machine shares, Python's
//! `time.monotonic()`), so a driver script can compare arrivals with its own timestamps.
//! `GET /count` answers how many deliveries arrived. On SIGTERM or Ctrl-C it writes
//! `[[event id, seconds], ...]` (arrival order) to `--out` and exits.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Largest delivery body read (a bigger one is answered 413).
const MAX_BODY: usize = 4 << 20;
/// Arrivals kept; past it the sink still answers but stops recording (and says so on exit).
const ARRIVALS_MAX: usize = 20_000_000;

#[derive(Parser, Debug)]
#[command(name = "superx-webhook-sink", about = "Fast webhook receiver recording arrival times (benchmarks)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9998")]
    listen: SocketAddr,
    /// Where to write the arrivals on exit.
    #[arg(long)]
    out: PathBuf,
}

/// Deliveries seen: (event id, CLOCK_MONOTONIC seconds).
type Arrivals = Arc<Mutex<Vec<(String, f64)>>>;

fn monotonic_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let arrivals: Arrivals = Arc::default();
    let mut term = signal(SignalKind::terminate())?;
    println!("READY");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let arrivals = arrivals.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, arrivals.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let arrivals = std::mem::take(&mut *arrivals.lock().expect("arrivals lock"));
    if arrivals.len() >= ARRIVALS_MAX {
        eprintln!("superx-webhook-sink: stopped recording at {ARRIVALS_MAX} arrivals");
    }
    let json = serde_json::to_vec(&arrivals)?;
    std::fs::write(&args.out, json).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

async fn handle(req: Request<Incoming>, arrivals: Arrivals) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = monotonic_seconds();
    if req.method() == Method::GET {
        let count = arrivals.lock().expect("arrivals lock").len();
        return Ok(Response::new(Full::new(Bytes::from(count.to_string()))));
    }
    let id = req.headers().get("superx-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if Limited::new(req.into_body(), MAX_BODY).collect().await.is_err() {
        return Ok(status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let mut arrivals = arrivals.lock().expect("arrivals lock");
    if arrivals.len() < ARRIVALS_MAX {
        arrivals.push((id, at));
    }
    Ok(status(StatusCode::NO_CONTENT))
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
