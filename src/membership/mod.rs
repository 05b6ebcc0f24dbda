//! Cluster formation: the root crate's wiring of gossip (`superx-cluster`) into raft
//! membership (`superx-raft`), which know nothing of each other.
//!
//! - `identity.rs`: this node's id (given, stored in the data dir, a StatefulSet ordinal, or
//!   generated once).
//! - `bootstrap.rs`: who founds a new cluster (`cluster.bootstrap_expect`), safely.
//! - `autopilot.rs`: the leader's rules turning gossip into learners, voters and removals.
//! - `leave.rs`: leaving on purpose (`superx leave`, `cluster/leave`).
//!
//! [`spawn`] starts the loops on every node: the publisher (this node's readiness, raft state
//! and health digest into gossip), the bootstrapper (only while pristine), the autopilot (acts
//! only on the leader) and the settings keeper, which puts the settings that change what
//! `apply` does into the log so every node applies the same ones. With the static strategy
//! there is no gossip: superx-raft's own reconciler follows `raft.peers`, and only the
//! settings keeper runs here.

pub mod autopilot;
pub mod bootstrap;
pub mod identity;
pub mod leave;
pub mod secret;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use superx_cluster::{Cluster, ClusterConfig, HealthDigest, NodeMeta, RaftState, Strategy};
use superx_raft::{MembershipError, PeerAddr};

use crate::config::Config;
use crate::gateway::Gateway;
use crate::state::{ProposeError, SettingsV2};

/// How often the loops look again when nothing wakes them sooner.
const TICK: Duration = Duration::from_millis(250);

/// How often this node's health digest is published (and at most how often it changes).
const HEALTH_PERIOD: Duration = Duration::from_secs(1);

/// A dead node's gossip state is forgotten after this long; it is long past any
/// `dead_voter_timeout`, so the autopilot has decided about the node by then.
const DEAD_NODE_GRACE: Duration = Duration::from_secs(3600);

/// The discovery strategy the config describes.
pub fn strategy(config: &Config) -> Result<Strategy, String> {
    let c = &config.cluster;
    let gossip_port = gossip_advertise(config)?.port();
    Ok(match c.strategy.as_str() {
        "static" => Strategy::Static,
        "gossip" => Strategy::Gossip {
            seeds: c.seeds.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        },
        "dns" => Strategy::Dns {
            query: c.dns_query.trim().to_owned(),
            port: if c.dns_port == 0 { gossip_port } else { c.dns_port as u16 },
            server: match c.dns_server.trim() {
                "" => None,
                s => Some(s.parse().map_err(|_| format!("cluster.dns_server: {s:?} is not host:port"))?),
            },
            interval: Duration::from_millis(c.dns_interval_ms),
        },
        "kubernetes" => Strategy::Kubernetes(superx_cluster::discovery::KubernetesDiscovery {
            api_url: c.k8s_api_url.clone(),
            namespace: c.k8s_namespace.clone(),
            selector: c.k8s_selector.clone(),
            port_name: c.k8s_port_name.clone(),
            port: gossip_port,
            token_file: c.k8s_token_file.clone().into(),
            ca_file: c.k8s_ca_file.clone().into(),
            interval: Duration::from_millis(c.k8s_interval_ms),
        }),
        other => return Err(format!("unknown strategy {other:?}")),
    })
}

fn gossip_advertise(config: &Config) -> Result<SocketAddr, String> {
    let c = &config.cluster;
    let addr = if c.gossip_advertise.is_empty() { &c.gossip_listen } else { &c.gossip_advertise };
    addr.parse().map_err(|_| format!("cluster.gossip_advertise: {addr:?} is not an address"))
}

/// Starts gossip for a dynamic strategy (none for `static`).
pub async fn start_gossip(
    config: &Config,
    advertise: &PeerAddr,
    keyring: Option<superx_keyring::Keyring>,
) -> anyhow::Result<Option<Cluster>> {
    let strategy = strategy(config).map_err(anyhow::Error::msg)?;
    if strategy == Strategy::Static {
        return Ok(None);
    }
    let c = &config.cluster;
    let cluster_config = ClusterConfig {
        node_id: config.server.node_id,
        cluster_id: c.cluster_id.clone(),
        gossip_listen: c.gossip_listen.parse().map_err(|_| anyhow::anyhow!("cluster.gossip_listen"))?,
        gossip_advertise: gossip_advertise(config).map_err(anyhow::Error::msg)?,
        gossip_interval: Duration::from_millis(c.gossip_interval_ms),
        dead_node_grace: DEAD_NODE_GRACE,
        strategy,
        keyring,
    };
    let meta =
        NodeMeta { api_addr: advertise.api.clone(), raft_addr: advertise.raft.clone(), version: crate::VERSION.into() };
    Ok(Some(Cluster::start(cluster_config, meta).await?))
}

/// Starts the membership loops of this node.
pub fn spawn(gw: &Arc<Gateway>) {
    tokio::spawn(keep_settings(gw.clone()));
    let Some(cluster) = gw.cluster.clone() else {
        return;
    };
    tokio::spawn(publish(gw.clone(), cluster.clone()));
    tokio::spawn(found_when_ready(gw.clone(), cluster.clone()));
    tokio::spawn(autopilot_loop(gw.clone(), cluster));
}

/// Publishes this node's readiness, raft state and health digest into gossip.
async fn publish(gw: Arc<Gateway>, cluster: Cluster) {
    let mut last_health = Instant::now() - HEALTH_PERIOD;
    loop {
        cluster.set_ready(gw.is_ready()).await;
        let state = if gw.replica.raft().is_pristine() { RaftState::Pristine } else { RaftState::Member };
        cluster.set_raft_state(state).await;
        if last_health.elapsed() >= HEALTH_PERIOD {
            cluster.set_health(&health_digest(&gw)).await;
            last_health = Instant::now();
        }
        tokio::time::sleep(TICK).await;
    }
}

fn health_digest(gw: &Gateway) -> HealthDigest {
    let (in_flight, agents_failing) = gw.stats.load();
    let raft = gw.replica.status();
    HealthDigest {
        in_flight,
        tasks: gw.replica.read(|t| t.task_count() as u64),
        applied_index: raft.applied_index,
        agents_failing,
        breakers_open: gw.stats.breakers_open(),
        role: raft.role.as_str().to_owned(),
        term: raft.term,
        committed_index: raft.committed_index,
    }
}

/// While this node is pristine: publishes the pristine nodes it sees, and founds the cluster
/// when the bootstrap rule says so.
async fn found_when_ready(gw: Arc<Gateway>, cluster: Cluster) {
    let c = &gw.config.cluster;
    let expect = c.bootstrap_expect as usize;
    let voters_max = gw.config.raft.voters_max as usize;
    let me = gw.config.server.node_id;
    let mut members = cluster.watch();
    let mut last_why = String::new();
    loop {
        let pristine = gw.replica.raft().is_pristine();
        let seen = members.borrow_and_update().clone();
        match bootstrap::decide(me, expect, voters_max, pristine, &seen, &c.cluster_id) {
            bootstrap::Step::Member => break,
            bootstrap::Step::Wait { view, why } => {
                if why != last_why {
                    tracing::info!(node_id = me, %why, "waiting to form or join a cluster");
                    last_why = why;
                }
                cluster.set_bootstrap_view(Some(&view)).await;
            }
            bootstrap::Step::Found { voters } => {
                if found(&gw, &cluster, &seen, &voters).await {
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(TICK, members.changed()).await;
    }
    cluster.set_bootstrap_view(None).await;
}

/// Founds the cluster: announce membership first (so no later view counts this node as
/// pristine), then initialize raft with the agreed voters.
async fn found(gw: &Gateway, cluster: &Cluster, seen: &[superx_cluster::Member], voters: &[u64]) -> bool {
    cluster.set_bootstrap_view(None).await;
    cluster.set_raft_state(RaftState::Member).await;
    let founders = voters
        .iter()
        .filter_map(|id| seen.iter().find(|m| m.node_id == *id))
        .map(|m| (m.node_id, PeerAddr { raft: m.raft_addr.clone(), api: m.api_addr.clone() }))
        .collect();
    match gw.replica.raft().initialize(&founders).await {
        Ok(()) | Err(MembershipError::AlreadyInitialized) => {
            tracing::info!(voters = ?voters, "founded a new cluster");
            true
        }
        Err(error) => {
            tracing::error!(%error, "could not found the cluster; will retry");
            false
        }
    }
}

/// Every node keeps the timers; the leader acts on the autopilot's decisions, one at a time.
async fn autopilot_loop(gw: Arc<Gateway>, cluster: Cluster) {
    let raft = gw.replica.raft().clone();
    let rules = autopilot::Rules {
        voters_max: gw.config.raft.voters_max as usize,
        stabilization: Duration::from_millis(gw.config.cluster.stabilization_ms),
        dead_voter_timeout: Duration::from_millis(gw.config.cluster.dead_voter_timeout_ms),
        promote_lag_entries_max: superx_raft::RaftConfig::default().promote_lag_entries_max,
        cluster_id: gw.config.cluster.cluster_id.clone(),
    };
    let me = gw.config.server.node_id;
    let mut timers = autopilot::Timers::default();
    loop {
        let view = raft.membership();
        let members = cluster.members();
        let now = Instant::now();
        timers.observe(&view, &members, &rules, now);
        // A leader cut off from its majority cannot commit a change; deciding there would only
        // queue removals of the nodes it cannot reach.
        if !gw.replica.is_ready() {
            tokio::time::sleep(TICK).await;
            continue;
        }
        if let Some(action) = autopilot::decide(me, &view, &members, &timers, &rules, now) {
            execute(&gw, action).await;
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn execute(gw: &Gateway, action: autopilot::Action) {
    use autopilot::Action;
    let raft = gw.replica.raft();
    tracing::info!(?action, "membership change");
    let result = match &action {
        Action::AddLearner { id, addr } => raft.add_learner(*id, addr).await,
        Action::SetAddresses(moved) => raft.set_addresses(moved).await,
        Action::SetVoters { voters, keep_removed, .. } => raft.set_voters(voters, *keep_removed).await,
        Action::RemoveLearners { ids, .. } => raft.remove_learners(ids).await,
    };
    match result {
        Ok(()) => tracing::info!(?action, "membership change committed"),
        Err(error) => tracing::warn!(?action, %error, "membership change not made; will decide again"),
    }
}

/// The leader puts this node's apply-affecting settings into the log when they differ from the
/// cluster's, so every node applies the same ones (a rolling config change converges once
/// every node runs the new value).
async fn keep_settings(gw: Arc<Gateway>) {
    let wanted = SettingsV2 { tasks_max: gw.config.tasks.memory_max as u64, archive: gw.config.archive.enabled() };
    let mut warned = false;
    loop {
        tokio::time::sleep(TICK).await;
        let applied = gw.replica.settings();
        if applied == Some(wanted) {
            continue;
        }
        if !gw.replica.raft().membership().is_leader {
            if !warned && applied.is_some() {
                tracing::warn!(here = ?wanted, cluster = ?applied, "this node's task settings (tasks.memory_max, archive) differ from the cluster's; the cluster's apply");
                warned = true;
            }
            continue;
        }
        match gw.replica.propose_settings(wanted).await {
            Ok(()) => tracing::info!(settings = ?wanted, previous = ?applied, "cluster settings set"),
            Err(ProposeError::Unavailable(_)) => {}
            Err(error) => tracing::warn!(%error, "could not set the cluster settings"),
        }
    }
}
