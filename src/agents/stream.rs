//! An agent's SSE stream, read event by event: each `data:` is a JSON-RPC response (or, on
//! HTTP+JSON, a bare `StreamResponse`) whose result is checked and typed in the 1.0 model
//! ([`StreamItem`]); an error event, a malformed
//! event, a dropped connection and a clean end are told apart, because the caller reacts to
//! each differently (pass the error on, give up, reconnect).

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;

use super::client::upstream_error;
use crate::a2a::interface::Binding;
use crate::a2a::rest_client;
use crate::a2a::task::{artifact_update_from_wire, status_update_from_wire, task_from_wire};
use crate::a2a::{ProtocolVersion, v03};
use crate::config::StreamsConfig;
use crate::jsonrpc::RpcError;
use crate::sse::{SseEvent, SseParser};
use crate::state::{ArtifactUpdate, StatusUpdate, Task};

/// One event of an agent's stream, in the 1.0 model.
#[derive(Debug)]
pub enum StreamItem {
    Task(Task),
    Message(Value),
    Status(StatusUpdate),
    Artifact(ArtifactUpdate),
}

/// Why a stream stopped short of its end.
#[derive(Debug)]
pub enum StreamFault {
    /// The connection broke or went silent past the idle limit: worth reconnecting.
    Dropped(String),
    /// The agent sent an error event (JSON-RPC error, or HTTP+JSON `event: error`).
    Agent(RpcError),
    /// The agent sent something that is not a valid event.
    Invalid(String),
}

pub struct UpstreamStream {
    agent_id: String,
    version: ProtocolVersion,
    binding: Binding,
    response: reqwest::Response,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    idle: Duration,
    /// Size of the `data` of the event last returned.
    last_event_bytes: usize,
}

impl UpstreamStream {
    pub(super) fn new(
        agent_id: &str,
        version: ProtocolVersion,
        binding: Binding,
        response: reqwest::Response,
        limits: &StreamsConfig,
    ) -> Self {
        UpstreamStream {
            agent_id: agent_id.to_owned(),
            version,
            binding,
            response,
            parser: SseParser::new(limits.event_bytes_max),
            ready: VecDeque::new(),
            idle: Duration::from_millis(limits.upstream_idle_timeout_ms),
            last_event_bytes: 0,
        }
    }

    /// The next event; `Ok(None)` when the agent closed the stream.
    pub async fn next(&mut self) -> Result<Option<StreamItem>, StreamFault> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if event.data.trim().is_empty() {
                    continue;
                }
                return self.decode(&event).map(Some);
            }
            let chunk = match tokio::time::timeout(self.idle, self.response.chunk()).await {
                Err(_) => return Err(StreamFault::Dropped(format!("no event for {} ms", self.idle.as_millis()))),
                Ok(Err(e)) => return Err(StreamFault::Dropped(format!("connection broke: {e}"))),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => chunk,
            };
            let events = self.parser.push(&chunk).map_err(|e| StreamFault::Invalid(e.to_string()))?;
            self.ready.extend(events);
        }
    }

    /// The next event if it is already here, parsed or in a chunk that has arrived, without
    /// waiting for the agent; `None` when the next event is not here yet. Safe to call
    /// between `next` calls: nothing read is ever dropped.
    pub fn next_ready(&mut self) -> Option<Result<Option<StreamItem>, StreamFault>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if event.data.trim().is_empty() {
                    continue;
                }
                return Some(self.decode(&event).map(Some));
            }
            // Polled once: the body's frame future holds no data of its own, so dropping it
            // while pending loses nothing.
            let chunk = match self.response.chunk().now_or_never()? {
                Err(e) => return Some(Err(StreamFault::Dropped(format!("connection broke: {e}")))),
                Ok(None) => return Some(Ok(None)),
                Ok(Some(chunk)) => chunk,
            };
            match self.parser.push(&chunk) {
                Ok(events) => self.ready.extend(events),
                Err(e) => return Some(Err(StreamFault::Invalid(e.to_string()))),
            }
        }
    }

    /// Size of the `data` of the event last returned, as the agent sent it.
    pub fn last_event_bytes(&self) -> usize {
        self.last_event_bytes
    }

    fn decode(&mut self, event: &SseEvent) -> Result<StreamItem, StreamFault> {
        self.last_event_bytes = event.data.len();
        let invalid = |m: String| StreamFault::Invalid(format!("agent {}: {m}", self.agent_id));
        let mut body: serde_json::Map<String, Value> = match serde_json::from_str(&event.data) {
            Ok(Value::Object(m)) => m,
            _ => return Err(invalid("stream event is not a JSON object".into())),
        };
        let result = match self.binding {
            Binding::JsonRpc => {
                if let Some(error) = body.remove("error") {
                    return Err(StreamFault::Agent(upstream_error(&self.agent_id, error)));
                }
                let result = body.remove("result").ok_or_else(|| invalid("stream event has no result".into()))?;
                match self.version {
                    ProtocolVersion::V10 => result,
                    ProtocolVersion::V03 => v03::result_to_v10(result).map_err(|e| invalid(e.0))?,
                }
            }
            Binding::HttpJson => {
                let body = Value::Object(body);
                if event.event.as_deref() == Some("error") || body.get("error").is_some() {
                    return Err(self.rest_error_event(&body));
                }
                rest_client::wrapped_to_v10(self.version, body).map_err(|e| invalid(e.0))?
            }
        };
        classify(result).map_err(|e| invalid(e.0))
    }

    /// An HTTP+JSON `event: error`: the A2A error its Status names (passed on like a JSON-RPC
    /// error event), else a malformed event.
    fn rest_error_event(&self, body: &Value) -> StreamFault {
        match rest_client::error_object(body) {
            Some(error) => StreamFault::Agent(upstream_error(&self.agent_id, error)),
            None => StreamFault::Invalid(format!(
                "agent {}: stream error event: {}",
                self.agent_id, body["error"]["message"]
            )),
        }
    }
}

/// A 1.0 `StreamResponse` as a typed item (also what an agent's webhook delivers,
/// `rpc::inbound`).
pub fn classify(result: Value) -> Result<StreamItem, v03::WireError> {
    let Value::Object(mut r) = result else {
        return Err(v03::WireError("stream result must be an object".into()));
    };
    if let Some(task) = r.remove("task") {
        return task_from_wire(task).map(StreamItem::Task);
    }
    if let Some(message @ Value::Object(_)) = r.remove("message") {
        return Ok(StreamItem::Message(message));
    }
    if let Some(update) = r.remove("statusUpdate") {
        return status_update_from_wire(update).map(StreamItem::Status);
    }
    if let Some(update) = r.remove("artifactUpdate") {
        return artifact_update_from_wire(update).map(StreamItem::Artifact);
    }
    Err(v03::WireError("stream result is not a task, message or update".into()))
}
