//! The cluster secret: what makes a superx cluster closed.
//!
//! Every node of a closed cluster holds the same secret. Raft RPCs (and their answers) and
//! gossip datagrams carry an HMAC-SHA256 tag made with a key derived from it, one key per
//! [`Purpose`], so a tag made for one kind of message is worth nothing for another. A process
//! without the secret can neither send a message a node accepts nor forge an answer.
//!
//! **Rotation.** [`Keyring::rotate`] takes the new secret and keeps the previous one for a
//! grace period: both are accepted for the whole period, and tags are still *made* with the
//! previous one for its first half. So a rolling change of the secret file works as long as
//! every node reads the new file within half the grace period of the first: a node that has
//! the new secret still speaks the old one until every node understands the new one.
//!
//! **Freshness and replay.** Messages carry the sender's clock in unix milliseconds inside
//! what the tag covers; a receiver refuses a stamp further than [`CLOCK_SKEW_MAX`] from its
//! own clock, and [`ReplayGuard`] remembers the tags it has accepted for long enough that one
//! captured message cannot be accepted twice. The secret itself never leaves this module in
//! a `Debug` or `Display`.
#![forbid(unsafe_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::hmac;

/// Shortest secret accepted: 32 bytes (256 bits if random, as `openssl rand -base64 32` gives).
pub const SECRET_BYTES_MIN: usize = 32;

/// How far a message's stamp may be from the receiver's clock. Nodes are expected to run NTP;
/// 30 s tolerates a badly kept clock while keeping a captured message's life short.
pub const CLOCK_SKEW_MAX: Duration = Duration::from_secs(30);

/// Length of a tag on the wire (HMAC-SHA256).
pub const TAG_BYTES: usize = 32;

/// What a tag is for; each purpose has its own key derived from the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A raft RPC (append, vote, snapshot chunk, forwarded write, read-index, elect...).
    RaftRequest,
    /// The answer to a raft RPC, bound to the request's tag.
    RaftResponse,
    /// One gossip datagram.
    Gossip,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::RaftRequest => b"superx cluster key v1: raft request",
            Purpose::RaftResponse => b"superx cluster key v1: raft response",
            Purpose::Gossip => b"superx cluster key v1: gossip datagram",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("the cluster secret must be at least {SECRET_BYTES_MIN} bytes (it has {0})")]
    TooShort(usize),
}

/// A tag, as made by [`Keyring::tag`].
pub type Tag = [u8; TAG_BYTES];

/// One secret's keys, derived once.
struct Keys {
    raft_request: hmac::Key,
    raft_response: hmac::Key,
    gossip: hmac::Key,
    /// Short public name of the secret for logs: the first bytes of a tag over a fixed label.
    fingerprint: String,
    /// The secret itself, only to tell an unchanged file from a changed one.
    digest: [u8; 32],
}

impl Keys {
    fn derive(secret: &[u8]) -> Keys {
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&master, label).as_ref());
        let fingerprint = hmac::sign(&master, b"superx cluster key v1: fingerprint");
        let fingerprint = fingerprint.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        Keys {
            raft_request: derive(Purpose::RaftRequest.label()),
            raft_response: derive(Purpose::RaftResponse.label()),
            gossip: derive(Purpose::Gossip.label()),
            fingerprint,
            digest: digest.as_ref().try_into().expect("SHA-256 is 32 bytes"),
        }
    }

    fn key(&self, purpose: Purpose) -> &hmac::Key {
        match purpose {
            Purpose::RaftRequest => &self.raft_request,
            Purpose::RaftResponse => &self.raft_response,
            Purpose::Gossip => &self.gossip,
        }
    }
}

struct Previous {
    keys: Keys,
    /// Tags are made with the previous secret until then.
    sign_until: Instant,
    /// The previous secret is accepted until then.
    accept_until: Instant,
}

struct Ring {
    current: Keys,
    previous: Option<Previous>,
}

impl Ring {
    fn signing(&self, now: Instant) -> &Keys {
        match &self.previous {
            Some(p) if now < p.sign_until => &p.keys,
            _ => &self.current,
        }
    }

    fn accepted(&self, now: Instant) -> impl Iterator<Item = &Keys> {
        let previous = self.previous.as_ref().filter(|p| now < p.accept_until).map(|p| &p.keys);
        std::iter::once(&self.current).chain(previous)
    }
}

/// Messages refused for a bad or missing tag, a stale stamp or a replay, by kind; for
/// `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct Refusals {
    pub raft: AtomicU64,
    pub gossip: AtomicU64,
}

/// The cluster secret, shared by the raft listener and client and the gossip transport.
/// Cheap to clone; every clone sees a rotation.
#[derive(Clone)]
pub struct Keyring {
    ring: Arc<RwLock<Ring>>,
    refusals: Arc<Refusals>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

impl Keyring {
    pub fn new(secret: &[u8]) -> Result<Keyring, KeyringError> {
        check(secret)?;
        let ring = Ring { current: Keys::derive(secret), previous: None };
        Ok(Keyring { ring: Arc::new(RwLock::new(ring)), refusals: Arc::default() })
    }

    /// Makes `secret` the current one; the one it replaces stays accepted for `grace` (and
    /// signs for its first half). False when `secret` is the current one already.
    pub fn rotate(&self, secret: &[u8], grace: Duration) -> Result<bool, KeyringError> {
        check(secret)?;
        let keys = Keys::derive(secret);
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if keys.digest == ring.current.digest {
            return Ok(false);
        }
        let now = Instant::now();
        let replaced = std::mem::replace(&mut ring.current, keys);
        // A second rotation within the grace of the first: whoever still signs with the
        // oldest secret keeps being understood only if that one is kept; the newer previous
        // wins, as the operator asked for it last.
        ring.previous = Some(Previous { keys: replaced, sign_until: now + grace / 2, accept_until: now + grace });
        Ok(true)
    }

    /// A short public name of the current secret (4 bytes of a keyed hash), for logs: two nodes
    /// with different fingerprints hold different secrets. It says nothing about the secret.
    pub fn fingerprint(&self) -> String {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).current.fingerprint.clone()
    }

    /// The tag of `parts` (each length-prefixed, so the split cannot be moved) for `purpose`,
    /// with the key this node signs with now.
    pub fn tag(&self, purpose: Purpose, parts: &[&[u8]]) -> Tag {
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        compute(ring.signing(Instant::now()).key(purpose), parts)
    }

    /// True when `tag` is the tag of `parts` under a secret this node accepts now. Constant
    /// time in the tag's content.
    pub fn verify(&self, purpose: Purpose, parts: &[&[u8]], tag: &[u8]) -> bool {
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        let mut accepted = ring.accepted(Instant::now());
        accepted.any(|keys| constant_time_eq(&compute(keys.key(purpose), parts), tag))
    }

    /// Counts a refused message (bad tag, stale stamp, replay).
    pub fn refused(&self, purpose: Purpose) {
        let counter = match purpose {
            Purpose::RaftRequest | Purpose::RaftResponse => &self.refusals.raft,
            Purpose::Gossip => &self.refusals.gossip,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages refused so far: (raft, gossip).
    pub fn refusals(&self) -> (u64, u64) {
        (self.refusals.raft.load(Ordering::Relaxed), self.refusals.gossip.load(Ordering::Relaxed))
    }
}

fn check(secret: &[u8]) -> Result<(), KeyringError> {
    if secret.len() < SECRET_BYTES_MIN { Err(KeyringError::TooShort(secret.len())) } else { Ok(()) }
}

fn update(context: &mut hmac::Context, parts: &[&[u8]]) {
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
}

fn compute(key: &hmac::Key, parts: &[&[u8]]) -> Tag {
    let mut context = hmac::Context::with_key(key);
    update(&mut context, parts);
    context.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
}

/// Constant-time equality of two byte strings (their lengths are public).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Unix time in milliseconds (0 before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// True when `stamp_ms` is within [`CLOCK_SKEW_MAX`] of `now_ms`.
pub fn is_fresh(stamp_ms: u64, now_ms: u64) -> bool {
    stamp_ms.abs_diff(now_ms) <= CLOCK_SKEW_MAX.as_millis() as u64
}

/// The tags accepted recently, so a captured message is accepted once. A tag is kept for
/// twice [`CLOCK_SKEW_MAX`]: past that its stamp is stale anyway. At most `capacity` tags;
/// when every slot holds a live tag a new message is refused (only holders of the secret can
/// fill it, and the capacity is far above what a node receives in a minute).
pub struct ReplayGuard {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    tags: HashSet<[u8; 16]>,
    order: VecDeque<(Instant, [u8; 16])>,
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard { capacity: capacity.max(1), seen: Mutex::default() }
    }

    /// True the first time `tag` is seen (and remembers it); false for a replay or when full.
    pub fn first_time(&self, tag: &[u8]) -> bool {
        self.first_time_at(tag, Instant::now())
    }

    fn first_time_at(&self, tag: &[u8], now: Instant) -> bool {
        let mut key = [0u8; 16];
        let n = tag.len().min(16);
        key[..n].copy_from_slice(&tag[..n]);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let keep = CLOCK_SKEW_MAX * 2;
        while let Some((at, old)) = seen.order.front().copied() {
            if now.duration_since(at) < keep {
                break;
            }
            seen.order.pop_front();
            seen.tags.remove(&old);
        }
        if seen.tags.contains(&key) || seen.order.len() >= self.capacity {
            return false;
        }
        seen.tags.insert(key);
        seen.order.push_back((now, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"0123456789abcdef0123456789abcdef-a";
    const B: &[u8] = b"0123456789abcdef0123456789abcdef-b";

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(Keyring::new(b"short").unwrap_err(), KeyringError::TooShort(5));
    }

    #[test]
    fn tags_verify_only_under_the_same_secret_and_purpose() {
        let a = Keyring::new(A).unwrap();
        let b = Keyring::new(B).unwrap();
        let tag = a.tag(Purpose::Gossip, &[b"x", b"y"]);
        assert!(a.verify(Purpose::Gossip, &[b"x", b"y"], &tag));
        assert!(Keyring::new(A).unwrap().verify(Purpose::Gossip, &[b"x", b"y"], &tag));
        assert!(!b.verify(Purpose::Gossip, &[b"x", b"y"], &tag));
        assert!(!a.verify(Purpose::RaftRequest, &[b"x", b"y"], &tag), "another purpose");
        assert!(!a.verify(Purpose::Gossip, &[b"xy", b""], &tag), "parts are length-prefixed");
        assert!(!a.verify(Purpose::Gossip, &[b"x", b"y"], &tag[..31]));
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn a_rotation_keeps_signing_with_the_old_secret_for_half_the_grace() {
        let rotated = Keyring::new(A).unwrap();
        let old = Keyring::new(A).unwrap();
        let new = Keyring::new(B).unwrap();
        assert!(!rotated.rotate(A, Duration::from_secs(60)).unwrap(), "same secret: no rotation");
        assert!(rotated.rotate(B, Duration::from_secs(60)).unwrap());
        // Still signing with A: understood by nodes that have not read the new file yet.
        let tag = rotated.tag(Purpose::RaftRequest, &[b"m"]);
        assert!(old.verify(Purpose::RaftRequest, &[b"m"], &tag));
        // Accepting both.
        assert!(rotated.verify(Purpose::RaftRequest, &[b"m"], &old.tag(Purpose::RaftRequest, &[b"m"])));
        assert!(rotated.verify(Purpose::RaftRequest, &[b"m"], &new.tag(Purpose::RaftRequest, &[b"m"])));
        assert_eq!(rotated.fingerprint(), new.fingerprint());
    }

    #[test]
    fn after_the_grace_only_the_new_secret_counts() {
        let rotated = Keyring::new(A).unwrap();
        let old = Keyring::new(A).unwrap();
        let new = Keyring::new(B).unwrap();
        rotated.rotate(B, Duration::ZERO).unwrap();
        let tag = rotated.tag(Purpose::Gossip, &[b"m"]);
        assert!(new.verify(Purpose::Gossip, &[b"m"], &tag));
        assert!(!old.verify(Purpose::Gossip, &[b"m"], &tag));
        assert!(!rotated.verify(Purpose::Gossip, &[b"m"], &old.tag(Purpose::Gossip, &[b"m"])));
    }

    #[test]
    fn stamps_outside_the_window_are_stale() {
        let now = 1_000_000_000;
        assert!(is_fresh(now, now));
        assert!(is_fresh(now - 30_000, now));
        assert!(is_fresh(now + 30_000, now));
        assert!(!is_fresh(now - 30_001, now));
        assert!(!is_fresh(now + 30_001, now));
    }

    #[test]
    fn the_replay_guard_accepts_a_tag_once_and_forgets_it_later() {
        let guard = ReplayGuard::new(2);
        let t0 = Instant::now();
        assert!(guard.first_time_at(&[1; 32], t0));
        assert!(!guard.first_time_at(&[1; 32], t0), "a replay");
        assert!(guard.first_time_at(&[2; 32], t0));
        assert!(!guard.first_time_at(&[3; 32], t0), "full of live tags: refused");
        let later = t0 + CLOCK_SKEW_MAX * 2;
        assert!(guard.first_time_at(&[3; 32], later), "old tags expired");
        assert!(guard.first_time_at(&[1; 32], later), "expired: its stamp would be stale anyway");
    }
}
