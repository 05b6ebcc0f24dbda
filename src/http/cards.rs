//! Agent card endpoints: each agent's cached card rewritten to point at the gateway, and the
//! gateway's own card. Both are revalidatable: `ETag` over the served bytes,
//! `Cache-Control: max-age`, `Last-Modified` for agent cards, 304 on a matching
//! `If-None-Match`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::a2a::card::{AgentSkill, CardOptions, gateway_card as build_gateway_card, rewrite_agent_card};
use crate::gateway::Gateway;

/// The base URL clients reach the gateway at: `server.public_url`, else the forwarded
/// headers (when trusted), else `Host`.
pub fn public_base(gw: &Gateway, headers: &HeaderMap) -> String {
    let configured = gw.config.server.public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let trusted = gw.config.server.trust_forwarded_headers;
    let scheme = trusted
        .then(|| first("x-forwarded-proto"))
        .flatten()
        .filter(|p| *p == "http" || *p == "https")
        .unwrap_or("http");
    let host = trusted
        .then(|| first("x-forwarded-host"))
        .flatten()
        .or_else(|| first("host"))
        .filter(|h| is_valid_host(h))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// A host[:port] with nothing that could smuggle a path or markup into a URL.
fn is_valid_host(host: &str) -> bool {
    host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

fn options(gw: &Gateway) -> CardOptions {
    CardOptions { strict_v10: gw.config.cards.strict_v10 }
}

fn not_found(what: &str) -> Response {
    let body = serde_json::json!({"error": what}).to_string();
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn agent_card(State(gw): State<Arc<Gateway>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let cached = gw.replica.read(|t| t.agent(&id).map(|e| e.card.clone()));
    let card = match cached {
        None => return not_found("agent not found"),
        Some(Some(card)) => card,
        Some(None) => {
            // No card yet (the agent was down at registration): try once more now.
            if let Err(e) = gw.refresh_card(&id).await {
                let body = serde_json::json!({"error": "agent card unavailable", "detail": e.to_string()}).to_string();
                return (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            match gw.replica.read(|t| t.agent(&id).and_then(|e| e.card.clone())) {
                Some(card) => card,
                None => return not_found("agent not found"),
            }
        }
    };
    let agent_url = format!("{}/agents/{id}", public_base(&gw, &headers));
    let body = rewrite_agent_card(&card.card.0, &agent_url, options(&gw));
    let modified = UNIX_EPOCH + Duration::from_millis(card.fetched_at_ms);
    serve_card(&gw, &headers, body, Some(modified))
}

pub async fn gateway_card(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let base = public_base(&gw, &headers);
    let body = gw.replica.read(|t| {
        let skills: Vec<AgentSkill<'_>> = t
            .agents()
            .map(|e| AgentSkill {
                id: &e.record.id,
                card: e.card.as_ref().map(|c| &c.card.0),
                card_url: format!("{base}/agents/{}/.well-known/agent-card.json", e.record.id),
            })
            .collect();
        build_gateway_card(&base, &gw.config.cards.gateway_name, &skills, options(&gw))
    });
    serve_card(&gw, &headers, body, None)
}

fn serve_card(
    gw: &Gateway,
    headers: &HeaderMap,
    card: serde_json::Value,
    modified: Option<std::time::SystemTime>,
) -> Response {
    let bytes = serde_json::to_vec(&card).expect("JSON values serialize");
    let digest = Sha256::digest(&bytes);
    let etag = format!("\"{}\"", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>());
    let cache_control = format!("public, max-age={}", gw.config.cards.max_age_secs);
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex etag is a valid header"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache_control).expect("valid header"));
    if let Some(modified) = modified {
        let text = httpdate::fmt_http_date(modified);
        h.insert(header::LAST_MODIFIED, HeaderValue::from_str(&text).expect("http dates are valid headers"));
    }
    response
}

/// RFC 9110 weak comparison: `*`, or any listed tag equal to ours with or without `W/`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matching() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"abc\""));
        assert!(if_none_match(&h, "\"abc\""));
        assert!(!if_none_match(&h, "\"abd\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"x\""));
    }

    #[test]
    fn hosts_are_checked() {
        assert!(is_valid_host("gw.example.com:8443"));
        assert!(is_valid_host("[::1]:4000"));
        assert!(!is_valid_host("evil.com/path"));
        assert!(!is_valid_host("a\"b"));
    }
}
