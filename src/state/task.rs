//! Stored tasks and their pure state transitions.
//!
//! A `Task` here is the gateway's record of an A2A task in the 1.0 model. Messages, parts and
//! metadata stay opaque [`Json`]; what the gateway reasons about (state, ids, artifacts by id)
//! is typed. Every change goes through a function in this file, called only from `apply`, so
//! the rules (terminal tasks never change; artifacts merge by id) hold on every node alike.

use crate::a2a::TaskState;
use crate::codec::Json;

#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct Task {
    pub id: String,
    pub context_id: String,
    pub status: TaskStatus,
    pub artifacts: Vec<Artifact>,
    /// 1.0-shaped messages, oldest first.
    pub history: Vec<Json>,
    pub metadata: Option<Json>,
}

#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct TaskStatus {
    pub state: TaskState,
    pub message: Option<Json>,
    /// ISO 8601 UTC, as the agent sent it.
    pub timestamp: Option<String>,
}

#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct Artifact {
    pub artifact_id: String,
    pub parts: Vec<Json>,
    /// Every other member of the wire artifact (name, description, metadata, extensions),
    /// kept as a JSON object so nothing the agent sent is lost.
    pub rest: Json,
}

/// A status change reported by the agent (`TaskStatusUpdateEvent`).
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct StatusUpdate {
    pub task_id: String,
    pub context_id: String,
    pub status: TaskStatus,
    pub metadata: Option<Json>,
}

/// An artifact chunk reported by the agent (`TaskArtifactUpdateEvent`).
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct ArtifactUpdate {
    pub task_id: String,
    pub context_id: String,
    pub artifact: Artifact,
    pub append: bool,
    pub last_chunk: bool,
}

/// What a transition changed, for the task's subscribers.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskChange {
    /// The task was recorded for the first time.
    Created,
    Status {
        status: TaskStatus,
        metadata: Option<Json>,
    },
    Artifact {
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    },
}

/// Why a transition was refused. Refusals change nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, bincode::Encode, bincode::Decode)]
pub enum TransitionError {
    #[error("task {0} is in a terminal state and cannot change")]
    Terminal(String),
    #[error("event is for task {event}, not {task}")]
    WrongTask { task: String, event: String },
    /// The task would exceed a per-task limit (`ARTIFACTS_MAX`, `ARTIFACT_PARTS_MAX`).
    #[error("task {task} would exceed the gateway's limit of {limit}")]
    TooLarge { task: String, limit: String },
    #[error("event context {event} does not match task context {task}")]
    WrongContext { task: String, event: String },
}

/// Messages of history a stored task keeps; older ones are dropped as new ones arrive (the
/// most recent are what `historyLength` asks for). Constants, not settings: apply must do the
/// same on every node.
pub const HISTORY_MESSAGES_MAX: usize = 1000;
/// Artifacts one task may have; an event adding one more is refused.
pub const ARTIFACTS_MAX: usize = 1000;
/// Parts one artifact may have (appended chunks included); an event going past it is refused.
pub const ARTIFACT_PARTS_MAX: usize = 10_000;

fn too_large(task: &Task, limit: String) -> TransitionError {
    TransitionError::TooLarge { task: task.id.clone(), limit }
}

/// A snapshot from an agent held to the per-task limits: history trimmed to the last
/// `HISTORY_MESSAGES_MAX` messages; too many artifacts or parts are refused.
pub fn bounded(mut snapshot: Task) -> Result<Task, TransitionError> {
    if snapshot.artifacts.len() > ARTIFACTS_MAX {
        return Err(too_large(&snapshot, format!("{ARTIFACTS_MAX} artifacts")));
    }
    if snapshot.artifacts.iter().any(|a| a.parts.len() > ARTIFACT_PARTS_MAX) {
        return Err(too_large(&snapshot, format!("{ARTIFACT_PARTS_MAX} parts per artifact")));
    }
    trim_history(&mut snapshot);
    Ok(snapshot)
}

fn trim_history(task: &mut Task) {
    let excess = task.history.len().saturating_sub(HISTORY_MESSAGES_MAX);
    if excess > 0 {
        task.history.drain(..excess);
    }
}

/// Replaces a stored task by a newer snapshot from its agent.
///
/// The agent is the authority on its task, so the snapshot wins, except that a terminal task
/// is immutable: a snapshot that differs from a terminal task is refused; an identical one is
/// accepted (idempotent replays).
pub fn replace(current: Option<&Task>, snapshot: Task) -> Result<Task, TransitionError> {
    match current {
        Some(cur) if cur.status.state.is_terminal() && *cur != snapshot => {
            Err(TransitionError::Terminal(cur.id.clone()))
        }
        _ => Ok(snapshot),
    }
}

/// Applies a status update. As the A2A SDK does, the message of the status being replaced
/// moves into history, so history reads as the conversation so far.
/// Adds a client's message to the history: the current status message goes there first (it
/// came before), then the message. Not a stream event (no change is reported). A terminal
/// task accepts none.
pub fn append_message(task: &mut Task, message: Json) -> Result<Vec<TaskChange>, TransitionError> {
    if task.status.state.is_terminal() {
        return Err(TransitionError::Terminal(task.id.clone()));
    }
    if let Some(status_message) = task.status.message.take() {
        task.history.push(status_message);
    }
    task.history.push(message);
    trim_history(task);
    Ok(vec![])
}

pub fn apply_status(task: &mut Task, update: StatusUpdate) -> Result<Vec<TaskChange>, TransitionError> {
    check_event(task, &update.task_id, &update.context_id)?;
    let change = TaskChange::Status { status: update.status.clone(), metadata: update.metadata.clone() };
    let previous = std::mem::replace(&mut task.status, update.status);
    if let Some(message) = previous.message {
        task.history.push(message);
        trim_history(task);
    }
    if let Some(metadata) = update.metadata {
        task.metadata = Some(metadata);
    }
    Ok(vec![change])
}

/// What replacing `old` by `new` changed: every artifact that is new or different (as a
/// whole-artifact replacement), then the status if it differs.
pub fn diff(old: &Task, new: &Task) -> Vec<TaskChange> {
    let mut changes = Vec::new();
    for artifact in &new.artifacts {
        let before = old.artifacts.iter().find(|a| a.artifact_id == artifact.artifact_id);
        if before != Some(artifact) {
            changes.push(TaskChange::Artifact { artifact: artifact.clone(), append: false, last_chunk: true });
        }
    }
    // The status goes last: a terminal status ends a stream, after everything it implies.
    if old.status != new.status {
        changes.push(TaskChange::Status { status: new.status.clone(), metadata: None });
    }
    changes
}

/// Whether the task already has a status update an agent's webhook brings: the same status,
/// or one no newer than the stored status by timestamp (the poll or a stream recorded it, or
/// something after it, first). Without two readable timestamps only an equal status counts.
/// Read before proposing (`rpc::inbound`), so a webhook repeating what polling saw makes no
/// second event and a late one never moves the task back.
pub fn has_status(task: &Task, update: &StatusUpdate) -> bool {
    if task.status == update.status {
        return true;
    }
    let at = |status: &TaskStatus| status.timestamp.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    matches!((at(&task.status), at(&update.status)), (Some(stored), Some(incoming)) if incoming <= stored)
}

/// Whether the task already has an artifact chunk an agent's webhook brings: the same whole
/// artifact (a replacement), or appended parts its artifact already ends with. (An agent
/// appending the very parts it appended last is taken for a repeat: the rarer mistake.)
pub fn has_artifact(task: &Task, update: &ArtifactUpdate) -> bool {
    let Some(stored) = task.artifacts.iter().find(|a| a.artifact_id == update.artifact.artifact_id) else {
        return false;
    };
    match update.append {
        false => *stored == update.artifact,
        true => !update.artifact.parts.is_empty() && stored.parts.ends_with(&update.artifact.parts),
    }
}

/// Applies an artifact chunk: `append` adds its parts to the artifact with the same id (or
/// starts it); otherwise the artifact replaces the one with its id, or is added at the end.
pub fn apply_artifact(task: &mut Task, update: ArtifactUpdate) -> Result<Vec<TaskChange>, TransitionError> {
    check_event(task, &update.task_id, &update.context_id)?;
    let change = TaskChange::Artifact {
        artifact: update.artifact.clone(),
        append: update.append,
        last_chunk: update.last_chunk,
    };
    let incoming = update.artifact;
    let index = task.artifacts.iter().position(|a| a.artifact_id == incoming.artifact_id);
    let parts_after = match (index, update.append) {
        (Some(i), true) => task.artifacts[i].parts.len() + incoming.parts.len(),
        _ => incoming.parts.len(),
    };
    if parts_after > ARTIFACT_PARTS_MAX {
        return Err(too_large(task, format!("{ARTIFACT_PARTS_MAX} parts per artifact")));
    }
    if index.is_none() && task.artifacts.len() >= ARTIFACTS_MAX {
        return Err(too_large(task, format!("{ARTIFACTS_MAX} artifacts")));
    }
    let existing = index.map(|i| &mut task.artifacts[i]);
    match (existing, update.append) {
        (Some(artifact), true) => artifact.parts.extend(incoming.parts),
        (Some(artifact), false) => *artifact = incoming,
        (None, _) => task.artifacts.push(incoming),
    }
    Ok(vec![change])
}

fn check_event(task: &Task, task_id: &str, context_id: &str) -> Result<(), TransitionError> {
    if task.status.state.is_terminal() {
        return Err(TransitionError::Terminal(task.id.clone()));
    }
    if task.id != task_id {
        return Err(TransitionError::WrongTask { task: task.id.clone(), event: task_id.into() });
    }
    if !context_id.is_empty() && task.context_id != context_id {
        return Err(TransitionError::WrongContext { task: task.context_id.clone(), event: context_id.into() });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            context_id: "ctx".into(),
            status: TaskStatus { state, message: None, timestamp: None },
            artifacts: vec![],
            history: vec![Json(json!({"messageId": "m1", "role": "ROLE_USER", "parts": []}))],
            metadata: None,
        }
    }

    pub(crate) fn status(id: &str, state: TaskState, text: Option<&str>) -> StatusUpdate {
        StatusUpdate {
            task_id: id.into(),
            context_id: "ctx".into(),
            status: TaskStatus {
                state,
                message: text.map(|t| Json(json!({"messageId": t, "parts": [{"text": t}]}))),
                timestamp: Some("2026-01-01T00:00:00.000Z".into()),
            },
            metadata: None,
        }
    }

    fn chunk(id: &str, artifact: &str, text: &str, append: bool) -> ArtifactUpdate {
        ArtifactUpdate {
            task_id: id.into(),
            context_id: "ctx".into(),
            artifact: Artifact {
                artifact_id: artifact.into(),
                parts: vec![Json(json!({"text": text}))],
                rest: Json(json!({"name": artifact})),
            },
            append,
            last_chunk: false,
        }
    }

    #[test]
    fn history_keeps_the_most_recent_messages() {
        let mut t = task("t", TaskState::Working);
        for i in 0..HISTORY_MESSAGES_MAX + 5 {
            apply_status(&mut t, status("t", TaskState::Working, Some(&format!("s{i}")))).unwrap();
        }
        assert_eq!(t.history.len(), HISTORY_MESSAGES_MAX);
        // The last status message is the current status; the one before it is newest in history.
        let newest = &t.history.last().unwrap().0["messageId"];
        assert_eq!(newest, &json!(format!("s{}", HISTORY_MESSAGES_MAX + 3)));
        let mut snapshot = task("t", TaskState::Working);
        snapshot.history = (0..HISTORY_MESSAGES_MAX + 7).map(|i| Json(json!({"messageId": i}))).collect();
        let kept = bounded(snapshot).unwrap();
        assert_eq!(kept.history.len(), HISTORY_MESSAGES_MAX);
        assert_eq!(kept.history[0].0["messageId"], json!(7));
    }

    #[test]
    fn a_follow_up_message_goes_to_history_after_the_status_message() {
        let mut t = task("t", TaskState::InputRequired);
        t.status.message = Some(Json(json!({"messageId": "ask"})));
        assert_eq!(append_message(&mut t, Json(json!({"messageId": "Bob"}))), Ok(vec![]));
        let ids: Vec<_> = t.history.iter().map(|m| m.0["messageId"].clone()).collect();
        assert_eq!(ids, [json!("m1"), json!("ask"), json!("Bob")]);
        assert!(t.status.message.is_none());
        let mut done = task("t", TaskState::Completed);
        let before = done.clone();
        assert!(append_message(&mut done, Json(json!({"messageId": "late"}))).is_err());
        assert_eq!(done, before, "a refusal changes nothing");
    }

    #[test]
    fn artifacts_and_parts_past_their_limits_are_refused_and_change_nothing() {
        let mut t = task("t", TaskState::Working);
        let mut first = chunk("t", "a", "x", false);
        first.artifact.parts = vec![Json(json!({"text": "x"})); ARTIFACT_PARTS_MAX];
        apply_artifact(&mut t, first).unwrap();
        let before = t.clone();
        let refused = apply_artifact(&mut t, chunk("t", "a", "one too many", true));
        assert!(matches!(refused, Err(TransitionError::TooLarge { .. })), "{refused:?}");
        assert_eq!(t, before);
        // Replacing the artifact (not appending) is fine.
        apply_artifact(&mut t, chunk("t", "a", "fresh", false)).unwrap();
        for i in 1..ARTIFACTS_MAX {
            apply_artifact(&mut t, chunk("t", &format!("a{i}"), "x", false)).unwrap();
        }
        let before = t.clone();
        assert!(matches!(apply_artifact(&mut t, chunk("t", "new", "x", false)), Err(TransitionError::TooLarge { .. })));
        assert_eq!(t, before);
        let mut snapshot = task("t", TaskState::Working);
        snapshot.artifacts = t.artifacts.clone();
        snapshot.artifacts.push(chunk("t", "new", "x", false).artifact);
        assert!(matches!(bounded(snapshot), Err(TransitionError::TooLarge { .. })));
    }

    /// Every (from, to) pair of states: a terminal task refuses every change, any other task
    /// accepts every change; refusals leave the task as it was.
    #[test]
    fn every_status_transition() {
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let mut t = task("t", from);
                let before = t.clone();
                let result = apply_status(&mut t, status("t", to, None));
                if from.is_terminal() {
                    assert_eq!(result, Err(TransitionError::Terminal("t".into())), "{from:?}->{to:?}");
                    assert_eq!(t, before);
                } else {
                    assert!(result.is_ok(), "{from:?}->{to:?}");
                    assert_eq!(t.status.state, to);
                }
            }
        }
    }

    #[test]
    fn every_snapshot_replacement() {
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                let cur = task("t", from);
                let result = replace(Some(&cur), task("t", to));
                let same = from == to;
                assert_eq!(result.is_ok(), !from.is_terminal() || same, "{from:?}->{to:?}");
            }
        }
        assert!(replace(None, task("t", TaskState::Completed)).is_ok());
    }

    #[test]
    fn status_message_moves_to_history() {
        let mut t = task("t", TaskState::Submitted);
        apply_status(&mut t, status("t", TaskState::Working, Some("echoing"))).unwrap();
        assert_eq!(t.history.len(), 1);
        apply_status(&mut t, status("t", TaskState::Completed, Some("done"))).unwrap();
        assert_eq!(t.history.len(), 2);
        assert_eq!(t.history[1].0["messageId"], "echoing");
        assert_eq!(t.status.message.as_ref().unwrap().0["messageId"], "done");
    }

    #[test]
    fn diff_lists_changed_artifacts_then_the_status() {
        let old = task("t", TaskState::Working);
        let mut new = old.clone();
        assert!(diff(&old, &new).is_empty());
        apply_artifact(&mut new, chunk("t", "a", "x", false)).unwrap();
        apply_status(&mut new, status("t", TaskState::Completed, None)).unwrap();
        let changes = diff(&old, &new);
        assert!(matches!(changes[0], TaskChange::Artifact { .. }));
        assert!(matches!(&changes[1], TaskChange::Status { status, .. } if status.state == TaskState::Completed));
    }

    #[test]
    fn artifacts_merge_by_id() {
        let mut t = task("t", TaskState::Working);
        apply_artifact(&mut t, chunk("t", "a", "one ", false)).unwrap();
        apply_artifact(&mut t, chunk("t", "a", "two", true)).unwrap();
        apply_artifact(&mut t, chunk("t", "b", "x", true)).unwrap();
        assert_eq!(t.artifacts.len(), 2);
        assert_eq!(t.artifacts[0].parts.len(), 2);
        assert_eq!(t.artifacts[0].parts[1].0["text"], "two");
        apply_artifact(&mut t, chunk("t", "a", "fresh", false)).unwrap();
        assert_eq!(t.artifacts[0].parts.len(), 1);
        assert_eq!(t.artifacts[0].parts[0].0["text"], "fresh");
        assert_eq!(t.artifacts[1].artifact_id, "b");
    }

    #[test]
    fn events_for_other_tasks_or_contexts_are_refused() {
        let mut t = task("t", TaskState::Working);
        assert!(matches!(
            apply_status(&mut t, status("u", TaskState::Completed, None)),
            Err(TransitionError::WrongTask { .. })
        ));
        let mut wrong_ctx = chunk("t", "a", "x", false);
        wrong_ctx.context_id = "other".into();
        assert!(matches!(apply_artifact(&mut t, wrong_ctx), Err(TransitionError::WrongContext { .. })));
        assert_eq!(t, task("t", TaskState::Working));
    }

    #[test]
    fn a_webhook_repeating_what_the_task_has_is_seen() {
        let mut t = task("t", TaskState::Working);
        let mut update = status("t", TaskState::Working, Some("step 1"));
        update.status.timestamp = Some("2026-01-01T00:00:01.5Z".into());
        assert!(!has_status(&t, &update));
        apply_status(&mut t, update.clone()).unwrap();
        assert!(has_status(&t, &update), "the same status");
        let mut older = status("t", TaskState::Working, Some("step 0"));
        older.status.timestamp = Some("2026-01-01T00:00:01Z".into());
        assert!(has_status(&t, &older), "older than the stored one");
        let mut newer = status("t", TaskState::Completed, None);
        newer.status.timestamp = Some("2026-01-01T00:00:01.500001Z".into());
        assert!(!has_status(&t, &newer));
        let mut untimed = status("t", TaskState::Completed, None);
        untimed.status.timestamp = None;
        assert!(!has_status(&t, &untimed), "no timestamp: only an equal status is seen");

        let replaced = chunk("t", "a", "x", false);
        assert!(!has_artifact(&t, &replaced));
        apply_artifact(&mut t, replaced.clone()).unwrap();
        assert!(has_artifact(&t, &replaced));
        let appended = chunk("t", "a", "y", true);
        assert!(!has_artifact(&t, &appended));
        apply_artifact(&mut t, appended.clone()).unwrap();
        assert!(has_artifact(&t, &appended));
        assert!(!has_artifact(&t, &chunk("t", "a", "x", true)));
    }
}
