//! OAuth2 client credentials toward agents (`state::AgentAuth::oauth2`, RFC 6749 section
//! 4.4): the gateway gets a bearer token for an agent from the agent's token endpoint, keeps
//! it on this node, and sends it on every call to that agent.
//!
//! One token per agent and node. It is fetched when first needed and again once it is within
//! the refresh margin of its expiry (`agents.oauth_refresh_margin_ms`, at most half its
//! lifetime), so an agent never gets a token about to expire; callers that need a token
//! while it is being fetched wait for that one fetch (one lock per agent), and callers that
//! queued behind a failed fetch get its error instead of fetching again each. A failed
//! refresh keeps serving the old token until it actually expires. An agent answering 401
//! gets one new token and one retry (`AgentClient`). A token that cannot be had is the
//! agent being unavailable (retryable), never an internal error.
//!
//! Secrets: the client secret is read from where its [`SecretSource`] says, on this node,
//! at each fetch; neither it nor a token is ever logged, answered or shown by `Debug`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::jsonrpc::RpcError;
use crate::state::{ClientAuth, OAuth2Client};

/// Largest token endpoint answer read.
const TOKEN_RESPONSE_BYTES_MAX: usize = 16 * 1024;

/// Agents with a token slot on this node; past it, slots no call holds are dropped.
const TOKEN_SLOTS_MAX: usize = 4096;

/// How long a token whose answer named no `expires_in` is kept (the lifetime is unknown).
const LIFETIME_UNKNOWN: Duration = Duration::from_secs(300);

/// A bearer token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

struct Held {
    token: Token,
    /// Fetch a new one from then on.
    refresh_at: Instant,
    /// Never send it after this.
    expires_at: Instant,
}

#[derive(Default)]
struct SlotState {
    held: Option<Held>,
    /// The last failed fetch, for the callers that waited for it.
    failed: Option<(Instant, String)>,
}

/// One agent's token: the client config it is for, and the lock a fetch holds.
struct Slot {
    client: OAuth2Client,
    state: tokio::sync::Mutex<SlotState>,
}

/// This node's tokens, by agent.
pub struct Tokens {
    http: reqwest::Client,
    margin: Duration,
    timeout: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// What a token endpoint answers (RFC 6749 section 5.1); other members are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// An error answer (RFC 6749 section 5.2): only its code is repeated.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

impl Tokens {
    pub fn new(http: reqwest::Client, margin: Duration, timeout: Duration) -> Tokens {
        Tokens { http, margin, timeout, slots: Mutex::new(HashMap::new()) }
    }

    /// The agent's token: the one held, or a new one when none is held or it is within its
    /// refresh margin.
    pub async fn bearer(&self, agent_id: &str, client: &OAuth2Client) -> Result<Token, RpcError> {
        let slot = self.slot(agent_id, client);
        let asked = Instant::now();
        let mut state = slot.state.lock().await;
        let now = Instant::now();
        if let Some(held) = state.held.as_ref().filter(|h| now < h.refresh_at) {
            return Ok(held.token.clone());
        }
        if let Some((at, why)) = &state.failed
            && *at >= asked
        {
            // A fetch failed while this caller waited: its answer, not another fetch.
            return match state.held.as_ref().filter(|h| now < h.expires_at) {
                Some(held) => Ok(held.token.clone()),
                None => Err(unavailable(agent_id, why)),
            };
        }
        match self.fetch(client).await {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let margin = self.margin.min(lifetime / 2);
                state.held = Some(Held {
                    token: token.clone(),
                    refresh_at: now + lifetime - margin,
                    expires_at: now + lifetime,
                });
                state.failed = None;
                Ok(token)
            }
            Err(why) => {
                tracing::warn!(agent_id, token_url = %client.token_url, error = %why, "OAuth2 token fetch failed");
                state.failed = Some((Instant::now(), why.clone()));
                match state.held.as_ref().filter(|h| Instant::now() < h.expires_at) {
                    // Not expired yet: the old token serves until it is.
                    Some(held) => Ok(held.token.clone()),
                    None => {
                        state.held = None;
                        Err(unavailable(agent_id, &why))
                    }
                }
            }
        }
    }

    /// Drops the agent's token if it is still `used` (the agent refused it): the next
    /// [`Tokens::bearer`] fetches a new one, shared by every caller refused alike.
    pub async fn invalidate(&self, agent_id: &str, used: &Token) {
        let slot = self.slots.lock().expect("token slots lock").get(agent_id).cloned();
        let Some(slot) = slot else { return };
        let mut state = slot.state.lock().await;
        if state.held.as_ref().is_some_and(|h| h.token == *used) {
            state.held = None;
            state.failed = None;
        }
    }

    /// Forgets an agent's token (the agent was deleted).
    pub fn forget(&self, agent_id: &str) {
        self.slots.lock().expect("token slots lock").remove(agent_id);
    }

    /// The agent's slot for this client config; a changed config starts a new one.
    fn slot(&self, agent_id: &str, client: &OAuth2Client) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("token slots lock");
        if let Some(slot) = slots.get(agent_id).filter(|s| s.client == *client) {
            return slot.clone();
        }
        if slots.len() >= TOKEN_SLOTS_MAX {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let slot = Arc::new(Slot { client: client.clone(), state: Default::default() });
        slots.insert(agent_id.to_owned(), slot.clone());
        slot
    }

    /// One token request. The error says what went wrong without a secret or a token.
    async fn fetch(&self, c: &OAuth2Client) -> Result<(Token, Duration), String> {
        let secret = c.client_secret.read()?;
        let mut request = self
            .http
            .post(&c.token_url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if c.client_auth == ClientAuth::Basic {
            // RFC 6749 section 2.3.1: both form-encoded before they are joined.
            request = request.basic_auth(encode(&c.client_id), Some(encode(&secret)));
        }
        let response = request.body(token_form(c, &secret)).send().await.map_err(|e| match e {
            e if e.is_timeout() => format!("the token endpoint did not answer within {} ms", self.timeout.as_millis()),
            e if e.is_connect() => "the token endpoint is unreachable".to_owned(),
            _ => "transport error at the token endpoint".to_owned(),
        })?;
        let status = response.status();
        let bytes = read_limited(response).await?;
        if !status.is_success() {
            let code = serde_json::from_slice::<ErrorAnswer>(&bytes)
                .ok()
                .map(|e| e.error)
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            return Err(match code {
                Some(code) => format!("the token endpoint answered HTTP {} ({code})", status.as_u16()),
                None => format!("the token endpoint answered HTTP {}", status.as_u16()),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|_| "the token endpoint's answer is not a token".to_owned())?;
        if answer.access_token.is_empty() {
            return Err("the token endpoint answered an empty access_token".into());
        }
        if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err("the token endpoint answered a token that is not a bearer token".into());
        }
        Ok((Token(answer.access_token.into()), lifetime(answer.expires_in.as_ref())?))
    }
}

/// The token request's form body.
fn token_form(c: &OAuth2Client, secret: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if !c.scopes.is_empty() {
        form.append_pair("scope", &c.scopes.join(" "));
    }
    if let Some(audience) = &c.audience {
        form.append_pair("audience", audience);
    }
    if c.client_auth == ClientAuth::Post {
        form.append_pair("client_id", &c.client_id);
        form.append_pair("client_secret", secret);
    }
    form.finish()
}

/// `expires_in`: seconds, a number (some servers send a string of one).
fn lifetime(expires_in: Option<&serde_json::Value>) -> Result<Duration, String> {
    let seconds = match expires_in {
        None | Some(serde_json::Value::Null) => return Ok(LIFETIME_UNKNOWN),
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s.min(1e9))),
        _ => Err("the token endpoint answered an expires_in that is not a positive number of seconds".into()),
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| "the token endpoint's answer broke off".to_owned())? {
        if body.len() + chunk.len() > TOKEN_RESPONSE_BYTES_MAX {
            return Err(format!("the token endpoint's answer exceeds {TOKEN_RESPONSE_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// No token for the agent: the agent cannot be called now (retryable).
fn unavailable(agent_id: &str, why: &str) -> RpcError {
    RpcError::AgentUnavailable(format!("agent {agent_id}: no OAuth2 token from its token endpoint ({why}); retry"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes() {
        assert_eq!(lifetime(None), Ok(LIFETIME_UNKNOWN));
        assert_eq!(lifetime(Some(&json!(60))), Ok(Duration::from_secs(60)));
        assert_eq!(lifetime(Some(&json!("2"))), Ok(Duration::from_secs(2)));
        assert!(lifetime(Some(&json!(0))).is_err());
        assert!(lifetime(Some(&json!(-5))).is_err());
        assert!(lifetime(Some(&json!({}))).is_err());
    }

    #[test]
    fn nothing_secret_in_debug() {
        let c = OAuth2Client {
            token_url: "http://idp/token".into(),
            client_id: "gw".into(),
            client_secret: crate::state::SecretSource::Value("s3cr3t-value".into()),
            scopes: vec!["a".into()],
            audience: None,
            client_auth: ClientAuth::Basic,
        };
        let shown = format!("{c:?} {:?}", Token("t0ken-value".into()));
        assert!(!shown.contains("s3cr3t-value") && !shown.contains("t0ken-value"), "{shown}");
        assert_eq!(encode("a b:c"), "a+b%3Ac");
    }
}
