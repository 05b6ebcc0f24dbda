//! The control plane's API keys on `/rpc`: `keys/create` (the key itself is in this answer and
//! nowhere else, ever), `keys/list` (ids, names, roles, scopes; never a hash), `keys/revoke`
//! (committed: refused on every node once applied there). Admin only, like all the control
//! plane (`http` checks before the method runs).
//!
//! The key is made here, by the proposer (randomness stays out of `apply`), and only its
//! SHA-256 goes into the log.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, RpcError};
use crate::auth::keys as wire;
use crate::gateway::Gateway;
use crate::state::keys::KEY_AGENTS_MAX;
use crate::state::limits::RateLimitSpec;
use crate::state::{ApiKey, KeyCommand, KeyRole, RateLimit};

/// Longest key name (a label for operators).
const NAME_CHARS_MAX: usize = 128;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateWire {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    rate_limit: Option<RateLimitSpec>,
}

pub struct CreateParams {
    name: String,
    role: KeyRole,
    agents: Vec<String>,
    /// The key's own rate limit (else `limits.credential_rate`).
    rate: Option<RateLimit>,
}

impl CreateParams {
    /// `{name?, role?: "client" | "admin", agents?: [agent ids], rateLimit?:
    /// {requestsPerSecond, burst?}}`; no agents: every agent.
    pub fn parse(params: Value) -> Result<Self, RpcError> {
        let w: CreateWire = super::typed(params)?;
        let role = match w.role.as_deref() {
            None | Some("client") => KeyRole::Client,
            Some("admin") => KeyRole::Admin,
            Some(other) => return Err(RpcError::InvalidParams(format!("role {other:?} must be client or admin"))),
        };
        if w.name.chars().count() > NAME_CHARS_MAX {
            return Err(RpcError::InvalidParams(format!("name is longer than {NAME_CHARS_MAX} characters")));
        }
        if w.agents.len() > KEY_AGENTS_MAX {
            return Err(RpcError::InvalidParams(format!("a key may name at most {KEY_AGENTS_MAX} agents")));
        }
        if w.agents.iter().any(String::is_empty) {
            return Err(RpcError::InvalidParams("agent ids must not be empty".into()));
        }
        if role == KeyRole::Admin && !w.agents.is_empty() {
            return Err(RpcError::InvalidParams("an admin key may call every agent; give no agents".into()));
        }
        let rate = w.rate_limit.map(RateLimitSpec::to_stored).transpose();
        let rate = rate.map_err(|e| RpcError::InvalidParams(format!("rateLimit: {e}")))?;
        Ok(CreateParams { name: w.name, role, agents: w.agents, rate })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeParams {
    #[serde(alias = "keyId")]
    id: String,
}

fn role_name(role: KeyRole) -> &'static str {
    match role {
        KeyRole::Client => "client",
        KeyRole::Admin => "admin",
    }
}

/// A key as the control plane shows it: never its secret or hash.
fn view(k: &ApiKey, rate: Option<RateLimit>) -> Value {
    let mut view = json!({
        "id": k.id,
        "name": k.name,
        "role": role_name(k.role),
        "agents": k.agents,
        "createdAtMs": k.created_at_ms,
    });
    if let Some(rate) = rate {
        view["rateLimit"] = crate::state::limits::view(&rate);
    }
    view
}

pub async fn create(gw: &Gateway, call: &Call, p: CreateParams) -> Result<Value, RpcError> {
    let new = wire::generate().map_err(|_| RpcError::Internal("the system random source failed".into()))?;
    let key = ApiKey {
        id: new.id,
        hash: wire::hash(&new.key),
        name: p.name,
        role: p.role,
        agents: p.agents,
        created_at_ms: gw.now_ms(),
    };
    let command = match p.rate {
        Some(rate) => KeyCommand::CreateWithRate { key: key.clone(), rate },
        None => KeyCommand::Create(key.clone()),
    };
    gw.replica.propose_keys(command).await?;
    tracing::info!(key_id = %key.id, role = role_name(key.role), by = %call.principal, "API key created");
    let mut answer = view(&key, p.rate);
    answer["key"] = json!(new.key);
    Ok(answer)
}

pub fn list(gw: &Gateway) -> Value {
    gw.replica.read(|t| t.keys().iter().map(|k| view(k, t.keys().rate(&k.id))).collect())
}

pub async fn revoke(gw: &Gateway, call: &Call, p: RevokeParams) -> Result<Value, RpcError> {
    if gw.replica.read(|t| t.keys().get(&p.id).is_none()) {
        return Err(RpcError::InvalidParams(format!("no API key {:?}", p.id)));
    }
    gw.replica.propose_keys(KeyCommand::Revoke { id: p.id.clone() }).await?;
    tracing::info!(key_id = %p.id, by = %call.principal, "API key revoked");
    Ok(json!(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_params() {
        assert!(CreateParams::parse(Value::Null).is_ok());
        let p = CreateParams::parse(json!({"name": "ci", "agents": ["echo"]})).unwrap();
        assert_eq!((p.role, p.agents.len()), (KeyRole::Client, 1));
        for bad in [
            json!({"role": "root"}),
            json!({"role": "admin", "agents": ["echo"]}),
            json!({"agents": [""]}),
            json!({"secret": "x"}),
            json!({"name": "n".repeat(NAME_CHARS_MAX + 1)}),
        ] {
            assert_eq!(CreateParams::parse(bad.clone()).err().map(|e| e.code()), Some(-32602), "{bad}");
        }
    }
}
