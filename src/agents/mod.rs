//! Agents: how the gateway reaches the remote A2A agents it routes to.
//!
//! [`spec`] parses what operators write (agents YAML, `A2A_REMOTE_URL`, `agents/upsert`);
//! [`client`] makes the calls (JSON-RPC in the agent's preferred version, card fetches) over
//! one pooled reqwest client; [`protect`] guards each agent with a circuit breaker and an
//! in-flight limit; [`AgentStats`] keeps this node's per-agent counters and protection state
//! for `agents/health`, the gossiped health digest and `/metrics`; [`card_misses`] is this
//! node's negative cache of card fetches.

pub mod card_misses;
pub mod client;
pub mod oauth;
pub mod protect;
pub mod spec;
pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use client::{AgentClient, Answer, CallTarget, ClientCredentials, UpstreamMethod};
pub use protect::{BreakerState, Limits, Outcome, Permit, Rejection};
pub use stream::{StreamFault, StreamItem, UpstreamStream, classify};

/// Node-local call counters and protection state of one agent.
#[derive(Debug)]
pub struct AgentCounters {
    /// The agent's id, the `agent` label of its metrics.
    id: String,
    /// Calls and streams holding a [`Permit`]; only incremented under the breaker's lock.
    pub in_flight: AtomicU64,
    /// Calls and streams admitted.
    pub calls_total: AtomicU64,
    pub failures_total: AtomicU64,
    /// Agent streams the gateway stopped following before the task ended (after reconnects).
    pub streams_abandoned: AtomicU64,
    breaker: Mutex<protect::Breaker>,
    last: Mutex<LastOutcome>,
}

#[derive(Default, Debug, Clone)]
pub struct LastOutcome {
    pub success_at_ms: Option<u64>,
    pub failure_at_ms: Option<u64>,
    pub error: Option<String>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl AgentCounters {
    pub fn new(id: &str) -> AgentCounters {
        // The gauges exist (closed, nothing in flight) before the first transition or call.
        metrics::gauge!("superx_breaker_state", "agent" => id.to_owned()).set(BreakerState::Closed.gauge());
        metrics::gauge!("superx_agent_in_flight", "agent" => id.to_owned()).set(0.0);
        AgentCounters {
            id: id.to_owned(),
            in_flight: AtomicU64::new(0),
            calls_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            streams_abandoned: AtomicU64::new(0),
            breaker: Mutex::new(protect::Breaker::default()),
            last: Mutex::new(LastOutcome::default()),
        }
    }

    pub fn last(&self) -> LastOutcome {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, protect::Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state(tokio::time::Instant::now())
    }

    /// Failures within the agent's window, as the breaker counts them (at most the threshold).
    pub fn recent_failures(&self, limits: &Limits) -> usize {
        self.lock_breaker().recent_failures(tokio::time::Instant::now(), limits)
    }

    fn transitioned(&self, transition: Option<protect::Transition>) {
        let Some(protect::Transition(to)) = transition else { return };
        match to {
            BreakerState::Open => tracing::warn!(agent_id = %self.id, "circuit breaker open"),
            BreakerState::HalfOpen => tracing::info!(agent_id = %self.id, "circuit breaker half-open"),
            BreakerState::Closed => tracing::info!(agent_id = %self.id, "circuit breaker closed"),
        }
        metrics::counter!("superx_breaker_transitions_total", "agent" => self.id.clone(), "to" => to.name())
            .increment(1);
        metrics::gauge!("superx_breaker_state", "agent" => self.id.clone()).set(to.gauge());
    }

    fn rejected(&self, rejection: Rejection) {
        let counter = match rejection {
            Rejection::BreakerOpen { .. } => "superx_breaker_rejections_total",
            Rejection::Overloaded { .. } => "superx_backpressure_rejections_total",
        };
        metrics::counter!(counter, "agent" => self.id.clone()).increment(1);
    }

    fn in_flight_changed(&self) {
        let n = self.in_flight.load(Ordering::Relaxed);
        metrics::gauge!("superx_agent_in_flight", "agent" => self.id.clone()).set(n as f64);
    }

    fn record_last(&self, outcome: Outcome, error: Option<&str>) {
        let now_ms = unix_ms();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Outcome::Ok | Outcome::AgentError => last.success_at_ms = Some(now_ms),
            Outcome::Failure => {
                self.failures_total.fetch_add(1, Ordering::Relaxed);
                last.failure_at_ms = Some(now_ms);
                last.error = error.map(str::to_owned);
            }
        }
    }
}

/// Per-agent counters, created on first use, dropped when the agent is deleted.
#[derive(Default)]
pub struct AgentStats {
    by_agent: Mutex<HashMap<String, Arc<AgentCounters>>>,
}

impl AgentStats {
    /// The agent's counters. `registered` says which ids still exist: entries of agents
    /// deleted since are dropped whenever a new one is made, so the map stays bounded by the
    /// registered agents even when they are deleted through other nodes.
    pub fn get_or_create(&self, agent_id: &str, registered: impl Fn(&str) -> bool) -> Arc<AgentCounters> {
        let mut map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(agent_id) {
            return c.clone();
        }
        map.retain(|id, _| registered(id));
        map.entry(agent_id.to_owned()).or_insert_with(|| Arc::new(AgentCounters::new(agent_id))).clone()
    }

    /// The agent's counters if it has any on this node.
    pub fn find(&self, agent_id: &str) -> Option<Arc<AgentCounters>> {
        self.by_agent.lock().unwrap_or_else(|p| p.into_inner()).get(agent_id).cloned()
    }

    /// Drops a deleted agent's state (calls in flight keep theirs until they end).
    pub fn forget(&self, agent_id: &str) {
        self.by_agent.lock().unwrap_or_else(|p| p.into_inner()).remove(agent_id);
    }

    /// Admits a call or stream to the agent, or says why not.
    pub fn admit(&self, counters: Arc<AgentCounters>, limits: Limits) -> Result<Permit, Rejection> {
        Permit::acquire(counters, limits)
    }

    /// This node's load: agent calls in flight (streams included), and agents whose last call
    /// here failed. For the gossiped health digest.
    pub fn load(&self) -> (u64, u64) {
        let map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let in_flight = map.values().map(|c| c.in_flight.load(Ordering::Relaxed)).sum();
        let failing = map
            .values()
            .filter(|c| {
                let last = c.last();
                last.failure_at_ms.is_some_and(|f| last.success_at_ms.is_none_or(|s| f > s))
            })
            .count() as u64;
        (in_flight, failing)
    }

    /// Agents whose breaker is open (or half-open) on this node. For the health digest.
    pub fn breakers_open(&self) -> u64 {
        let map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|c| c.breaker_state() != BreakerState::Closed).count() as u64
    }

    pub fn snapshot(&self) -> Vec<(String, Arc<AgentCounters>)> {
        let map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_agents_leave_the_map() {
        let stats = AgentStats::default();
        stats.get_or_create("a", |_| true);
        stats.get_or_create("b", |_| true);
        stats.forget("a");
        assert!(stats.find("a").is_none(), "deleted here: dropped at once");
        // "b" was deleted through another node: dropped when the next agent is added.
        stats.get_or_create("c", |id| id != "b");
        let ids: Vec<String> = stats.snapshot().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["c"]);
    }
}
