//! Streams to clients as Server-Sent Events: each frame is `data: <JSON-RPC response>` with
//! the client's request id (and `id: <event number>` for a committed task event, which a
//! client resumes from), a keep-alive comment goes out on an idle stream, and the headers
//! turn buffering off along the way (`Cache-Control: no-store`, `X-Accel-Buffering: no`).

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

fn push_event(out: &mut Vec<u8>, event_id: Option<u64>, json: &[u8]) {
    if let Some(n) = event_id {
        use std::io::Write;
        let _ = writeln!(out, "id: {n}");
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// Appends one frame as an event; true when it ends the stream (an error).
fn push_frame(out: &mut Vec<u8>, frame: StreamFrame, id: &Value, version: ProtocolVersion) -> bool {
    match frame {
        StreamFrame::Result(result) => {
            push_event(out, None, &jsonrpc::success_bytes(id, &result));
            false
        }
        StreamFrame::Event(n, result) => {
            push_event(out, Some(n), &jsonrpc::success_bytes(id, &result));
            false
        }
        StreamFrame::Error(error) => {
            if let RpcError::Internal(detail) = &error {
                tracing::error!(%detail, "internal error in a stream");
            }
            push_event(out, None, &jsonrpc::failure_bytes(id, &error, version));
            true
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
pub fn response(reply: StreamReply, id: Value, version: ProtocolVersion, open: Open) -> Response {
    let Open { slot, drain, keepalive } = open;
    // What the body holds until the stream ends or the client goes away: its admission slot
    // and the open-streams gauge.
    let held = (slot, StreamGauge::open());
    let state = (reply.frames, id, false, drain, held);
    let stream = futures::stream::unfold(state, move |(mut frames, id, ended, mut drain, held)| async move {
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
            push_frame(&mut out, StreamFrame::Error(e), &id, version);
            return Some((Ok(Bytes::from(out)), (frames, id, true, drain, held)));
        };
        let first = match next {
            Err(_) => {
                return Some((Ok::<_, Infallible>(Bytes::from_static(KEEP_ALIVE)), (frames, id, false, drain, held)));
            }
            Ok(None) => return None,
            Ok(Some(frame)) => frame,
        };
        let mut out = Vec::new();
        let mut ended = push_frame(&mut out, first, &id, version);
        while !ended && out.len() < CHUNK_BYTES_MAX {
            let Ok(frame) = frames.try_recv() else { break };
            ended = push_frame(&mut out, frame, &id, version);
        }
        Some((Ok(Bytes::from(out)), (frames, id, ended, drain, held)))
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
