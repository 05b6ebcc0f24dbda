//! Rate limits per credential and per agent that hold cluster-wide, however a load balancer
//! spreads the requests over the nodes.
//!
//! Each node keeps a token bucket per limited key (a credential: API key or JWT subject; an
//! agent). A bucket refills at the key's configured rate times this node's **share**, and
//! holds at most its burst times the share. Every `limits.share_interval_ms` the node measures
//! the demand (requests arriving, admitted or not) per key, publishes the keys nearest their
//! limit with their demand in gossip ([`superx_cluster::keys::RateDigest`]), and recomputes
//! each key's share from its own demand and what the other live nodes published:
//!
//! ```text
//! share_i = max(d_i / D, FLOOR) / sum over nodes j with demand of max(d_j / D, FLOOR)
//! ```
//!
//! Every node computes the same shares from the same demands, so they sum to 1 and the
//! cluster admits the configured rate whatever the spread (80/10/10 as well as even), and a
//! shift of load from one node to another moves the shares within a few intervals. The floor
//! lets a node that just started receiving a key's requests admit some at once, before its
//! demand has reached the others. A key no other node reports is this node's alone (share 1):
//! a single node is an exact local bucket. Without gossip (the static strategy) the nodes
//! cannot see each other's demand; each takes `1 / peers` of every rate, which never admits
//! more than the rate and admits all of it only when the load is spread evenly.
//!
//! Bounded: at most `limits.keys_max` keys per node (the least recently seen make room), a
//! key idle for `limits.idle_ms` is forgotten, at most `limits.gossip_keys_max` keys are
//! published. Gossip carries a hash of each key, never a credential or a subject.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use superx_cluster::keys::RateDigest;

use crate::auth::{Principal, Who};
use crate::config::LimitsSection;
use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;

/// The least share a node with demand for a key takes in the normalization (see the module
/// documentation): a node whose requests for a key are new admits at once, at about this
/// fraction of the rate, until its demand has reached the other nodes.
pub const SHARE_FLOOR: f64 = 0.05;

/// Weight of the last interval in a key's demand estimate (an exponential moving average
/// with a half-life of one interval): short enough that a shift of load moves the shares
/// within a few hundred milliseconds, long enough to smooth one interval's noise.
const DEMAND_SMOOTHING: f64 = 0.5;

/// Demand (requests per second) below which a key is not published.
const DEMAND_PUBLISHED_MIN: f64 = 0.05;

/// The least a node's bucket holds for a key, in tokens: with a small share of a small burst
/// (a burst of 10 at a share of 0.1 is one token), a bucket of one token would waste what
/// refills between its filling up and the next request, several percent of the node's rate.
/// Two cost the cluster at most one extra request per node in a burst.
const CAPACITY_MIN: f64 = 2.0;

/// The longest `Retry-After` a refusal gives.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// What a limit applies to: the `scope` label of `superx_rate_limited_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// An API key or a JWT's subject.
    Credential,
    /// An agent, whoever calls it.
    Agent,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Credential => "credential",
            Scope::Agent => "agent",
        }
    }
}

/// A configured rate: requests per second, and how many may come at once above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `None` for no limit (a rate of 0). A burst of 0 is one second's worth (at least 1).
    pub fn new(per_second: f64, burst: u64) -> Option<Rate> {
        if !(per_second > 0.0 && per_second.is_finite()) {
            return None;
        }
        let burst = if burst == 0 { per_second.max(1.0) } else { burst as f64 };
        Some(Rate { per_second, burst })
    }

    /// From a stored `state::RateLimit`.
    pub fn stored(rate: &crate::state::RateLimit) -> Option<Rate> {
        Rate::new(rate.per_second(), rate.burst)
    }
}

/// The gossiped key of a limited thing: the first 8 bytes of SHA-256 over its scope and name
/// (the same on every node; no credential or subject leaves the node).
pub fn key_of(scope: Scope, name: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(scope.label().as_bytes());
    hash.update([0]);
    hash.update(name.as_bytes());
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// A refused request: which limit, and when the bucket has a token again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Denied {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Denied {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// One key on this node.
#[derive(Debug)]
struct Entry {
    rate: Rate,
    tokens: f64,
    refilled: Instant,
    /// This node's share of the key's rate.
    share: f64,
    /// Requests that arrived since the last interval (admitted or not).
    arrivals: u64,
    /// Requests per second arriving here, smoothed.
    demand: f64,
    last_seen: Instant,
}

impl Entry {
    fn new(rate: Rate, share: f64, now: Instant) -> Entry {
        let mut entry = Entry { rate, tokens: 0.0, refilled: now, share, arrivals: 0, demand: 0.0, last_seen: now };
        entry.tokens = entry.capacity();
        entry
    }

    fn capacity(&self) -> f64 {
        (self.rate.burst * self.share).max(CAPACITY_MIN.min(self.rate.burst))
    }

    fn refill_rate(&self) -> f64 {
        self.rate.per_second * self.share
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_rate()).min(self.capacity());
        self.refilled = now;
    }

    /// How long until the bucket holds a whole token.
    fn wait(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        let secs = missing / self.refill_rate().max(f64::MIN_POSITIVE);
        Duration::try_from_secs_f64(secs).unwrap_or(RETRY_AFTER_MAX).min(RETRY_AFTER_MAX)
    }

    /// Demand relative to the rate: the keys nearest their limit are published first.
    fn pressure(&self) -> f64 {
        self.demand / self.rate.per_second
    }
}

/// This node's buckets and shares.
pub struct Limiter {
    keys_max: usize,
    idle: Duration,
    published_max: usize,
    /// The share a key starts with, and keeps when no other node reports it: 1, or `1/peers`
    /// without gossip.
    alone: f64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    last_tick: Option<Instant>,
}

/// One limit a request is checked against.
#[derive(Clone, Debug)]
pub struct Check<'a> {
    pub scope: Scope,
    pub name: &'a str,
    pub rate: Rate,
}

impl Limiter {
    /// `nodes_without_gossip`: the static peers' count when there is no gossip (each node
    /// then takes that fraction of every rate); 1 with gossip or a single node.
    pub fn new(config: &LimitsSection, nodes_without_gossip: usize) -> Limiter {
        Limiter {
            keys_max: config.keys_max.max(1),
            idle: Duration::from_millis(config.idle_ms),
            published_max: config.gossip_keys_max,
            alone: 1.0 / nodes_without_gossip.max(1) as f64,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a request against every limit it falls under, taking a token from each, or
    /// refuses it (taking none) naming the limit that waits longest. Every check counts as
    /// demand, admitted or not.
    pub fn admit(&self, checks: &[Check<'_>], now: Instant) -> Result<(), Denied> {
        if checks.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        let keys: Vec<u64> = checks.iter().map(|c| key_of(c.scope, c.name)).collect();
        for (check, key) in checks.iter().zip(&keys) {
            if !state.entries.contains_key(key) && state.entries.len() >= self.keys_max {
                state.make_room(self.keys_max);
            }
            let alone = self.alone;
            let entry = state.entries.entry(*key).or_insert_with(|| Entry::new(check.rate, alone, now));
            if entry.rate != check.rate {
                entry.refill(now);
                entry.rate = check.rate;
                entry.tokens = entry.tokens.min(entry.capacity());
            }
            entry.refill(now);
            entry.arrivals += 1;
            entry.last_seen = now;
        }
        let denied = checks
            .iter()
            .zip(&keys)
            .filter_map(|(check, key)| {
                let entry = &state.entries[key];
                (entry.tokens < 1.0).then(|| Denied { scope: check.scope, retry_after: entry.wait() })
            })
            .max_by_key(|d| d.retry_after);
        if let Some(denied) = denied {
            return Err(denied);
        }
        for key in &keys {
            if let Some(entry) = state.entries.get_mut(key) {
                entry.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// One interval: folds the arrivals into each key's demand, forgets idle keys, recomputes
    /// the shares from the other live nodes' digests, and answers this node's digest.
    pub fn tick(&self, now: Instant, peers: &[RateDigest]) -> RateDigest {
        let mut others: HashMap<u64, Vec<f64>> = HashMap::new();
        for digest in peers {
            for &(key, demand) in &digest.demands {
                if demand > 0.0 && demand.is_finite() {
                    others.entry(key).or_default().push(demand);
                }
            }
        }
        let mut state = self.lock();
        let elapsed = state.last_tick.map(|t| now.saturating_duration_since(t).as_secs_f64());
        state.last_tick = Some(now);
        let idle = self.idle;
        state.entries.retain(|_, e| now.saturating_duration_since(e.last_seen) < idle);
        for (key, entry) in state.entries.iter_mut() {
            if let Some(dt) = elapsed.filter(|dt| *dt > 0.0) {
                let arrived = entry.arrivals as f64 / dt;
                entry.demand += DEMAND_SMOOTHING * (arrived - entry.demand);
                entry.arrivals = 0;
            }
            entry.refill(now);
            entry.share = share(entry.demand, others.get(key).map_or(&[][..], Vec::as_slice), self.alone);
            entry.tokens = entry.tokens.min(entry.capacity());
        }
        let mut published: Vec<(&u64, &Entry)> =
            state.entries.iter().filter(|(_, e)| e.demand >= DEMAND_PUBLISHED_MIN).collect();
        let busiest_first =
            |a: &(&u64, &Entry), b: &(&u64, &Entry)| b.1.pressure().total_cmp(&a.1.pressure()).then(a.0.cmp(b.0));
        if published.len() > self.published_max && self.published_max > 0 {
            published.select_nth_unstable_by(self.published_max - 1, busiest_first);
        }
        published.truncate(self.published_max);
        published.sort_by(busiest_first);
        RateDigest { demands: published.into_iter().map(|(k, e)| (*k, e.demand)).collect() }
    }

    /// Keys tracked on this node.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    /// Drops the least recently seen eighth of the keys (at least one), so a full map makes
    /// room in one pass every `keys_max / 8` new keys rather than scanning for each.
    fn make_room(&mut self, keys_max: usize) {
        let drop = (keys_max / 8).max(1).min(self.entries.len());
        let mut seen: Vec<(Instant, u64)> = self.entries.iter().map(|(k, e)| (e.last_seen, *k)).collect();
        seen.select_nth_unstable(drop - 1);
        for (_, key) in &seen[..drop] {
            self.entries.remove(key);
        }
    }
}

/// This node's share of a key's rate from its own demand and the other nodes' (see the module
/// documentation); `alone` when no other node reports the key.
pub fn share(local: f64, others: &[f64], alone: f64) -> f64 {
    if others.is_empty() {
        return alone;
    }
    let total = local + others.iter().sum::<f64>();
    if total <= 0.0 {
        return 1.0 / (others.len() + 1) as f64;
    }
    let floored = |d: f64| (d / total).max(SHARE_FLOOR);
    let mine = floored(local);
    mine / (mine + others.iter().map(|d| floored(*d)).sum::<f64>())
}

/// The name a principal is limited under: an API key's id or a JWT's issuer and subject. The
/// admin token and an open gateway have no credential limit.
fn credential_name(principal: &Principal) -> Option<String> {
    matches!(principal.who, Who::Key(_) | Who::Jwt { .. }).then(|| principal.to_string())
}

/// Checks an A2A call against its credential's rate (the key's own, else
/// `limits.credential_rate`) and its agent's (the spec's, else `limits.agent_rate`): the
/// retryable rate-limited error, with the bucket's Retry-After, over either.
pub fn check(gw: &Gateway, principal: &Principal, agent: Option<&str>) -> Result<(), RpcError> {
    let l = &gw.config.limits;
    let credential = credential_name(principal);
    let (key_rate, agent_rate) = gw.replica.read(|t| {
        let key_rate = match &principal.who {
            Who::Key(id) => t.keys().rate(id),
            _ => None,
        };
        (key_rate, agent.and_then(|a| t.agent_rate(a)))
    });
    let credential_rate = key_rate.map_or(Rate::new(l.credential_rate, l.credential_burst), |r| Rate::stored(&r));
    let agent_rate = agent_rate.map_or(Rate::new(l.agent_rate, l.agent_burst), |r| Rate::stored(&r));
    let mut checks = Vec::with_capacity(2);
    if let (Some(name), Some(rate)) = (credential.as_deref(), credential_rate) {
        checks.push(Check { scope: Scope::Credential, name, rate });
    }
    if let (Some(name), Some(rate)) = (agent, agent_rate) {
        checks.push(Check { scope: Scope::Agent, name, rate });
    }
    gw.limiter.admit(&checks, Instant::now()).map_err(|denied| {
        crate::telemetry::metrics::rate_limited(denied.scope.label());
        RpcError::RateLimited { scope: denied.scope.label(), retry_after_secs: denied.retry_after_secs() }
    })
}

/// Runs the sharing loop for the life of the gateway: every `limits.share_interval_ms`, a
/// tick with the other live nodes' digests, and this node's digest published.
pub fn spawn_sharing(gw: &std::sync::Arc<Gateway>) {
    let weak = std::sync::Arc::downgrade(gw);
    let period = Duration::from_millis(gw.config.limits.share_interval_ms);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            let peers = match &gw.cluster {
                Some(cluster) => cluster.peer_rates().await,
                None => Vec::new(),
            };
            let digest = gw.limiter.tick(Instant::now(), &peers);
            if let Some(cluster) = &gw.cluster {
                cluster.set_rates(&digest).await;
            }
        }
    });
}

#[cfg(test)]
mod tests;
