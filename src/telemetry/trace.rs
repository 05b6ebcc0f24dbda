//! Request ids and W3C trace context (<https://www.w3.org/TR/trace-context/>).
//!
//! Every request gets an id: the client's `x-request-id` when it is a sane one (printable
//! ASCII, at most [`REQUEST_ID_BYTES_MAX`] bytes), else a fresh UUID; the response carries it
//! back. Every request is also a span of a trace: a valid `traceparent` from the client is
//! continued (same trace id, the client's span as parent, a new span id for the gateway's
//! work), anything else starts a new trace. Each call to an agent is a child span of that:
//! the agent receives the same trace id with a span id of its own, and the client's
//! `tracestate` unchanged.

use axum::http::{HeaderMap, HeaderValue};

pub const X_REQUEST_ID: &str = "x-request-id";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// A client's request id longer than this is replaced: it ends up in every log line of the
/// request, so it must stay small. 128 bytes fit any UUID, ULID or vendor id with a prefix.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// A `tracestate` longer than this is dropped rather than forwarded. The spec asks vendors
/// to carry at least 512 characters; 8 KiB keeps the header far below agents' header limits.
pub const TRACESTATE_BYTES_MAX: usize = 8192;

/// The `traceparent` sampled flag, set on traces the gateway starts: the ids are logged, so
/// the trace is recorded, and agents with parent-based sampling record their part too.
const FLAG_SAMPLED: u8 = 0x01;

/// The client's request id if it is usable, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= REQUEST_ID_BYTES_MAX && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The trace a request belongs to, and the gateway's span in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// The gateway's span for this request.
    pub span_id: u64,
    /// The client's span, when the client sent a valid `traceparent`.
    pub parent_id: Option<u64>,
    pub flags: u8,
    /// The client's `tracestate`, passed on to agents untouched.
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// A new trace, with the gateway's span as its root.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            parent_id: None,
            flags: FLAG_SAMPLED,
            tracestate: None,
        }
    }

    /// Continues the client's trace when its `traceparent` is valid; otherwise starts a new
    /// one (and ignores `tracestate`, which belongs to the trace that was not taken).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parent = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(parse_traceparent);
        let Some(parent) = parent else {
            return Self::new_root();
        };
        TraceContext {
            trace_id: parent.trace_id,
            span_id: new_span_id(),
            parent_id: Some(parent.span_id),
            flags: parent.flags,
            tracestate: tracestate(headers),
        }
    }

    /// The `traceparent` for a call this span makes: same trace, a new child span id.
    pub fn child_traceparent(&self) -> (u64, HeaderValue) {
        let span_id = new_span_id();
        let value = format_traceparent(self.trace_id, span_id, self.flags);
        (span_id, HeaderValue::from_str(&value).expect("hex digits and dashes are a valid header value"))
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// What a `traceparent` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

/// Parses `version-traceid-parentid-flags` strictly: lowercase hex fields of 2, 32, 16 and 2
/// digits; version `ff` is invalid; all-zero trace or parent ids are invalid. Version `00` is
/// exactly 55 characters; a later version may append `-` and more, which is ignored (the
/// spec's forward compatibility rule).
pub fn parse_traceparent(value: &str) -> Option<Traceparent> {
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    if bytes.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = hex_field(&value[0..2])? as u8;
    let valid_tail = match version {
        0xff => false,
        0x00 => bytes.len() == 55,
        _ => bytes.len() == 55 || bytes[55] == b'-',
    };
    if !valid_tail || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = hex_field(&value[3..35])?;
    let span_id = hex_field(&value[36..52])? as u64;
    let flags = hex_field(&value[53..55])? as u8;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Traceparent { trace_id, span_id, flags })
}

/// A field of lowercase hex digits (uppercase is invalid in trace context).
fn hex_field(digits: &str) -> Option<u128> {
    if !digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u128::from_str_radix(digits, 16).ok()
}

fn format_traceparent(trace_id: u128, span_id: u64, flags: u8) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}")
}

/// The client's `tracestate` headers as one value (several headers join with commas, as the
/// spec says), unless it is too long or not visible ASCII.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let value = value.to_str().ok()?.trim();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
    }
    if joined.is_empty() || joined.len() > TRACESTATE_BYTES_MAX {
        return None;
    }
    HeaderValue::from_str(&joined).ok()
}

/// 16 random bytes, never zero (an all-zero trace id is invalid).
fn new_trace_id() -> u128 {
    loop {
        let id = uuid::Uuid::new_v4().as_u128();
        if id != 0 {
            return id;
        }
    }
}

/// 8 random bytes, never zero (the low half of a v4 UUID, whose 62 bits there are random).
fn new_span_id() -> u64 {
    loop {
        let id = uuid::Uuid::new_v4().as_u128() as u64;
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let p = parse_traceparent(VALID).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.flags, 1);
        assert_eq!(format_traceparent(p.trace_id, p.span_id, p.flags), VALID);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let p = parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes").unwrap();
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn the_clients_trace_is_continued_with_a_new_span() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.append(TRACESTATE, HeaderValue::from_static("rojo=00f067aa0ba902b7"));
        let ctx = TraceContext::from_headers(&headers);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_id, Some(0x00f067aa0ba902b7));
        assert_ne!(ctx.span_id, 0x00f067aa0ba902b7);
        assert_eq!(ctx.tracestate.as_ref().unwrap(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let (child, header) = ctx.child_traceparent();
        let sent = parse_traceparent(header.to_str().unwrap()).unwrap();
        assert_eq!((sent.trace_id, sent.span_id, sent.flags), (ctx.trace_id, child, 1));
        assert_ne!(child, ctx.span_id);
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace_and_drops_tracestate() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("00-zz-00f067aa0ba902b7-01"));
        headers.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let ctx = TraceContext::from_headers(&headers);
        assert_eq!(ctx.parent_id, None);
        assert_eq!(ctx.tracestate, None);
        assert_ne!(ctx.trace_id, 0);
        assert_eq!(ctx.flags, FLAG_SAMPLED);
    }

    #[test]
    fn request_ids_are_echoed_when_sane_and_made_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("req-42/abc"));
        assert_eq!(request_id(&headers), "req-42/abc");
        for bad in ["", "has space", &"x".repeat(REQUEST_ID_BYTES_MAX + 1)] {
            headers.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let made = request_id(&headers);
            assert!(uuid::Uuid::parse_str(&made).is_ok(), "{bad:?} -> {made}");
        }
        assert!(uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).is_ok());
    }
}
