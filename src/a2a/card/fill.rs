//! Filling what A2A 1.0 requires of a card and an agent left out, so a served card is valid
//! even when the agent's is not (SuperX's `normalize_agent_card` did the same, but dropped
//! every member it did not know; here unknown members stay for the combined card).
//!
//! Required in 1.0 (`AgentCard` REQUIRED fields): `name`, `description`, `version`,
//! `capabilities`, `defaultInputModes` and `defaultOutputModes` (non-empty), `skills`
//! (non-empty), and in each skill `id`, `name`, `description`, `tags` (non-empty).
//! `supportedInterfaces` is built by the rewrite. A `provider` needs both its members.

use serde_json::{Map, Value, json};

/// The agent's version when its card names none (SuperX's default).
pub const DEFAULT_VERSION: &str = "1.0.0";

/// The input and output modes when the card declares none (SuperX's default).
pub const DEFAULT_MODE: &str = "text/plain";

/// The card with every required member present and of the right type.
pub fn fill_required(card: &Value, agent_id: &str) -> Value {
    let mut out = card.as_object().cloned().unwrap_or_default();
    let name = non_empty(&out, "name").unwrap_or(agent_id).to_owned();
    let description = non_empty(&out, "description").map_or_else(|| format!("A2A agent {name}"), str::to_owned);
    let version = non_empty(&out, "version").unwrap_or(DEFAULT_VERSION).to_owned();
    out.insert("name".into(), json!(name));
    out.insert("description".into(), json!(description));
    out.insert("version".into(), json!(version));
    if !out.get("capabilities").is_some_and(Value::is_object) {
        out.insert("capabilities".into(), json!({}));
    }
    for key in ["defaultInputModes", "defaultOutputModes"] {
        let modes = strings(out.get(key));
        out.insert(key.into(), if modes.is_empty() { json!([DEFAULT_MODE]) } else { json!(modes) });
    }
    let mut skills: Vec<Value> = out
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| s.as_object().map(|s| fill_skill(s, i)))
        .collect();
    if skills.is_empty() {
        // A card must list at least one skill: the agent as a whole is one.
        skills.push(fill_skill(&Map::from_iter([("id".into(), json!(agent_id))]), 0));
        skills[0]["name"] = json!(name);
        skills[0]["description"] = json!(description);
    }
    out.insert("skills".into(), Value::Array(skills));
    let provider_ok = out.get("provider").and_then(Value::as_object).is_some_and(|p| {
        p.get("organization").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
            && p.get("url").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
    });
    if !provider_ok {
        out.remove("provider");
    }
    for key in ["documentationUrl", "iconUrl"] {
        if out.get(key).is_some_and(|v| !v.is_string()) {
            out.remove(key);
        }
    }
    Value::Object(out)
}

/// One skill with `id`, `name`, `description` and at least one tag (its id when it has none).
fn fill_skill(skill: &Map<String, Value>, index: usize) -> Value {
    let mut out = skill.clone();
    let id = non_empty(skill, "id").map_or_else(|| format!("skill-{index}"), str::to_owned);
    let name = non_empty(skill, "name").unwrap_or(&id).to_owned();
    let description = non_empty(skill, "description").unwrap_or(&name).to_owned();
    let tags = strings(skill.get("tags"));
    out.insert("tags".into(), if tags.is_empty() { json!([id]) } else { json!(tags) });
    out.insert("id".into(), json!(id));
    out.insert("name".into(), json!(name));
    out.insert("description".into(), json!(description));
    for key in ["examples", "inputModes", "outputModes"] {
        if out.contains_key(key) {
            out.insert(key.into(), json!(strings(out.get(key))));
        }
    }
    Value::Object(out)
}

fn non_empty<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// The non-empty strings of an array member (anything else is dropped).
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_card_gets_every_required_member() {
        let card = fill_required(&json!({"x": 1}), "bare");
        assert_eq!(card["name"], "bare");
        assert_eq!(card["description"], "A2A agent bare");
        assert_eq!(card["version"], DEFAULT_VERSION);
        assert_eq!(card["capabilities"], json!({}));
        assert_eq!(card["defaultInputModes"], json!(["text/plain"]));
        assert_eq!(card["defaultOutputModes"], json!(["text/plain"]));
        assert_eq!(
            card["skills"],
            json!([{"id": "bare", "name": "bare", "description": "A2A agent bare", "tags": ["bare"]}])
        );
        assert_eq!(card["x"], 1, "unknown members stay");
    }

    #[test]
    fn broken_members_are_repaired_and_good_ones_kept() {
        let card = fill_required(
            &json!({
                "name": "N", "description": "", "version": 3, "capabilities": [],
                "defaultInputModes": [], "defaultOutputModes": ["application/json", 5],
                "skills": [{"id": "a", "tags": []}, "junk", {"name": "B", "description": "d", "tags": ["t"], "examples": [1, "e"]}],
                "provider": {"organization": "o"}, "iconUrl": 7,
            }),
            "id",
        );
        assert_eq!(card["description"], "A2A agent N");
        assert_eq!(card["version"], DEFAULT_VERSION);
        assert_eq!(card["capabilities"], json!({}));
        assert_eq!(card["defaultInputModes"], json!(["text/plain"]));
        assert_eq!(card["defaultOutputModes"], json!(["application/json"]));
        assert_eq!(card["skills"][0], json!({"id": "a", "name": "a", "description": "a", "tags": ["a"]}));
        assert_eq!(
            card["skills"][1],
            json!({"id": "skill-2", "name": "B", "description": "d", "tags": ["t"], "examples": ["e"]})
        );
        assert!(card.get("provider").is_none(), "a provider without a url is dropped");
        assert!(card.get("iconUrl").is_none());
    }
}
