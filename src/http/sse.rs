//! Streams to clients as Server-Sent Events: each frame is `data: <JSON-RPC response>` with
//! the client's request id, a keep-alive comment goes out on an idle stream, and the
//! headers turn buffering off along the way (`Cache-Control: no-store`, `X-Accel-Buffering: no`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::a2a::ProtocolVersion;
use crate::agents::client::A2A_EXTENSIONS;
use crate::jsonrpc::{self, RpcError};
use crate::rpc::{StreamFrame, StreamReply};

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

fn event(json: Vec<u8>) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The SSE response for a stream of frames.
pub fn response(reply: StreamReply, id: Value, version: ProtocolVersion, keepalive: Duration) -> Response {
    let state = (reply.frames, id, false);
    let stream = futures::stream::unfold(state, move |(mut frames, id, ended)| async move {
        if ended {
            return None;
        }
        let bytes = match tokio::time::timeout(keepalive, frames.recv()).await {
            Err(_) => Bytes::from_static(KEEP_ALIVE),
            Ok(None) => return None,
            Ok(Some(StreamFrame::Result(result))) => event(jsonrpc::success_bytes(&id, &result)),
            Ok(Some(StreamFrame::Error(error))) => {
                if let RpcError::Internal(detail) = &error {
                    tracing::error!(%detail, "internal error in a stream");
                }
                let bytes = event(jsonrpc::failure_bytes(&id, &error, version));
                return Some((Ok::<_, Infallible>(bytes), (frames, id, true)));
            }
        };
        Some((Ok(bytes), (frames, id, false)))
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
    response
}
