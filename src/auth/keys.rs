//! API keys as clients hold them: `sx_<id>_<secret>`, where the id (16 hex digits) is public
//! and names the stored key, and the secret is 32 random bytes (base64url). Only the SHA-256
//! of the whole key is stored (`state::keys`); a key that is 256 random bits long needs no
//! slow hash, since nothing short enough to guess hashes to it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// What every API key starts with, so a bearer token is told from a JWT at a glance (a JWT
/// starts with `ey`, base64 of `{"`).
pub const PREFIX: &str = "sx_";

/// Hex digits of a key id (8 random bytes).
const ID_HEX_LEN: usize = 16;

/// A new key: its id and the whole key (shown once, to its creator).
pub struct NewKey {
    pub id: String,
    pub key: String,
}

/// Makes a key from the system's CSPRNG.
pub fn generate() -> Result<NewKey, ring::error::Unspecified> {
    let rng = SystemRandom::new();
    let mut id = [0u8; ID_HEX_LEN / 2];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)?;
    rng.fill(&mut secret)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("{PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    Ok(NewKey { id, key })
}

/// The id a presented key names, if it has the shape of one.
pub fn id_of(key: &str) -> Option<&str> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    let well_formed = id.len() == ID_HEX_LEN && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty();
    well_formed.then_some(id)
}

/// SHA-256 of a credential as presented.
pub fn hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// Equality in time independent of where the hashes differ.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_an_id_and_hash_alike() {
        let k = generate().unwrap();
        assert_eq!(id_of(&k.key), Some(k.id.as_str()));
        assert!(k.key.len() > 60, "{}", k.key.len());
        assert_ne!(generate().unwrap().key, k.key);
        assert!(hashes_equal(&hash(&k.key), &hash(&k.key)));
        assert!(!hashes_equal(&hash(&k.key), &hash("sx_x")));
        for bad in ["sx_", "sx_abc_def", "sx_0123456789abcdef_", "eyJ.x.y", "0123456789abcdef_x"] {
            assert_eq!(id_of(bad), None, "{bad}");
        }
    }
}
