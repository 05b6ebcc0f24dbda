//! Authentication of the raft listener with the cluster secret (`RaftConfig::keyring`).
//!
//! Every request carries `X-SuperX-Cluster-Auth: v1 <unix ms> <nonce> <tag>`, the tag an
//! HMAC-SHA256 over the stamp, the nonce (a counter of the sending process, so the same request
//! sent twice in one millisecond is two requests), the method, the path and the whole body; every answer carries one over the
//! request's tag, the status and the body. What that stops, from an attacker on the network
//! path who lacks the secret:
//! - sending any RPC (a vote, an append, a forwarded write): refused with 401 before the body
//!   is decoded, and nothing reaches openraft;
//! - changing a request or an answer in flight, or answering in a peer's place (a forged
//!   "appended" would let a leader count a follower that never stored the entries): the tag
//!   no longer matches, and the caller treats the answer as a network error;
//! - replaying what it captured: a stamp older than `CLOCK_SKEW_MAX` is refused; within that
//!   window, votes and elect requests are accepted once (`ReplayGuard`), and the rest are
//!   harmless twice (an append of entries a follower has is a no-op, a forwarded write's
//!   request ids are deduplicated by apply, a read-index or snapshot chunk changes nothing).
//!
//! It does not hide what travels (plain HTTP): run the raft listener on a private network.
//! Without a keyring the listener is open, as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use superx_keyring::{Keyring, Purpose, ReplayGuard, TAG_BYTES, Tag};

use super::{ELECT_PATH, VOTE_PATH};

/// The header carrying the stamp and the tag, on requests and answers.
pub(crate) const AUTH_HEADER: &str = "x-superx-cluster-auth";

/// Votes and elect requests remembered for replay; a node sees a few per election.
const REPLAY_TAGS_MAX: usize = 16_384;

/// At most one warning about refused requests (or refused answers) per this many ms.
const WARN_EVERY_MS: u64 = 10_000;

/// The stamp and nonce of a request this process sends now.
pub(crate) fn next_stamp() -> Stamp {
    static SENT: AtomicU64 = AtomicU64::new(0);
    Stamp { ms: superx_keyring::now_ms(), nonce: SENT.fetch_add(1, Ordering::Relaxed) }
}

/// When a request was made, and which of this process's requests it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub ms: u64,
    pub nonce: u64,
}

/// The tag of a request.
pub(crate) fn request_tag(keyring: &Keyring, stamp: Stamp, path: &str, body: &[u8]) -> Tag {
    let (ms, nonce) = (stamp.ms.to_be_bytes(), stamp.nonce.to_be_bytes());
    keyring.tag(Purpose::RaftRequest, &request_parts(&ms, &nonce, path, body))
}

fn request_parts<'a>(ms: &'a [u8; 8], nonce: &'a [u8; 8], path: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [ms, nonce, b"POST", path.as_bytes(), body]
}

/// The tag of an answer to the request tagged `request`.
fn response_tag(keyring: &Keyring, request: &[u8], status: u16, body: &[u8]) -> Tag {
    keyring.tag(Purpose::RaftResponse, &[request, &status.to_be_bytes(), body])
}

/// True when `header` (the answer's `AUTH_HEADER`) is a valid tag of this answer to the
/// request tagged `request`.
pub(crate) fn verify_response(
    keyring: &Keyring,
    request: &Tag,
    status: u16,
    header: Option<&HeaderValue>,
    body: &[u8],
) -> bool {
    let Some((_, tag)) = header.and_then(|v| v.to_str().ok()).and_then(parse) else {
        return false;
    };
    keyring.verify(Purpose::RaftResponse, &[request, &status.to_be_bytes(), body], &tag)
}

pub(crate) fn header_value(stamp: Stamp, tag: &Tag) -> String {
    format!("v1 {} {} {}", stamp.ms, stamp.nonce, hex(tag))
}

fn parse(value: &str) -> Option<(Stamp, Tag)> {
    let mut fields = value.split(' ');
    let (version, ms, nonce, tag) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    if version != "v1" || fields.next().is_some() || tag.len() != TAG_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; TAG_BYTES];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(tag.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((Stamp { ms: ms.parse().ok()?, nonce: nonce.parse().ok()? }, out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the listener's authentication layer needs.
pub(crate) struct ServerAuth {
    keyring: Keyring,
    replay: ReplayGuard,
    body_bytes_max: usize,
}

impl ServerAuth {
    pub(crate) fn new(keyring: Keyring, body_bytes_max: usize) -> Arc<ServerAuth> {
        Arc::new(ServerAuth { keyring, replay: ReplayGuard::new(REPLAY_TAGS_MAX), body_bytes_max })
    }
}

/// Why a request was refused (logged, never sent).
#[derive(Debug, Clone, Copy)]
enum Refused {
    NoTag,
    Stale,
    BadTag,
    Replay,
}

/// The middleware: verifies the request, runs the route, tags the answer.
pub(crate) async fn authenticate(State(auth): State<Arc<ServerAuth>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let header = parts.headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok()).and_then(parse);
    let Some((stamp, tag)) = header else {
        return refuse(&auth.keyring, peer, parts.uri.path(), Refused::NoTag);
    };
    if !superx_keyring::is_fresh(stamp.ms, superx_keyring::now_ms()) {
        return refuse(&auth.keyring, peer, parts.uri.path(), Refused::Stale);
    }
    let body = match axum::body::to_bytes(body, auth.body_bytes_max).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let path = parts.uri.path();
    let (ms, nonce) = (stamp.ms.to_be_bytes(), stamp.nonce.to_be_bytes());
    if !auth.keyring.verify(Purpose::RaftRequest, &request_parts(&ms, &nonce, path, &body), &tag) {
        return refuse(&auth.keyring, peer, path, Refused::BadTag);
    }
    if (path == VOTE_PATH || path == ELECT_PATH) && !auth.replay.first_time(&tag) {
        return refuse(&auth.keyring, peer, path, Refused::Replay);
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    sign_response(&auth.keyring, &tag, response).await
}

async fn sign_response(keyring: &Keyring, request: &Tag, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    // Answers are this node's own encodings, bounded by what the routes produce.
    let body: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let tag = response_tag(keyring, request, parts.status.as_u16(), &body);
    let value = header_value(next_stamp(), &tag);
    parts.headers.insert(AUTH_HEADER, HeaderValue::from_str(&value).expect("ascii header"));
    Response::from_parts(parts, Body::from(body))
}

fn refuse(keyring: &Keyring, peer: Option<SocketAddr>, path: &str, why: Refused) -> Response {
    keyring.refused(Purpose::RaftRequest);
    static LAST_WARN: AtomicU64 = AtomicU64::new(0);
    if due(&LAST_WARN) {
        let (refused, _) = keyring.refusals();
        tracing::warn!(
            peer = ?peer,
            path,
            reason = ?why,
            refused_total = refused,
            "raft request refused: it does not carry a valid tag of this cluster's secret (a process outside the \
             cluster, or a node with another cluster.secret)"
        );
    }
    (StatusCode::UNAUTHORIZED, "cluster authentication required").into_response()
}

/// True at most once per `WARN_EVERY_MS` for this `last` (a rate limit for warnings).
pub(crate) fn due(last: &AtomicU64) -> bool {
    let now = superx_keyring::now_ms();
    let previous = last.load(Ordering::Relaxed);
    now.saturating_sub(previous) >= WARN_EVERY_MS
        && last.compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_refused() {
        let tag = [7u8; TAG_BYTES];
        let stamp = Stamp { ms: 42, nonce: 3 };
        assert_eq!(parse(&header_value(stamp, &tag)), Some((stamp, tag)));
        let t = hex(&tag);
        for bad in ["", "v1", "v1 42 3", &format!("v2 42 3 {t}"), &format!("v1 x 3 {t}"), &format!("v1 42 {t}")] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse(&format!("v1 42 3 {t} extra")), None);
        let short = format!("v1 42 3 {}", &t[2..]);
        assert_eq!(parse(&short), None);
    }
}
