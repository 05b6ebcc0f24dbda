//! Agent cards as clients see them through the gateway.
//!
//! An agent's card (fetched, or given by the operator) becomes the served card in three steps:
//!
//! 1. [`fill_required`]: what A2A 1.0 requires and the agent left out is filled in (`name`,
//!    `description`, `version`, `capabilities`, default input/output modes, at least one
//!    skill, each skill's `id`/`name`/`description`/`tags`), and an incomplete `provider` is
//!    dropped, so a served card is valid even when the agent's is not (SuperX did the same).
//! 2. [`rewrite_agent_card`]: every interface a client could use points at the gateway
//!    (`{public base}/agents/{id}`), never at the agent behind it: 1.0
//!    `supportedInterfaces[]` and the 0.3 `url`/`additionalInterfaces`, each binding the
//!    gateway serves (JSON-RPC first, preferred; HTTP+JSON, which 0.3 SDK clients reach under
//!    `{url}/v1/`) whatever the agent itself speaks. The agent's other interfaces are dropped. Signatures are dropped: they no longer match a
//!    rewritten card. Push notifications are switched off (not served yet); streaming and the
//!    extended card are the agent's own (the gateway passes both through).
//! 3. The flavour the client negotiated ([`negotiate`]): the combined card (1.0 members plus
//!    the 0.3 ones, unknown members kept) for 0.3 and unversioned clients, or the strict 1.0
//!    card (only members of the 1.0 `AgentCard` message, 0.3 security converted) for 1.0
//!    clients.

mod fill;
mod strict;

use serde_json::{Map, Value, json};

pub use fill::fill_required;
use strict::strict_v10;

use super::ProtocolVersion;

/// How cards are served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CardOptions {
    /// Serve a strict 1.0 card: no 0.3 fields or interfaces, no unknown members.
    pub strict_v10: bool,
    /// The gateway requires credentials (`auth.mode = "required"`): the card declares the
    /// gateway's own schemes ([`declare_security`]) in place of the agent's.
    pub secured: bool,
}

/// The binding names of the interfaces the gateway serves.
const JSONRPC: &str = "JSONRPC";
const HTTP_JSON: &str = "HTTP+JSON";

/// The 1.0 media type (A2A 1.0.1). A client that accepts it knows 1.0.
pub const A2A_JSON: &str = "application/a2a+json";

/// The request headers every served card depends on (the card flavour is negotiated on
/// them), for `Vary`.
pub const NEGOTIATION_HEADERS: &str = "A2A-Version, Accept";

/// What a card request negotiated: the flavour, and the media type to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub options: CardOptions,
    pub content_type: &'static str,
}

/// Picks the card for a request. The strict 1.0 card goes to a client that says it speaks
/// 1.0: an `A2A-Version` (header or query parameter) of major version 1, or an `Accept`
/// naming `application/a2a+json` (a media type only 1.0.1 knows; the answer then has that
/// type). Everyone else (no version, `0.3`, anything unknown) gets the combined card, which
/// both generations of SDK read. `always_strict` (`cards.strict_v10`) serves strict cards to
/// everyone.
pub fn negotiate(version: Option<&str>, accept: Option<&str>, always_strict: bool) -> Negotiated {
    let v1 = version.is_some_and(|v| v.trim().split('.').next() == Some("1"));
    let a2a_json = accept.is_some_and(accepts_a2a_json);
    Negotiated {
        options: CardOptions { strict_v10: always_strict || v1 || a2a_json, secured: false },
        content_type: if a2a_json { A2A_JSON } else { "application/json" },
    }
}

/// Whether an `Accept` value lists `application/a2a+json` with a non-zero quality.
fn accepts_a2a_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut params = range.split(';').map(str::trim);
        let essence = params.next().unwrap_or("");
        let zero = params.any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0))
        });
        essence.eq_ignore_ascii_case(A2A_JSON) && !zero
    })
}

/// The card a client gets for agent `agent_id`: filled, rewritten to `agent_url` (the
/// gateway's URL for it), in the negotiated flavour.
pub fn served_agent_card(card: &Value, agent_id: &str, agent_url: &str, options: CardOptions) -> Value {
    rewrite_agent_card(&fill_required(card, agent_id), agent_url, options)
}

/// Whether an agent's card declares the extended card: 1.0 `capabilities.extendedAgentCard`
/// or 0.3 `supportsAuthenticatedExtendedCard`.
pub fn offers_extended_card(card: &Value) -> bool {
    card["capabilities"]["extendedAgentCard"].as_bool() == Some(true)
        || card["supportsAuthenticatedExtendedCard"].as_bool() == Some(true)
}

/// The agent's card with every interface pointing at `agent_url` (the gateway's URL for it).
pub fn rewrite_agent_card(card: &Value, agent_url: &str, options: CardOptions) -> Value {
    let mut out = card.as_object().cloned().unwrap_or_default();
    out.remove("signatures");
    let extended = offers_extended_card(card);
    let interfaces = rewrite_interfaces(out.get("supportedInterfaces"), agent_url, options);
    out.insert("supportedInterfaces".into(), Value::Array(interfaces));
    gate_capabilities(&mut out, extended);
    if options.secured {
        declare_security(&mut out);
    }
    if options.strict_v10 {
        return Value::Object(strict_v10(out));
    }
    out.insert("url".into(), json!(agent_url));
    out.insert("preferredTransport".into(), json!(JSONRPC));
    let legacy = out.get("protocolVersion").and_then(Value::as_str);
    if legacy.and_then(ProtocolVersion::from_card_value) != Some(ProtocolVersion::V03) {
        out.insert("protocolVersion".into(), json!("0.3.0"));
    }
    out.insert(
        "additionalInterfaces".into(),
        json!([{"url": agent_url, "transport": JSONRPC}, {"url": agent_url, "transport": HTTP_JSON}]),
    );
    out.insert("supportsAuthenticatedExtendedCard".into(), json!(extended));
    Value::Object(out)
}

/// The interfaces the gateway serves for an agent, all at `agent_url`: JSON-RPC (the agent's
/// own JSON-RPC entries re-anchored, so a `tenant` they declare stays, else a default) and
/// HTTP+JSON beside each, 1.0 first, JSON-RPC preferred. The agent's other entries are
/// dropped: the gateway serves both bindings whatever the agent speaks.
fn rewrite_interfaces(existing: Option<&Value>, agent_url: &str, options: CardOptions) -> Vec<Value> {
    let mut v10 = Vec::new();
    let mut v03 = Vec::new();
    for iface in existing.and_then(Value::as_array).into_iter().flatten() {
        let Some(obj) = iface.as_object() else {
            continue;
        };
        if obj.get("protocolBinding").and_then(Value::as_str) != Some(JSONRPC) {
            continue;
        }
        let version = obj.get("protocolVersion").and_then(Value::as_str).and_then(ProtocolVersion::from_card_value);
        let mut rewritten = obj.clone();
        rewritten.insert("url".into(), json!(agent_url));
        let bucket = match version {
            Some(ProtocolVersion::V10) => &mut v10,
            Some(ProtocolVersion::V03) => &mut v03,
            None => continue,
        };
        if !bucket.contains(&Value::Object(rewritten.clone())) {
            bucket.push(Value::Object(rewritten));
        }
    }
    let default = |version: &str| json!({"url": agent_url, "protocolBinding": JSONRPC, "protocolVersion": version});
    if v10.is_empty() {
        v10.push(default("1.0"));
    }
    let mut out = with_rest_twins(v10);
    if !options.strict_v10 {
        if v03.is_empty() {
            v03.push(default("0.3"));
        }
        out.extend(with_rest_twins(v03));
    }
    out
}

/// JSON-RPC interfaces followed by an HTTP+JSON one for each (same URL, version, tenant).
fn with_rest_twins(jsonrpc: Vec<Value>) -> Vec<Value> {
    let rest: Vec<Value> = jsonrpc
        .iter()
        .cloned()
        .map(|mut iface| {
            iface["protocolBinding"] = json!(HTTP_JSON);
            iface
        })
        .collect();
    jsonrpc.into_iter().chain(rest).collect()
}

/// Says what the gateway serves for every agent: push notifications (the gateway relays
/// every committed task update to the client's webhooks itself, whether or not the agent
/// pushes), and truthfully whether the extended card is offered (the gateway passes it
/// through to agents that offer it). Streaming is the agent's own capability: the gateway
/// streams exactly for agents that stream.
fn gate_capabilities(card: &mut Map<String, Value>, extended: bool) {
    let caps = card.entry("capabilities").or_insert_with(|| json!({}));
    if let Value::Object(caps) = caps {
        caps.insert("pushNotifications".into(), json!(true));
        if extended {
            caps.insert("extendedAgentCard".into(), json!(true));
        } else if caps.contains_key("extendedAgentCard") {
            caps.insert("extendedAgentCard".into(), json!(false));
        }
        if caps.get("streaming").and_then(Value::as_bool) == Some(true) {
            declare_resumable_streams(caps);
        }
    }
}

/// Adds the resumable-streams extension (the gateway's own, for every stream it serves) to
/// `capabilities.extensions`, beside the agent's.
fn declare_resumable_streams(caps: &mut Map<String, Value>) {
    let declaration = super::resume::declaration();
    match caps.entry("extensions").or_insert_with(|| json!([])) {
        Value::Array(extensions) => {
            if !extensions.iter().any(|e| e["uri"] == super::resume::EXTENSION_URI) {
                extensions.push(declaration);
            }
        }
        other => *other = json!([declaration]),
    }
}

/// The API key header clients send (`auth::API_KEY_HEADER`, as cards spell it).
const API_KEY_HEADER: &str = "X-API-Key";

/// The gateway's schemes, in the 0.3 (OpenAPI) shape of the combined card; the strict 1.0
/// card converts them (`strict::strict_v10`) as it converts an agent's. Either one satisfies
/// (two requirements): an API key in `X-API-Key`, or a bearer token (an API key or a JWT). The
/// agent's own schemes are how the gateway reaches it, not how clients reach the gateway, so
/// they go, with its skills' requirements that name them.
fn declare_security(card: &mut Map<String, Value>) {
    card.insert(
        "securitySchemes".into(),
        json!({
            "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                       "description": "a superx API key (sx_...)"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "a JWT from the configured issuer, or a superx API key"},
        }),
    );
    card.insert("security".into(), json!([{"apiKey": []}, {"bearer": []}]));
    card.remove("securityRequirements");
    if let Some(Value::Array(skills)) = card.get_mut("skills") {
        for skill in skills.iter_mut().filter_map(Value::as_object_mut) {
            skill.remove("security");
            skill.remove("securityRequirements");
        }
    }
}

/// One skill of the gateway's own card: an agent it routes to.
pub struct AgentSkill<'a> {
    pub id: &'a str,
    pub card: Option<&'a Value>,
    pub card_url: String,
}

/// The gateway's own card: one skill per registered agent.
pub fn gateway_card(base: &str, name: &str, skills: &[AgentSkill<'_>], options: CardOptions) -> Value {
    let rpc = format!("{base}/rpc");
    let skills: Vec<Value> = skills
        .iter()
        .map(|s| {
            let card = s.card.cloned().unwrap_or(Value::Null);
            let title = card["name"].as_str().unwrap_or(s.id);
            let about = card["description"].as_str().unwrap_or("A2A agent");
            let mut tags = vec![json!("agent")];
            for skill in card["skills"].as_array().into_iter().flatten() {
                tags.extend(skill["tags"].as_array().into_iter().flatten().cloned());
            }
            tags.dedup();
            json!({
                "id": s.id,
                "name": title,
                "description": format!("{about} (card: {})", s.card_url),
                "tags": tags,
            })
        })
        .collect();
    let mut card = json!({
        "name": name,
        "description": "superx A2A gateway: routes each call to one of its registered agents",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{"url": rpc, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": true, "pushNotifications": true, "extensions": [super::resume::declaration()]},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
    });
    if options.secured
        && let Value::Object(obj) = &mut card
    {
        declare_security(obj);
        if options.strict_v10 {
            card = Value::Object(strict_v10(std::mem::take(obj)));
        }
    }
    if !options.strict_v10 {
        if let Some(a) = card["supportedInterfaces"].as_array_mut() {
            a.push(json!({"url": rpc, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}));
        }
        card["url"] = json!(rpc);
        card["preferredTransport"] = json!("JSONRPC");
        card["protocolVersion"] = json!("0.3.0");
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://gw.example.com/agents/echo";

    fn golden(input: &str, expected: &str, options: CardOptions) {
        let input: Value = serde_json::from_str(input).unwrap();
        let expected: Value = serde_json::from_str(expected).unwrap();
        let got = served_agent_card(&input, "echo", URL, options);
        assert_eq!(got, expected, "got:\n{}", serde_json::to_string_pretty(&got).unwrap());
    }

    #[test]
    fn sdk_dual_card() {
        golden(
            include_str!("golden/sdk_dual.in.json"),
            include_str!("golden/sdk_dual.out.json"),
            CardOptions::default(),
        );
    }

    #[test]
    fn sdk_dual_card_strict() {
        golden(
            include_str!("golden/sdk_dual.in.json"),
            include_str!("golden/sdk_dual.strict.json"),
            CardOptions { strict_v10: true, ..Default::default() },
        );
    }

    #[test]
    fn legacy_03_card() {
        golden(
            include_str!("golden/legacy_03.in.json"),
            include_str!("golden/legacy_03.out.json"),
            CardOptions::default(),
        );
    }

    #[test]
    fn legacy_03_card_strict() {
        golden(
            include_str!("golden/legacy_03.in.json"),
            include_str!("golden/legacy_03.strict.json"),
            CardOptions { strict_v10: true, ..Default::default() },
        );
    }

    #[test]
    fn no_agent_url_survives_rewriting() {
        for input in [include_str!("golden/sdk_dual.in.json"), include_str!("golden/legacy_03.in.json")] {
            let card: Value = serde_json::from_str(input).unwrap();
            for strict_v10 in [false, true] {
                let text =
                    served_agent_card(&card, "echo", URL, CardOptions { strict_v10, ..Default::default() }).to_string();
                assert!(!text.contains("127.0.0.1"), "{text}");
                assert!(!text.contains("agent.internal"), "{text}");
            }
        }
    }

    #[test]
    fn negotiation() {
        let strict = |v: Option<&str>, a: Option<&str>| negotiate(v, a, false).options.strict_v10;
        assert!(strict(Some("1.0"), None));
        assert!(strict(Some("1.0.1"), None));
        assert!(!strict(None, None));
        assert!(!strict(Some("0.3"), Some("application/json")));
        assert!(strict(None, Some("application/json, application/a2a+json;q=0.9")));
        assert!(!strict(None, Some("application/a2a+json;q=0")));
        assert_eq!(negotiate(None, Some("application/a2a+json"), false).content_type, A2A_JSON);
        assert_eq!(negotiate(Some("1.0"), None, false).content_type, "application/json");
        assert!(negotiate(None, None, true).options.strict_v10, "cards.strict_v10 serves strict to all");
    }

    #[test]
    fn extended_card_is_advertised_as_the_agent_declares_it() {
        let v10 = json!({"name": "a", "capabilities": {"extendedAgentCard": true}});
        let v03 = json!({"name": "a", "supportsAuthenticatedExtendedCard": true});
        for card in [v10, v03] {
            let combined = served_agent_card(&card, "a", URL, CardOptions::default());
            assert_eq!(combined["supportsAuthenticatedExtendedCard"], true);
            assert_eq!(combined["capabilities"]["extendedAgentCard"], true);
            let strict = served_agent_card(&card, "a", URL, CardOptions { strict_v10: true, ..Default::default() });
            assert_eq!(strict["capabilities"]["extendedAgentCard"], true);
        }
        let none = served_agent_card(&json!({"name": "a"}), "a", URL, CardOptions::default());
        assert_eq!(none["supportsAuthenticatedExtendedCard"], false);
    }

    #[test]
    fn gateway_card_lists_agents_as_skills() {
        let agent_card = json!({"name": "Echo", "description": "Echoes", "skills": [{"tags": ["echo"]}]});
        let skills = [
            AgentSkill { id: "echo", card: Some(&agent_card), card_url: "u1".into() },
            AgentSkill { id: "bare", card: None, card_url: "u2".into() },
        ];
        let card = gateway_card("http://gw", "superx", &skills, CardOptions::default());
        assert_eq!(card["skills"][0]["id"], "echo");
        assert_eq!(card["skills"][0]["name"], "Echo");
        assert_eq!(card["skills"][0]["tags"], json!(["agent", "echo"]));
        assert_eq!(card["skills"][1]["name"], "bare");
        assert_eq!(card["url"], "http://gw/rpc");
        let strict =
            gateway_card("http://gw", "superx", &skills, CardOptions { strict_v10: true, ..Default::default() });
        assert!(strict.get("url").is_none());
    }
}
