//! API keys in the replicated state: created and revoked through the log, so a key works, and
//! stops working, on every node once the command is applied there.
//!
//! Only a key's SHA-256 is stored (`auth::keys` makes the key and hashes what clients send);
//! the secret itself is shown once, to the caller of `keys/create`, and never again. A key's id
//! is the public part of the key (`sx_<id>_<secret>`), so a lookup is by id and the hash is
//! compared in constant time. `Debug` shows no hash.

use std::fmt;
use std::sync::Arc;

use super::Refusal;
use super::limits::RateLimit;

/// API keys the cluster holds at most. Every node keeps all of them in memory and every
/// request looks one up by id, so the bound is on memory (a few hundred bytes each), not
/// speed; 10,000 is far more callers than one gateway serves by key (JWTs scale further).
pub const KEYS_MAX: usize = 10_000;

/// Agent ids one key may be scoped to at most.
pub const KEY_AGENTS_MAX: usize = 256;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum KeyRole {
    /// A2A methods, on every agent or the ones it is scoped to.
    Client,
    /// Everything: the control plane too (`agents/*`, `keys/*`, `cluster/*`).
    Admin,
}

/// One API key as stored. Stored type.
#[derive(Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ApiKey {
    /// The public part of the key, unique.
    pub id: String,
    /// SHA-256 of the whole key as the client sends it.
    pub hash: [u8; 32],
    /// The operator's label for it (who holds it).
    pub name: String,
    pub role: KeyRole,
    /// The agents it may call; empty: every agent.
    pub agents: Vec<String>,
    /// When it was created (the proposer's clock, Unix ms).
    pub created_at_ms: u64,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("agents", &self.agents)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// The key commands. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum KeyCommand {
    /// Adds a key (refused past [`KEYS_MAX`]; an id that exists already is refused too).
    Create(ApiKey),
    /// Removes a key: from the moment a node applies this, the key is refused there.
    /// Nothing, when it does not exist (revoking is idempotent).
    Revoke { id: String },
    /// [`KeyCommand::Create`] with the key's own rate limit (instead of
    /// `limits.credential_rate`), in one entry so a key never exists without it.
    CreateWithRate { key: ApiKey, rate: RateLimit },
}

/// The keys, by id. Persistent map: the tables' O(1) clone shares it.
#[derive(Clone, Debug, Default)]
pub struct KeyTables {
    keys: imbl::OrdMap<String, Arc<ApiKey>>,
    /// The keys that have their own rate limit; a revoked key's goes with it.
    rates: imbl::OrdMap<String, RateLimit>,
}

impl KeyTables {
    pub fn get(&self, id: &str) -> Option<&ApiKey> {
        self.keys.get(id).map(|k| &**k)
    }

    /// Every key, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.values().map(|k| &**k)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// A key's own rate limit, if it has one.
    pub fn rate(&self, id: &str) -> Option<RateLimit> {
        self.rates.get(id).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn apply(&mut self, command: &KeyCommand) -> Result<(), Refusal> {
        match command {
            KeyCommand::Create(key) => self.create(key)?,
            KeyCommand::CreateWithRate { key, rate } => {
                self.create(key)?;
                self.rates.insert(key.id.clone(), *rate);
            }
            KeyCommand::Revoke { id } => {
                self.keys.remove(id);
                self.rates.remove(id);
            }
        }
        Ok(())
    }

    fn create(&mut self, key: &ApiKey) -> Result<(), Refusal> {
        if self.keys.contains_key(&key.id) {
            return Err(Refusal::KeyExists(key.id.clone()));
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(Refusal::KeysFull(KEYS_MAX));
        }
        self.keys.insert(key.id.clone(), Arc::new(key.clone()));
        Ok(())
    }

    /// The keys for a snapshot, in id order, by reference.
    pub(super) fn snapshot_ref(&self) -> Vec<&ApiKey> {
        self.iter().collect()
    }

    /// The keys' own rates for a snapshot, in id order.
    pub(super) fn rates_snapshot(&self) -> Vec<(String, RateLimit)> {
        self.rates.iter().map(|(id, rate)| (id.clone(), *rate)).collect()
    }

    pub(super) fn restore(keys: Vec<ApiKey>, rates: Vec<(String, RateLimit)>) -> KeyTables {
        KeyTables {
            keys: keys.into_iter().map(|k| (k.id.clone(), Arc::new(k))).collect(),
            rates: rates.into_iter().collect(),
        }
    }

    #[cfg(test)]
    pub(super) fn debug_fingerprint(&self) -> String {
        let keys: Vec<_> = self.iter().map(|k| (&k.id, k.hash, &k.agents)).collect();
        format!("{keys:?} {:?}", self.rates_snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            hash: [7; 32],
            name: "n".into(),
            role: KeyRole::Client,
            agents: vec!["a".into()],
            created_at_ms: 1,
        }
    }

    #[test]
    fn create_revoke_and_limits() {
        let mut t = KeyTables::default();
        t.apply(&KeyCommand::Create(key("k1"))).unwrap();
        assert_eq!(t.apply(&KeyCommand::Create(key("k1"))), Err(Refusal::KeyExists("k1".into())));
        assert_eq!(t.get("k1").unwrap().agents, ["a"]);
        t.apply(&KeyCommand::Revoke { id: "k1".into() }).unwrap();
        t.apply(&KeyCommand::Revoke { id: "k1".into() }).unwrap();
        assert!(t.get("k1").is_none());
        for i in 0..KEYS_MAX {
            t.apply(&KeyCommand::Create(key(&format!("k{i}")))).unwrap();
        }
        assert_eq!(t.apply(&KeyCommand::Create(key("x"))), Err(Refusal::KeysFull(KEYS_MAX)));
        assert!(!format!("{:?}", t.get("k1")).contains("hash"), "Debug shows no hash");
    }
}
