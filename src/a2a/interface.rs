//! Which of an agent's interfaces the gateway calls: read from its card (1.0
//! `supportedInterfaces[]`, 0.3 `url`/`preferredTransport`/`additionalInterfaces[]`), the
//! binding and version chosen once per card change (`state::Upstream` holds the result).
//!
//! superx calls agents over JSON-RPC or HTTP+JSON. JSON-RPC wins when the card offers it (its
//! errors and streams map one to one onto the client's), else HTTP+JSON; within a binding a
//! version the operator pinned wins, then 1.0, then the card's order. A card that lists only
//! bindings superx does not call (gRPC, custom URIs) has no usable interface: calls are
//! refused with a clear error instead of being sent somewhere the agent does not serve them.

use serde_json::Value;

use super::ProtocolVersion;

/// The `protocolBinding` (1.0) / `transport` (0.3) names of the bindings superx calls.
const JSONRPC: &str = "JSONRPC";
const HTTP_JSON: &str = "HTTP+JSON";

/// A binding the gateway can call an agent over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    JsonRpc,
    /// HTTP+JSON (REST): one route per operation, bare bodies, HTTP status errors.
    HttpJson,
}

impl Binding {
    fn from_card_value(value: &str) -> Option<Binding> {
        match value.trim() {
            JSONRPC => Some(Binding::JsonRpc),
            HTTP_JSON => Some(Binding::HttpJson),
            _ => None,
        }
    }

    /// The card's name for the binding.
    pub fn card_value(self) -> &'static str {
        match self {
            Binding::JsonRpc => JSONRPC,
            Binding::HttpJson => HTTP_JSON,
        }
    }
}

/// What the card says the agent does beyond plain calls: `capabilities.streaming` (the
/// gateway may stream from it) and `capabilities.pushNotifications` (it takes webhooks, so the
/// gateway registers its own for a task it follows). Both are the same member in 1.0 and 0.3.
pub fn capabilities(card: &Value) -> (bool, bool) {
    let capabilities = &card["capabilities"];
    let flag = |name: &str| capabilities[name].as_bool().unwrap_or(false);
    (flag("streaming"), flag("pushNotifications"))
}

/// One interface the gateway can call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub url: String,
    pub binding: Binding,
    pub version: ProtocolVersion,
}

/// What a card offers the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// The interface to call.
    Usable(Interface),
    /// The card lists interfaces, none on a binding superx calls: their binding names.
    Unusable(Vec<String>),
    /// The card lists no interface at all (the registered URL is all there is).
    Nothing,
}

/// One interface entry as the card lists it (binding and version still as strings).
struct Listed<'a> {
    url: &'a str,
    binding: &'a str,
    version: Option<ProtocolVersion>,
}

/// Chooses the interface to call from a card; `pinned` is the version the operator asked for.
pub fn choose(card: &Value, pinned: Option<ProtocolVersion>) -> Offer {
    let listed = listed(card);
    if listed.is_empty() {
        return Offer::Nothing;
    }
    let usable: Vec<Interface> = listed
        .iter()
        .filter_map(|l| {
            Some(Interface {
                url: l.url.to_owned(),
                binding: Binding::from_card_value(l.binding)?,
                version: l.version?,
            })
        })
        .collect();
    for binding in [Binding::JsonRpc, Binding::HttpJson] {
        let of_binding: Vec<&Interface> = usable.iter().filter(|i| i.binding == binding).collect();
        let chosen = of_binding
            .iter()
            .find(|i| Some(i.version) == pinned)
            .or_else(|| of_binding.iter().find(|i| i.version == ProtocolVersion::V10))
            .or_else(|| of_binding.first());
        if let Some(chosen) = chosen {
            return Offer::Usable((*chosen).clone());
        }
    }
    let mut bindings: Vec<String> = listed.iter().map(|l| l.binding.to_owned()).collect();
    bindings.dedup();
    Offer::Unusable(bindings)
}

/// Every interface the card lists, in its order: the 1.0 list first, then the 0.3 members
/// (a card may carry both, as the SDK's do).
fn listed(card: &Value) -> Vec<Listed<'_>> {
    let mut out: Vec<Listed<'_>> = card["supportedInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            Some(Listed {
                url: i["url"].as_str()?,
                binding: i["protocolBinding"].as_str()?,
                version: i["protocolVersion"].as_str().and_then(ProtocolVersion::from_card_value),
            })
        })
        .collect();
    // 0.3: `url` is served on `preferredTransport` (JSONRPC when absent), at the card's
    // version; every `additionalInterfaces[]` entry at that version too.
    let legacy_version = Some(
        card["protocolVersion"].as_str().and_then(ProtocolVersion::from_card_value).unwrap_or(ProtocolVersion::V03),
    );
    if let Some(url) = card["url"].as_str() {
        let binding = card["preferredTransport"].as_str().unwrap_or(JSONRPC);
        out.push(Listed { url, binding, version: legacy_version });
    }
    out.extend(card["additionalInterfaces"].as_array().into_iter().flatten().filter_map(|i| {
        Some(Listed { url: i["url"].as_str()?, binding: i["transport"].as_str()?, version: legacy_version })
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usable(url: &str, binding: Binding, version: ProtocolVersion) -> Offer {
        Offer::Usable(Interface { url: url.into(), binding, version })
    }

    #[test]
    fn v10_card_prefers_jsonrpc_then_v10() {
        let card = json!({"supportedInterfaces": [
            {"url": "http://a/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
            {"url": "http://a/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": "http://a/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
            {"url": "http://a/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ], "url": "http://a/legacy"});
        assert_eq!(choose(&card, None), usable("http://a/v1", Binding::JsonRpc, ProtocolVersion::V10));
        assert_eq!(
            choose(&card, Some(ProtocolVersion::V03)),
            usable("http://a/v03", Binding::JsonRpc, ProtocolVersion::V03)
        );
    }

    #[test]
    fn jsonrpc_in_any_version_beats_http_json() {
        let card = json!({"supportedInterfaces": [
            {"url": "http://a/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": "http://a/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}
        ]});
        assert_eq!(choose(&card, None), usable("http://a/v03", Binding::JsonRpc, ProtocolVersion::V03));
    }

    #[test]
    fn http_json_only_cards() {
        let card = json!({"supportedInterfaces": [
            {"url": "http://a/rest03", "protocolBinding": "HTTP+JSON", "protocolVersion": "0.3"},
            {"url": "http://a/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
            {"url": "http://a/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ]});
        assert_eq!(choose(&card, None), usable("http://a/rest", Binding::HttpJson, ProtocolVersion::V10));
        assert_eq!(
            choose(&card, Some(ProtocolVersion::V03)),
            usable("http://a/rest03", Binding::HttpJson, ProtocolVersion::V03)
        );
    }

    #[test]
    fn v03_preferred_transport_and_additional_interfaces() {
        let rest = json!({"protocolVersion": "0.3.0", "url": "http://a/rest", "preferredTransport": "HTTP+JSON"});
        assert_eq!(choose(&rest, None), usable("http://a/rest", Binding::HttpJson, ProtocolVersion::V03));
        let default_jsonrpc = json!({"url": "http://a/rpc"});
        assert_eq!(choose(&default_jsonrpc, None), usable("http://a/rpc", Binding::JsonRpc, ProtocolVersion::V03));
        // gRPC preferred, JSON-RPC among the additional interfaces: JSON-RPC is called.
        let additional = json!({
            "protocolVersion": "0.3.0", "url": "grpc.a:443", "preferredTransport": "GRPC",
            "additionalInterfaces": [
                {"url": "http://a/rest", "transport": "HTTP+JSON"},
                {"url": "http://a/rpc", "transport": "JSONRPC"}
            ]
        });
        assert_eq!(choose(&additional, None), usable("http://a/rpc", Binding::JsonRpc, ProtocolVersion::V03));
    }

    #[test]
    fn grpc_only_and_empty_cards() {
        let v10 = json!({"supportedInterfaces": [
            {"url": "grpc.a:443", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
        ]});
        assert_eq!(choose(&v10, None), Offer::Unusable(vec!["GRPC".into()]));
        let v03 = json!({"url": "grpc.a:443", "preferredTransport": "GRPC", "protocolVersion": "0.3.0"});
        assert_eq!(choose(&v03, None), Offer::Unusable(vec!["GRPC".into()]));
        // A known binding at a version superx does not speak is not callable either.
        let v2 = json!({"supportedInterfaces": [
            {"url": "http://a/", "protocolBinding": "JSONRPC", "protocolVersion": "2.0"}
        ]});
        assert_eq!(choose(&v2, None), Offer::Unusable(vec!["JSONRPC".into()]));
        assert_eq!(choose(&json!({"name": "no interfaces"}), None), Offer::Nothing);
        assert_eq!(choose(&json!({"supportedInterfaces": []}), None), Offer::Nothing);
    }
}
