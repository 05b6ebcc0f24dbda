//! The demo echo agent's A2A JSON (`superx serve --demo`, served by `crate::demo`): its card,
//! the tasks it answers with and the events of its streams, all A2A 1.0 over JSON-RPC.
//!
//! It answers every message with a task whose artifact is the text sent back, word by word
//! on a stream, so a newcomer sees a task go from working to completed live.

use serde_json::{Value, json};

use super::TaskState;

/// The demo agent's card, served at `<url>.well-known/agent-card.json`.
pub fn card(url: &str) -> Value {
    json!({
        "name": "superx demo echo",
        "description": "DEMO ONLY: the echo agent built into `superx serve --demo`. It answers every message with the text it was sent, word by word when streaming.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": true, "pushNotifications": false},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{
            "id": "echo",
            "name": "Echo",
            "description": "Sends your text back",
            "tags": ["demo", "echo"],
            "examples": ["hello superx"],
        }],
    })
}

/// What a message asks of the demo agent.
#[derive(Clone, Debug, PartialEq)]
pub struct Ask {
    pub text: String,
    pub context_id: String,
    pub message: Value,
}

/// Reads a SendMessage / SendStreamingMessage `params`; `Err` is the invalid-params message.
pub fn read_ask(params: &Value) -> Result<Ask, String> {
    let message = params.get("message").filter(|m| m.is_object()).ok_or("params.message is required")?;
    let parts =
        message["parts"].as_array().filter(|p| !p.is_empty()).ok_or("message.parts must be a non-empty list")?;
    let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    let context_id = message["contextId"].as_str().map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let mut message = message.clone();
    message["contextId"] = json!(context_id);
    Ok(Ask { text: text.join(" "), context_id, message })
}

/// The demo's task in a state, with the words echoed so far as its one artifact.
pub fn task(id: &str, ask: &Ask, state: TaskState, words: &[&str]) -> Value {
    let mut message = ask.message.clone();
    message["taskId"] = json!(id);
    let mut task = json!({
        "id": id,
        "contextId": ask.context_id,
        "status": {"state": state.v10_name(), "timestamp": now()},
        "history": [message],
    });
    if !words.is_empty() {
        task["artifacts"] = json!([artifact(&words.join(" "))]);
    }
    task
}

/// The stream's status event.
pub fn status_update(id: &str, ask: &Ask, state: TaskState) -> Value {
    json!({"statusUpdate": {
        "taskId": id,
        "contextId": ask.context_id,
        "status": {"state": state.v10_name(), "timestamp": now()},
    }})
}

/// The stream's artifact event for the next word: `append` after the first one.
pub fn artifact_update(id: &str, ask: &Ask, word: &str, first: bool, last: bool) -> Value {
    let text = if first { word.to_string() } else { format!(" {word}") };
    json!({"artifactUpdate": {
        "taskId": id,
        "contextId": ask.context_id,
        "artifact": artifact(&text),
        "append": !first,
        "lastChunk": last,
    }})
}

fn artifact(text: &str) -> Value {
    json!({"artifactId": "echo", "name": "echo", "parts": [{"text": text}]})
}

/// A JSON-RPC 2.0 answer.
pub fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC 2.0 error with the A2A reason in `data`.
pub fn rpc_error(id: &Value, code: i64, message: &str, reason: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": [super::error_info(reason)]}})
}

/// The error codes the demo answers with (A2A 1.0 and JSON-RPC's).
pub mod codes {
    pub const PARSE: i64 = -32700;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const TASK_NOT_FOUND: i64 = -32001;
    pub const TASK_NOT_CANCELABLE: i64 = -32002;
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_task_reads_back_as_the_cli_shows_it() {
        let ask =
            read_ask(&json!({"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "hello there"}]}}))
                .unwrap();
        let t = task("t1", &ask, TaskState::Completed, &["hello", "there"]);
        let s = super::super::client::summarize_task(&t);
        assert_eq!((s.text.as_str(), s.state), ("hello there", Some(TaskState::Completed)));
        assert_eq!(t["history"][0]["taskId"], "t1");
        assert_eq!(t["contextId"], ask.context_id);
    }

    #[test]
    fn a_message_without_parts_is_invalid() {
        assert!(read_ask(&json!({"message": {"parts": []}})).is_err());
        assert!(read_ask(&json!({})).is_err());
    }

    #[test]
    fn the_card_names_one_jsonrpc_1_0_interface() {
        let c = card("http://127.0.0.1:1/");
        assert_eq!(c["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
        assert_eq!(c["capabilities"]["streaming"], true);
    }
}
