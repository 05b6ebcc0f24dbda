//! A2A wire types and translations: the only module that knows the JSON shapes of A2A 1.0
//! and 0.3.
//!
//! Inside the gateway everything is the 1.0 model (proto-shaped JSON, `TASK_STATE_*` enums,
//! member-discriminated parts and events). A 0.3 call is translated to 1.0 on the way in
//! ([`v03`]) and back on the way out; the stored `state::Task` is converted from and to wire
//! JSON in [`task`]. Agent cards are rewritten for clients in [`card`].

pub mod card;
pub mod client;
pub mod echo;
pub mod interface;
mod proto03;
pub mod push;
pub mod rest;
pub mod rest_client;
pub mod resume;
pub mod task;
pub mod v03;

pub use resume::Resume;

use std::fmt;

/// The `A2A-Version` service parameter (request header; lowercase, as `http` wants names).
pub const A2A_VERSION: &str = "a2a-version";
/// The `A2A-Extensions` service parameter, on requests and responses (1.0).
pub const A2A_EXTENSIONS: &str = "a2a-extensions";
/// The 0.3 name of `A2A-Extensions`.
pub const X_A2A_EXTENSIONS: &str = "x-a2a-extensions";

/// The A2A protocol generations superx speaks, on either side of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// A2A 0.3: slash method names, `kind` discriminators, lowercase enums.
    V03,
    /// A2A 1.0: PascalCase methods, wrapped results, `TASK_STATE_*` enums.
    V10,
}

impl ProtocolVersion {
    /// Reads an `A2A-Version` service parameter. Empty means 0.3 (spec §3.6.2); patch
    /// versions are ignored (`1.0.1` is 1.0). Anything else is unsupported.
    pub fn from_header(value: Option<&str>) -> Result<Self, String> {
        let raw = value.map(str::trim).unwrap_or("");
        if raw.is_empty() {
            return Ok(Self::V03);
        }
        let mut parts = raw.split('.');
        let major = parts.next().unwrap_or("");
        let minor = parts.next().unwrap_or("0");
        let patch_ok = parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        match (major, minor, patch_ok) {
            ("1", "0", true) => Ok(Self::V10),
            ("0", "3", true) => Ok(Self::V03),
            _ => Err(raw.to_owned()),
        }
    }

    /// The value sent in the `A2A-Version` header.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::V03 => "0.3",
            Self::V10 => "1.0",
        }
    }

    /// Reads a card's `protocolVersion` (e.g. "0.3.0", "1.0") by major.minor.
    pub fn from_card_value(value: &str) -> Option<Self> {
        match Self::from_header(Some(value)) {
            Ok(v) if !value.trim().is_empty() => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header_value())
    }
}

/// A 1.0 method result (`{"task": ..}`, `{"message": ..}`, a stream event) in the client's
/// version. The one place results switch between 1.0 and 0.3 on the way out.
pub fn result_for(version: ProtocolVersion, result: serde_json::Value) -> serde_json::Value {
    match version {
        ProtocolVersion::V10 => result,
        ProtocolVersion::V03 => v03::result_from_v10(result),
    }
}

/// A 1.0 `Task` (GetTask, CancelTask, a ListTasks entry) in the client's version.
pub fn task_for(version: ProtocolVersion, task: serde_json::Value) -> serde_json::Value {
    match version {
        ProtocolVersion::V10 => task,
        ProtocolVersion::V03 => v03::task_from_v10(task),
    }
}

/// `TaskState`, with its 1.0 (ProtoJSON) and 0.3 spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bincode::Encode, bincode::Decode)]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        Self::Submitted,
        Self::Working,
        Self::InputRequired,
        Self::AuthRequired,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
        Self::Rejected,
    ];

    /// Terminal tasks never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::Rejected)
    }

    /// Interrupted tasks wait for the client: a blocking send and a stream end there.
    pub fn is_interrupted(self) -> bool {
        matches!(self, Self::InputRequired | Self::AuthRequired)
    }

    pub fn v10_name(self) -> &'static str {
        match self {
            Self::Submitted => "TASK_STATE_SUBMITTED",
            Self::Working => "TASK_STATE_WORKING",
            Self::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            Self::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            Self::Completed => "TASK_STATE_COMPLETED",
            Self::Failed => "TASK_STATE_FAILED",
            Self::Canceled => "TASK_STATE_CANCELED",
            Self::Rejected => "TASK_STATE_REJECTED",
        }
    }

    pub fn v03_name(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Working => "working",
            Self::InputRequired => "input-required",
            Self::AuthRequired => "auth-required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Rejected => "rejected",
        }
    }

    /// Parses a 1.0 name. `TASK_STATE_UNSPECIFIED` is not a state a task can be in.
    pub fn from_v10(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.v10_name() == name)
    }

    pub fn from_v03(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.v03_name() == name)
    }

    /// A ListTasks `status` filter in the client's version: `Ok(None)` for no filter (absent,
    /// empty or `TASK_STATE_UNSPECIFIED`); a 0.3 client may use either spelling.
    pub fn from_filter(value: Option<&str>, version: ProtocolVersion) -> Result<Option<Self>, String> {
        let Some(name) = value.filter(|s| !s.is_empty() && *s != "TASK_STATE_UNSPECIFIED") else {
            return Ok(None);
        };
        let state = match version {
            ProtocolVersion::V10 => Self::from_v10(name),
            ProtocolVersion::V03 => Self::from_v03(name).or_else(|| Self::from_v10(name)),
        };
        state.map(Some).ok_or_else(|| format!("status {name:?} is not a task state"))
    }
}

/// A 1.0 `google.rpc.ErrorInfo` for the `data` array of a JSON-RPC error.
pub fn error_info(reason: &str) -> serde_json::Value {
    serde_json::json!({
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "a2a-protocol.org",
        "metadata": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_header_rules() {
        assert_eq!(ProtocolVersion::from_header(None), Ok(ProtocolVersion::V03));
        assert_eq!(ProtocolVersion::from_header(Some(" ")), Ok(ProtocolVersion::V03));
        assert_eq!(ProtocolVersion::from_header(Some("0.3")), Ok(ProtocolVersion::V03));
        assert_eq!(ProtocolVersion::from_header(Some("0.3.0")), Ok(ProtocolVersion::V03));
        assert_eq!(ProtocolVersion::from_header(Some("1.0")), Ok(ProtocolVersion::V10));
        assert_eq!(ProtocolVersion::from_header(Some("1.0.1")), Ok(ProtocolVersion::V10));
        assert_eq!(ProtocolVersion::from_header(Some("1")), Ok(ProtocolVersion::V10));
        assert!(ProtocolVersion::from_header(Some("9.9")).is_err());
        assert!(ProtocolVersion::from_header(Some("1.1")).is_err());
        assert!(ProtocolVersion::from_header(Some("1.0.x")).is_err());
        assert!(ProtocolVersion::from_header(Some("abc")).is_err());
    }

    #[test]
    fn state_names_round_trip_and_classes() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_v10(s.v10_name()), Some(s));
            assert_eq!(TaskState::from_v03(s.v03_name()), Some(s));
            assert!(!(s.is_terminal() && s.is_interrupted()));
        }
        assert_eq!(TaskState::from_v10("TASK_STATE_UNSPECIFIED"), None);
        assert_eq!(TaskState::from_v03("unknown"), None);
        let terminal: Vec<_> = TaskState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 4);
    }
}
