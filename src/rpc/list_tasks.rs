//! `ListTasks` (1.0; `tasks/list` and `tasks.list` as aliases): the gateway's tasks, most
//! recently updated first, with cursor pagination over the local tables.
//!
//! Tasks evicted from memory are read from the archive (when there is one) and merged into
//! the same order, under the same cursor.
//!
//! Scope: the path's agent on `/agents/{id}`; on `/rpc`, `params.agentId` if given, else
//! every agent. `nextPageToken` is always present ("" on the last page); `totalSize` counts
//! the whole result set. A caller that is not an admin lists (and counts) only the tasks it
//! created: in memory through the owner index, in the archive by the `owner` column.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use std::collections::HashSet;

use super::{Call, Reply, RpcError, Scope, archive_unavailable, history_length, task_out};
use crate::a2a::TaskState;
use crate::a2a::task::{TaskView, task_to_wire};
use crate::gateway::Gateway;
use crate::state::{ListQuery, Task};

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
    /// The cursor: list position (update sequence, task id) of the last task seen.
    before: Option<(u64, String)>,
    view: TaskView,
    updated_after_ms: Option<u64>,
}

impl Params {
    pub fn parse(params: Value, call: &Call) -> Result<Params, RpcError> {
        let raw: Raw = if params.is_null() { Raw::default() } else { super::typed(params)? };
        let bad = |m: String| RpcError::InvalidParams(m);
        let state = TaskState::from_filter(raw.status.as_deref(), call.version).map_err(bad)?;
        let page_size = match raw.page_size {
            None | Some(0) => PAGE_SIZE_DEFAULT,
            Some(n) if (1..=PAGE_SIZE_MAX as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(bad(format!("pageSize {n} must be between 1 and {PAGE_SIZE_MAX}")));
            }
        };
        let before = match raw.page_token.as_deref().filter(|t| !t.is_empty()) {
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
            before,
            view,
            updated_after_ms,
        })
    }
}

/// Page tokens: `v2:<seq>:<task id>`, base64url. `v1:<seq>` (before the archive) still
/// reads, as "below this sequence".
fn decode_token(token: &str) -> Option<(u64, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    if let Some(v2) = text.strip_prefix("v2:") {
        let (seq, id) = v2.split_once(':')?;
        return Some((seq.parse().ok()?, id.to_owned()));
    }
    Some((text.strip_prefix("v1:")?.parse().ok()?, String::new()))
}

fn encode_token(seq: u64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v2:{seq}:{id}"))
}

fn parse_timestamp(ts: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
}

/// One page, memory and archive merged under one order: (update sequence, task id), newest
/// first. Memory is read before the archive: a task that leaves memory in between is in the
/// archive by then (it leaves only once archived), so no task falls between the two reads; a
/// task in both (archived, still in memory) is shown once.
pub async fn run(gw: &Gateway, call: &Call, p: Params) -> Result<Reply, RpcError> {
    let agent_id = match &call.scope {
        Scope::Agent(id) => Some(id.as_str()),
        Scope::Gateway => p.agent_id.as_deref(),
    };
    // Another caller's tasks are not listed, nor counted in totalSize.
    let scope = call.principal.task_scope();
    let query = ListQuery {
        agent_id,
        owner: scope.owner(),
        context_id: p.context_id.as_deref(),
        state: p.state,
        updated_after_ms: p.updated_after_ms,
        before: p.before.as_ref().map(|(seq, id)| (*seq, id.as_str())),
        page_size: p.page_size,
    };
    // A clone of the persistent tables: the scan and rendering run off the state lock.
    let tables = gw.replica.read(|t| t.clone());
    let page = tables.list_tasks(&query);
    let mut merged: Vec<(u64, &str, &Task)> = page.tasks.iter().map(|e| (e.seq, e.task.id.as_str(), &e.task)).collect();
    let mut more = page.more;
    let mut total = page.total_size;
    let archived;
    if let Some(archive) = &gw.archive {
        archived = archive.list(&query, p.page_size + 1).await.map_err(archive_unavailable)?;
        // Tasks in both places count once: those marked archived here, and those the archiver
        // wrote but whose mark this node has not applied yet (few: a batch or two, unless the
        // archive was down, and then this read failed already).
        // At most `state::WAITING_CHECK_MAX` ids; a longer backlog means the archive was
        // down, and the count may then be over by the tasks written in the last moments.
        let check: &[&str] = page.waiting_for_archive.as_deref().unwrap_or_default();
        let (count, written_unmarked) = archive.count(&query, check).await.map_err(archive_unavailable)?;
        total = (total - page.archived_matching - written_unmarked as usize).saturating_add(count as usize);
        more |= archived.len() > p.page_size;
        let in_memory: HashSet<&str> = merged.iter().map(|(_, id, _)| *id).collect();
        let from_archive = archived.iter().filter(|a| !in_memory.contains(a.task.id.as_str()));
        merged.extend(from_archive.map(|a| (a.seq, a.task.id.as_str(), &a.task)));
        merged.sort_unstable_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        if merged.len() > p.page_size {
            more = true;
            merged.truncate(p.page_size);
        }
    }
    let next = merged.last().filter(|_| more).map(|(seq, id, _)| encode_token(*seq, id));
    let tasks: Vec<Value> = merged.iter().map(|(_, _, t)| task_out(call, task_to_wire(t, p.view))).collect();
    Ok(Reply::plain(json!({
        "tasks": tasks,
        "nextPageToken": next.unwrap_or_default(),
        "pageSize": p.page_size,
        "totalSize": total,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        assert_eq!(decode_token(&encode_token(42, "a:b")), Some((42, "a:b".to_owned())));
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("v1:7")), Some((7, String::new())));
        assert_eq!(decode_token("nope!"), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("v2:1")), None);
        assert_eq!(decode_token(&URL_SAFE_NO_PAD.encode("v3:1:x")), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
