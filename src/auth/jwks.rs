//! The key set RS256 and ES256 tokens are verified with: fetched from `auth.jwks_url`, or
//! from the `jwks_uri` of the issuer's OIDC discovery document
//! (`{auth.jwt_issuer}/.well-known/openid-configuration`), cached in memory.
//!
//! Bounded both ways: a refresher fetches the set every `auth.jwks_refresh_seconds` (and at
//! start, so the first request does not wait), and a token naming a `kid` the cache does not
//! hold makes a request fetch again, at most once per `auth.jwks_refetch_min_seconds` (key
//! rotation is picked up at once, and a stream of made-up kids costs one fetch per period).
//! A failed fetch keeps the keys held.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::jwt::{Alg, JwtError};

/// Largest JWKS or discovery document read; real ones are a few KiB.
const DOCUMENT_BYTES_MAX: usize = 256 << 10;

/// Keys kept from one key set; identity providers publish a handful (current and next).
const KEYS_MAX: usize = 64;

/// A public key usable for one algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jwk {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed point (0x04, x, y).
    P256 { point: Vec<u8> },
}

impl Jwk {
    fn fits(&self, alg: Alg) -> bool {
        matches!((self, alg), (Jwk::Rsa { .. }, Alg::Rs256) | (Jwk::P256 { .. }, Alg::Es256))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one: the token's must be the same.
    alg: Option<String>,
    key: Jwk,
}

/// Where the key set comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Url(String),
    /// OIDC discovery of this issuer.
    Discovery(String),
}

/// Fetch pacing.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub refresh: Duration,
    pub refetch_min: Duration,
    pub timeout: Duration,
}

pub struct Jwks {
    source: Source,
    timing: Timing,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<Entry>>>,
    /// Held while fetching, so concurrent misses share one fetch.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    /// The discovered `jwks_uri` (discovery runs until it succeeds once).
    jwks_uri: Option<String>,
}

impl Jwks {
    pub fn new(source: Source, timing: Timing) -> anyhow::Result<Jwks> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timing.timeout)
            .connect_timeout(timing.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("superx/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Jwks {
            source,
            timing,
            http,
            keys: RwLock::new(Arc::new(vec![])),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    /// Fetches the set now and then every refresh period (sooner after a failure), until the
    /// last holder of the set is gone.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Jwks> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(jwks) = weak.upgrade() else { return };
                let pause = match jwks.refetch().await {
                    Ok(()) => jwks.timing.refresh,
                    Err(_) => jwks.timing.refetch_min,
                };
                drop(jwks);
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// The key for a token's `kid` and algorithm. Without a `kid`, the one key that fits the
    /// algorithm, if there is exactly one.
    pub async fn key(&self, kid: Option<&str>, alg: Alg) -> Result<Jwk, JwtError> {
        if let Some(key) = self.find(kid, alg) {
            return Ok(key);
        }
        self.refetch().await.ok();
        self.find(kid, alg).ok_or_else(|| JwtError::UnknownKey(kid.map(str::to_owned)))
    }

    fn find(&self, kid: Option<&str>, alg: Alg) -> Option<Jwk> {
        let keys = self.keys.read().expect("jwks lock").clone();
        let mut fitting = keys
            .iter()
            .filter(|e| e.key.fits(alg) && e.alg.as_deref().is_none_or(|a| a == alg.name()))
            .filter(|e| kid.is_none_or(|k| e.kid.as_deref() == Some(k)));
        let first = fitting.next()?;
        (kid.is_some() || fitting.next().is_none()).then(|| first.key.clone())
    }

    /// Fetches the set again, unless a fetch started less than `refetch_min` ago (then the
    /// keys that one brought are what there is).
    async fn refetch(&self) -> Result<(), JwtError> {
        let mut state = self.fetch.lock().await;
        if state.last_attempt.is_some_and(|t| t.elapsed() < self.timing.refetch_min) {
            return Ok(());
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch_keys(&mut state).await {
            Ok(entries) => {
                tracing::debug!(keys = entries.len(), "JWKS fetched");
                *self.keys.write().expect("jwks lock") = Arc::new(entries);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the keys held");
                Err(JwtError::KeysUnavailable(e))
            }
        }
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<Vec<Entry>, String> {
        let uri = match (&self.source, &state.jwks_uri) {
            (Source::Url(url), _) => url.clone(),
            (Source::Discovery(_), Some(uri)) => uri.clone(),
            (Source::Discovery(issuer), None) => {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let doc = self.get_json(&url).await?;
                let uri = doc["jwks_uri"].as_str().ok_or("the discovery document has no jwks_uri")?.to_owned();
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        Ok(parse_set(&self.get_json(&uri).await?))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > DOCUMENT_BYTES_MAX {
                return Err(format!("{url}: larger than {DOCUMENT_BYTES_MAX} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }
}

/// The usable signing keys of a JWKS document (`{"keys": [...]}`); others are skipped.
fn parse_set(doc: &Value) -> Vec<Entry> {
    doc["keys"].as_array().into_iter().flatten().filter_map(parse_key).take(KEYS_MAX).collect()
}

fn parse_key(k: &Value) -> Option<Entry> {
    if k.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let bytes = |name: &str| k[name].as_str().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
    let key = match (k["kty"].as_str()?, k["crv"].as_str()) {
        ("RSA", _) => Jwk::Rsa { n: bytes("n")?, e: bytes("e")? },
        ("EC", Some("P-256")) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            Jwk::P256 { point: [&[4u8][..], &x, &y].concat() }
        }
        _ => return None,
    };
    let text = |name: &str| k[name].as_str().map(str::to_owned);
    Some(Entry { kid: text("kid"), alg: text("alg"), key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_sets_parse_and_skip_what_is_unusable() {
        let b = |n: usize| URL_SAFE_NO_PAD.encode(vec![1u8; n]);
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": b(256), "e": "AQAB", "alg": "RS256"},
            {"kty": "EC", "crv": "P-256", "kid": "e", "x": b(32), "y": b(32)},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": b(48), "y": b(48)},
            {"kty": "RSA", "kid": "enc", "n": b(256), "e": "AQAB", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0"},
        ]});
        let set = parse_set(&doc);
        let kids: Vec<_> = set.iter().map(|e| e.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["r", "e"]);
        assert!(matches!(&set[1].key, Jwk::P256 { point } if point.len() == 65 && point[0] == 4));
    }
}
