//! The control plane on `/rpc`: `agents/list`, `agents/get`, `agents/upsert`,
//! `agents/delete`, `agents/health`, `agents/refreshCard` (and SuperX's dotted names).
//!
//! Agents are shown without their credentials: whether a bearer is set, whether the client's
//! credentials are forwarded, and an OAuth2 client without its secret (only where the secret
//! is read from when it is a reference).

use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use super::{Call, RpcError};
use crate::agents::spec::AgentSpec;
use crate::agents::{AgentCounters, Limits};
use crate::gateway::Gateway;
use crate::state::{AgentEntry, ClientAuth, Command, OAuth2Client, RateLimit, SecretSource};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdParams {
    #[serde(alias = "agentId")]
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HealthParams {
    #[serde(default, alias = "agentId")]
    id: Option<String>,
}

pub struct UpsertParams(AgentSpec);

impl UpsertParams {
    /// `{agent: {id, url, ...}}` (SuperX) or the agent itself as params.
    pub fn parse(params: Value) -> Result<Self, RpcError> {
        let agent = match params {
            Value::Object(mut p) if p.contains_key("agent") => p.remove("agent").unwrap_or(Value::Null),
            other => other,
        };
        let mut spec: AgentSpec =
            serde_json::from_value(agent).map_err(|e| RpcError::InvalidParams(format!("invalid agent: {e}")))?;
        spec.source = "api".into();
        spec.validate().map_err(RpcError::InvalidParams)?;
        Ok(UpsertParams(spec))
    }
}

/// An agent as the control plane shows it.
pub(crate) fn agent_view(gw: &Gateway, call_base: &str, e: &AgentEntry, rate: Option<RateLimit>) -> Value {
    let r = &e.record;
    let s = &r.settings;
    let d = &gw.config.agents;
    json!({
        "id": r.id,
        "url": r.url,
        "hasBearer": r.bearer.is_some(),
        "forwardCredentials": e.auth.forward_credentials,
        "oauth2": e.auth.oauth2.as_ref().map(oauth2_view),
        "protocolVersion": r.protocol_version,
        "metadata": r.metadata.as_ref().map(|m| m.0.clone()),
        "source": r.source,
        "settings": {
            "maxInFlight": s.max_in_flight.unwrap_or(d.max_in_flight),
            "failureThreshold": s.failure_threshold.unwrap_or(d.failure_threshold),
            "failureWindowMs": s.failure_window_ms.unwrap_or(d.failure_window_ms),
            "cooldownMs": s.cooldown_ms.unwrap_or(d.cooldown_ms),
            "callTimeoutMs": s.call_timeout_ms.unwrap_or(d.call_timeout_ms),
        },
        "upstream": {
            "url": e.upstream.url,
            "protocolVersion": e.upstream.version.header_value(),
            "protocolBinding": e.upstream.binding.map(|b| b.card_value()),
        },
        "rateLimit": rate.as_ref().map(crate::state::limits::view),
        "card": e.card.as_ref().map(|c| json!({
            "name": c.card.0["name"],
            "sourceUrl": c.source_url,
            "fetchedAt": crate::gateway::rfc3339_ms(c.fetched_at_ms),
        })),
        "cardUrl": format!("{call_base}/agents/{}/.well-known/agent-card.json", r.id),
        "a2aUrl": format!("{call_base}/agents/{}", r.id),
    })
}

/// An agent's OAuth2 client as shown: never its secret.
fn oauth2_view(c: &OAuth2Client) -> Value {
    let secret = match &c.client_secret {
        SecretSource::Value(_) => json!({"from": "value"}),
        SecretSource::Env(name) => json!({"from": "env", "name": name}),
        SecretSource::File(path) => json!({"from": "file", "path": path}),
    };
    json!({
        "tokenUrl": c.token_url,
        "clientId": c.client_id,
        "clientSecret": secret,
        "scopes": c.scopes,
        "audience": c.audience,
        "clientAuth": match c.client_auth {
            ClientAuth::Basic => "basic",
            ClientAuth::Post => "post",
        },
    })
}

pub fn list(gw: &Gateway, call: &Call) -> Value {
    gw.replica.read(|t| t.agents().map(|e| agent_view(gw, &call.base_url, e, t.agent_rate(&e.record.id))).collect())
}

pub fn get(gw: &Gateway, call: &Call, p: IdParams) -> Result<Value, RpcError> {
    gw.replica
        .read(|t| t.agent(&p.id).map(|e| agent_view(gw, &call.base_url, e, t.agent_rate(&p.id))))
        .ok_or(RpcError::AgentNotFound(p.id))
}

/// The agent's URLs through the SSRF guard (`agents.allow_cidrs`), before anything is
/// stored: a literal refused address, or a name resolving only to refused ones, is invalid.
async fn screen(gw: &Gateway, spec: &AgentSpec) -> Result<(), RpcError> {
    for url in spec.urls() {
        let screened = gw.client.guard().screen(&url).await;
        screened.map_err(|why| RpcError::InvalidParams(format!("agent {}: url {url:?}: {why}", spec.id)))?;
    }
    Ok(())
}

pub async fn upsert(gw: &Gateway, call: &Call, p: UpsertParams) -> Result<Value, RpcError> {
    screen(gw, &p.0).await?;
    let id = p.0.id.clone();
    // A new registration (maybe a new URL or card source) deserves a fresh card fetch.
    gw.card_misses.forget(&id);
    let card_error = gw.register(p.0).await?;
    let mut view = get(gw, call, IdParams { id })?;
    if let Some(error) = card_error {
        view["cardError"] = json!(error);
    }
    Ok(view)
}

pub async fn delete(gw: &Gateway, p: IdParams) -> Result<Value, RpcError> {
    gw.replica.propose(Command::DeleteAgent { id: p.id.clone() }).await?;
    // Its breaker and counters go with it (other nodes drop theirs when they next add one).
    gw.stats.forget(&p.id);
    gw.client.tokens.forget(&p.id);
    gw.card_misses.forget(&p.id);
    Ok(json!(true))
}

pub fn health(gw: &Gateway, p: HealthParams) -> Result<Value, RpcError> {
    let single = p.id.is_some();
    let ids: Vec<String> = match p.id {
        Some(id) => {
            if gw.replica.read(|t| t.agent(&id).is_none()) {
                return Err(RpcError::AgentNotFound(id));
            }
            vec![id]
        }
        None => gw.replica.read(|t| t.agents().map(|e| e.record.id.clone()).collect()),
    };
    let node = gw.replica.status().node_id;
    let reports: Vec<Value> = ids.iter().filter_map(|id| health_report(gw, id, node)).collect();
    Ok(if single { reports.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(reports) })
}

/// One agent's health on this node: its breaker, in-flight calls and recent outcomes. An
/// agent never called here shows a closed breaker and zeros.
fn health_report(gw: &Gateway, id: &str, node: u64) -> Option<Value> {
    let (limits, card) = gw
        .replica
        .read(|t| t.agent(id).map(|e| (Limits::of(&gw.config.agents, &e.record.settings), e.card.is_some())))?;
    let counters = gw.stats.find(id).unwrap_or_else(|| std::sync::Arc::new(AgentCounters::new(id)));
    let last = counters.last();
    Some(json!({
        "agentId": id,
        "node": node,
        "breakerState": counters.breaker_state().name(),
        "inFlight": counters.in_flight.load(Ordering::Relaxed),
        "maxInFlight": limits.max_in_flight,
        "recentFailures": counters.recent_failures(&limits),
        "failureThreshold": limits.failure_threshold,
        "callsTotal": counters.calls_total.load(Ordering::Relaxed),
        "failuresTotal": counters.failures_total.load(Ordering::Relaxed),
        "lastSuccessAt": last.success_at_ms.map(crate::gateway::rfc3339_ms),
        "lastFailureAt": last.failure_at_ms.map(crate::gateway::rfc3339_ms),
        "lastError": last.error,
        "cardCached": card,
    }))
}

pub async fn refresh_card(gw: &Gateway, call: &Call, p: IdParams) -> Result<Value, RpcError> {
    gw.refresh_card(&p.id).await?;
    get(gw, call, p)
}
