//! Signed deliveries in SuperX's formats, so its receivers keep verifying: the HMAC signature
//! headers and the HS256 JWT (`superx-reference.md` §6).
//!
//! HMAC: `X-A2A-Timestamp: <unix seconds>` and `X-A2A-Signature: <lowercase hex
//! HMAC-SHA256(secret, "<timestamp>.<body>")>` (no `sha256=` prefix). JWT: compact HS256,
//! header `{"alg":"HS256","typ":"JWT"[,"kid"]}`, claims `iat`, `exp` (iat + ttl), `nbf`
//! (iat - skew), `hash` (lowercase hex SHA-256 of the body), and `iss`, `aud`, `taskId` when
//! known. Both sign the exact bytes sent.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The timestamp header of an HMAC-signed delivery.
pub const TIMESTAMP_HEADER: &str = "x-a2a-timestamp";
/// The signature header of an HMAC-signed delivery.
pub const SIGNATURE_HEADER: &str = "x-a2a-signature";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-A2A-Signature` for a body sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    hex(&hmac_sha256(secret.as_bytes(), &[format!("{timestamp}.").as_bytes(), body]))
}

/// What a JWT says besides the times and the body's hash.
pub struct JwtClaims<'a> {
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub kid: Option<&'a str>,
    pub task_id: &'a str,
}

/// A compact HS256 JWT for a body, issued at `now` (Unix seconds).
pub fn jwt_hs256(secret: &str, claims: &JwtClaims<'_>, body: &[u8], now: u64, ttl: u64, skew: u64) -> String {
    let mut header = Map::new();
    header.insert("alg".into(), json!("HS256"));
    header.insert("typ".into(), json!("JWT"));
    if let Some(kid) = claims.kid {
        header.insert("kid".into(), json!(kid));
    }
    let mut payload = json!({
        "iat": now,
        "exp": now.saturating_add(ttl),
        "nbf": now.saturating_sub(skew),
        "hash": hex(&Sha256::digest(body)),
        "taskId": claims.task_id,
    });
    if let Some(iss) = claims.issuer {
        payload["iss"] = json!(iss);
    }
    if let Some(aud) = claims.audience {
        payload["aud"] = json!(aud);
    }
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", encode(&Value::Object(header)), encode(&payload));
    let signature = hmac_sha256(secret.as_bytes(), &[signing_input.as_bytes()]);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_superx_s() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently.
        let expected = hex(&hmac_sha256(b"key", &[b"1700000000.{}"]));
        assert_eq!(signature("key", 1_700_000_000, b"{}"), expected);
        assert_eq!(expected.len(), 64);
        assert!(expected.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_jwt_verifies_and_carries_superx_s_claims() {
        let claims = JwtClaims { issuer: Some("superx"), audience: None, kid: Some("k1"), task_id: "t1" };
        let token = jwt_hs256("s3", &claims, b"body", 1_000, 300, 120);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let expected = hmac_sha256(b"s3", &[format!("{}.{}", parts[0], parts[1]).as_bytes()]);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), expected);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
        let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({"iat": 1000, "exp": 1300, "nbf": 880, "hash": hex(&Sha256::digest(b"body")),
                "iss": "superx", "taskId": "t1"})
        );
    }
}
