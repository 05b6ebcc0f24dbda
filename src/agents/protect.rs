//! Agent protection on this node: a circuit breaker and an in-flight limit per agent, checked
//! before every agent call and every agent stream is opened (`Gateway::call_agent`,
//! `rpc::stream_message`).
//!
//! [`Breaker`] is the pure state machine (time is passed in as `tokio::time::Instant`, so
//! tests pause it); [`Permit`] is one admitted call or stream, which holds its in-flight slot
//! until dropped and reports the agent's answer. Nothing here talks to the agent.
//!
//! Breaker: closed -> open after `failure_threshold` failures within `failure_window`; open
//! rejects without calling the agent; after `cooldown` it is half-open and admits exactly one
//! probe (others are rejected while it runs); the probe's success closes the breaker, its
//! failure re-opens it for a new cooldown. An agent's own JSON-RPC error is an answer, not a
//! failure.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::AgentCounters;
use crate::config::AgentsConfig;
use crate::jsonrpc::RpcError;
use crate::state::AgentSettings;

/// One agent's protection knobs, read from its record's overrides at each admission (an
/// upsert changes them at once) and the `[agents]` defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_in_flight: u32,
    pub failure_threshold: u32,
    pub failure_window: Duration,
    pub cooldown: Duration,
}

impl Limits {
    pub fn of(defaults: &AgentsConfig, s: &AgentSettings) -> Limits {
        Limits {
            // Zero would refuse every call or open on nothing: both read as 1.
            max_in_flight: s.max_in_flight.unwrap_or(defaults.max_in_flight).max(1),
            failure_threshold: s.failure_threshold.unwrap_or(defaults.failure_threshold).max(1),
            failure_window: Duration::from_millis(s.failure_window_ms.unwrap_or(defaults.failure_window_ms)),
            cooldown: Duration::from_millis(s.cooldown_ms.unwrap_or(defaults.cooldown_ms)),
        }
    }
}

/// The breaker's state as `agents/health` and the `superx_breaker_state` gauge show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// The `superx_breaker_state` gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Why a call was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The breaker is open (or half-open with its probe running); retry after this long.
    BreakerOpen { retry_after: Duration },
    /// `max_in_flight` calls are already in flight.
    Overloaded { max_in_flight: u32 },
}

impl Rejection {
    /// The `outcome` label of `superx_agent_calls_total` for a rejected call.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::BreakerOpen { .. } => "rejected_breaker",
            Rejection::Overloaded { .. } => "rejected_overload",
        }
    }

    pub fn into_error(self, agent_id: &str) -> RpcError {
        match self {
            Rejection::BreakerOpen { retry_after } => RpcError::AgentCircuitOpen {
                agent: agent_id.to_owned(),
                retry_after_secs: retry_after.as_millis().div_ceil(1000).max(1) as u64,
            },
            Rejection::Overloaded { max_in_flight } => {
                RpcError::AgentOverloaded { agent: agent_id.to_owned(), max_in_flight }
            }
        }
    }
}

/// A state change, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition(pub BreakerState);

/// The circuit breaker of one agent. Every method takes `now`, so tests drive time.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    /// Failure times, oldest first; at most `failure_threshold` kept (older ones cannot
    /// open the breaker any more).
    failures: VecDeque<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: State::Closed, failures: VecDeque::new() }
    }
}

/// What [`Breaker::admit`] decided for an admitted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The call is the half-open probe: its outcome decides the breaker.
    pub probe: bool,
    pub transition: Option<Transition>,
}

impl Breaker {
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Failures that still count (within the window).
    pub fn recent_failures(&self, now: Instant, limits: &Limits) -> usize {
        self.failures.iter().filter(|t| now.saturating_duration_since(**t) <= limits.failure_window).count()
    }

    /// Decides whether a call may go to the agent, given the calls in flight. A rejection
    /// carries how long until trying again makes sense.
    pub fn admit(
        &mut self,
        now: Instant,
        limits: &Limits,
        in_flight: u64,
    ) -> Result<Admitted, (Rejection, Option<Transition>)> {
        let mut transition = None;
        if let State::Open { until } = self.state
            && now >= until
        {
            self.state = State::HalfOpen { probing: false };
            transition = Some(Transition(BreakerState::HalfOpen));
        }
        match self.state {
            State::Open { until } => {
                return Err((Rejection::BreakerOpen { retry_after: until - now }, transition));
            }
            State::HalfOpen { probing: true } => {
                // The probe's own deadline bounds the wait; a second is a fair hint.
                return Err((Rejection::BreakerOpen { retry_after: Duration::from_secs(1) }, transition));
            }
            _ => {}
        }
        if in_flight >= u64::from(limits.max_in_flight) {
            return Err((Rejection::Overloaded { max_in_flight: limits.max_in_flight }, transition));
        }
        let probe = self.state == (State::HalfOpen { probing: false });
        if probe {
            self.state = State::HalfOpen { probing: true };
        }
        Ok(Admitted { probe, transition })
    }

    /// The agent answered (a result or its own JSON-RPC error).
    pub fn success(&mut self, probe: bool) -> Option<Transition> {
        if probe && self.state == (State::HalfOpen { probing: true }) {
            self.state = State::Closed;
            self.failures.clear();
            return Some(Transition(BreakerState::Closed));
        }
        None
    }

    /// The agent failed (transport error, timeout, HTTP error, malformed answer).
    pub fn failure(&mut self, now: Instant, limits: &Limits, probe: bool) -> Option<Transition> {
        self.failures.push_back(now);
        while self.failures.len() > limits.failure_threshold as usize {
            self.failures.pop_front();
        }
        let reopen = probe && self.state == (State::HalfOpen { probing: true });
        let trip =
            self.state == State::Closed && self.recent_failures(now, limits) >= limits.failure_threshold as usize;
        if reopen || trip {
            self.state = State::Open { until: now + limits.cooldown };
            return Some(Transition(BreakerState::Open));
        }
        None
    }

    /// A probe that ended without an outcome (its caller went away): the next call probes.
    pub fn abandon(&mut self, probe: bool) {
        if probe && self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }
}

/// How an agent call ended, for the breaker and `superx_agent_calls_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The agent answered with its own JSON-RPC error: an answer, not a failure.
    AgentError,
    Failure,
}

impl Outcome {
    /// Classifies what `AgentClient` returned.
    pub fn of<T>(result: &Result<T, RpcError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Ok,
            Err(RpcError::AgentUnavailable(_) | RpcError::InvalidAgentResponse(_)) => Outcome::Failure,
            Err(_) => Outcome::AgentError,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::AgentError => "agent_error",
            Outcome::Failure => "failure",
        }
    }
}

/// One admitted call or stream: holds its in-flight slot until dropped.
pub struct Permit {
    counters: Arc<AgentCounters>,
    limits: Limits,
    /// Still the half-open probe (until its first outcome).
    probe: bool,
}

impl Permit {
    /// Admits a call to the agent whose counters these are, or says why not.
    pub fn acquire(counters: Arc<AgentCounters>, limits: Limits) -> Result<Permit, Rejection> {
        let now = Instant::now();
        let admitted = {
            let mut breaker = counters.lock_breaker();
            // Every increment happens under this lock, so the check and the add are one step.
            let in_flight = counters.in_flight.load(Ordering::Relaxed);
            let admitted = breaker.admit(now, &limits, in_flight);
            if admitted.is_ok() {
                counters.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            admitted
        };
        match admitted {
            Ok(a) => {
                counters.transitioned(a.transition);
                counters.calls_total.fetch_add(1, Ordering::Relaxed);
                counters.in_flight_changed();
                Ok(Permit { counters, limits, probe: a.probe })
            }
            Err((rejection, transition)) => {
                counters.transitioned(transition);
                counters.rejected(rejection);
                Err(rejection)
            }
        }
    }

    /// The counters of the agent this permit is for.
    pub fn counters(&self) -> &AgentCounters {
        &self.counters
    }

    /// Records the agent's answer or failure; `error` describes a failure.
    pub fn record(&mut self, outcome: Outcome, error: Option<&str>) {
        let probe = std::mem::take(&mut self.probe);
        let transition = {
            let mut breaker = self.counters.lock_breaker();
            match outcome {
                Outcome::Ok | Outcome::AgentError => breaker.success(probe),
                Outcome::Failure => breaker.failure(Instant::now(), &self.limits, probe),
            }
        };
        self.counters.transitioned(transition);
        self.counters.record_last(outcome, error);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe {
            self.counters.lock_breaker().abandon(true);
        }
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.in_flight_changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_in_flight: 100,
            failure_threshold: 3,
            failure_window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }

    fn tick(ms: u64) -> impl std::future::Future<Output = ()> {
        tokio::time::advance(Duration::from_millis(ms))
    }

    fn counters() -> Arc<AgentCounters> {
        Arc::new(AgentCounters::new("a"))
    }

    /// Fails `n` calls through permits.
    fn fail(c: &Arc<AgentCounters>, n: usize) {
        for _ in 0..n {
            let mut p = Permit::acquire(c.clone(), limits()).expect("admitted");
            p.record(Outcome::Failure, Some("boom"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_within_window_and_rejects_without_a_permit() {
        let c = counters();
        fail(&c, 2);
        assert_eq!(c.breaker_state(), BreakerState::Closed);
        fail(&c, 1);
        assert_eq!(c.breaker_state(), BreakerState::Open);
        let r = Permit::acquire(c.clone(), limits()).err().unwrap();
        assert_eq!(r, Rejection::BreakerOpen { retry_after: Duration::from_secs(5) });
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 0, "a rejected call holds no slot");
        tick(2000).await;
        let Err(Rejection::BreakerOpen { retry_after }) = Permit::acquire(c.clone(), limits()) else { panic!() };
        assert_eq!(retry_after, Duration::from_secs(3), "the remaining cooldown");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_count() {
        let c = counters();
        fail(&c, 2);
        tick(10_001).await;
        fail(&c, 2);
        assert_eq!(c.breaker_state(), BreakerState::Closed, "only 2 failures in the last 10 s");
        assert_eq!(c.recent_failures(&limits()), 2);
        fail(&c, 1);
        assert_eq!(c.breaker_state(), BreakerState::Open);
    }

    #[test]
    fn only_the_agents_faults_are_failures() {
        let failure = |e: RpcError| Outcome::of::<()>(&Err(e));
        assert_eq!(failure(RpcError::AgentUnavailable("unreachable".into())), Outcome::Failure);
        assert_eq!(failure(RpcError::InvalidAgentResponse("not JSON".into())), Outcome::Failure);
        let own = RpcError::Upstream { code: -32001, message: "task not found".into(), data: None };
        assert_eq!(failure(own), Outcome::AgentError);
        assert_eq!(Outcome::of(&Ok::<_, RpcError>(())), Outcome::Ok);
    }

    #[tokio::test(start_paused = true)]
    async fn agent_errors_are_answers() {
        let c = counters();
        for _ in 0..10 {
            let mut p = Permit::acquire(c.clone(), limits()).unwrap();
            p.record(Outcome::AgentError, None);
        }
        assert_eq!(c.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_probe_among_50_concurrent() {
        let c = counters();
        fail(&c, 3);
        tick(5000).await;
        assert_eq!(c.breaker_state(), BreakerState::HalfOpen);
        let attempts: Vec<_> = (0..50)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { Permit::acquire(c, limits()).ok() })
            })
            .collect();
        let mut admitted = Vec::new();
        for a in attempts {
            admitted.extend(a.await.unwrap());
        }
        assert_eq!(admitted.len(), 1, "exactly one probe");
        let mut probe = admitted.pop().unwrap();
        assert!(Permit::acquire(c.clone(), limits()).is_err(), "rejected while the probe runs");
        probe.record(Outcome::Ok, None);
        drop(probe);
        assert_eq!(c.breaker_state(), BreakerState::Closed);
        assert_eq!(c.recent_failures(&limits()), 0);
        let ok: Vec<_> = (0..50).filter_map(|_| Permit::acquire(c.clone(), limits()).ok()).collect();
        assert_eq!(ok.len(), 50, "closed admits everyone up to max_in_flight");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_new_cooldown() {
        let c = counters();
        fail(&c, 3);
        tick(5000).await;
        let mut probe = Permit::acquire(c.clone(), limits()).unwrap();
        tick(100).await;
        probe.record(Outcome::Failure, Some("still down"));
        drop(probe);
        assert_eq!(c.breaker_state(), BreakerState::Open);
        let Err(Rejection::BreakerOpen { retry_after }) = Permit::acquire(c.clone(), limits()) else { panic!() };
        assert_eq!(retry_after, Duration::from_secs(5), "a whole new cooldown");
        tick(5000).await;
        assert!(Permit::acquire(c.clone(), limits()).is_ok(), "half-open again after it");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_probe_lets_the_next_call_probe() {
        let c = counters();
        fail(&c, 3);
        tick(5000).await;
        let probe = Permit::acquire(c.clone(), limits()).unwrap();
        drop(probe);
        assert_eq!(c.breaker_state(), BreakerState::HalfOpen);
        let mut next = Permit::acquire(c.clone(), limits()).unwrap();
        next.record(Outcome::Ok, None);
        assert_eq!(c.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_of_older_calls_do_not_decide_half_open() {
        let c = counters();
        let mut old = Permit::acquire(c.clone(), limits()).unwrap();
        fail(&c, 3);
        tick(5000).await;
        let _probe = Permit::acquire(c.clone(), limits()).unwrap();
        old.record(Outcome::Ok, None);
        assert_eq!(c.breaker_state(), BreakerState::HalfOpen, "only the probe closes");
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_limit_rejects_at_once_and_frees_on_drop() {
        let c = counters();
        let l = Limits { max_in_flight: 2, ..limits() };
        let a = Permit::acquire(c.clone(), l).unwrap();
        let _b = Permit::acquire(c.clone(), l).unwrap();
        assert_eq!(Permit::acquire(c.clone(), l).err(), Some(Rejection::Overloaded { max_in_flight: 2 }));
        drop(a);
        assert!(Permit::acquire(c.clone(), l).is_ok());
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 1, "the temporary permit was dropped");
    }
}
