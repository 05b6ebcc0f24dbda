//! A2A JSON as the `superx` CLI sends and reads it (A2A 1.0): the params it sends and the
//! answers it prints, summarized into plain values so the CLI itself never reads wire JSON.

use serde_json::{Value, json};

use super::TaskState;

/// SendMessage / SendStreamingMessage params: one user text part, continuing a context or a
/// task when given.
pub fn send_params(text: &str, context_id: Option<&str>, task_id: Option<&str>) -> Value {
    let mut message = json!({
        "role": "ROLE_USER",
        "messageId": uuid::Uuid::new_v4().to_string(),
        "parts": [{"text": text}],
    });
    if let Some(c) = context_id {
        message["contextId"] = json!(c);
    }
    if let Some(t) = task_id {
        message["taskId"] = json!(t);
    }
    json!({"message": message})
}

/// GetTask / CancelTask / SubscribeToTask params.
pub fn task_params(task_id: &str) -> Value {
    json!({"id": task_id})
}

/// ListTasks params (1.0 names).
pub fn list_params(
    state: Option<TaskState>,
    context_id: Option<&str>,
    page_size: u32,
    page_token: Option<&str>,
) -> Value {
    let mut params = json!({"pageSize": page_size, "includeArtifacts": true});
    if let Some(s) = state {
        params["status"] = json!(s.v10_name());
    }
    if let Some(c) = context_id {
        params["contextId"] = json!(c);
    }
    if let Some(p) = page_token {
        params["pageToken"] = json!(p);
    }
    params
}

/// A task or a message, as the CLI shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Empty for a bare message answer.
    pub task_id: String,
    pub context_id: String,
    pub state: Option<TaskState>,
    /// The status message's text, else the artifacts' text, else the message's text.
    pub text: String,
    /// When the status last changed (RFC 3339), if the task says.
    pub updated: String,
}

impl Summary {
    /// The state's short name (`completed`), `-` for a message.
    pub fn state_name(&self) -> &'static str {
        self.state.map_or("-", TaskState::v03_name)
    }
}

/// A SendMessage result (`{"task":..}` or `{"message":..}`) or a bare task.
pub fn summarize(result: &Value) -> Summary {
    if let Some(task) = result.get("task") {
        return summarize_task(task);
    }
    if let Some(message) = result.get("message") {
        return summarize_message(message);
    }
    summarize_task(result)
}

/// A task: its ids, state and what it said (artifacts first: they are the answer).
pub fn summarize_task(task: &Value) -> Summary {
    let status = &task["status"];
    let artifacts: Vec<String> = task["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| parts_text(&a["parts"]))
        .filter(|t| !t.is_empty())
        .collect();
    let text = if artifacts.is_empty() { parts_text(&status["message"]["parts"]) } else { artifacts.join("\n") };
    Summary {
        task_id: str_of(&task["id"]),
        context_id: str_of(&task["contextId"]),
        state: status["state"].as_str().and_then(TaskState::from_v10),
        text,
        updated: str_of(&status["timestamp"]),
    }
}

fn summarize_message(message: &Value) -> Summary {
    Summary {
        task_id: str_of(&message["taskId"]),
        context_id: str_of(&message["contextId"]),
        state: None,
        text: parts_text(&message["parts"]),
        updated: String::new(),
    }
}

/// A ListTasks result: the page's tasks and the next page's token (empty on the last page).
pub fn summarize_list(result: &Value) -> (Vec<Summary>, String, u64) {
    let tasks = result["tasks"].as_array().into_iter().flatten().map(summarize_task).collect();
    (tasks, str_of(&result["nextPageToken"]), result["totalSize"].as_u64().unwrap_or(0))
}

/// One event of a 1.0 stream (a `StreamResponse`), as the CLI shows it live.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The task as it stands (the first event, usually).
    Task(Summary),
    /// A message: the whole answer.
    Message(Summary),
    /// The task's state changed; `text` is the status message's, if any.
    Status { state: Option<TaskState>, text: String, task_id: String },
    /// Artifact text: `append` continues the previous chunk of the same artifact.
    Artifact { text: String, append: bool, artifact_id: String },
    /// Something this CLI does not know how to show.
    Other,
}

impl StreamEvent {
    /// Whether the stream is over after this event (a terminal or interrupted state, or a
    /// message).
    pub fn ends(&self) -> bool {
        let state = match self {
            StreamEvent::Task(s) => s.state,
            StreamEvent::Status { state, .. } => *state,
            StreamEvent::Message(_) => return true,
            _ => None,
        };
        state.is_some_and(|s| s.is_terminal() || s.is_interrupted())
    }
}

/// A stream event's `result`.
pub fn stream_event(result: &Value) -> StreamEvent {
    if let Some(task) = result.get("task") {
        return StreamEvent::Task(summarize_task(task));
    }
    if let Some(message) = result.get("message") {
        return StreamEvent::Message(summarize_message(message));
    }
    if let Some(update) = result.get("statusUpdate") {
        return StreamEvent::Status {
            state: update["status"]["state"].as_str().and_then(TaskState::from_v10),
            text: parts_text(&update["status"]["message"]["parts"]),
            task_id: str_of(&update["taskId"]),
        };
    }
    if let Some(update) = result.get("artifactUpdate") {
        return StreamEvent::Artifact {
            text: parts_text(&update["artifact"]["parts"]),
            append: update["append"].as_bool().unwrap_or(false),
            artifact_id: str_of(&update["artifact"]["artifactId"]),
        };
    }
    StreamEvent::Other
}

/// The text parts joined; other parts named by kind (`[file]`, `[data]`).
fn parts_text(parts: &Value) -> String {
    let mut out = Vec::new();
    for part in parts.as_array().into_iter().flatten() {
        if let Some(t) = part["text"].as_str() {
            out.push(t.to_string());
        } else if part.get("data").is_some() {
            out.push("[data]".to_string());
        } else if part.get("url").is_some() || part.get("raw").is_some() {
            out.push("[file]".to_string());
        }
    }
    out.join("")
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_task_says_its_artifacts() {
        let result = json!({"task": {
            "id": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2026-12-03T00:00:00Z"},
            "artifacts": [{"artifactId": "a", "parts": [{"text": "hel"}, {"text": "lo"}]}],
        }});
        let s = summarize(&result);
        assert_eq!((s.task_id.as_str(), s.context_id.as_str(), s.text.as_str()), ("t1", "c1", "hello"));
        assert_eq!(s.state, Some(TaskState::Completed));
        assert_eq!(s.state_name(), "completed");
    }

    #[test]
    fn a_message_answer_has_no_state() {
        let s = summarize(
            &json!({"message": {"role": "ROLE_AGENT", "messageId": "m", "parts": [{"text": "hi"}, {"data": {}}]}}),
        );
        assert_eq!((s.text.as_str(), s.state_name()), ("hi[data]", "-"));
    }

    #[test]
    fn stream_events_are_told_apart_and_know_when_the_stream_ends() {
        let working =
            stream_event(&json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_WORKING"}}}));
        assert!(!working.ends());
        let done =
            stream_event(&json!({"statusUpdate": {"taskId": "t", "status": {"state": "TASK_STATE_INPUT_REQUIRED"}}}));
        assert!(done.ends());
        let chunk = stream_event(
            &json!({"artifactUpdate": {"append": true, "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}}),
        );
        assert_eq!(chunk, StreamEvent::Artifact { text: "x".into(), append: true, artifact_id: "a".into() });
        assert_eq!(stream_event(&json!({"weird": 1})), StreamEvent::Other);
    }

    #[test]
    fn params_carry_what_was_given() {
        let p = send_params("hi", Some("c"), None);
        assert_eq!(p["message"]["contextId"], "c");
        assert!(p["message"].get("taskId").is_none());
        assert_eq!(p["message"]["parts"][0]["text"], "hi");
        let l = list_params(Some(TaskState::Working), None, 20, Some("tok"));
        assert_eq!(
            l,
            json!({"pageSize": 20, "includeArtifacts": true, "status": "TASK_STATE_WORKING", "pageToken": "tok"})
        );
    }
}
