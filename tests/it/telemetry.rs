//! Request ids and trace ids in JSON logs: a node logging JSON at `warn` names the request
//! (its `x-request-id`) and the client's trace in the warning an agent failure logs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{free_port, start, wait_until};

#[test]
fn a_requests_log_lines_carry_its_request_and_trace_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = start(&dir, &[], &[("SUPERX_LOG__FORMAT", "json")]);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // An agent nobody listens for: every call to it fails and logs a warning.
    let url = format!("http://127.0.0.1:{}/", free_port());
    let upsert =
        json!({"jsonrpc": "2.0", "id": 1, "method": "agents/upsert", "params": {"agent": {"id": "gone", "url": url}}});
    let r: Value = client.post(format!("{}/rpc", node.base)).json(&upsert).send().unwrap().json().unwrap();
    assert!(r.get("result").is_some(), "{r}");

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let send = json!({"jsonrpc": "2.0", "id": 2, "method": "SendMessage",
        "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}});
    let response = client
        .post(format!("{}/agents/gone", node.base))
        .header("A2A-Version", "1.0")
        .header("x-request-id", "it-telemetry-1")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&send)
        .send()
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "it-telemetry-1");
    let answer: Value = response.json().unwrap();
    assert!(answer.get("error").is_some(), "{answer}");

    // stderr is unbuffered, but the line may still be on its way: wait for it.
    let log = dir.with_extension("log");
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["level"] == "WARN" && l["span"]["request_id"] == "it-telemetry-1");
        found.is_some()
    });
    let line = found.unwrap();
    let span = &line["span"];
    assert_eq!(span["name"], "request", "{line}");
    assert_eq!(span["trace_id"], trace_id, "{line}");
    assert_eq!(span["route"], "/agents/{id}", "{line}");
    let span_id = span["span_id"].as_str().unwrap();
    assert_eq!(span_id.len(), 16, "{line}");
    assert_ne!(span_id, "00f067aa0ba902b7", "the gateway's span is its own: {line}");
    drop(node);
}
