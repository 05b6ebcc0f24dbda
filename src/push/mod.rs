//! Push notifications: webhook delivery of committed task updates.
//!
//! The configs and the outbox live in the state machine (`state::push`): `apply` turns every
//! committed change of a task with configs into an outbox event. This module delivers them:
//! [`deliverer::run`] acts on the raft leader only (as the archiver does), walks each (task,
//! config) lane in event order, POSTs each event (one attempt at a time per lane, at most
//! `push.destination_in_flight_max` lanes at once per destination), retries with backoff and
//! jitter, and commits what became of each event (delivered or given up) in batched
//! `PushCommand::Progress` entries. A new leader resumes from the committed cursors, so an
//! event is delivered at least once; receivers de-duplicate on the `SuperX-Event-Id` header
//! (`<task id>:<event number>`, the same number as the task's SSE ids). `crate::guard` keeps
//! webhooks off private addresses.

pub mod deliverer;
pub mod sign;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::PushSection;
use crate::guard;
use crate::state::push::{Lane, SigningKey};
use crate::state::{PushAuth, PushFormat};

/// The header carrying an event's stable id, for receivers to de-duplicate.
pub const EVENT_ID_HEADER: &str = "superx-event-id";
/// The A2A header echoing a config's token.
pub const TOKEN_HEADER: &str = "x-a2a-notification-token";

/// Delivery counters of this node (it delivers while it leads).
#[derive(Debug, Default)]
pub struct PushStats {
    pub delivered_total: AtomicU64,
    pub given_up_total: AtomicU64,
    pub attempts_total: AtomicU64,
    /// Attempts refused by the SSRF guard.
    pub refused_total: AtomicU64,
}

/// The delivery side of push: the HTTP client behind the guard, and the counters.
pub struct Push {
    client: reqwest::Client,
    pub guard: Arc<guard::Guard>,
    pub config: PushSection,
    pub stats: PushStats,
    /// `iss` of the JWTs signed with the cluster's key (`cards.gateway_name`).
    issuer: String,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth another try, after at least `retry_after` when the receiver said so.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Not worth another try (a 4xx other than 408/429, a redirect, a refused address).
    GiveUp(String),
}

impl Push {
    pub fn new(config: &PushSection, issuer: &str) -> anyhow::Result<Push> {
        let guard = Arc::new(guard::Guard::new(guard::Policy::Webhooks, &config.allow_cidrs));
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard::GuardedResolver { guard: guard.clone() }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Push { client, guard, config: config.clone(), stats: PushStats::default(), issuer: issuer.to_owned() })
    }

    /// One POST of a lane's current event.
    /// `key`: the cluster's signing key, for configs that ask for its JWTs.
    pub async fn attempt(&self, lane: &Lane, body: &serde_json::Value, key: Option<&SigningKey>) -> Attempt {
        self.stats.attempts_total.fetch_add(1, Ordering::Relaxed);
        let c = &lane.config;
        let url = match reqwest::Url::parse(&c.url) {
            Ok(url) => url,
            Err(e) => return Attempt::GiveUp(format!("invalid webhook URL: {e}")),
        };
        if let Err(why) = self.guard.check_literal(&url) {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            return Attempt::GiveUp(why);
        }
        let content_type = match c.format {
            PushFormat::V10 => "application/a2a+json",
            PushFormat::V03 => "application/json",
        };
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(EVENT_ID_HEADER, event_id(&c.task_id, lane.event));
        if let Some(token) = &c.token {
            request = request.header(TOKEN_HEADER, token);
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for auth in &c.auth {
            match self.auth_headers(auth, key, &c.task_id, &bytes, now) {
                Ok(headers) => {
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                }
                Err(error) => return Attempt::Retry { error, retry_after: None },
            }
        }
        let request = request.body(bytes);
        match request.send().await {
            Ok(response) => judge(response.status().as_u16(), response.headers()),
            Err(e) if is_refused(&e) => {
                self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
                Attempt::GiveUp(error_chain(&e))
            }
            Err(e) => Attempt::Retry { error: error_chain(&e), retry_after: None },
        }
    }

    /// The headers one way of authenticating adds to a delivery of `body` at `now` (Unix
    /// seconds).
    fn auth_headers(
        &self,
        auth: &PushAuth,
        key: Option<&SigningKey>,
        task_id: &str,
        body: &[u8],
        now: u64,
    ) -> Result<Vec<(&'static str, String)>, String> {
        Ok(match auth {
            PushAuth::Scheme { scheme, credentials } => {
                let value = match credentials {
                    Some(cred) => format!("{scheme} {cred}"),
                    None => scheme.clone(),
                };
                vec![("authorization", value)]
            }
            PushAuth::Hmac { secret } => vec![
                (sign::TIMESTAMP_HEADER, now.to_string()),
                (sign::SIGNATURE_HEADER, sign::signature(secret, now, body)),
            ],
            PushAuth::JwtHs256 { secret, issuer, audience, kid } => {
                let claims = sign::JwtClaims {
                    issuer: issuer.as_deref(),
                    audience: audience.as_deref(),
                    kid: kid.as_deref(),
                    task_id,
                };
                let (ttl, skew) = (self.config.jwt_ttl_seconds, self.config.jwt_skew_seconds);
                vec![("authorization", format!("Bearer {}", sign::jwt_hs256(secret, &claims, body, now, ttl, skew)))]
            }
            PushAuth::GatewayJwt => {
                let claims = sign::JwtClaims { issuer: Some(&self.issuer), audience: None, kid: None, task_id };
                let (ttl, skew) = (self.config.jwt_ttl_seconds, self.config.jwt_skew_seconds);
                match key.map(|k| sign::jwt_es256(k, &claims, body, now, ttl, skew)) {
                    Some(Ok(token)) => vec![("authorization", format!("Bearer {token}"))],
                    Some(Err(error)) => return Err(error),
                    None => return Err("the cluster has no signing key yet".into()),
                }
            }
        })
    }

    /// The pause before attempt `attempt + 1`: the base doubled per attempt plus up to half of
    /// it at random, at least what the receiver asked (`Retry-After`), at most `retry_max_ms`.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>, random: u64) -> Duration {
        backoff(self.config.retry_base_ms, self.config.retry_max_ms, attempt, retry_after, random)
    }
}

/// A stable id for one event of a task: receivers de-duplicate on it.
pub fn event_id(task_id: &str, event: u64) -> String {
    format!("{task_id}:{event}")
}

/// What an HTTP status means for the delivery.
fn judge(status: u16, headers: &reqwest::header::HeaderMap) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 => Attempt::Retry { error: format!("HTTP {status}"), retry_after: retry_after(headers) },
        300..=499 => Attempt::GiveUp(format!("HTTP {status}")),
        _ => Attempt::Retry { error: format!("HTTP {status}"), retry_after: retry_after(headers) },
    }
}

/// A `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

/// Whether a send failed because the guard refused every address of the host.
fn is_refused(e: &reqwest::Error) -> bool {
    error_chain(e).contains("webhooks may not reach")
}

/// An error with its causes, one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn backoff(base_ms: u64, max_ms: u64, attempt: u32, retry_after: Option<Duration>, random: u64) -> Duration {
    let doubled = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let jitter = if doubled >= 2 { random % (doubled / 2) } else { 0 };
    let pause = Duration::from_millis(doubled.saturating_add(jitter));
    pause.max(retry_after.unwrap_or_default()).min(Duration::from_millis(max_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn statuses_decide_retry_or_give_up() {
        let none = HeaderMap::new();
        assert_eq!(judge(204, &none), Attempt::Delivered);
        assert_eq!(judge(400, &none), Attempt::GiveUp("HTTP 400".into()));
        assert_eq!(judge(404, &none), Attempt::GiveUp("HTTP 404".into()));
        assert_eq!(judge(302, &none), Attempt::GiveUp("HTTP 302".into()));
        assert!(matches!(judge(503, &none), Attempt::Retry { retry_after: None, .. }));
        let mut later = HeaderMap::new();
        later.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            judge(429, &later),
            Attempt::Retry { error: "HTTP 429".into(), retry_after: Some(Duration::from_secs(7)) }
        );
        assert!(matches!(judge(408, &none), Attempt::Retry { .. }));
    }

    #[test]
    fn backoff_doubles_with_jitter_within_its_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(200, 30_000, 1, None, 0), ms(200));
        assert_eq!(backoff(200, 30_000, 2, None, 0), ms(400));
        assert_eq!(backoff(200, 30_000, 3, None, 0), ms(800));
        assert_eq!(backoff(200, 30_000, 3, None, 399), ms(1199), "jitter adds under half");
        assert_eq!(backoff(200, 30_000, 3, None, 400), ms(800));
        assert_eq!(backoff(200, 1_000, 9, None, 0), ms(1_000), "capped");
        assert_eq!(backoff(200, 30_000, 1, Some(Duration::from_secs(5)), 0), ms(5_000), "Retry-After honoured");
        assert_eq!(backoff(200, 3_000, 1, Some(Duration::from_secs(60)), 0), ms(3_000), "... up to the cap");
    }
}
