//! Streams to clients as Server-Sent Events, framed as the binding the client called
//! ([`Framing`]): each frame is `data: <JSON-RPC response>` with the client's request id, or
//! `data: <StreamResponse>` over HTTP+JSON (an error there is an `event: error` with a
//! `google.rpc.Status`); a committed task event has `id: <event number>`, which a client
//! resumes from; a keep-alive comment goes out on an idle stream, and the headers turn
//! buffering off along the way (`Cache-Control: no-store`, `X-Accel-Buffering: no`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::a2a::A2A_EXTENSIONS;
use crate::a2a::ProtocolVersion;
use crate::a2a::resume::RESUME_HEADER;
use crate::jsonrpc::{self, RpcError};
use crate::rpc::{StreamFrame, StreamReply};
use crate::telemetry::metrics::StreamGauge;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Frames that are already waiting go out in one body chunk (one write) of at most this size.
const CHUNK_BYTES_MAX: usize = 64 << 10;

pub(super) fn push_event(out: &mut Vec<u8>, event_id: Option<u64>, name: Option<&str>, json: &[u8]) {
    use std::io::Write;
    if let Some(n) = event_id {
        let _ = writeln!(out, "id: {n}");
    }
    if let Some(name) = name {
        let _ = writeln!(out, "event: {name}");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// How a stream's frames are written: as the binding the client called.
pub enum Framing {
    /// Each `data` is a JSON-RPC response with the request's id; an error is a JSON-RPC error
    /// response in the client's version.
    JsonRpc { id: Value, version: ProtocolVersion },
    /// HTTP+JSON: each `data` is the bare `StreamResponse` in the path's version; an error is
    /// an `event: error` whose data is a `google.rpc.Status` (as SDK clients read it).
    Rest { version: ProtocolVersion },
}

impl Framing {
    fn result_bytes(&self, result: Value) -> Vec<u8> {
        match self {
            Framing::JsonRpc { id, .. } => jsonrpc::success_bytes(id, &result),
            Framing::Rest { version } => {
                let event = crate::a2a::rest::stream_event(*version, result);
                serde_json::to_vec(&event).expect("JSON values serialize")
            }
        }
    }

    /// Appends one frame as an event; true when it ends the stream (an error).
    fn push_frame(&self, out: &mut Vec<u8>, frame: StreamFrame) -> bool {
        match frame {
            StreamFrame::Result(result) => {
                push_event(out, None, None, &self.result_bytes(result));
                false
            }
            StreamFrame::Event(n, result) => {
                push_event(out, Some(n), None, &self.result_bytes(result));
                false
            }
            StreamFrame::Error(error) => {
                if let RpcError::Internal(detail) = &error {
                    tracing::error!(%detail, "internal error in a stream");
                }
                match self {
                    Framing::JsonRpc { id, version } => {
                        push_event(out, None, None, &jsonrpc::failure_bytes(id, &error, *version))
                    }
                    Framing::Rest { version } => {
                        let body = crate::a2a::rest::error_body(*version, error.to_status_body());
                        let body = serde_json::to_vec(&body).expect("JSON values serialize");
                        push_event(out, None, Some("error"), &body)
                    }
                }
                true
            }
        }
    }
}

/// What an open stream holds besides its frames.
pub struct Open {
    /// Its stream slot on this node (admission), freed when the stream ends.
    pub slot: Option<std::sync::Arc<crate::admission::Permit>>,
    /// Turns true when the node drains: the stream then ends with a retryable error.
    pub drain: tokio::sync::watch::Receiver<bool>,
    /// A keep-alive comment goes out after this long without a frame.
    pub keepalive: Duration,
}

/// The SSE response for a stream of frames.
pub fn response(reply: StreamReply, framing: Framing, open: Open) -> Response {
    let Open { slot, drain, keepalive } = open;
    // What the body holds until the stream ends or the client goes away: its admission slot
    // and the open-streams gauge.
    let held = (slot, StreamGauge::open());
    let state = (reply.frames, framing, false, drain, held);
    let stream = futures::stream::unfold(state, move |(mut frames, framing, ended, mut drain, held)| async move {
        if ended {
            return None;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(keepalive, frames.recv()) => Some(next),
            _ = drain.wait_for(|d| *d) => None,
        };
        let Some(next) = next else {
            let e = RpcError::Unavailable(
                "this node is shutting down; resubscribe (SubscribeToTask) on another node".into(),
            );
            let mut out = Vec::new();
            framing.push_frame(&mut out, StreamFrame::Error(e));
            return Some((Ok(Bytes::from(out)), (frames, framing, true, drain, held)));
        };
        let first = match next {
            Err(_) => {
                return Some((
                    Ok::<_, Infallible>(Bytes::from_static(KEEP_ALIVE)),
                    (frames, framing, false, drain, held),
                ));
            }
            Ok(None) => return None,
            Ok(Some(frame)) => frame,
        };
        let mut out = Vec::new();
        let mut ended = framing.push_frame(&mut out, first);
        while !ended && out.len() < CHUNK_BYTES_MAX {
            let Ok(frame) = frames.try_recv() else { break };
            ended = framing.push_frame(&mut out, frame);
        }
        Some((Ok(Bytes::from(out)), (frames, framing, ended, drain, held)))
    });
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    if let Some(ext) = reply.extensions {
        response.headers_mut().insert(A2A_EXTENSIONS, ext);
    }
    if let Some(resume) = reply.resume {
        response.headers_mut().insert(RESUME_HEADER, HeaderValue::from_static(resume.header_value()));
    }
    response
}
