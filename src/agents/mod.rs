//! Agents: how the gateway reaches the remote A2A agents it routes to.
//!
//! [`spec`] parses what operators write (agents YAML, `A2A_REMOTE_URL`, `agents/upsert`);
//! [`client`] makes the calls (JSON-RPC in the agent's preferred version, card fetches) over
//! one pooled reqwest client; [`AgentStats`] keeps this node's per-agent call counters for
//! `agents/health` and `/metrics`.

pub mod client;
pub mod spec;
pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use client::{AgentClient, Answer, CallTarget, UpstreamMethod};
pub use stream::{StreamFault, StreamItem, UpstreamStream};

/// Node-local call counters of one agent.
#[derive(Default, Debug)]
pub struct AgentCounters {
    pub in_flight: AtomicU64,
    pub calls_total: AtomicU64,
    pub failures_total: AtomicU64,
    /// Agent streams the gateway stopped following before the task ended (after reconnects).
    pub streams_abandoned: AtomicU64,
    last: Mutex<LastOutcome>,
}

#[derive(Default, Debug, Clone)]
pub struct LastOutcome {
    pub success_at_ms: Option<u64>,
    pub failure_at_ms: Option<u64>,
    pub error: Option<String>,
}

impl AgentCounters {
    pub fn last(&self) -> LastOutcome {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Per-agent counters, created on first use.
#[derive(Default)]
pub struct AgentStats {
    by_agent: Mutex<HashMap<String, Arc<AgentCounters>>>,
}

/// Counts one call in flight until dropped; `finish` records its outcome.
pub struct CallGuard {
    counters: Arc<AgentCounters>,
}

impl AgentStats {
    pub fn get(&self, agent_id: &str) -> Arc<AgentCounters> {
        let mut map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(agent_id.to_owned()).or_default().clone()
    }

    pub fn begin(&self, agent_id: &str) -> CallGuard {
        let counters = self.get(agent_id);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        counters.calls_total.fetch_add(1, Ordering::Relaxed);
        CallGuard { counters }
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

    pub fn snapshot(&self) -> Vec<(String, Arc<AgentCounters>)> {
        let map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

impl CallGuard {
    /// Records the outcome of the call (a failure is the agent's fault: unreachable, timed
    /// out, a bad answer; a JSON-RPC error the agent chose to answer with is not).
    pub fn finish(self, now_ms: u64, failure: Option<String>) {
        let mut last = self.counters.last.lock().unwrap_or_else(|p| p.into_inner());
        match failure {
            None => last.success_at_ms = Some(now_ms),
            Some(error) => {
                self.counters.failures_total.fetch_add(1, Ordering::Relaxed);
                last.failure_at_ms = Some(now_ms);
                last.error = Some(error);
            }
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
