//! [`AuthTransport`]: chitchat over UDP with every datagram tagged with the cluster secret.
//!
//! On the wire a datagram is `SXG1 | stamp (u64 BE, unix ms) | nonce (u64 BE) | chitchat
//! bytes | tag`, the tag an HMAC-SHA256 (`Purpose::Gossip`) over the stamp, the nonce and the
//! chitchat bytes. The nonce (a counter of the sending socket) makes two sends of the same
//! message in one millisecond (chitchat greets a seed and gossips to it at once) two datagrams,
//! so the replay check never takes a legitimate repeat for a replay. A datagram with a
//! bad tag, a stamp further than `CLOCK_SKEW_MAX` from this node's clock, or a tag seen before
//! (`ReplayGuard`) is dropped before chitchat sees it, and counted: a process without the
//! secret is never heard, so it never shows in the member list and cannot change what other
//! nodes published.
//!
//! chitchat 0.13 keeps its message encoding private (`ChitchatEnvelope::serialize` is
//! crate-private, and so are the digest and delta types), so the bytes are obtained from
//! chitchat's own `UdpSocket` through a loopback pair (`Codec`): to send, the envelope goes
//! from a chitchat socket to a plain socket on 127.0.0.1, whose bytes are tagged and sent on
//! the real listener; to receive, the checked bytes go the other way and chitchat decodes
//! them. Only datagrams from the pair's own address are believed on those sockets. Gossip
//! runs a few datagrams per node per round, so the two extra loopback hops cost nothing that
//! matters.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as ChitchatUdp};
use superx_keyring::{Keyring, Purpose, ReplayGuard, TAG_BYTES};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const MAGIC: &[u8; 4] = b"SXG1";
const HEADER_BYTES: usize = MAGIC.len() + 8 + 8;

/// Largest UDP payload (IPv4). chitchat fills a datagram up to this, so a message that large
/// cannot take the header and tag; superx's gossip state is a few KiB per node, far below.
const DATAGRAM_BYTES_MAX: usize = 65_507;

/// How long a loopback hop may take before the datagram counts as lost (it never is on a
/// working machine; this only bounds a hop chitchat refused to decode).
const HOP_TIMEOUT: Duration = Duration::from_millis(250);

/// Decoded datagrams waiting for chitchat's loop; past it the receiver waits, and the kernel
/// drops what does not fit in the socket's buffer, as with plain UDP.
const RECEIVED_QUEUE: usize = 64;

/// Gossip tags remembered for replay: a node receives a few dozen datagrams a second.
const REPLAY_TAGS_MAX: usize = 65_536;

/// At most one warning about dropped datagrams per this many ms.
const WARN_EVERY_MS: u64 = 10_000;

/// The gossip transport of a closed cluster.
pub(crate) struct AuthTransport {
    pub keyring: Keyring,
}

#[async_trait]
impl Transport for AuthTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let wire = UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        let wire = Arc::new(wire);
        let encoder = Codec::open().await?;
        let decoder = Codec::open().await?;
        let (received, queue) = mpsc::channel(RECEIVED_QUEUE);
        let receiver = Receiver {
            wire: wire.clone(),
            decoder,
            keyring: self.keyring.clone(),
            replay: ReplayGuard::new(REPLAY_TAGS_MAX),
            received,
        };
        let task = tokio::spawn(receiver.run());
        Ok(Box::new(AuthSocket { wire, encoder, keyring: self.keyring.clone(), queue, task, sent: 0 }))
    }
}

struct AuthSocket {
    wire: Arc<UdpSocket>,
    encoder: Codec,
    keyring: Keyring,
    queue: mpsc::Receiver<RecvOutcome>,
    task: JoinHandle<()>,
    /// Datagrams sent: the next one's nonce.
    sent: u64,
}

impl Drop for AuthSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Socket for AuthSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.wire.local_addr().context("failed to get UDP socket address")
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let Some(bytes) = self.encoder.encode(envelope).await? else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        self.sent += 1;
        let datagram = seal(&self.keyring, superx_keyring::now_ms(), self.sent, &bytes);
        if datagram.len() > DATAGRAM_BYTES_MAX {
            static LAST_WARN: AtomicU64 = AtomicU64::new(0);
            if due(&LAST_WARN) {
                tracing::warn!(bytes = datagram.len(), "gossip message too large for one tagged datagram; dropped");
            }
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.wire.send_to(&datagram, to).await.context("failed to send chitchat message to peer")?;
        Ok(SendOutcome { num_bytes_sent: datagram.len() })
    }

    /// Cancel-safe: the receiving loop runs in its own task.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.queue.recv().await.context("the gossip receiver stopped")
    }
}

/// Reads the listener, checks every datagram and hands chitchat the good ones.
struct Receiver {
    wire: Arc<UdpSocket>,
    decoder: Codec,
    keyring: Keyring,
    replay: ReplayGuard,
    received: mpsc::Sender<RecvOutcome>,
}

impl Receiver {
    async fn run(mut self) {
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
        loop {
            let (len, from) = match self.wire.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(err) if is_transient(&err) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "gossip listener failed; gossip stops");
                    return; // Dropping `received` ends chitchat's loop with an error.
                }
            };
            let Some(bytes) = self.open(&buf[..len], from) else {
                continue;
            };
            match self.decoder.decode(bytes).await {
                Ok(Some(envelope)) => {
                    let outcome = RecvOutcome { from_addr: from, envelope, num_bytes_received: len };
                    if self.received.send(outcome).await.is_err() {
                        return;
                    }
                }
                Ok(None) => tracing::debug!(%from, "a tagged gossip datagram chitchat could not decode"),
                Err(err) => {
                    tracing::warn!(error = %err, "gossip decoder failed; gossip stops");
                    return;
                }
            }
        }
    }

    /// The chitchat bytes of a datagram whose stamp, tag and novelty check out.
    fn open<'a>(&self, datagram: &'a [u8], from: SocketAddr) -> Option<&'a [u8]> {
        let refused = |why: &str| {
            self.keyring.refused(Purpose::Gossip);
            static LAST_WARN: AtomicU64 = AtomicU64::new(0);
            if due(&LAST_WARN) {
                let (_, total) = self.keyring.refusals();
                tracing::warn!(
                    %from,
                    reason = why,
                    refused_total = total,
                    "gossip datagram dropped: it does not carry a valid tag of this cluster's secret (a process \
                     outside the cluster, or a node with another cluster.secret)"
                );
            }
            None
        };
        let Some((stamp, nonce, bytes, tag)) = split(datagram) else {
            return refused("not a tagged datagram");
        };
        if !superx_keyring::is_fresh(stamp, superx_keyring::now_ms()) {
            return refused("stale stamp (clock skew?)");
        }
        if !self.keyring.verify(Purpose::Gossip, &[&stamp.to_be_bytes(), &nonce.to_be_bytes(), bytes], tag) {
            return refused("bad tag");
        }
        if !self.replay.first_time(tag) {
            return refused("replayed");
        }
        Some(bytes)
    }
}

/// `MAGIC | stamp | nonce | bytes | tag`.
fn seal(keyring: &Keyring, stamp_ms: u64, nonce: u64, bytes: &[u8]) -> Vec<u8> {
    let (stamp, nonce) = (stamp_ms.to_be_bytes(), nonce.to_be_bytes());
    let tag = keyring.tag(Purpose::Gossip, &[&stamp, &nonce, bytes]);
    let mut datagram = Vec::with_capacity(HEADER_BYTES + bytes.len() + TAG_BYTES);
    datagram.extend_from_slice(MAGIC);
    datagram.extend_from_slice(&stamp);
    datagram.extend_from_slice(&nonce);
    datagram.extend_from_slice(bytes);
    datagram.extend_from_slice(&tag);
    datagram
}

/// The stamp, the nonce, the chitchat bytes and the tag of a datagram shaped like [`seal`]'s.
fn split(datagram: &[u8]) -> Option<(u64, u64, &[u8], &[u8])> {
    if datagram.len() < HEADER_BYTES + TAG_BYTES || !datagram.starts_with(MAGIC) {
        return None;
    }
    let at = MAGIC.len();
    let stamp = u64::from_be_bytes(datagram[at..at + 8].try_into().ok()?);
    let nonce = u64::from_be_bytes(datagram[at + 8..HEADER_BYTES].try_into().ok()?);
    let (bytes, tag) = datagram[HEADER_BYTES..].split_at(datagram.len() - HEADER_BYTES - TAG_BYTES);
    Some((stamp, nonce, bytes, tag))
}

fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, ConnectionReset, OutOfMemory};
    matches!(err.kind(), OutOfMemory | ConnectionReset | ConnectionRefused)
}

fn due(last: &AtomicU64) -> bool {
    let now = superx_keyring::now_ms();
    let previous = last.load(Ordering::Relaxed);
    now.saturating_sub(previous) >= WARN_EVERY_MS
        && last.compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// A chitchat socket and a plain socket on loopback, paired: chitchat's encoding both ways.
struct Codec {
    chitchat: ChitchatUdp,
    chitchat_addr: SocketAddr,
    tap: UdpSocket,
    tap_addr: SocketAddr,
    buf: Vec<u8>,
}

impl Codec {
    async fn open() -> anyhow::Result<Codec> {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let chitchat = ChitchatUdp::open(loopback).await?;
        let chitchat_addr = chitchat.local_addr()?;
        let tap = UdpSocket::bind(loopback).await.context("gossip codec socket")?;
        let tap_addr = tap.local_addr()?;
        Ok(Codec { chitchat, chitchat_addr, tap, tap_addr, buf: vec![0u8; DATAGRAM_BYTES_MAX + 1] })
    }

    /// chitchat's bytes of `envelope`; None if they did not come back in time.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Option<Vec<u8>>> {
        // A previous call cancelled mid-way may have left its bytes behind: drop them.
        while self.tap.try_recv_from(&mut self.buf).is_ok() {}
        self.chitchat.send(self.tap_addr, envelope).await?;
        let wait = async {
            loop {
                let (len, from) = self.tap.recv_from(&mut self.buf).await?;
                if from == self.chitchat_addr {
                    return Ok::<_, std::io::Error>(len);
                }
            }
        };
        match tokio::time::timeout(HOP_TIMEOUT, wait).await {
            Ok(len) => Ok(Some(self.buf[..len.context("gossip codec socket")?].to_vec())),
            Err(_) => Ok(None),
        }
    }

    /// The envelope chitchat decodes from `bytes`; None if it could not (it logs why).
    async fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        self.tap.send_to(bytes, self.chitchat_addr).await.context("gossip codec socket")?;
        let wait = async {
            loop {
                let outcome = self.chitchat.recv().await?;
                if outcome.from_addr == self.tap_addr {
                    return Ok::<_, anyhow::Error>(outcome.envelope);
                }
            }
        };
        match tokio::time::timeout(HOP_TIMEOUT, wait).await {
            Ok(envelope) => Ok(Some(envelope?)),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cluster secret of at least 32 bytes";

    #[test]
    fn a_sealed_datagram_splits_back() {
        let keyring = Keyring::new(SECRET).unwrap();
        let datagram = seal(&keyring, 7, 9, b"chitchat");
        let (stamp, nonce, bytes, tag) = split(&datagram).unwrap();
        assert_eq!((stamp, nonce, bytes), (7, 9, &b"chitchat"[..]));
        assert!(keyring.verify(Purpose::Gossip, &[&7u64.to_be_bytes(), &9u64.to_be_bytes(), b"chitchat"], tag));
        assert_ne!(seal(&keyring, 7, 10, b"chitchat"), datagram, "the same message twice: two datagrams");
        assert!(split(b"SXG1short").is_none());
        assert!(split(&[0u8; 64]).is_none());
    }
}
