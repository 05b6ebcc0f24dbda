//! `ListTasks` (1.0; `tasks/list` and `tasks.list` as aliases): the gateway's tasks, most
//! recently updated first, with cursor pagination over the local tables.
//!
//! Scope: the path's agent on `/agents/{id}`; on `/rpc`, `params.agentId` if given, else
//! every agent. `nextPageToken` is always present ("" on the last page); `totalSize` counts
//! the whole result set.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Reply, RpcError, Scope, history_length, task_out};
use crate::a2a::task::{TaskView, task_to_wire};
use crate::a2a::{ProtocolVersion, TaskState};
use crate::gateway::Gateway;
use crate::state::ListQuery;

/// Page size when the client gives none, and the most it may ask for (A2A 1.0).
const PAGE_SIZE_DEFAULT: usize = 50;
const PAGE_SIZE_MAX: usize = 100;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Raw {
    agent_id: Option<String>,
    context_id: Option<String>,
    status: Option<String>,
    page_size: Option<i64>,
    page_token: Option<String>,
    history_length: Option<i64>,
    status_timestamp_after: Option<String>,
    include_artifacts: Option<bool>,
}

pub struct Params {
    agent_id: Option<String>,
    context_id: Option<String>,
    state: Option<TaskState>,
    page_size: usize,
    before_seq: Option<u64>,
    view: TaskView,
    updated_after_ms: Option<u64>,
}

impl Params {
    pub fn parse(params: Value, call: &Call) -> Result<Params, RpcError> {
        let raw: Raw = if params.is_null() { Raw::default() } else { super::typed(params)? };
        let bad = |m: String| RpcError::InvalidParams(m);
        let state = match raw.status.as_deref().filter(|s| !s.is_empty() && *s != "TASK_STATE_UNSPECIFIED") {
            None => None,
            Some(s) => Some(
                match call.version {
                    ProtocolVersion::V10 => TaskState::from_v10(s),
                    ProtocolVersion::V03 => TaskState::from_v03(s).or_else(|| TaskState::from_v10(s)),
                }
                .ok_or_else(|| bad(format!("status {s:?} is not a task state")))?,
            ),
        };
        let page_size = match raw.page_size {
            None | Some(0) => PAGE_SIZE_DEFAULT,
            Some(n) if (1..=PAGE_SIZE_MAX as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(bad(format!("pageSize {n} must be between 1 and {PAGE_SIZE_MAX}")));
            }
        };
        let before_seq = match raw.page_token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(decode_token(token).ok_or_else(|| bad("pageToken is not valid".into()))?),
        };
        let updated_after_ms = match raw.status_timestamp_after.as_deref() {
            None | Some("") => None,
            Some(ts) => Some(
                parse_timestamp(ts)
                    .ok_or_else(|| bad(format!("statusTimestampAfter {ts:?} is not an RFC 3339 time")))?,
            ),
        };
        let view = TaskView {
            history_length: history_length(raw.history_length)?,
            include_artifacts: raw.include_artifacts.unwrap_or(false),
        };
        Ok(Params {
            agent_id: raw.agent_id,
            context_id: raw.context_id,
            state,
            page_size,
            before_seq,
            view,
            updated_after_ms,
        })
    }
}

fn decode_token(token: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix("v1:")?.parse().ok()
}

fn encode_token(seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{seq}"))
}

fn parse_timestamp(ts: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
}

pub fn run(gw: &Gateway, call: &Call, p: Params) -> Result<Reply, RpcError> {
    let agent_id = match &call.scope {
        Scope::Agent(id) => Some(id.as_str()),
        Scope::Gateway => p.agent_id.as_deref(),
    };
    let query = ListQuery {
        agent_id,
        context_id: p.context_id.as_deref(),
        state: p.state,
        updated_after_ms: p.updated_after_ms,
        before_seq: p.before_seq,
        page_size: p.page_size,
    };
    let (tasks, next, total) = gw.replica.read(|t| {
        let page = t.list_tasks(&query);
        let tasks: Vec<Value> = page.tasks.iter().map(|e| task_out(call, task_to_wire(&e.task, p.view))).collect();
        (tasks, page.next_before_seq, page.total_size)
    });
    Ok(Reply::plain(json!({
        "tasks": tasks,
        "nextPageToken": next.map(encode_token).unwrap_or_default(),
        "pageSize": p.page_size,
        "totalSize": total,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        assert_eq!(decode_token("nope!"), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("v2:1")), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
