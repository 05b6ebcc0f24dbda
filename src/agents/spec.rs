//! How operators describe agents: the agents YAML file (SuperX's map form, or a list), the
//! `A2A_REMOTE_URL` variable, and `agents/upsert` params all parse into an [`AgentSpec`].

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::codec::Json;
use crate::state::limits::RateLimitSpec;
use crate::state::{AgentAuth, AgentRecord, AgentSettings, ClientAuth, OAuth2Client, RateLimit, SecretSource};

/// One agent as an operator writes it (camelCase keys, as in SuperX). Its `Debug` shows no
/// credential.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    #[serde(default)]
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub bearer: Option<String>,
    /// Send the client's own `Authorization` and `X-API-Key` to this agent (and no other)
    /// in place of a bearer.
    #[serde(default)]
    pub forward_credentials: bool,
    /// Get the agent's bearer tokens with the OAuth2 client credentials grant.
    #[serde(default)]
    pub oauth2: Option<OAuth2Spec>,
    /// Only `a2a` is served.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub failure_window_ms: Option<u64>,
    #[serde(default)]
    pub cooldown_ms: Option<u64>,
    #[serde(default, alias = "timeoutMs")]
    pub call_timeout_ms: Option<u64>,
    /// Requests per second the agent may be sent, cluster-wide (`{requestsPerSecond,
    /// burst}`); none: `limits.agent_rate`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(skip)]
    pub source: String,
}

/// `oauth2:` of an agent: the token endpoint and the client the gateway is there. The secret
/// is given as a value, or (better: it stays out of the log) as the name of an environment
/// variable or the path of a file on every node.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Spec {
    pub token_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// `basic` (HTTP Basic, the default) or `post` (in the form body).
    #[serde(default)]
    pub client_auth: Option<String>,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("forward_credentials", &self.forward_credentials)
            .field("oauth2", &self.oauth2.as_ref().map(|o| (&o.token_url, &o.client_id, "<secret redacted>")))
            .field("metadata", &self.metadata)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl OAuth2Spec {
    fn validate(&self, id: &str) -> Result<(), String> {
        if !is_http_url(&self.token_url) {
            return Err(format!("agent {id}: oauth2.tokenUrl must be an http(s) URL"));
        }
        if self.client_id.is_empty() {
            return Err(format!("agent {id}: oauth2.clientId is required"));
        }
        let sources = [&self.client_secret, &self.client_secret_env, &self.client_secret_file]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if sources != 1 {
            return Err(format!(
                "agent {id}: oauth2 needs exactly one of clientSecret, clientSecretEnv, clientSecretFile"
            ));
        }
        if !matches!(self.client_auth.as_deref(), None | Some("basic" | "post")) {
            return Err(format!("agent {id}: oauth2.clientAuth must be basic or post"));
        }
        Ok(())
    }

    fn into_client(self) -> OAuth2Client {
        let client_secret = match (self.client_secret, self.client_secret_env, self.client_secret_file) {
            (Some(v), _, _) => SecretSource::Value(v),
            (_, Some(name), _) => SecretSource::Env(name),
            (_, _, Some(path)) => SecretSource::File(path),
            (None, None, None) => SecretSource::Value(String::new()),
        };
        OAuth2Client {
            token_url: self.token_url,
            client_id: self.client_id,
            client_secret,
            scopes: self.scopes,
            audience: self.audience.filter(|a| !a.is_empty()),
            client_auth: match self.client_auth.as_deref() {
                Some("post") => ClientAuth::Post,
                _ => ClientAuth::Basic,
            },
        }
    }
}

impl AgentSpec {
    pub fn from_env(url: &str, bearer: Option<String>) -> Self {
        AgentSpec {
            id: "default".into(),
            url: url.into(),
            bearer: bearer.filter(|b| !b.is_empty()),
            forward_credentials: false,
            oauth2: None,
            protocol: None,
            protocol_version: None,
            metadata: Some(serde_json::json!({"source": "environment"})),
            max_in_flight: None,
            failure_threshold: None,
            failure_window_ms: None,
            cooldown_ms: None,
            call_timeout_ms: None,
            rate_limit: None,
            source: "env".into(),
        }
    }

    /// Checks what a parse cannot: the id's charset, the URL's scheme, positive knobs.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(format!("agent id {:?} must be 1-64 characters of A-Z a-z 0-9 . _ -", self.id));
        }
        if !is_http_url(&self.url) {
            return Err(format!("agent {}: url {:?} must be an http(s) URL", self.id, self.url));
        }
        self.validate_card_metadata()?;
        self.validate_credentials()?;
        if let Some(p) = self.protocol.as_deref().filter(|p| *p != "a2a") {
            return Err(format!("agent {}: protocol {p:?} is not supported (only a2a)", self.id));
        }
        let zero = [self.max_in_flight.map(u64::from), self.failure_threshold.map(u64::from), self.call_timeout_ms]
            .contains(&Some(0));
        if zero {
            return Err(format!("agent {}: maxInFlight, failureThreshold and callTimeoutMs must be > 0", self.id));
        }
        self.rate()?;
        Ok(())
    }

    /// At most one way to authenticate to the agent.
    fn validate_credentials(&self) -> Result<(), String> {
        let bearer = self.bearer.as_ref().is_some_and(|b| !b.is_empty());
        if [bearer, self.forward_credentials, self.oauth2.is_some()].iter().filter(|m| **m).count() > 1 {
            return Err(format!("agent {}: give at most one of bearer, forwardCredentials, oauth2", self.id));
        }
        self.oauth2.as_ref().map_or(Ok(()), |o| o.validate(&self.id))
    }

    /// Checks the card members of `metadata` (see [`card_source`]).
    fn validate_card_metadata(&self) -> Result<(), String> {
        let metadata = self.metadata.as_ref();
        if metadata.and_then(|m| m.get("agentCard")).is_some_and(|c| !c.is_object()) {
            return Err(format!("agent {}: metadata.agentCard must be an object", self.id));
        }
        match card_source(metadata) {
            CardSource::Url(url) if !is_http_url(&url) => {
                Err(format!("agent {}: card url {url:?} must be an http(s) URL", self.id))
            }
            _ => Ok(()),
        }
    }

    /// The agent as stored: its record, and how the gateway authenticates to it.
    pub fn into_parts(mut self) -> (AgentRecord, AgentAuth) {
        let auth = AgentAuth {
            forward_credentials: self.forward_credentials,
            oauth2: self.oauth2.take().map(OAuth2Spec::into_client),
        };
        (self.into_record(), auth)
    }

    /// The URLs the gateway will connect to for this agent before it has a card: its URL and
    /// the card URL override (the interfaces a card names are checked when called).
    pub fn urls(&self) -> Vec<String> {
        let card = match card_source(self.metadata.as_ref()) {
            CardSource::Url(url) => Some(url),
            _ => None,
        };
        std::iter::once(self.url.clone()).chain(card).collect()
    }

    /// The agent's own rate limit, stored apart from its record (`state::LimitCommand`).
    pub fn rate(&self) -> Result<Option<RateLimit>, String> {
        let rate = self.rate_limit.map(RateLimitSpec::to_stored).transpose();
        rate.map_err(|e| format!("agent {}: rateLimit: {e}", self.id))
    }

    pub fn into_record(self) -> AgentRecord {
        AgentRecord {
            id: self.id,
            url: self.url,
            bearer: self.bearer.filter(|b| !b.is_empty()),
            protocol_version: self.protocol_version,
            metadata: self.metadata.map(Json),
            settings: AgentSettings {
                max_in_flight: self.max_in_flight,
                failure_threshold: self.failure_threshold,
                failure_window_ms: self.failure_window_ms,
                cooldown_ms: self.cooldown_ms,
                call_timeout_ms: self.call_timeout_ms,
            },
            source: self.source,
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) && reqwest::Url::parse(url).is_ok()
}

/// Where an agent's card comes from, from SuperX's formats in the agent's `metadata`
/// (superx-reference.md section 5.3).
#[derive(Clone, Debug, PartialEq)]
pub enum CardSource {
    /// `metadata.agentCard` with a non-empty `name`: the card itself (the operator's); it is
    /// served (filled and rewritten) and never fetched.
    Inline(Value),
    /// A card URL that overrides the default location: `metadata.agentCard.url` of an
    /// `agentCard` without a name (SuperX), or `metadata.cardUrl` / `metadata.card_url`
    /// (SuperX 1.0's `refreshCard`).
    Url(String),
    /// The default: `{url}/.well-known/agent-card.json`, then the pre-0.3 `agent.json`.
    WellKnown,
}

/// Reads an agent's card source from its `metadata`.
pub fn card_source(metadata: Option<&Value>) -> CardSource {
    let Some(metadata) = metadata else { return CardSource::WellKnown };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned);
    let inline = metadata.get("agentCard").filter(|c| c.is_object());
    if let Some(card) = inline.filter(|c| text(c.get("name")).is_some()) {
        return CardSource::Inline(card.clone());
    }
    let url = text(inline.and_then(|c| c.get("url")))
        .or_else(|| text(metadata.get("cardUrl")))
        .or_else(|| text(metadata.get("card_url")));
    url.map_or(CardSource::WellKnown, CardSource::Url)
}

/// Parses an agents YAML file: `agents: {id: {url, ...}}` (SuperX) or `agents: [{id, url, ...}]`.
/// Returns every problem found.
pub fn load_agents_file(path: &Path) -> Result<Vec<AgentSpec>, Vec<String>> {
    let where_ = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("agents file {where_}: {e}")])?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| vec![format!("agents file {where_}: {e}")])?;
    let entries: Vec<(Option<String>, serde_yaml::Value)> = match doc.get("agents") {
        Some(serde_yaml::Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| (k.as_str().map(str::to_owned).or_else(|| Some(format!("{k:?}"))), v.clone()))
            .collect(),
        Some(serde_yaml::Value::Sequence(items)) => items.iter().map(|v| (None, v.clone())).collect(),
        Some(serde_yaml::Value::Null) => vec![],
        _ => {
            return Err(vec![format!("agents file {where_}: expected a top-level `agents:` map or list")]);
        }
    };
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for (i, (key, value)) in entries.into_iter().enumerate() {
        let label = key.clone().unwrap_or_else(|| format!("#{i}"));
        match serde_yaml::from_value::<AgentSpec>(value) {
            Ok(mut spec) => {
                if let Some(key) = key {
                    if !spec.id.is_empty() && spec.id != key {
                        errors.push(format!(
                            "agents file {where_}: agent {label}: id {:?} differs from its key",
                            spec.id
                        ));
                    }
                    spec.id = key;
                }
                spec.source = "file".into();
                match spec.validate() {
                    Ok(()) => specs.push(spec),
                    Err(e) => errors.push(format!("agents file {where_}: {e}")),
                }
            }
            Err(e) => errors.push(format!("agents file {where_}: agent {label}: {e}")),
        }
    }
    if errors.is_empty() { Ok(specs) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &str) -> Result<Vec<AgentSpec>, Vec<String>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        load_agents_file(f.path())
    }

    #[test]
    fn superx_map_form() {
        let specs = load(
            "agents:\n  check_prime_agent:\n    url: http://localhost:8001/a2a/check_prime_agent\n    bearer: \"\"\n    protocol: a2a\n    protocolVersion: 0.3.0\n    metadata:\n      agentCard: {name: x}\n",
        )
        .unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].id, "check_prime_agent");
        let record = specs[0].clone().into_record();
        assert_eq!(record.bearer, None, "an empty bearer means none");
        assert_eq!(record.source, "file");
    }

    #[test]
    fn list_form_with_knobs() {
        let specs =
            load("agents:\n  - id: a\n    url: https://a.example/\n    cooldownMs: 5\n  - id: b\n    url: http://b/\n")
                .unwrap();
        assert_eq!(specs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(specs[0].cooldown_ms, Some(5));
    }

    #[test]
    fn rate_limits() {
        let specs =
            load("agents:\n  a:\n    url: http://a/\n    rateLimit: {requestsPerSecond: 2.5, burst: 5}\n").unwrap();
        assert_eq!(specs[0].rate().unwrap(), Some(RateLimit { milli_per_second: 2500, burst: 5 }));
        let bad = load(
            "agents:\n  a:\n    url: http://a/\n    rateLimit: {requestsPerSecond: 0}\n  b:\n    url: http://b/\n    rateLimit: {rps: 1}\n",
        );
        let errors = bad.unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("rateLimit: requestsPerSecond must be above 0"), "{errors:?}");
    }

    #[test]
    fn card_sources() {
        use serde_json::json;
        let src = |m: Value| card_source(Some(&m));
        assert_eq!(card_source(None), CardSource::WellKnown);
        assert_eq!(src(json!({"source": "x"})), CardSource::WellKnown);
        let card = json!({"name": "N", "url": "http://a/rpc"});
        assert_eq!(src(json!({"agentCard": card})), CardSource::Inline(card));
        assert_eq!(
            src(json!({"agentCard": {"url": "http://c/card.json"}})),
            CardSource::Url("http://c/card.json".into())
        );
        assert_eq!(src(json!({"cardUrl": "http://c/x"})), CardSource::Url("http://c/x".into()));
        assert_eq!(src(json!({"card_url": "http://c/y"})), CardSource::Url("http://c/y".into()));
        let bad = load(
            "agents:\n  a:\n    url: http://x/\n    metadata: {agentCard: {url: ftp://c}}\n  b:\n    url: http://x/\n    metadata: {agentCard: 5}\n",
        );
        assert_eq!(bad.unwrap_err().len(), 2);
    }

    #[test]
    fn credentials_toward_agents() {
        let specs = load(
            "agents:\n  f:\n    url: http://f/\n    forwardCredentials: true\n  o:\n    url: http://o/\n    oauth2:\n      tokenUrl: http://idp/token\n      clientId: gw\n      clientSecretEnv: O_SECRET\n      scopes: [a, b]\n      audience: https://o\n      clientAuth: post\n",
        )
        .unwrap();
        let (_, f) = specs[0].clone().into_parts();
        assert!(f.forward_credentials && f.oauth2.is_none());
        let (record, o) = specs[1].clone().into_parts();
        assert_eq!(record.bearer, None);
        let client = o.oauth2.unwrap();
        assert_eq!(client.client_secret, SecretSource::Env("O_SECRET".into()));
        assert_eq!((client.scopes.len(), client.client_auth), (2, ClientAuth::Post));
        let errors = load(
            "agents:\n  two:\n    url: http://x/\n    bearer: b\n    forwardCredentials: true\n  nosecret:\n    url: http://x/\n    oauth2: {tokenUrl: http://idp/t, clientId: c}\n  twosecrets:\n    url: http://x/\n    oauth2: {tokenUrl: http://idp/t, clientId: c, clientSecret: s, clientSecretFile: /f}\n  badurl:\n    url: http://x/\n    oauth2: {tokenUrl: ftp://idp/t, clientId: c, clientSecret: s}\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        let shown = format!("{:?}", load("agents:\n  s:\n    url: http://x/\n    bearer: b3arer-value\n").unwrap());
        assert!(!shown.contains("b3arer-value"), "{shown}");
    }

    #[test]
    fn every_bad_agent_is_reported() {
        let errors = load("agents:\n  bad id:\n    url: http://x/\n  noscheme:\n    url: x.example\n  typo:\n    url: http://x/\n    bearr: y\n  mcp:\n    url: http://x/\n    protocol: mcp\n").unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(load("nothing: here\n").is_err());
        assert!(load("agents: [").is_err());
    }
}
