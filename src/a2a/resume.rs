//! The resumable-streams extension (docs/resumable-streams.md): SSE event ids that are a
//! task's event numbers, and `Last-Event-ID` to resume a stream on any node.

/// The extension's URI, declared in served cards (`capabilities.extensions`).
pub const EXTENSION_URI: &str = "urn:superx:a2a:extension:resumable-streams:v1";

/// The extension as a card declares it (`capabilities.extensions[]`): optional for clients.
pub fn declaration() -> serde_json::Value {
    serde_json::json!({
        "uri": EXTENSION_URI,
        "description": "Stream events carry ids; SubscribeToTask with Last-Event-ID resumes after one, on any node",
        "required": false,
    })
}

/// The request header a reconnecting client sends (browsers' EventSource sends it itself).
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The response header that says how a resumed stream starts.
pub const RESUME_HEADER: &str = "superx-resume";

/// How a stream that asked to resume starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// With every event after the client's last one.
    Replayed,
    /// With the current task: the events after the client's last one are no longer kept
    /// here (or the id was not one of the task's), so the task stands in for them.
    Snapshot,
}

impl Resume {
    pub fn header_value(self) -> &'static str {
        match self {
            Resume::Replayed => "replayed",
            Resume::Snapshot => "snapshot",
        }
    }
}

/// Reads a `Last-Event-ID`: an event number this gateway sent. An empty value is none (the
/// EventSource way of starting over); anything else that is not a number is refused.
pub fn parse_last_event_id(value: &str) -> Result<Option<u64>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| format!("Last-Event-ID {value:?} is not an event id this gateway sent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids() {
        assert_eq!(parse_last_event_id("3"), Ok(Some(3)));
        assert_eq!(parse_last_event_id(" 12 "), Ok(Some(12)));
        assert_eq!(parse_last_event_id(""), Ok(None));
        assert!(parse_last_event_id("abc").is_err());
        assert!(parse_last_event_id("-1").is_err());
    }
}
