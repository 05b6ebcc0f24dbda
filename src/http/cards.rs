//! Agent card endpoints: each agent's stored card served through `a2a::card` (filled,
//! rewritten to point at the gateway, strict 1.0 or combined as the client negotiated), and
//! the gateway's own card. Both are revalidatable: `ETag` over the served bytes,
//! `Cache-Control: public, max-age`, `Last-Modified` for agent cards, 304 on a matching
//! `If-None-Match`.
//!
//! Caches must not hand one client's card to another: `Vary` names every request header the
//! bytes depend on: `A2A-Version` and `Accept` (the flavour), and, when the public base URL
//! is not configured, `Host` and (when trusted) `X-Forwarded-Host`/`X-Forwarded-Proto`, which
//! the URLs in the card are built from. `Vary` rather than `Cache-Control: private`, so a
//! shared cache in front of the gateway still serves cards, keyed correctly.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::a2a::card::{
    AgentSkill, NEGOTIATION_HEADERS, Negotiated, gateway_card as build_gateway_card, negotiate, served_agent_card,
};
use crate::gateway::{CardLookup, Gateway};

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
        .unwrap_or(if gw.config.server.tls_enabled() { "https" } else { "http" });
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

/// The card flavour this request negotiated (`a2a::card::negotiate`).
/// A gateway that requires credentials says so in every card it serves.
fn negotiated(gw: &Gateway, headers: &HeaderMap, query: Option<&str>) -> Negotiated {
    let version = super::requested_version(headers, query);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let mut negotiated = negotiate(version, accept, gw.config.cards.strict_v10);
    negotiated.options.secured = gw.auth.required();
    negotiated
}

/// The `Vary` of a served card: the negotiation headers, and the headers `public_base`
/// reads when no public URL is configured.
fn vary(gw: &Gateway) -> String {
    let server = &gw.config.server;
    match (server.public_url.trim().is_empty(), server.trust_forwarded_headers) {
        (false, _) => NEGOTIATION_HEADERS.to_owned(),
        (true, false) => format!("{NEGOTIATION_HEADERS}, Host"),
        (true, true) => format!("{NEGOTIATION_HEADERS}, Host, X-Forwarded-Host, X-Forwarded-Proto"),
    }
}

fn error_body(status: StatusCode, body: serde_json::Value) -> Response {
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
    (status, headers, body.to_string()).into_response()
}

fn not_found(what: &str) -> Response {
    error_body(StatusCode::NOT_FOUND, serde_json::json!({"error": what}))
}

pub async fn agent_card(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let card = match gw.card_to_serve(&id).await {
        CardLookup::NotFound => return not_found("agent not found"),
        CardLookup::Card(card) => card,
        CardLookup::Unavailable(detail) => {
            let body = serde_json::json!({"error": "agent card unavailable", "detail": detail});
            return error_body(StatusCode::BAD_GATEWAY, body);
        }
    };
    let negotiated = negotiated(&gw, &headers, query.as_deref());
    let agent_url = format!("{}/agents/{id}", public_base(&gw, &headers));
    let body = served_agent_card(&card.card.0, &id, &agent_url, negotiated.options);
    let modified = UNIX_EPOCH + Duration::from_millis(card.fetched_at_ms);
    serve_card(&gw, &headers, negotiated, body, Some(modified))
}

pub async fn gateway_card(State(gw): State<Arc<Gateway>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let base = public_base(&gw, &headers);
    let negotiated = negotiated(&gw, &headers, query.as_deref());
    let body = gw.replica.read(|t| {
        let skills: Vec<AgentSkill<'_>> = t
            .agents()
            .map(|e| AgentSkill {
                id: &e.record.id,
                card: e.card.as_ref().map(|c| &c.card.0),
                card_url: format!("{base}/agents/{}/.well-known/agent-card.json", e.record.id),
            })
            .collect();
        build_gateway_card(&base, &gw.config.cards.gateway_name, &skills, negotiated.options)
    });
    serve_card(&gw, &headers, negotiated, body, None)
}

fn serve_card(
    gw: &Gateway,
    headers: &HeaderMap,
    negotiated: Negotiated,
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
        (StatusCode::OK, [(header::CONTENT_TYPE, negotiated.content_type)], bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex etag is a valid header"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache_control).expect("valid header"));
    h.insert(header::VARY, HeaderValue::from_str(&vary(gw)).expect("header names are valid"));
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
