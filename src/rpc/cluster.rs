//! `cluster/status`: this node's raft view next to its gossip view, and the plain HTTP
//! operator views `GET /health` and `GET /cluster` (SuperX's shapes) built from the same
//! facts.

use serde_json::{Value, json};

use crate::gateway::Gateway;

/// The raft view (role, term, leader, voters, learners, indexes), the gossip view (every
/// member: id, addresses, liveness, readiness, version) and the cluster secret's fingerprint.
pub fn status(gw: &Gateway) -> Value {
    let mut status = serde_json::to_value(gw.replica.status()).expect("status serializes");
    status["strategy"] = json!(gw.config.cluster.strategy);
    status["discoveryError"] = json!(gw.cluster.as_ref().and_then(|c| c.discovery_error()));
    status["gossip"] = Value::Array(gossip_members(gw));
    // Which cluster secret this node holds (a keyed hash's first bytes, nothing of the secret
    // itself): nodes that show different ones cannot hear each other. Null: an open cluster.
    status["clusterSecret"] = json!(gw.keyring.as_ref().map(|k| k.fingerprint()));
    status
}

fn gossip_members(gw: &Gateway) -> Vec<Value> {
    let Some(cluster) = &gw.cluster else {
        return Vec::new();
    };
    cluster
        .members()
        .iter()
        .map(|m| {
            json!({
                "nodeId": m.node_id,
                "api": m.api_addr,
                "raft": m.raft_addr,
                "gossip": m.gossip_addr.to_string(),
                "live": m.live,
                "ready": m.ready,
                "left": m.left,
                "version": m.version,
                "raftState": m.raft_state,
                "generation": m.generation,
                "health": m.health,
            })
        })
        .collect()
}

/// Members of the raft cluster (voters and learners).
pub fn cluster_size(gw: &Gateway) -> usize {
    let s = gw.replica.status();
    (s.voters.len() + s.learners.len()).max(1)
}

/// `GET /cluster`: this node, the members and their load, as SuperX answered it.
pub fn overview(gw: &Gateway) -> Value {
    let raft = gw.replica.status();
    let role_of = |id: u64| {
        if raft.leader == Some(id) {
            "leader"
        } else if raft.voters.contains(&id) {
            "voter"
        } else if raft.learners.contains(&id) {
            "learner"
        } else {
            "none"
        }
    };
    let (in_flight, _) = gw.stats.load();
    let this = json!({
        "nodeId": raft.node_id,
        "api": gw.advertise.api,
        "role": raft.role,
        "load": {"inFlight": in_flight, "tasks": gw.replica.read(|t| t.task_count()), "breakersOpen": gw.stats.breakers_open()},
    });
    let nodes: Vec<Value> = match &gw.cluster {
        Some(cluster) => cluster
            .members()
            .iter()
            .map(|m| {
                let load = m.health.as_ref().map(|h| json!({"inFlight": h.in_flight, "tasks": h.tasks, "breakersOpen": h.breakers_open}));
                json!({"nodeId": m.node_id, "api": m.api_addr, "live": m.live, "role": role_of(m.node_id), "load": load})
            })
            .collect(),
        None => raft
            .voters
            .iter()
            .chain(&raft.learners)
            .map(|id| json!({"nodeId": id, "live": null, "role": role_of(*id), "load": null}))
            .collect(),
    };
    json!({"self": this, "nodes": nodes, "leader": raft.leader, "term": raft.term})
}
