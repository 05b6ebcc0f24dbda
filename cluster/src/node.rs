//! [`Cluster`]: one chitchat node. It binds the gossip listener, publishes this node's keys
//! (schema in `keys.rs`), keeps the member list and the change stream (rules in
//! `node/members.rs`) and runs the discovery loop of the DNS and Kubernetes strategies.
//!
//! # Timing
//!
//! Chitchat's failure detector declares a node dead when the time since its last heartbeat
//! exceeds 8 (`phi_threshold`) times the mean interval between the heartbeats this node heard
//! of it. Heartbeats travel in every gossip message, so that mean is a fraction of
//! `gossip_interval`; until samples accumulate it leans towards `initial_interval`, which we set
//! to `gossip_interval` (chitchat's default, 5 s, would make a young node's death take tens of
//! seconds to notice). Measured on 127.0.0.1 with a 200 ms interval (tests in `node/tests.rs`):
//! a stopped node is `Dead` on the others after 1.0 s (1.4 s when it had been up for less than
//! a second); three nodes seeded with the first all see each other live after 0.4 s (the
//! detector wants three heartbeats before it calls a node live); a restarted node is `Live` on
//! the others within milliseconds.
//!
//! # Generations
//!
//! A node's generation is its start time in unix ms. The member list keeps the newest
//! generation of each node id: a restart shows as one member, and a restart quicker than
//! failure detection yields only `Live` (with the new generation), never `Dead`. A restart
//! slower than that yields `Dead` then `Live`. A generation changes only on restart, so a
//! `Live` with a generation unseen before means the node lost its in-memory state.
//!
//! # Leaving
//!
//! [`Cluster::leave`] publishes the `left` flag locally; gossip spreads it in O(log n) rounds
//! (fan-out 3 per round), typically one or two rounds in a small cluster. Keep gossip running
//! (do not call [`Cluster::shutdown`]) until the leader has removed this node from raft, which
//! it does on the `Left` event: that removal is the proof the announcement arrived. A node that
//! left and then stops yields no `Dead`: `Left` is the last event of a generation.

mod members;
#[cfg(test)]
mod tests;
mod transport;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat,
};
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::discovery::{Discoverer, Strategy};
use crate::keys::{self, HealthDigest, RaftState, RateDigest};
use members::Tracker;
use superx_keyring::Keyring;
use transport::AuthTransport;

/// Capacity of the change stream. A subscriber further behind gets `RecvError::Lagged` and
/// should resynchronize from [`Cluster::members`]. A full restart of a 100-node cluster makes
/// a few events per node (Dead, Live, Updated for readiness and raft state), well under this.
pub(crate) const EVENTS_CAPACITY: usize = 1024;

/// How long deleted keys (a withdrawn bootstrap view) are remembered so that every node learns
/// of the deletion; a node that missed it longer than this gets a full reset of that state,
/// which is correct but costs a larger exchange. Deletions are rare, so an hour costs nothing.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

/// Floor of `gossip_interval`: a zero period would make chitchat's timer panic.
const GOSSIP_INTERVAL_MIN: Duration = Duration::from_millis(10);

/// Floor of the discovery period: a zero interval would ask DNS or the API server in a loop.
const DISCOVERY_INTERVAL_MIN: Duration = Duration::from_millis(50);

/// What a node needs to join the gossip.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (the raft node id); stable across restarts.
    pub node_id: u64,
    /// Nodes gossip only with nodes of the same cluster id (chitchat drops other clusters'
    /// messages).
    pub cluster_id: String,
    /// UDP listener for gossip.
    pub gossip_listen: SocketAddr,
    /// How other nodes reach this node's gossip listener.
    pub gossip_advertise: SocketAddr,
    /// Period of one gossip round.
    pub gossip_interval: Duration,
    /// A node silent for longer than this (as judged by chitchat's phi-accrual detector) is
    /// dead; a dead node's state is forgotten after `dead_node_grace`.
    pub dead_node_grace: Duration,
    /// Where seeds come from.
    pub strategy: Strategy,
    /// The cluster secret: with it every datagram is tagged and untagged ones are dropped
    /// (`node/transport.rs`), so a process without it is never heard. None: plain UDP.
    pub keyring: Option<Keyring>,
}

/// This node's facts, published once at start.
#[derive(Clone, Debug)]
pub struct NodeMeta {
    /// `host:port` of the public API.
    pub api_addr: String,
    /// `host:port` of the internal raft listener.
    pub raft_addr: String,
    /// The binary's version.
    pub version: String,
}

/// One node as gossip sees it (the newest generation of each node id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: u64,
    /// Changes on every restart of the node.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub api_addr: String,
    pub raft_addr: String,
    pub version: String,
    pub cluster_id: String,
    /// The node's own readiness (`/ready`).
    pub ready: bool,
    pub raft_state: RaftState,
    /// The node announced it leaves the cluster on purpose.
    pub left: bool,
    /// Alive according to the failure detector.
    pub live: bool,
    /// When this node (the observer) last saw `live` change for this member.
    pub since: Instant,
    pub health: Option<HealthDigest>,
    /// The set of pristine node ids this member sees, published while it waits to bootstrap.
    pub bootstrap_view: Option<Vec<u64>>,
    /// True for the observing node itself.
    pub is_self: bool,
}

/// A change in the member list, as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node became alive (first seen, or back after being dead, or restarted).
    Live(Member),
    /// A node stopped answering.
    Dead(Member),
    /// A node announced it leaves.
    Left(Member),
    /// A live node's published state changed (readiness, raft state, health...).
    Updated(Member),
}

impl ClusterEvent {
    /// The member as it is after the change.
    pub fn member(&self) -> &Member {
        match self {
            ClusterEvent::Live(m) | ClusterEvent::Dead(m) | ClusterEvent::Left(m) | ClusterEvent::Updated(m) => m,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("gossip listener {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("discovery: {0}")]
    Discovery(String),
}

/// A running gossip node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    chitchat_id: ChitchatId,
    node_id: u64,
    handle: Arc<ChitchatHandle>,
    chitchat: Arc<Mutex<Chitchat>>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    events: broadcast::Sender<ClusterEvent>,
    /// Wakes the member-list task on a key change (deletions notify no chitchat listener).
    refresh: Arc<Notify>,
    discovery_error: Arc<StdMutex<Option<String>>>,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    /// The last clone dropped without `shutdown` still stops gossip: the tasks hold no
    /// reference to `Inner`, so nothing else would.
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
        let _ = self.handle.initiate_shutdown();
    }
}

impl Cluster {
    /// Binds the gossip listener, publishes `meta`, starts gossip and the discovery loop.
    pub async fn start(config: ClusterConfig, meta: NodeMeta) -> Result<Cluster, ClusterError> {
        let gossip_interval = config.gossip_interval.max(GOSSIP_INTERVAL_MIN);
        let chitchat_id = keys::chitchat_id(config.node_id, next_generation(), config.gossip_advertise);
        let initial = keys::initial_key_values(
            config.node_id,
            &config.cluster_id,
            &meta.api_addr,
            &meta.raft_addr,
            &meta.version,
        );
        let transport: Box<dyn Transport> = match &config.keyring {
            Some(keyring) => Box::new(AuthTransport { keyring: keyring.clone() }),
            None => Box::new(UdpTransport),
        };
        let handle = spawn_chitchat(chitchat_config(&config, chitchat_id.clone()), initial, transport.as_ref())
            .await
            .map_err(|err| ClusterError::Bind { addr: config.gossip_listen, reason: format!("{err:#}") })?;
        let handle = Arc::new(handle);
        let chitchat = handle.chitchat();
        // Any key change, ours or a peer's, wakes the member list at once instead of at the
        // next round; deletions notify no listener and wait for the round.
        let refresh = Arc::new(Notify::new());
        let wake = refresh.clone();
        chitchat.lock().await.subscribe_event("", move |_| wake.notify_one()).forever();

        let mut tracker = Tracker::new(gossip_interval);
        tracker.observe(observe(&chitchat).await, Instant::now());
        let (members_tx, members) = watch::channel(Arc::new(tracker.list()));
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let discovery_error = Arc::new(StdMutex::new(None));
        let list_task = MemberListTask {
            chitchat: chitchat.clone(),
            tracker,
            interval: gossip_interval,
            members: members_tx,
            events: events.clone(),
            refresh: refresh.clone(),
        };
        let mut tasks = vec![tokio::spawn(list_task.run())];
        tasks.extend(spawn_discovery(&config, &handle, &members, &discovery_error));
        if matches!(config.strategy, Strategy::Gossip { .. }) {
            announce_to_seeds(&handle, &chitchat).await;
        }
        tracing::info!(
            node_id = config.node_id,
            generation = chitchat_id.generation_id,
            gossip_listen = %config.gossip_listen,
            gossip_advertise = %config.gossip_advertise,
            cluster_id = %config.cluster_id,
            authenticated = config.keyring.is_some(),
            "gossip started"
        );
        let node_id = config.node_id;
        let tasks = StdMutex::new(tasks);
        let inner = Inner { chitchat_id, node_id, handle, chitchat, members, events, refresh, discovery_error, tasks };
        Ok(Cluster { inner: Arc::new(inner) })
    }

    /// Every node gossip knows (newest generation per node id), this node included, sorted by id.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members.borrow().as_ref().clone()
    }

    /// The member list, updated on every change.
    pub fn watch(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.inner.members.clone()
    }

    /// The change stream. Events about this node itself carry `is_self = true`.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    pub async fn set_ready(&self, ready: bool) {
        self.with_self_state(|state| keys::set_ready(state, ready)).await;
    }

    pub async fn set_raft_state(&self, state: RaftState) {
        self.with_self_state(|node| keys::set_raft_state(node, state)).await;
    }

    /// Republishes only when the digest changed, so a periodic call costs no gossip and makes
    /// no `Updated` event while nothing moves.
    pub async fn set_health(&self, health: &HealthDigest) {
        self.with_self_state(|state| keys::set_health(state, health)).await;
    }

    /// Publishes this node's rate-limit demand digest (only when it changed). It is not part
    /// of [`Member`] and makes no event: it changes every interval under load.
    pub async fn set_rates(&self, digest: &RateDigest) {
        keys::set_rates(self.inner.chitchat.lock().await.self_node_state(), digest);
    }

    /// The rate-limit digests of the other live nodes (the newest generation of each).
    pub async fn peer_rates(&self) -> Vec<RateDigest> {
        let chitchat = self.inner.chitchat.lock().await;
        let self_id = chitchat.self_chitchat_id().clone();
        let mut newest: std::collections::BTreeMap<&str, (&ChitchatId, &NodeState)> = Default::default();
        for id in chitchat.live_nodes().filter(|id| **id != self_id && id.node_id != self_id.node_id) {
            let Some(state) = chitchat.node_state(id) else { continue };
            let entry = newest.entry(&*id.node_id).or_insert((id, state));
            if id.generation_id > entry.0.generation_id {
                *entry = (id, state);
            }
        }
        newest.values().filter_map(|(_, state)| keys::rates(state)).collect()
    }

    /// Publishes (or withdraws, with `None`) the pristine ids this node sees while it waits to
    /// bootstrap.
    pub async fn set_bootstrap_view(&self, view: Option<&[u64]>) {
        self.with_self_state(|state| keys::set_bootstrap_view(state, view)).await;
    }

    /// Announces that this node leaves on purpose. Returns once the flag is in this node's
    /// gossip state; see the module documentation for how long to keep gossiping.
    pub async fn leave(&self) {
        self.with_self_state(|state| keys::set_left(state, true)).await;
        tracing::info!(node_id = self.inner.node_id, "left flag published");
    }

    /// The last discovery error, if the last discovery round failed (shown in cluster/status).
    pub fn discovery_error(&self) -> Option<String> {
        self.inner.discovery_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops gossip. Idempotent; the member list keeps its last value.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let _ = self.inner.handle.initiate_shutdown();
        if let Err(err) = self.inner.handle.termination_watcher().await {
            tracing::warn!(error = %err, "gossip server ended with an error");
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// This process's generation (unix time in ms at start, strictly increasing within a
    /// process): other nodes tell a restart of this node by it.
    pub fn generation(&self) -> u64 {
        self.inner.chitchat_id.generation_id
    }

    /// The gossip address other nodes use for this node.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.chitchat_id.gossip_advertise_addr
    }

    /// This node as the member list shows it.
    pub fn self_member(&self) -> Member {
        let list = self.inner.members.borrow();
        list.iter().find(|m| m.is_self).cloned().expect("the member list always holds this node")
    }

    async fn with_self_state<T>(&self, change: impl FnOnce(&mut NodeState) -> T) -> T {
        let out = change(self.inner.chitchat.lock().await.self_node_state());
        self.inner.refresh.notify_one();
        out
    }
}

fn chitchat_config(config: &ClusterConfig, chitchat_id: ChitchatId) -> ChitchatConfig {
    let gossip_interval = config.gossip_interval.max(GOSSIP_INTERVAL_MIN);
    let seed_nodes = match &config.strategy {
        Strategy::Gossip { seeds } => seeds.clone(),
        // Discovery hands DNS and Kubernetes seeds to chitchat one by one; static has none.
        Strategy::Static | Strategy::Dns { .. } | Strategy::Kubernetes(_) => Vec::new(),
    };
    ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval,
        listen_addr: config.gossip_listen,
        seed_nodes,
        failure_detector_config: FailureDetectorConfig {
            initial_interval: gossip_interval,
            dead_node_grace_period: config.dead_node_grace,
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: TOMBSTONE_GRACE,
        catchup_callback: None,
        extra_liveness_predicate: None,
        // V1 compresses digests but older chitchat cannot read it; V0 keeps rolling upgrades
        // across chitchat versions safe, and superx clusters are small.
        protocol_version: ProtocolVersion::V0,
    }
}

/// Unix time in ms, strictly increasing within the process (tests restart a node in the same
/// process, possibly within one millisecond).
fn next_generation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let previous = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now_ms.max(last + 1)));
    let last = previous.unwrap_or_else(|last| last);
    now_ms.max(last + 1)
}

/// Starts the discovery loop of the DNS and Kubernetes strategies.
fn spawn_discovery(
    config: &ClusterConfig,
    handle: &Arc<ChitchatHandle>,
    members: &watch::Receiver<Arc<Vec<Member>>>,
    error: &Arc<StdMutex<Option<String>>>,
) -> Option<JoinHandle<()>> {
    // Static and gossip have no interval: gossip seeds are chitchat's own, and static has no
    // gossip peers to find.
    let interval = config.strategy.interval()?;
    let discovery = DiscoveryTask {
        strategy: config.strategy.clone(),
        interval: interval.max(DISCOVERY_INTERVAL_MIN),
        handle: handle.clone(),
        members: members.clone(),
        self_addr: config.gossip_advertise,
        error: error.clone(),
    };
    Some(tokio::spawn(discovery.run()))
}

/// Chitchat contacts one seed per round; greeting them all at once joins in one round.
async fn announce_to_seeds(handle: &ChitchatHandle, chitchat: &Mutex<Chitchat>) {
    let seeds = chitchat.lock().await.seed_nodes();
    for seed in seeds.into_iter().filter(|seed| *seed != handle.chitchat_id().gossip_advertise_addr) {
        let _ = handle.gossip(seed);
    }
}

/// Every chitchat id whose keys are readable, `live` as the failure detector says.
async fn observe(chitchat: &Mutex<Chitchat>) -> Vec<Member> {
    let chitchat = chitchat.lock().await;
    let self_id = chitchat.self_chitchat_id();
    let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
    let members = chitchat.node_states().iter().filter_map(|(id, state)| {
        let is_self = id == self_id;
        let member = keys::member_from_state(id, state, is_self || live.contains(id))?;
        Some(Member { is_self, ..member })
    });
    members.collect()
}

/// Keeps the member list and sends the events, once per gossip round and whenever chitchat's
/// live set or this node's keys change.
struct MemberListTask {
    chitchat: Arc<Mutex<Chitchat>>,
    tracker: Tracker,
    interval: Duration,
    members: watch::Sender<Arc<Vec<Member>>>,
    events: broadcast::Sender<ClusterEvent>,
    refresh: Arc<Notify>,
}

impl MemberListTask {
    async fn run(mut self) {
        let mut live_nodes = self.chitchat.lock().await.live_nodes_watcher();
        let mut round = tokio::time::interval(self.interval);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = round.tick() => {}
                changed = live_nodes.changed() => if changed.is_err() { return },
                () = self.refresh.notified() => {}
            }
            let events = self.tracker.observe(observe(&self.chitchat).await, Instant::now());
            let list = self.tracker.list();
            // The list first, so a subscriber reading it on an event sees the change.
            self.members.send_if_modified(|current| {
                let changed = **current != list;
                if changed {
                    *current = Arc::new(list);
                }
                changed
            });
            for event in events {
                tracing::debug!(?event, "cluster event");
                let _ = self.events.send(event);
            }
        }
    }
}

/// Resolves the strategy every interval and greets every address not yet a live member.
struct DiscoveryTask {
    strategy: Strategy,
    interval: Duration,
    handle: Arc<ChitchatHandle>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    self_addr: SocketAddr,
    error: Arc<StdMutex<Option<String>>>,
}

impl DiscoveryTask {
    async fn run(self) {
        // Held across rounds: it keeps the DNS resolver or the HTTPS client (pool, parsed CA).
        // Building it fails on a bad configuration or an unreadable file, so it is retried.
        let mut discoverer: Option<Discoverer> = None;
        loop {
            if discoverer.is_none() {
                match Discoverer::new(&self.strategy) {
                    Ok(built) => discoverer = Some(built),
                    Err(err) => self.record_error(err.to_string()),
                }
            }
            if let Some(discoverer) = &discoverer {
                match discoverer.resolve().await {
                    Ok(addrs) => self.greet(addrs),
                    Err(err) => self.record_error(err.to_string()),
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    fn greet(&self, addrs: Vec<SocketAddr>) {
        let recovered = self.error.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(previous) = recovered {
            tracing::info!(previous_error = %previous, "discovery recovered");
        }
        let known: HashSet<SocketAddr> = {
            let members = self.members.borrow();
            members.iter().filter(|m| m.live).map(|m| m.gossip_addr).collect()
        };
        for addr in addrs.into_iter().filter(|addr| *addr != self.self_addr && !known.contains(addr)) {
            if self.handle.gossip(addr).is_err() {
                return; // The gossip server stopped; shutdown aborts this task next.
            }
        }
    }

    /// Logs an error only when it differs from the last one, so a lasting outage logs once.
    fn record_error(&self, message: String) {
        let mut last = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(message.as_str()) {
            tracing::warn!(error = %message, strategy = ?self.strategy, "discovery round failed");
        }
        *last = Some(message);
    }
}
