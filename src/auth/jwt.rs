//! JWT bearer tokens (compact JWS): HS256 with the configured shared secret, RS256 and ES256
//! with keys from a JWKS ([`super::jwks`]). Verified with `ring` and `hmac`, the crypto already
//! in the tree; the JOSE around them is a few lines.
//!
//! What a token must be: three base64url parts, at most [`TOKEN_BYTES_MAX`]; a header whose
//! `alg` is one this gateway accepts for the key it names (HS256 only with a secret configured;
//! RS256 only with an RSA key, ES256 only with a P-256 key from the JWKS; never `none`); a valid
//! signature; `iss` equal to `auth.jwt_issuer`; an `aud` (string or list) naming one of
//! `auth.jwt_audiences`; `exp` in the future and `nbf` (if any) in the past, each with
//! `auth.jwt_leeway_seconds` of clock skew; a `sub`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use super::jwks::{Jwk, Jwks};

/// Longest token read. Real tokens are well under 2 KiB; this bounds the work an
/// unauthenticated request can cause.
pub const TOKEN_BYTES_MAX: usize = 8 << 10;

/// The signature algorithms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// Why a token was refused. Said to the client only as "invalid" or "expired"; the rest is for
/// the log.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm not accepted: {0}")]
    Algorithm(String),
    #[error("no key for this token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("claim missing or mistyped: {0}")]
    Claim(&'static str),
    #[error("key set unavailable: {0}")]
    KeysUnavailable(String),
}

/// What a verified token says of its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    /// The token carries the configured admin scope or role.
    pub admin: bool,
}

/// How tokens are checked (from `auth.jwt_*`).
pub struct Verifier {
    pub hs256_secret: Option<Vec<u8>>,
    pub jwks: Option<std::sync::Arc<Jwks>>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub leeway_secs: u64,
    /// A scope (`scope`, `scp`) or role (`roles`) that makes the holder an admin.
    pub admin_scope: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl Verifier {
    /// Verifies a token at `now` (Unix seconds).
    pub async fn verify(&self, token: &str, now: u64) -> Result<Verified, JwtError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Malformed);
        };
        let header: Header = decode_json(h)?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        let alg = Alg::parse(&header.alg).ok_or_else(|| JwtError::Algorithm(header.alg.clone()))?;
        self.check_signature(alg, header.kid, signed.as_bytes(), &signature).await?;
        let claims: Value = decode_json(p)?;
        self.check_claims(&claims, now)
    }

    async fn check_signature(
        &self,
        alg: Alg,
        kid: Option<String>,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), JwtError> {
        if alg == Alg::Hs256 {
            let secret = self.hs256_secret.as_ref().ok_or_else(|| JwtError::Algorithm(alg.name().into()))?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
            mac.update(signed);
            return mac.verify_slice(signature).map_err(|_| JwtError::Signature);
        }
        let jwks = self.jwks.as_ref().ok_or_else(|| JwtError::Algorithm(alg.name().into()))?;
        let key = jwks.key(kid.as_deref(), alg).await?;
        verify_with(&key, signed, signature)
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<Verified, JwtError> {
        let exp = claims["exp"].as_u64().ok_or(JwtError::Claim("exp"))?;
        if now > exp.saturating_add(self.leeway_secs) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().ok_or(JwtError::Claim("nbf"))?;
            if now.saturating_add(self.leeway_secs) < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        if claims["iss"].as_str() != Some(self.issuer.as_str()) {
            return Err(JwtError::Issuer);
        }
        let audiences: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.iter().any(|a| self.audiences.iter().any(|want| want == a)) {
            return Err(JwtError::Audience);
        }
        let subject = claims["sub"].as_str().filter(|s| !s.is_empty()).ok_or(JwtError::Claim("sub"))?;
        let admin = self.admin_scope.as_deref().is_some_and(|scope| has_scope(claims, scope));
        Ok(Verified { issuer: self.issuer.clone(), subject: subject.to_owned(), admin })
    }
}

/// Whether `scope` is among the token's scopes (`scope` space-separated, `scp` as a string or
/// list) or roles (`roles` list).
fn has_scope(claims: &Value, scope: &str) -> bool {
    let in_value = |v: &Value| match v {
        Value::String(s) => s.split(' ').any(|x| x == scope),
        Value::Array(list) => list.iter().any(|x| x.as_str() == Some(scope)),
        _ => false,
    };
    ["scope", "scp", "roles"].iter().any(|name| in_value(&claims[*name]))
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Verifies a signature with a key of the JWKS (its type already matched to the algorithm).
fn verify_with(key: &Jwk, signed: &[u8], signature: &[u8]) -> Result<(), JwtError> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    let ok = match key {
        Jwk::Rsa { n, e } => {
            RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, signed, signature).is_ok()
        }
        Jwk::P256 { point } => {
            ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(signed, signature).is_ok()
        }
    };
    if ok { Ok(()) } else { Err(JwtError::Signature) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// An HS256 token over `claims`.
    pub(crate) fn hs256(secret: &[u8], claims: &Value) -> String {
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn verifier() -> Verifier {
        Verifier {
            hs256_secret: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
            jwks: None,
            issuer: "https://idp".into(),
            audiences: vec!["superx".into()],
            leeway_secs: 30,
            admin_scope: Some("superx:admin".into()),
        }
    }

    async fn check(claims: Value) -> Result<Verified, JwtError> {
        let v = verifier();
        v.verify(&hs256(v.hs256_secret.as_ref().unwrap(), &claims), 1000).await
    }

    #[tokio::test]
    async fn hs256_claims() {
        let good = json!({"iss": "https://idp", "aud": "superx", "sub": "alice", "exp": 1100});
        assert_eq!(check(good.clone()).await.unwrap().subject, "alice");
        let mut c = good.clone();
        c["exp"] = json!(960);
        assert_eq!(check(c.clone()).await.unwrap_err(), JwtError::Expired, "past the leeway");
        c["exp"] = json!(980);
        assert!(check(c).await.is_ok(), "within the leeway");
        let mut c = good.clone();
        c["nbf"] = json!(1040);
        assert_eq!(check(c).await.unwrap_err(), JwtError::NotYetValid);
        let mut c = good.clone();
        c["aud"] = json!(["other", "superx"]);
        assert!(check(c.clone()).await.is_ok());
        c["aud"] = json!("other");
        assert_eq!(check(c).await.unwrap_err(), JwtError::Audience);
        let mut c = good.clone();
        c["iss"] = json!("https://evil");
        assert_eq!(check(c).await.unwrap_err(), JwtError::Issuer);
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(c).await.unwrap_err(), JwtError::Claim("exp"));
        let mut c = good.clone();
        c["scope"] = json!("read superx:admin");
        assert!(check(c).await.unwrap().admin);
        assert!(!check(good).await.unwrap().admin);
    }

    #[tokio::test]
    async fn forged_and_unaccepted_tokens() {
        let v = verifier();
        let claims = json!({"iss": "https://idp", "aud": "superx", "sub": "a", "exp": 1100});
        let wrong = hs256(b"another secret entirely, 32 bytes!", &claims);
        assert_eq!(v.verify(&wrong, 1000).await.unwrap_err(), JwtError::Signature);
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(claims.to_string()));
        assert_eq!(v.verify(&none, 1000).await.unwrap_err(), JwtError::Algorithm("none".into()));
        let rs = format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(v.verify(&rs, 1000).await.unwrap_err(), JwtError::Algorithm("RS256".into()), "no JWKS set");
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(v.verify(bad, 1000).await.unwrap_err(), JwtError::Malformed, "{bad}");
        }
    }
}
