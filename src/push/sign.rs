//! Signed deliveries in SuperX's formats, so its receivers keep verifying: the HMAC signature
//! headers and the HS256 JWT (`superx-reference.md` §6).
//!
//! HMAC: `X-A2A-Timestamp: <unix seconds>` and `X-A2A-Signature: <lowercase hex
//! HMAC-SHA256(secret, "<timestamp>.<body>")>` (no `sha256=` prefix). JWT: compact HS256,
//! header `{"alg":"HS256","typ":"JWT"[,"kid"]}`, claims `iat`, `exp` (iat + ttl), `nbf`
//! (iat - skew), `hash` (lowercase hex SHA-256 of the body), and `iss`, `aud`, `taskId` when
//! known. Both sign the exact bytes sent. And JWTs signed with the cluster's own key
//! (ES256, the same claims), which receivers verify with the JWKS the gateway publishes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::state::push::SigningKey;

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
    let header = jwt_header("HS256", claims.kid);
    let payload = jwt_payload(claims, body, now, ttl, skew);
    compact(&header, &payload, |input| hmac_sha256(secret.as_bytes(), &[input]))
}

/// A compact ES256 JWT for a body, signed with the cluster's key (`kid` in its header).
pub fn jwt_es256(
    key: &SigningKey,
    claims: &JwtClaims<'_>,
    body: &[u8],
    now: u64,
    ttl: u64,
    skew: u64,
) -> Result<String, String> {
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.pkcs8, &rng)
        .map_err(|e| format!("the cluster's signing key is unusable: {e}"))?;
    let header = jwt_header("ES256", Some(&key.kid));
    let payload = jwt_payload(claims, body, now, ttl, skew);
    let mut failed = None;
    let token = compact(&header, &payload, |input| match pair.sign(&rng, input) {
        Ok(signature) => signature.as_ref().to_vec(),
        Err(e) => {
            failed = Some(format!("signing failed: {e}"));
            vec![]
        }
    });
    failed.map_or(Ok(token), Err)
}

/// A new signing key for the cluster (ECDSA P-256), its id derived from its public key.
pub fn new_signing_key() -> Result<SigningKey, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| e.to_string())?;
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).map_err(|e| e.to_string())?;
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(pair.public_key().as_ref())[..12]);
    Ok(SigningKey { kid, pkcs8: pkcs8.as_ref().to_vec() })
}

/// The JWKS publishing the cluster's public key (none before a leader made one).
pub fn jwks(key: Option<&SigningKey>) -> Value {
    let rng = SystemRandom::new();
    let keys: Vec<Value> = key
        .and_then(|k| EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &k.pkcs8, &rng).ok().map(|p| (k, p)))
        .map(|(k, pair)| {
            // An uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]), "kid": k.kid, "use": "sig", "alg": "ES256"})
        })
        .into_iter()
        .collect();
    json!({ "keys": keys })
}

fn jwt_header(alg: &str, kid: Option<&str>) -> Value {
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg));
    header.insert("typ".into(), json!("JWT"));
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    Value::Object(header)
}

fn compact(header: &Value, payload: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", encode(header), encode(payload));
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn jwt_payload(claims: &JwtClaims<'_>, body: &[u8], now: u64, ttl: u64, skew: u64) -> Value {
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
    payload
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
    fn an_es256_jwt_verifies_with_the_published_jwks() {
        let key = new_signing_key().unwrap();
        let claims = JwtClaims { issuer: Some("superx"), audience: None, kid: None, task_id: "t1" };
        let token = jwt_es256(&key, &claims, b"body", 1_000, 300, 120).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": key.kid}));
        let jwk = jwks(Some(&key))["keys"][0].clone();
        assert_eq!((jwk["kid"].as_str(), jwk["alg"].as_str()), (Some(key.kid.as_str()), Some("ES256")));
        let point = [
            &[4u8][..],
            &URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
            &URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
        let input = format!("{}.{}", parts[0], parts[1]);
        public.verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("the signature verifies");
        assert_eq!(jwks(None), json!({"keys": []}));
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
