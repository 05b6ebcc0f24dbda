//! Telemetry: logs, metrics and trace context, everything an operator reads about a node.
//!
//! - this file: the tracing subscriber (text or JSON logs), set up once at startup from `[log]`.
//! - [`metrics`]: the Prometheus recorder behind the `metrics` facade (installed once per
//!   process), the histogram buckets, the series recorded on the request path and the ones
//!   read from the node's state when `/metrics` is scraped.
//! - [`trace`]: request ids (`x-request-id`) and W3C trace context (`traceparent`,
//!   `tracestate`): parsed from clients, continued as child spans towards agents.
//! - [`layer`]: the axum middleware every request passes through first: its span (request id,
//!   trace id, span id), the `x-request-id` response header and the HTTP series.

pub mod layer;
pub mod metrics;
pub mod trace;

use tracing_subscriber::EnvFilter;

/// A bare level applies to superx's own crates (others stay at `warn`); anything else is
/// taken as a tracing filter directive.
pub fn filter_directive(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => {
            format!("warn,superx={l},superx_raft={l},superx_cluster={l}")
        }
        "warning" => "warn".into(),
        _ => level.to_owned(),
    }
}

/// Installs the log subscriber. In JSON, every event carries the fields of the spans it
/// happened in (`span` for the innermost, `spans` for all): the request span's `request_id`,
/// `trace_id` and `span_id` go with every line a request logs.
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_new(filter_directive(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(true).with_span_list(true).init();
    } else {
        builder.init();
    }
}
