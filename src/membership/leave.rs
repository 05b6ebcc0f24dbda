//! Leaving the cluster on purpose: `superx leave` asks a node (`cluster/leave`); the node
//! announces it in gossip, waits until the leader's autopilot has removed it from the raft
//! membership, answers, and stops. A SIGTERM alone is a restart, not a leave: the node stays a
//! member and is replaced only if it stays dead past `cluster.dead_voter_timeout_ms`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;

/// How long a node waits for the leader to remove it. Removal takes one gossip spread and one
/// membership change (two commits): well under a second on a healthy cluster.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between checks that the removal happened.
const CHECK_PERIOD: Duration = Duration::from_millis(200);

/// Timeout of one status call to the leader while checking.
const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// `cluster/leave` on this node: answers once the node is out of the membership, then stops it.
pub async fn leave(gw: &Gateway) -> Result<Value, RpcError> {
    let Some(cluster) = &gw.cluster else {
        return Err(RpcError::UnsupportedOperation(
            "leave needs a discovery strategy (gossip, dns or kubernetes); with static raft.peers, change the peer list"
                .into(),
        ));
    };
    let me = gw.config.server.node_id;
    tracing::info!(node_id = me, "leaving the cluster on request");
    cluster.leave().await;
    let deadline = Instant::now() + LEAVE_TIMEOUT;
    while Instant::now() < deadline {
        if removed(gw, me).await {
            tracing::info!(node_id = me, "left the cluster; stopping");
            gw.request_stop();
            return Ok(json!({"left": true, "nodeId": me}));
        }
        tokio::time::sleep(CHECK_PERIOD).await;
    }
    Err(RpcError::Unavailable(format!(
        "node {me} announced it leaves but was not removed within {}s (is there a leader?); retry",
        LEAVE_TIMEOUT.as_secs()
    )))
}

/// True when this node is no longer a member: in its own view once it got the change, else
/// as the leader reports it (a removed node may never hear of its removal).
async fn removed(gw: &Gateway, me: u64) -> bool {
    let view = gw.replica.raft().membership();
    let member = |voters: &[u64], learners: &[u64]| voters.contains(&me) || learners.contains(&me);
    if view.initialized
        && !member(&view.voters.iter().copied().collect::<Vec<_>>(), &view.learners.iter().copied().collect::<Vec<_>>())
    {
        return true;
    }
    let Some(api) = gw.replica.status().leader_api.filter(|_| view.leader != Some(me)) else {
        return false;
    };
    match leader_status(&api).await {
        Some(status) => {
            let ids = |key: &str| -> Vec<u64> {
                status[key].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
            };
            status["role"] == "leader" && !member(&ids("voters"), &ids("learners"))
        }
        None => false,
    }
}

async fn leader_status(api: &str) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "cluster/status"});
    let client = reqwest::Client::builder().no_proxy().timeout(STATUS_CALL_TIMEOUT).build().ok()?;
    let reply: Value = client
        .post(format!("http://{api}/rpc"))
        .header("SuperX-Read", "local")
        .json(&body)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    reply.get("result").cloned()
}

/// `superx leave --url URL`: asks the node and reports its answer.
pub async fn request(url: &str) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(LEAVE_TIMEOUT + Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "cluster/leave"});
    let url = format!("{}/rpc", url.trim_end_matches('/'));
    let reply: Value = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("unreadable answer from {url}: {e}"))?;
    if let Some(error) = reply.get("error") {
        return Err(error["message"].as_str().unwrap_or("the node refused").to_owned());
    }
    let id = &reply["result"]["nodeId"];
    Ok(format!("node {id} left the cluster and is stopping"))
}
