//! Prometheus metrics through the `metrics` facade and `metrics-exporter-prometheus`.
//!
//! One recorder per process, installed by the first [`handle`] call (a test process may
//! start several gateways; they share it). Two kinds of series:
//! - events, recorded where they happen with the facade's macros: HTTP requests (the
//!   middleware in [`super::layer`]), JSON-RPC calls ([`rpc_request`], from `http`), raft
//!   commit latency (`state::replica`), leader changes ([`spawn_raft_watch`]), open client
//!   streams ([`StreamGauge`]); agent calls and breakers record their own;
//! - state, read when `/metrics` is scraped ([`render`]): tasks by state, raft indexes and
//!   sizes, subscribers, archive progress. The tables are cloned (O(1), persistent maps)
//!   under the state lock and counted after it is released.
//!
//! README's "Metrics" section lists every series; keep it in step with this file.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::a2a::TaskState;
use crate::gateway::Gateway;

/// How often recorded histogram samples are folded into their buckets when nobody scrapes
/// (a scrape folds them too); keeps the exporter's memory flat between scrapes.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// How often the leader watch looks at raft's view. Two leader changes closer together than
/// this count as one: elections take at least an election timeout (150 ms by default).
const RAFT_WATCH_PERIOD: Duration = Duration::from_millis(50);

/// Request latencies, from a cached read (sub-millisecond) to a slow agent call (30 s).
const REQUEST_SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Raft commits: one fsync on a fast disk (~0.5 ms) up to an election in the way (seconds).
const COMMIT_SECONDS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// Agent calls: a local agent (1 ms) up to the longest call deadline worth telling apart.
const AGENT_CALL_SECONDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

pub const HTTP_REQUESTS: &str = "superx_http_requests_total";
pub const HTTP_REQUEST_SECONDS: &str = "superx_http_request_duration_seconds";
pub const RPC_REQUESTS: &str = "superx_rpc_requests_total";
pub const REQUESTS_REFUSED: &str = "superx_requests_refused_total";
pub const RAFT_COMMIT_SECONDS: &str = "superx_raft_commit_duration_seconds";
pub const RAFT_LEADER_CHANGES: &str = "superx_raft_leader_changes_total";
pub const STREAMS_OPEN: &str = "superx_streams_open";
/// Recorded by the agent protection layer; its buckets are set here with the others.
pub const AGENT_CALL_SECONDS_METRIC: &str = "superx_agent_call_duration_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use; `Gateway::start`
/// calls it first thing, since the facade drops whatever is recorded before a recorder is
/// installed. If another recorder was installed first (a test harness), this one still
/// renders, but empty.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => describe(),
            Err(e) => tracing::warn!(error = %e, "another metrics recorder is installed; /metrics stays empty"),
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_PERIOD);
                upkeep.run_upkeep();
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no metrics upkeep thread; histograms fold at scrape time only");
        }
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let buckets = [
        (Matcher::Full(HTTP_REQUEST_SECONDS.into()), REQUEST_SECONDS),
        (Matcher::Full(RAFT_COMMIT_SECONDS.into()), COMMIT_SECONDS),
        (Matcher::Full(AGENT_CALL_SECONDS_METRIC.into()), AGENT_CALL_SECONDS),
        // Any other duration histogram: a histogram, never a summary.
        (Matcher::Suffix("_seconds".into()), REQUEST_SECONDS),
    ];
    buckets.into_iter().fold(PrometheusBuilder::new(), |b, (matcher, values)| {
        b.set_buckets_for_metric(matcher, values).expect("bucket lists are not empty")
    })
}

/// HELP lines for the series recorded here.
fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status");
    describe_histogram!(HTTP_REQUEST_SECONDS, "Time to the response head (for SSE: until the stream opens)");
    describe_counter!(RPC_REQUESTS, "JSON-RPC calls by method (canonical name) and result code (ok or the error code)");
    describe_histogram!(RAFT_COMMIT_SECONDS, "Proposal to applied on this node, successful writes");
    describe_counter!(RAFT_LEADER_CHANGES, "Leaders this node has seen take over (a new term or a new leader)");
    describe_gauge!(STREAMS_OPEN, "SSE streams open to clients on this node");
    describe_gauge!("superx_tasks", "Tasks in memory by state");
    describe_gauge!("superx_task_subscribers", "Stream subscribers following tasks on this node");
    describe_gauge!("superx_resume_history_tasks", "Tasks whose recent events this node keeps for resumed streams");
    describe_gauge!("superx_resume_history_bytes", "Estimated bytes of the events kept for resumed streams");
    describe_gauge!(
        "superx_tasks_followed_upstream",
        "Running tasks this node follows at their agent (no client stream does)"
    );
    describe_gauge!("superx_push_configs", "Push notification configs of tasks in memory");
    describe_gauge!("superx_push_outbox_events", "Committed task events some webhook has still to receive");
    describe_counter!("superx_push_outbox_overflow_total", "Events given up because the push outbox was full");
    describe_counter!(
        "superx_push_deliveries_total",
        "Webhook deliveries made on this node by outcome (delivered, given_up)"
    );
    describe_counter!("superx_push_attempts_total", "Webhook POSTs made on this node (retries included)");
    describe_counter!(
        "superx_push_inbound_total",
        "Deliveries of push-capable agents to the gateway's own webhook on this node, by outcome"
    );
    describe_counter!(
        "superx_rate_limited_total",
        "Requests refused over a rate limit on this node, by scope (credential, agent)"
    );
    describe_gauge!("superx_raft_term", "Current raft term");
    describe_gauge!("superx_raft_apply_lag_entries", "Last log index minus applied index on this node");
    describe_gauge!("superx_raft_log_bytes", "Size of the raft log file on disk");
    describe_gauge!("superx_raft_snapshot_bytes", "Size of the snapshot file on disk");
}

/// A JSON-RPC call answered at the edge: `method` is a canonical name (bounded set), `code`
/// the JSON-RPC error code or `None` for a result.
pub fn rpc_request(method: &'static str, code: Option<i64>) {
    match code {
        None => counter!(RPC_REQUESTS, "method" => method, "code" => "ok").increment(1),
        Some(code) => counter!(RPC_REQUESTS, "method" => method, "code" => code.to_string()).increment(1),
    }
}

/// A request refused by admission control (the node at `server.requests_in_flight_max`, or
/// draining). Counted apart from the HTTP series: a refusal skips the request middleware.
pub fn request_refused() {
    counter!(REQUESTS_REFUSED).increment(1);
}

/// A request refused over a rate limit; `scope` is `credential` or `agent` (never a name).
pub fn rate_limited(scope: &'static str) {
    counter!("superx_rate_limited_total", "scope" => scope).increment(1);
}

/// A write committed and applied on this node, `seconds` after it was proposed.
pub fn raft_commit(seconds: f64) {
    histogram!(RAFT_COMMIT_SECONDS).record(seconds);
}

/// Counts one client stream open for as long as it lives.
pub struct StreamGauge(());

impl StreamGauge {
    pub fn open() -> Self {
        gauge!(STREAMS_OPEN).increment(1.0);
        StreamGauge(())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        gauge!(STREAMS_OPEN).decrement(1.0);
    }
}

/// Watches raft for new leaders while the gateway lives: each (term, leader) this node has
/// not seen before counts as a leader change. Holds the gateway only while it looks.
pub fn spawn_raft_watch(gw: &Arc<Gateway>) {
    let gw = Arc::downgrade(gw);
    tokio::spawn(async move {
        let mut seen = None;
        loop {
            {
                let Some(gw) = gw.upgrade() else { return };
                let status = gw.replica.status();
                if status.role == superx_raft::Role::Shutdown {
                    return;
                }
                let now = status.leader.map(|leader| (status.term, leader));
                if now.is_some() && now != seen {
                    counter!(RAFT_LEADER_CHANGES).increment(1);
                    seen = now;
                }
            }
            tokio::time::sleep(RAFT_WATCH_PERIOD).await;
        }
    });
}

/// Sets the state-derived series from `gw` and renders every series as Prometheus text.
pub fn render(gw: &Gateway) -> String {
    let handle = handle();
    record_state(gw);
    handle.render()
}

fn record_state(gw: &Gateway) {
    // O(1) clone under the state lock; every count below runs on the clone.
    let tables = gw.replica.read(|t| t.clone());
    gauge!("superx_tasks_in_memory").set(tables.task_count() as f64);
    counter!("superx_tasks_evicted_total").absolute(tables.tasks_evicted_total());
    counter!("superx_commands_applied_total").absolute(tables.applied_commands());
    gauge!("superx_agents").set(tables.agents().count() as f64);
    for (state, count) in TaskState::ALL.into_iter().zip(tables.count_by_state()) {
        gauge!("superx_tasks", "state" => state.v03_name()).set(count as f64);
    }
    let subscriptions = gw.replica.subscriptions();
    gauge!("superx_task_subscribers").set(subscriptions.subscribers() as f64);
    gauge!("superx_tasks_followed").set(subscriptions.tasks_followed() as f64);
    let (history_tasks, history_bytes) = subscriptions.history_size();
    gauge!("superx_resume_history_tasks").set(history_tasks as f64);
    gauge!("superx_resume_history_bytes").set(history_bytes as f64);
    gauge!("superx_tasks_followed_upstream").set(gw.followed.len() as f64);
    gauge!(STREAMS_OPEN).increment(0.0);
    let push = tables.push();
    gauge!("superx_push_configs").set(push.config_count() as f64);
    gauge!("superx_push_outbox_events").set(push.outbox_events() as f64);
    counter!("superx_push_outbox_overflow_total").absolute(push.overflow_total());
    record_raft(gw);
    if let Some(keyring) = &gw.keyring {
        // Raft requests and answers, and gossip datagrams, without a valid cluster tag.
        let (raft, gossip) = keyring.refusals();
        counter!("superx_cluster_auth_refused_total", "kind" => "raft").absolute(raft);
        counter!("superx_cluster_auth_refused_total", "kind" => "gossip").absolute(gossip);
    }
    if let Some(archive) = &gw.archive {
        record_archive(&archive.stats, tables.unarchived_count());
    }
}

fn record_raft(gw: &Gateway) {
    let status = gw.replica.status();
    let view = gw.replica.raft().membership();
    gauge!("superx_raft_term").set(status.term as f64);
    gauge!("superx_raft_leader_id").set(status.leader.unwrap_or(0) as f64);
    gauge!("superx_raft_is_leader").set(if view.is_leader { 1.0 } else { 0.0 });
    gauge!("superx_raft_voters").set(status.voters.len() as f64);
    gauge!("superx_raft_last_log_index").set(view.last_log_index as f64);
    gauge!("superx_raft_committed_index").set(status.committed_index as f64);
    gauge!("superx_raft_applied_index").set(status.applied_index as f64);
    gauge!("superx_raft_snapshot_index").set(status.snapshot_index as f64);
    gauge!("superx_raft_apply_lag_entries").set(view.last_log_index.saturating_sub(status.applied_index) as f64);
    gauge!("superx_raft_log_entries").set(view.last_log_index.saturating_sub(status.purged_index) as f64);
    counter!(RAFT_LEADER_CHANGES).increment(0);
    let dir = std::path::Path::new(&gw.config.server.data_dir).join("raft");
    let size = |file: &str| std::fs::metadata(dir.join(file)).map(|m| m.len()).unwrap_or(0);
    gauge!("superx_raft_log_bytes").set(size("raft.redb") as f64);
    gauge!("superx_raft_snapshot_bytes").set(size("snapshot.redb") as f64);
}

fn record_archive(s: &crate::archive::ArchiveStats, backlog: usize) {
    gauge!("superx_archive_backlog_tasks").set(backlog as f64);
    for (name, value) in [
        ("superx_archive_tasks_total", &s.archived_total),
        ("superx_archive_batches_total", &s.batches_total),
        ("superx_archive_write_errors_total", &s.write_errors_total),
        ("superx_archive_read_errors_total", &s.read_errors_total),
        ("superx_archive_evicted_total", &s.evicted_total),
        ("superx_archive_retention_deleted_total", &s.retention_deleted_total),
    ] {
        counter!(name).absolute(value.load(Ordering::Relaxed));
    }
    gauge!("superx_archive_last_batch_seconds").set(s.last_batch_us.load(Ordering::Relaxed) as f64 / 1e6);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        handle().render()
    }

    #[test]
    fn histograms_render_with_their_buckets_and_installing_twice_is_harmless() {
        let first = handle() as *const PrometheusHandle;
        assert_eq!(first, handle() as *const PrometheusHandle, "one recorder per process");
        raft_commit(0.003);
        histogram!(AGENT_CALL_SECONDS_METRIC, "agent" => "a", "method" => "SendMessage").record(0.2);
        histogram!("superx_other_thing_seconds").record(0.2);
        let text = rendered();
        assert!(text.contains("# TYPE superx_raft_commit_duration_seconds histogram"), "{text}");
        assert!(text.contains("superx_raft_commit_duration_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("superx_raft_commit_duration_seconds_bucket{le=\"0.002\"} 0"), "{text}");
        assert!(text.contains("# TYPE superx_agent_call_duration_seconds histogram"), "{text}");
        assert!(text.contains("le=\"120\""), "agent calls get their own buckets: {text}");
        assert!(text.contains("# TYPE superx_other_thing_seconds histogram"), "any *_seconds is a histogram: {text}");
    }

    #[test]
    fn rpc_calls_count_by_method_and_code() {
        handle();
        rpc_request("GetTask", None);
        rpc_request("GetTask", Some(-32001));
        rpc_request("GetTask", Some(-32001));
        let text = rendered();
        assert!(text.contains("superx_rpc_requests_total{method=\"GetTask\",code=\"ok\"} 1"), "{text}");
        assert!(text.contains("superx_rpc_requests_total{method=\"GetTask\",code=\"-32001\"} 2"), "{text}");
    }

    #[test]
    fn a_stream_gauge_counts_while_it_lives() {
        let line = || {
            rendered().lines().find(|l| l.starts_with("superx_streams_open ")).map(str::to_owned).unwrap_or_default()
        };
        handle();
        let open = StreamGauge::open();
        assert_eq!(line(), "superx_streams_open 1");
        drop(open);
        assert_eq!(line(), "superx_streams_open 0");
    }
}
