//! The gossip key schema: every chitchat key superx publishes is a `const` here, with a typed
//! accessor. No other file names a key.
//!
//! A node writes its own keys into its chitchat `NodeState` (the `set_*` functions) and every
//! node reads the others' keys back into a [`Member`] ([`member_from_state`]). Values are short
//! strings: gossip carries every key of every node in every full exchange, so nothing large
//! belongs here.

use std::net::SocketAddr;
use std::time::Instant;

use chitchat::{ChitchatId, NodeState};
use serde::{Deserialize, Serialize};

use crate::node::Member;

/// The raft node id, decimal. It must equal the chitchat node id: a node whose two ids disagree
/// is not a superx node (or a broken one) and is ignored.
pub const NODE_ID: &str = "node_id";
/// `host:port` of the public API.
pub const API_ADDR: &str = "api_addr";
/// `host:port` of the internal raft listener.
pub const RAFT_ADDR: &str = "raft_addr";
/// The node's own readiness: `true` or `false`.
pub const READY: &str = "ready";
/// The binary's version.
pub const VERSION: &str = "version";
/// The cluster id (chitchat already keeps clusters apart; published so status pages show it).
pub const CLUSTER_ID: &str = "cluster_id";
/// [`RaftState`]: `pristine` or `member`.
pub const RAFT_STATE: &str = "raft_state";
/// `true` once the node announced it leaves on purpose.
pub const LEFT: &str = "left";
/// [`HealthDigest`] as compact JSON.
pub const HEALTH: &str = "health";
/// [`RateDigest`]: the node's recent demand per rate-limited key (the root crate's `limits`).
pub const RATES: &str = "rates";
/// The pristine node ids a node sees while it waits to bootstrap: sorted, comma-separated
/// decimal ids. Absent (deleted) when withdrawn; an empty value is an empty view.
pub const BOOTSTRAP_VIEW: &str = "bootstrap_view";

/// Whether a node's raft storage holds a cluster: what bootstrap needs to know of each node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftState {
    /// Empty storage: never initialized, never joined.
    Pristine,
    /// The storage holds a cluster (this node founded one or was added to one).
    Member,
}

impl RaftState {
    /// The value published under [`RAFT_STATE`].
    pub fn as_str(self) -> &'static str {
        match self {
            RaftState::Pristine => "pristine",
            RaftState::Member => "member",
        }
    }

    fn parse(value: &str) -> Option<RaftState> {
        match value {
            "pristine" => Some(RaftState::Pristine),
            "member" => Some(RaftState::Member),
            _ => None,
        }
    }
}

/// A small per-node health digest, gossiped so every node can show every node's load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthDigest {
    /// Agent calls in flight on the node (streams included).
    pub in_flight: u64,
    /// Tasks in the node's memory.
    pub tasks: u64,
    /// The node's raft applied index.
    pub applied_index: u64,
    /// Agents whose last call on this node failed.
    pub agents_failing: u64,
    /// Agents whose circuit breaker is open or half-open on this node (absent from older
    /// nodes' digests: zero).
    #[serde(default)]
    pub breakers_open: u64,
    /// The node's raft role ("leader", "follower", "learner", ...), term and committed index,
    /// for dashboards (absent from older nodes' digests: empty and zero).
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub committed_index: u64,
}

/// Entries of a [`RateDigest`] read at most (a peer's longer digest is cut), so no peer can make
/// a node hold more.
pub const RATE_DIGEST_KEYS_MAX: usize = 1024;

/// A node's recent demand per rate-limited key: `(key, requests per second)`, the key being a
/// hash the root crate makes of what it limits (never a credential). Published every
/// `limits.share_interval_ms`; every node divides each key's rate by the demands it reads.
/// Text: `<key hex>:<demand>` pairs, comma-separated, demand with one decimal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateDigest {
    pub demands: Vec<(u64, f64)>,
}

impl RateDigest {
    fn encode(&self) -> String {
        let pairs = self.demands.iter().map(|(key, demand)| format!("{key:x}:{demand:.1}"));
        pairs.collect::<Vec<_>>().join(",")
    }

    /// A malformed entry is skipped; at most [`RATE_DIGEST_KEYS_MAX`] are read.
    fn decode(text: &str) -> RateDigest {
        let entry = |pair: &str| {
            let (key, demand) = pair.split_once(':')?;
            let demand: f64 = demand.parse().ok()?;
            Some((u64::from_str_radix(key, 16).ok()?, demand)).filter(|_| demand.is_finite() && demand >= 0.0)
        };
        let demands = text.split(',').filter(|p| !p.is_empty()).filter_map(entry).take(RATE_DIGEST_KEYS_MAX);
        RateDigest { demands: demands.collect() }
    }
}

pub(crate) fn rates(state: &NodeState) -> Option<RateDigest> {
    state.get(RATES).map(RateDigest::decode)
}

/// Returns whether the published value changed (an unchanged digest costs no gossip).
pub(crate) fn set_rates(state: &mut NodeState, digest: &RateDigest) -> bool {
    let value = digest.encode();
    if state.get(RATES) == Some(value.as_str()) {
        return false;
    }
    state.set(RATES, value);
    true
}

/// The keys a node publishes once at start, before its first gossip round.
pub(crate) fn initial_key_values(
    node_id: u64,
    cluster_id: &str,
    api_addr: &str,
    raft_addr: &str,
    version: &str,
) -> Vec<(String, String)> {
    [
        (NODE_ID, node_id.to_string()),
        (CLUSTER_ID, cluster_id.to_string()),
        (API_ADDR, api_addr.to_string()),
        (RAFT_ADDR, raft_addr.to_string()),
        (VERSION, version.to_string()),
        (READY, bool_value(false).to_string()),
        (RAFT_STATE, RaftState::Pristine.as_str().to_string()),
        (LEFT, bool_value(false).to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

fn bool_value(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

pub(crate) fn node_id(state: &NodeState) -> Option<u64> {
    state.get(NODE_ID)?.parse().ok()
}

pub(crate) fn ready(state: &NodeState) -> Option<bool> {
    parse_bool(state.get(READY)?)
}

pub(crate) fn set_ready(state: &mut NodeState, ready: bool) {
    state.set(READY, bool_value(ready));
}

pub(crate) fn raft_state(state: &NodeState) -> Option<RaftState> {
    RaftState::parse(state.get(RAFT_STATE)?)
}

pub(crate) fn set_raft_state(state: &mut NodeState, raft_state: RaftState) {
    state.set(RAFT_STATE, raft_state.as_str());
}

pub(crate) fn left(state: &NodeState) -> Option<bool> {
    parse_bool(state.get(LEFT)?)
}

pub(crate) fn set_left(state: &mut NodeState, left: bool) {
    state.set(LEFT, bool_value(left));
}

/// A malformed digest reads as absent: health is informative only.
pub(crate) fn health(state: &NodeState) -> Option<HealthDigest> {
    serde_json::from_str(state.get(HEALTH)?).ok()
}

/// Returns whether the published value changed. Chitchat bumps the node's version (and so
/// gossips) only on a real change, and readers see no update for an identical digest.
pub(crate) fn set_health(state: &mut NodeState, health: &HealthDigest) -> bool {
    let value = serde_json::to_string(health).expect("a struct of integers always serializes");
    if state.get(HEALTH) == Some(value.as_str()) {
        return false;
    }
    state.set(HEALTH, value);
    true
}

/// A malformed view reads as absent: absent means "not waiting to bootstrap", the safe reading.
pub(crate) fn bootstrap_view(state: &NodeState) -> Option<Vec<u64>> {
    let value = state.get(BOOTSTRAP_VIEW)?;
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(|id| id.parse().ok()).collect()
}

pub(crate) fn set_bootstrap_view(state: &mut NodeState, view: Option<&[u64]>) {
    match view {
        Some(ids) => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            let value = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            state.set(BOOTSTRAP_VIEW, value);
        }
        // Deleting an absent key only logs a chitchat warning; skip it.
        None if state.contains_key(BOOTSTRAP_VIEW) => state.delete(BOOTSTRAP_VIEW),
        None => {}
    }
}

/// Reads a node's keys into a [`Member`], or `None` when a required key is missing or malformed
/// (a node that is not superx, or whose keys have not arrived yet: chitchat learns of a node
/// from a heartbeat before its keys).
///
/// `since` is set to now and `is_self` to false; the member list overwrites both.
pub(crate) fn member_from_state(id: &ChitchatId, state: &NodeState, live: bool) -> Option<Member> {
    let node_id = node_id(state)?;
    if id.node_id.parse::<u64>().ok()? != node_id {
        return None;
    }
    Some(Member {
        node_id,
        generation: id.generation_id,
        gossip_addr: id.gossip_advertise_addr,
        api_addr: state.get(API_ADDR)?.to_string(),
        raft_addr: state.get(RAFT_ADDR)?.to_string(),
        version: state.get(VERSION)?.to_string(),
        cluster_id: state.get(CLUSTER_ID)?.to_string(),
        ready: ready(state)?,
        raft_state: raft_state(state)?,
        left: left(state)?,
        live,
        since: Instant::now(),
        health: health(state),
        bootstrap_view: bootstrap_view(state),
        is_self: false,
    })
}

/// The chitchat id of a superx node: the decimal node id, as [`member_from_state`] expects.
pub(crate) fn chitchat_id(node_id: u64, generation: u64, gossip_addr: SocketAddr) -> ChitchatId {
    ChitchatId::new(node_id.to_string(), generation, gossip_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_initial_keys() -> (ChitchatId, NodeState) {
        let id = chitchat_id(7, 42, "127.0.0.1:7000".parse().unwrap());
        let mut state = NodeState::for_test();
        for (key, value) in initial_key_values(7, "c1", "10.0.0.7:4000", "10.0.0.7:4001", "1.2.3") {
            state.set(key, value);
        }
        (id, state)
    }

    #[test]
    fn initial_keys_read_back_as_a_member() {
        let (id, state) = state_with_initial_keys();
        let member = member_from_state(&id, &state, true).unwrap();
        assert_eq!(member.node_id, 7);
        assert_eq!(member.generation, 42);
        assert_eq!(member.gossip_addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(member.api_addr, "10.0.0.7:4000");
        assert_eq!(member.raft_addr, "10.0.0.7:4001");
        assert_eq!(member.version, "1.2.3");
        assert_eq!(member.cluster_id, "c1");
        assert!(!member.ready && !member.left && member.live && !member.is_self);
        assert_eq!(member.raft_state, RaftState::Pristine);
        assert_eq!(member.health, None);
        assert_eq!(member.bootstrap_view, None);
    }

    #[test]
    fn flags_round_trip() {
        let (_, mut state) = state_with_initial_keys();
        for value in [true, false, true] {
            set_ready(&mut state, value);
            assert_eq!(ready(&state), Some(value));
            set_left(&mut state, value);
            assert_eq!(left(&state), Some(value));
        }
        for value in [RaftState::Member, RaftState::Pristine] {
            set_raft_state(&mut state, value);
            assert_eq!(raft_state(&state), Some(value));
        }
    }

    #[test]
    fn health_round_trips_and_is_republished_only_on_change() {
        let (_, mut state) = state_with_initial_keys();
        let digest = HealthDigest {
            in_flight: 3,
            tasks: 10,
            applied_index: 99,
            agents_failing: 1,
            breakers_open: 1,
            role: "leader".into(),
            term: 4,
            committed_index: 100,
        };
        assert!(set_health(&mut state, &digest));
        let version = state.max_version();
        assert!(!set_health(&mut state, &digest));
        assert_eq!(state.max_version(), version, "an identical digest must not bump the version");
        assert_eq!(health(&state), Some(digest));
        assert_eq!(
            state.get(HEALTH),
            Some(
                r#"{"inFlight":3,"tasks":10,"appliedIndex":99,"agentsFailing":1,"breakersOpen":1,"role":"leader","term":4,"committedIndex":100}"#
            )
        );
        // A digest from an older node, without the later fields, reads them as zero.
        state.set(HEALTH, r#"{"inFlight":3,"tasks":10,"appliedIndex":99,"agentsFailing":1}"#);
        let old = health(&state).unwrap();
        assert_eq!((old.breakers_open, old.role.as_str(), old.term, old.committed_index), (0, "", 0, 0));
    }

    #[test]
    fn rate_digests_round_trip_and_bad_entries_are_skipped() {
        let (_, mut state) = state_with_initial_keys();
        assert_eq!(rates(&state), None);
        let digest = RateDigest { demands: vec![(0xdead_beef, 12.34), (u64::MAX, 0.0)] };
        assert!(set_rates(&mut state, &digest));
        assert!(!set_rates(&mut state, &digest), "an identical digest is not republished");
        assert_eq!(state.get(RATES), Some("deadbeef:12.3,ffffffffffffffff:0.0"));
        assert_eq!(rates(&state).unwrap().demands, vec![(0xdead_beef, 12.3), (u64::MAX, 0.0)]);
        state.set(RATES, "zz:1,1:x,2:-1,3:NaN,4:5.5,");
        assert_eq!(rates(&state).unwrap().demands, vec![(4, 5.5)]);
        let long = (0..2 * RATE_DIGEST_KEYS_MAX).map(|k| format!("{k:x}:1.0")).collect::<Vec<_>>().join(",");
        state.set(RATES, long);
        assert_eq!(rates(&state).unwrap().demands.len(), RATE_DIGEST_KEYS_MAX);
    }

    #[test]
    fn bootstrap_view_round_trips_sorted_and_withdraws() {
        let (_, mut state) = state_with_initial_keys();
        set_bootstrap_view(&mut state, None);
        assert_eq!(bootstrap_view(&state), None);
        set_bootstrap_view(&mut state, Some(&[3, 1, 2, 1]));
        assert_eq!(state.get(BOOTSTRAP_VIEW), Some("1,2,3"));
        assert_eq!(bootstrap_view(&state), Some(vec![1, 2, 3]));
        set_bootstrap_view(&mut state, Some(&[]));
        assert_eq!(bootstrap_view(&state), Some(vec![]));
        set_bootstrap_view(&mut state, None);
        assert_eq!(bootstrap_view(&state), None);
    }

    #[test]
    fn malformed_optional_keys_read_as_absent() {
        let (id, mut state) = state_with_initial_keys();
        state.set(HEALTH, "{not json");
        state.set(BOOTSTRAP_VIEW, "1,x");
        let member = member_from_state(&id, &state, true).unwrap();
        assert_eq!((member.health, member.bootstrap_view), (None, None));
    }

    #[test]
    fn missing_or_malformed_required_keys_give_no_member() {
        let (id, state) = state_with_initial_keys();
        let mut bad_ready = state.clone();
        bad_ready.set(READY, "yes");
        assert!(member_from_state(&id, &bad_ready, true).is_none());
        let mut bad_state = state.clone();
        bad_state.set(RAFT_STATE, "leader");
        assert!(member_from_state(&id, &bad_state, true).is_none());
        let mut no_api = state.clone();
        no_api.delete(API_ADDR);
        assert!(member_from_state(&id, &no_api, true).is_none());
        assert!(member_from_state(&id, &NodeState::for_test(), true).is_none(), "not a superx node");
        let other_id = chitchat_id(8, 42, id.gossip_advertise_addr);
        assert!(member_from_state(&other_id, &state, true).is_none(), "ids disagree");
    }
}
