//! How a push-capable agent's updates reach the gateway: the gateway's own webhook.
//!
//! When this node follows a task (`follow`) of an agent whose card says
//! `capabilities.pushNotifications`, it registers `<base>/push/inbound/<agent>/<task>` with
//! the agent (CreateTaskPushNotificationConfig, 0.3 `tasks/pushNotificationConfig/set`, on
//! the agent's binding), with a token only this cluster can make: HMAC-SHA256 of the agent
//! and task ids under the cluster's committed signing key (`state::push::SigningKey`), so any
//! node verifies a delivery without extra state. `<base>` is `server.public_url`, else this
//! node's API address: somewhere the agent reaches the cluster.
//!
//! A delivery (`POST /push/inbound/{agent}/{task}` on any node, [`receive`]) is verified
//! first (401 and nothing changes without the right token), read as the agent's answers and
//! stream events are (`a2a::push::agent_push_to_v10`, `agents::classify`), checked against
//! the URL (the body's task is the URL's, and that task belongs to that agent), and
//! committed: a task snapshot with `RecordTask` (as the poll does), which makes no event when
//! the task already is that snapshot; a status or artifact update with `UpdateStatusOnce` /
//! `UpdateArtifactOnce` (on a follower the write goes to the leader like every write), which
//! apply judges against the task (`state::task::has_status`, `has_artifact`): an update the
//! task already has (seen first by the safety-net poll, or delivered twice, even to two nodes
//! at once) makes no event and is answered as a duplicate.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Target;
use super::send_message::record;
use crate::a2a::task::TaskView;
use crate::agents::{Answer, StreamItem, UpstreamMethod};
use crate::gateway::Gateway;
use crate::jsonrpc::RpcError;
use crate::state::{Command, ProposeError, PushCommand, ReadMode};

/// The path prefix of the gateway's own webhooks.
pub const PATH: &str = "/push/inbound";
/// The id of the gateway's config at the agent (one per task; registering again replaces it).
const CONFIG_ID: &str = "superx-gateway";
/// What the token MACs besides the ids, so it is never valid as another use of the key.
const TOKEN_LABEL: &[u8] = b"superx push inbound v1\n";

/// What became of one delivery; each is a value of `superx_push_inbound_total{outcome}`.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Committed as a task update.
    Committed,
    /// The task already had it: nothing committed.
    Duplicate,
    /// No token, or not this task's: nothing read.
    Unauthorized,
    /// Not a task, status update or artifact update of the URL's task.
    Invalid(String),
    /// The task is not in memory here (unknown, or archived).
    UnknownTask,
    /// The task belongs to another agent than the URL's.
    WrongAgent,
    /// The state machine refused the update (e.g. the task already ended otherwise).
    Refused(String),
    /// Could not commit now (no leader, overloaded): the agent should send it again.
    Unavailable(String),
}

impl Inbound {
    pub fn label(&self) -> &'static str {
        match self {
            Inbound::Committed => "committed",
            Inbound::Duplicate => "duplicate",
            Inbound::Unauthorized => "unauthorized",
            Inbound::Invalid(_) => "invalid",
            Inbound::UnknownTask => "unknown_task",
            Inbound::WrongAgent => "wrong_agent",
            Inbound::Refused(_) => "refused",
            Inbound::Unavailable(_) => "unavailable",
        }
    }
}

/// The token of the gateway's webhook for one task of one agent, hex. Agent ids cannot hold
/// a newline, so the MACed bytes name one (agent, task) pair only.
fn token(key: &[u8], agent_id: &str, task_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in [TOKEN_LABEL, agent_id.as_bytes(), b"\n", task_id.as_bytes()] {
        mac.update(part);
    }
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time that depends on the lengths only, never on where the bytes differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key the tokens are made with: the cluster's signing key, made and committed here if
/// no leader made it yet (the first one committed wins, so every node ends up with the same).
async fn cluster_key(gw: &Gateway) -> Option<Vec<u8>> {
    let read = || gw.replica.read(|t| t.push().signing_key().map(|k| k.pkcs8.clone()));
    if let Some(key) = read() {
        return Some(key);
    }
    match crate::push::sign::new_signing_key() {
        Ok(key) => {
            if let Err(error) = gw.replica.propose_push(PushCommand::SetSigningKey(key)).await {
                tracing::debug!(%error, "signing key not committed");
            }
        }
        Err(error) => tracing::error!(%error, "could not make a signing key"),
    }
    read()
}

/// Where agents reach the cluster: `server.public_url`, else this node's API address.
fn base_url(gw: &Gateway) -> String {
    match gw.config.server.public_url.trim_end_matches('/') {
        "" => {
            let scheme = if gw.config.server.tls_enabled() { "https" } else { "http" };
            format!("{scheme}://{}", gw.advertise.api)
        }
        public => public.to_owned(),
    }
}

/// Registers the gateway's webhook for a task with its push-capable agent; answers whether
/// the agent took it. Done when following starts, after the agent answered, rather than in
/// the forwarded SendMessage: the URL and token name the task, whose id the agent picks when
/// it answers a new task, and one path then serves new tasks and follow-ups alike. What
/// happens between the answer and the registration, the safety-net poll brings.
pub(super) async fn register(gw: &Gateway, call: &super::Call, target: &Target, task_id: &str) -> bool {
    let Some(key) = cluster_key(gw).await else { return false };
    let agent_id = &target.agent_id;
    let url = format!("{}{PATH}/{}/{}", base_url(gw), segment(agent_id), segment(task_id));
    let config = crate::a2a::push::gateway_webhook(task_id, CONFIG_ID, &url, &token(&key, agent_id, task_id));
    match gw.call_agent(&target.call_target(call), UpstreamMethod::CreatePushConfig, config).await {
        Ok(reply) if matches!(reply.answer, Answer::Config(_)) => {
            tracing::debug!(%agent_id, %task_id, "registered the gateway's webhook with the agent");
            true
        }
        Ok(_) => false,
        Err(error) => {
            tracing::info!(%agent_id, %task_id, %error, "the agent did not take the gateway's webhook; following it instead");
            false
        }
    }
}

/// A path segment: percent-encoded but for the characters ids are usually made of.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a delivery to `/push/inbound/{agent}/{task}` carries that task's token
/// (`X-A2A-Notification-Token`). Only a token from this cluster's key opens the rest;
/// without a key there is none. A refusal is counted here.
pub fn verify(gw: &Gateway, agent_id: &str, task_id: &str, token_given: Option<&[u8]>) -> bool {
    let key = gw.replica.read(|t| t.push().signing_key().map(|k| k.pkcs8.clone()));
    let valid =
        key.zip(token_given).is_some_and(|(key, given)| same_secret(token(&key, agent_id, task_id).as_bytes(), given));
    if !valid {
        count(&Inbound::Unauthorized);
        tracing::info!(%agent_id, %task_id, "webhook delivery without a valid token");
    }
    valid
}

/// Counts a delivery's outcome.
fn count(outcome: &Inbound) {
    metrics::counter!("superx_push_inbound_total", "outcome" => outcome.label()).increment(1);
}

/// One verified delivery: read, checked against the URL, committed.
pub async fn receive(gw: &Gateway, agent_id: &str, task_id: &str, body: &[u8]) -> Inbound {
    let outcome = receive_checked(gw, agent_id, task_id, body).await;
    count(&outcome);
    if !matches!(outcome, Inbound::Committed | Inbound::Duplicate) {
        tracing::info!(%agent_id, %task_id, outcome = ?outcome, "webhook delivery not committed");
    }
    outcome
}

async fn receive_checked(gw: &Gateway, agent_id: &str, task_id: &str, body: &[u8]) -> Inbound {
    let item = match read_body(body) {
        Ok(item) => item,
        Err(why) => return Inbound::Invalid(why),
    };
    let named = match &item {
        StreamItem::Task(task) => task.id.as_str(),
        StreamItem::Status(update) => update.task_id.as_str(),
        StreamItem::Artifact(update) => update.task_id.as_str(),
        StreamItem::Message(_) => return Inbound::Invalid("a message is not a task update".into()),
    };
    if named != task_id {
        return Inbound::Invalid(format!("the body is about task {named}, the URL about {task_id}"));
    }
    match owner(gw, task_id).await {
        Err(e) => return Inbound::Unavailable(e.to_string()),
        Ok(None) => return Inbound::UnknownTask,
        Ok(Some(owner)) if owner != agent_id => return Inbound::WrongAgent,
        Ok(Some(_)) => {}
    }
    commit(gw, agent_id, item).await
}

/// A webhook body as a typed event.
fn read_body(body: &[u8]) -> Result<StreamItem, String> {
    let value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let wrapped = crate::a2a::push::agent_push_to_v10(value).map_err(|e| e.0)?;
    crate::agents::classify(wrapped).map_err(|e| e.0)
}

/// The agent of a task in memory. A task this node has not applied yet (the delivery came
/// here before the task's record) is looked for again after a read barrier.
async fn owner(gw: &Gateway, task_id: &str) -> Result<Option<String>, ProposeError> {
    let look = || gw.replica.read(|t| t.task(task_id).map(|e| e.agent_id.clone()));
    if let Some(owner) = look() {
        return Ok(Some(owner));
    }
    gw.replica.barrier(ReadMode::Linearizable).await?;
    Ok(look())
}

/// Commits an event as the stream's commands would, unless the task already has it: the
/// `...Once` commands judge that in apply, so two nodes receiving the same delivery at once
/// commit it once (the second applies as nothing: `Ok(None)`).
async fn commit(gw: &Gateway, agent_id: &str, item: StreamItem) -> Inbound {
    let agent_id = agent_id.to_owned();
    let at_ms = gw.now_ms();
    let command = match item {
        StreamItem::Task(task) => return commit_snapshot(gw, &agent_id, task).await,
        StreamItem::Status(update) => Command::UpdateStatusOnce { agent_id, update, at_ms },
        StreamItem::Artifact(update) => Command::UpdateArtifactOnce { agent_id, update, at_ms },
        StreamItem::Message(_) => return Inbound::Invalid("a message is not a task update".into()),
    };
    match gw.replica.propose(command).await {
        Ok(Some(_)) => Inbound::Committed,
        Ok(None) => Inbound::Duplicate,
        Err(ProposeError::Refused(r)) => Inbound::Refused(r.to_string()),
        Err(e) => Inbound::Unavailable(e.to_string()),
    }
}

/// A task snapshot, recorded as the poll records one (no event when nothing changed).
async fn commit_snapshot(gw: &Gateway, agent_id: &str, task: crate::state::Task) -> Inbound {
    let before = gw.replica.read(|t| t.task(&task.id).map(|e| e.events));
    match record(gw, agent_id, task, TaskView::FULL).await {
        Ok((_, after)) if after == before => Inbound::Duplicate,
        Ok(_) => Inbound::Committed,
        Err(RpcError::Unavailable(m) | RpcError::Overloaded(m)) => Inbound::Unavailable(m),
        Err(e) => Inbound::Refused(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_one_agent_and_task() {
        let key = b"key";
        let t = token(key, "a", "t1");
        assert_eq!(t.len(), 64);
        assert_eq!(t, token(key, "a", "t1"));
        assert_ne!(t, token(key, "b", "t1"));
        assert_ne!(t, token(key, "a", "t2"));
        assert_ne!(t, token(b"other", "a", "t1"));
        assert!(same_secret(t.as_bytes(), token(key, "a", "t1").as_bytes()));
        assert!(!same_secret(t.as_bytes(), &t.as_bytes()[1..]));
    }

    #[test]
    fn ids_are_escaped_in_the_webhook_path() {
        assert_eq!(segment("task-1_a.b~"), "task-1_a.b~");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
