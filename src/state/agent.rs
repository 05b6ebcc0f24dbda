//! Stored agents: the registry entry an operator gives (url, bearer, per-agent knobs) and the
//! agent card the gateway fetched for it.

use crate::a2a::ProtocolVersion;
use crate::a2a::interface::{self, Binding, Offer};
use crate::codec::Json;

/// A registered remote A2A agent, as stored in the log and the tables. Its `Debug` never
/// shows the bearer.
#[derive(Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AgentRecord {
    /// `[A-Za-z0-9._-]{1,64}`: it appears in URLs (`/agents/{id}`).
    pub id: String,
    /// Base URL of the agent (http or https); its card lives under `/.well-known/`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` on every call to the agent. Never shown to clients.
    pub bearer: Option<String>,
    /// Pins the protocol version the gateway speaks to the agent when its card offers it;
    /// assumed when the agent publishes no usable card.
    pub protocol_version: Option<String>,
    /// Free-form operator metadata (SuperX's `metadata`), shown by `agents/get`.
    pub metadata: Option<Json>,
    pub settings: AgentSettings,
    /// Where the registration came from: `file`, `env` or `api`.
    pub source: String,
}

/// How the gateway authenticates to an agent besides its bearer, as stored in the log
/// (`Command::UpsertAgentWithAuth`) and the tables. Its `Debug` never shows a secret.
#[derive(Clone, Debug, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AgentAuth {
    /// The client's own `Authorization` and `X-API-Key` go to this agent, and to no other, on
    /// the calls the gateway makes for that client (in place of a bearer).
    pub forward_credentials: bool,
    /// Tokens from the OAuth2 client credentials grant, sent as the bearer.
    pub oauth2: Option<OAuth2Client>,
}

/// An OAuth2 client (RFC 6749 section 4.4, client credentials) the gateway gets the agent's
/// bearer tokens as. Stored type.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct OAuth2Client {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    pub scopes: Vec<String>,
    /// The `audience` parameter some servers need (Auth0, Okta custom servers).
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

/// Where a secret comes from. A reference (`Env`, `File`) is read on the node that uses it,
/// at use time, so the secret itself is never in the log or a snapshot. Stored type.
#[derive(Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub enum SecretSource {
    Value(String),
    /// An environment variable of the node's process.
    Env(String),
    /// A file on the node (a mounted Kubernetes Secret); trailing whitespace is dropped.
    File(String),
}

/// How the client authenticates to the token endpoint (RFC 6749 section 2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (every server must support it).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

impl std::fmt::Debug for SecretSource {
    /// The reference, never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
            SecretSource::Env(name) => write!(f, "Env({name})"),
            SecretSource::File(path) => write!(f, "File({path})"),
        }
    }
}

impl SecretSource {
    /// The secret, read now. The error names the reference, never a value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("environment variable {name} is not set on this node")),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|v| v.trim_end().to_owned())
                .map_err(|e| format!("secret file {path}: {}", e.kind())),
        }
    }
}

impl std::fmt::Debug for AgentRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRecord")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("protocol_version", &self.protocol_version)
            .field("metadata", &self.metadata)
            .field("settings", &self.settings)
            .field("source", &self.source)
            .finish()
    }
}

/// Per-agent overrides of the `[agents]` defaults in the config. `None` means the default.
#[derive(Clone, Debug, Default, PartialEq, bincode::Encode, bincode::Decode)]
pub struct AgentSettings {
    pub max_in_flight: Option<u32>,
    pub failure_threshold: Option<u32>,
    pub failure_window_ms: Option<u64>,
    pub cooldown_ms: Option<u64>,
    pub call_timeout_ms: Option<u64>,
}

/// The agent's own card, as fetched, plus what the gateway derived from it.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct CachedCard {
    pub card: Json,
    /// Where it was fetched from.
    pub source_url: String,
    /// Proposer-stamped fetch time (Unix ms): the card's `Last-Modified`.
    pub fetched_at_ms: u64,
}

/// Where and how the gateway calls an agent: chosen from its card
/// (`a2a::interface::choose`). Derived on every change of the record or card, never stored:
/// a snapshot or log from an older version derives it again on load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub url: String,
    pub version: ProtocolVersion,
    /// `None` when the card lists only bindings superx does not call (gRPC): calls are refused.
    pub binding: Option<Binding>,
    pub streaming: bool,
    /// The card's `capabilities.pushNotifications`: the agent takes webhooks, so the gateway
    /// registers its own for a task it follows (`rpc::inbound`) instead of streaming it.
    pub push: bool,
}

impl Upstream {
    /// The card's interface (see `a2a::interface`). Without a card, or a card that lists no
    /// interface: JSON-RPC at the registered URL and version (0.3 if none, as SuperX assumed).
    pub fn choose(record: &AgentRecord, card: Option<&CachedCard>) -> Upstream {
        let pinned = record.protocol_version.as_deref().and_then(ProtocolVersion::from_card_value);
        let fallback = |streaming, push| Upstream {
            url: record.url.clone(),
            version: pinned.unwrap_or(ProtocolVersion::V03),
            binding: Some(Binding::JsonRpc),
            streaming,
            push,
        };
        let Some(card) = card.map(|c| &c.card.0) else {
            return fallback(false, false);
        };
        let (streaming, push) = interface::capabilities(card);
        match interface::choose(card, pinned) {
            Offer::Usable(i) => Upstream { url: i.url, version: i.version, binding: Some(i.binding), streaming, push },
            Offer::Unusable(_) => Upstream { binding: None, ..fallback(streaming, push) },
            Offer::Nothing => fallback(streaming, push),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_shows_no_credential() {
        let mut r = record();
        r.bearer = Some("b3arer-secret".into());
        let auth = AgentAuth {
            forward_credentials: false,
            oauth2: Some(OAuth2Client {
                token_url: "http://idp/token".into(),
                client_id: "gw".into(),
                client_secret: SecretSource::Value("client-s3cret".into()),
                scopes: vec![],
                audience: None,
                client_auth: ClientAuth::Basic,
            }),
        };
        let shown = format!("{r:?} {auth:?}");
        assert!(!shown.contains("b3arer-secret") && !shown.contains("client-s3cret"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("gw"), "{shown}");
        assert_eq!(format!("{:?}", SecretSource::Env("X".into())), "Env(X)");
    }

    fn record() -> AgentRecord {
        AgentRecord {
            id: "a".into(),
            url: "http://agent:1/".into(),
            bearer: None,
            protocol_version: None,
            metadata: None,
            settings: AgentSettings::default(),
            source: "api".into(),
        }
    }

    fn cached(card: serde_json::Value) -> CachedCard {
        CachedCard { card: Json(card), source_url: String::new(), fetched_at_ms: 0 }
    }

    #[test]
    fn prefers_v10_jsonrpc_interface() {
        let card = cached(json!({
            "capabilities": {"streaming": true},
            "supportedInterfaces": [
                {"url": "http://a/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "http://a/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "http://a/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ],
            "url": "http://a/legacy"
        }));
        let up = Upstream::choose(&record(), Some(&card));
        let binding = Some(Binding::JsonRpc);
        let expected = Upstream {
            url: "http://a/v1".into(),
            version: ProtocolVersion::V10,
            binding,
            streaming: true,
            push: false,
        };
        assert_eq!(up, expected);
    }

    #[test]
    fn a_pinned_version_wins_when_the_card_offers_it() {
        let card = cached(json!({"supportedInterfaces": [
            {"url": "http://a/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": "http://a/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}
        ]}));
        let mut r = record();
        r.protocol_version = Some("0.3.0".into());
        assert_eq!(Upstream::choose(&r, Some(&card)).url, "http://a/v03");
        r.protocol_version = Some("2.0".into());
        assert_eq!(Upstream::choose(&r, Some(&card)).url, "http://a/v1");
    }

    #[test]
    fn legacy_card_and_no_card() {
        let card = cached(json!({"url": "http://a/rpc", "protocolVersion": "0.3.0"}));
        let up = Upstream::choose(&record(), Some(&card));
        assert_eq!((up.url.as_str(), up.version), ("http://a/rpc", ProtocolVersion::V03));
        let up = Upstream::choose(&record(), None);
        assert_eq!((up.url.as_str(), up.version), ("http://agent:1/", ProtocolVersion::V03));
        let mut r = record();
        r.protocol_version = Some("1.0".into());
        assert_eq!(Upstream::choose(&r, None).version, ProtocolVersion::V10);
    }

    #[test]
    fn http_json_only_and_grpc_only_cards() {
        let rest =
            cached(json!({"capabilities": {"streaming": true, "pushNotifications": true}, "supportedInterfaces": [
                {"url": "http://a/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}
            ]}));
        let up = Upstream::choose(&record(), Some(&rest));
        assert_eq!((up.url.as_str(), up.binding, up.streaming), ("http://a/rest", Some(Binding::HttpJson), true));
        assert!(up.push, "capabilities.pushNotifications");
        let grpc = cached(json!({"supportedInterfaces": [
            {"url": "grpc.a:443", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ]}));
        assert_eq!(Upstream::choose(&record(), Some(&grpc)).binding, None);
    }
}
