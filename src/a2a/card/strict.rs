//! The strict 1.0 card: only members of the 1.0 `AgentCard` message and the messages inside
//! it (a2a.proto, `lf.a2a.v1`), each of its 1.0 type, so a ProtoJSON parser that rejects
//! unknown fields (the SDK's `ParseDict` without `ignore_unknown_fields`) accepts it. 0.3
//! security (`security`, OpenAPI-style `securitySchemes` with `type`) is converted the way the
//! SDK's card resolver converts it; every other member the 1.0 schema does not know is dropped.

use serde_json::{Map, Value, json};

const CARD: &[&str] = &[
    "name",
    "description",
    "supportedInterfaces",
    "provider",
    "version",
    "documentationUrl",
    "capabilities",
    "securitySchemes",
    "securityRequirements",
    "defaultInputModes",
    "defaultOutputModes",
    "skills",
    "signatures",
    "iconUrl",
];
const INTERFACE: &[&str] = &["url", "protocolBinding", "tenant", "protocolVersion"];
const PROVIDER: &[&str] = &["url", "organization"];
const CAPABILITY_FLAGS: &[&str] = &["streaming", "pushNotifications", "extendedAgentCard"];
const EXTENSION: &[&str] = &["uri", "description", "required", "params"];
const SKILL: &[&str] =
    &["id", "name", "description", "tags", "examples", "inputModes", "outputModes", "securityRequirements"];

/// 0.3 OpenAPI scheme `type` -> the 1.0 `SecurityScheme` member and the members it has.
const SCHEMES: &[(&str, &str, &[&str])] = &[
    ("apiKey", "apiKeySecurityScheme", &["description", "location", "name"]),
    ("http", "httpAuthSecurityScheme", &["description", "scheme", "bearerFormat"]),
    ("oauth2", "oauth2SecurityScheme", &["description", "flows", "oauth2MetadataUrl"]),
    ("openIdConnect", "openIdConnectSecurityScheme", &["description", "openIdConnectUrl"]),
    ("mutualTLS", "mtlsSecurityScheme", &["description"]),
];

/// Projects a (filled, rewritten) card onto the 1.0 schema.
pub fn strict_v10(mut card: Map<String, Value>) -> Map<String, Value> {
    if let Some(security) = card.remove("security") {
        card.entry("securityRequirements").or_insert_with(|| requirements(security));
    }
    keep(&mut card, CARD);
    map_array(&mut card, "supportedInterfaces", |i| keep(i, INTERFACE));
    if let Some(Value::Object(p)) = card.get_mut("provider") {
        keep(p, PROVIDER);
    }
    if let Some(Value::Object(caps)) = card.get_mut("capabilities") {
        capabilities(caps);
    }
    if let Some(Value::Object(schemes)) = card.get_mut("securitySchemes") {
        schemes.retain(|_, scheme| security_scheme(scheme));
    }
    map_array(&mut card, "securityRequirements", requirement);
    map_array(&mut card, "skills", |skill| {
        if let Some(security) = skill.remove("security") {
            skill.entry("securityRequirements").or_insert_with(|| requirements(security));
        }
        keep(skill, SKILL);
        map_array(skill, "securityRequirements", requirement);
    });
    card
}

fn keep(obj: &mut Map<String, Value>, members: &[&str]) {
    obj.retain(|k, _| members.contains(&k.as_str()));
}

/// Applies `f` to every object of an array member, dropping items that are not objects.
fn map_array(obj: &mut Map<String, Value>, key: &str, f: impl Fn(&mut Map<String, Value>)) {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        items.retain(Value::is_object);
        items.iter_mut().filter_map(Value::as_object_mut).for_each(f);
    }
}

fn capabilities(caps: &mut Map<String, Value>) {
    caps.retain(|k, v| (CAPABILITY_FLAGS.contains(&k.as_str()) && v.is_boolean()) || k == "extensions");
    map_array(caps, "extensions", |e| keep(e, EXTENSION));
}

/// A 1.0 scheme is kept with its kind's members; a 0.3 one (`type`) is converted. Anything
/// else is dropped (false).
fn security_scheme(scheme: &mut Value) -> bool {
    let Some(obj) = scheme.as_object_mut() else { return false };
    if let Some(kind) = obj.remove("type") {
        let Some((_, member, _)) = SCHEMES.iter().find(|(t, _, _)| Some(*t) == kind.as_str()) else { return false };
        if let Some(location) = obj.remove("in") {
            obj.insert("location".into(), location);
        }
        *obj = Map::from_iter([((*member).to_owned(), Value::Object(std::mem::take(obj)))]);
    }
    let obj = scheme.as_object_mut().expect("an object");
    obj.retain(|k, v| SCHEMES.iter().any(|(_, m, _)| m == k) && v.is_object());
    for (_, member, fields) in SCHEMES {
        if let Some(Value::Object(inner)) = obj.get_mut(*member) {
            keep(inner, fields);
        }
    }
    obj.len() == 1
}

fn requirement(req: &mut Map<String, Value>) {
    keep(req, &["schemes"]);
}

/// 0.3 `security: [{scheme: [scopes]}]` as 1.0 `securityRequirements: [{schemes: {scheme: {list}}}]`.
pub fn requirements(security: Value) -> Value {
    let items = security.as_array().cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .filter_map(|req| {
                let schemes: Map<String, Value> =
                    req.as_object()?.iter().map(|(name, scopes)| (name.clone(), json!({ "list": scopes }))).collect();
                Some(json!({ "schemes": schemes }))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_security_is_converted_and_unknown_members_dropped() {
        let card = json!({
            "name": "n", "x-vendor": 1, "stateTransitionHistory": true,
            "capabilities": {"streaming": true, "stateTransitionHistory": true, "pushNotifications": "no"},
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
                "new": {"httpAuthSecurityScheme": {"scheme": "bearer", "junk": 1}},
                "odd": {"type": "kerberos"}
            },
            "security": [{"key": ["a"]}],
            "skills": [{"id": "s", "security": [{"new": []}], "extra": true}],
            "supportedInterfaces": [{"url": "u", "protocolBinding": "JSONRPC", "protocolVersion": "1.0", "transport": "x"}]
        });
        let out = Value::Object(strict_v10(card.as_object().unwrap().clone()));
        assert_eq!(
            out,
            json!({
                "name": "n",
                "capabilities": {"streaming": true},
                "securitySchemes": {
                    "key": {"apiKeySecurityScheme": {"location": "header", "name": "X-Key"}},
                    "new": {"httpAuthSecurityScheme": {"scheme": "bearer"}}
                },
                "securityRequirements": [{"schemes": {"key": {"list": ["a"]}}}],
                "skills": [{"id": "s", "securityRequirements": [{"schemes": {"new": {"list": []}}}]}],
                "supportedInterfaces": [{"url": "u", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]
            })
        );
    }
}
