//! Configuration as an operator meets it: every error at once and a non-zero exit; the
//! layers (file, environment, flags) overriding each other in a running node.

use std::io::Write;
use std::time::Duration;

use crate::support::{command, free_port, rpc, run_to_exit, start};

#[test]
fn every_config_error_is_reported_and_the_process_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[server]\nlisten = \"not-an-address\"\nunknown_key = 1\n[agents]\ncall_timeout_ms = \"slow\"")
        .unwrap();
    let config = file.path().to_str().unwrap();
    let cmd = command(
        &dir.path().join("node"),
        &["--config", config, "--agents-file", "/nonexistent/agents.yml"],
        &[("PORT", "not-a-port"), ("SUPERX_TASKS__MEMORY_MAX", "0")],
    );
    let out = run_to_exit(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in
        ["server.unknown_key", "agents.call_timeout_ms", "PORT", "tasks.memory_max", "/nonexistent/agents.yml"]
    {
        assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
    }
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let unused = free_port();
    writeln!(file, "[agents]\ncall_timeout_ms = 1111\nmax_in_flight = 3\n[server]\nlisten = \"127.0.0.1:{unused}\"")
        .unwrap();
    let mut agents = tempfile::NamedTempFile::new().unwrap();
    // An agent nobody listens on: it registers without a card.
    writeln!(agents, "agents:\n  ghost:\n    url: http://127.0.0.1:{}/\n", free_port()).unwrap();
    let node = start(
        &dir.path().join("node"),
        &["--config", file.path().to_str().unwrap()],
        &[("AGENT_CALL_TIMEOUT", "2222"), ("AGENTS_FILE", agents.path().to_str().unwrap())],
    );
    let got = rpc(&node.base, "agents/get", serde_json::json!({"id": "ghost"}));
    let settings = &got["result"]["settings"];
    assert_eq!(settings["callTimeoutMs"], 2222, "env overrides the file: {got}");
    assert_eq!(settings["maxInFlight"], 3, "the file overrides defaults: {got}");
    assert!(!node.base.ends_with(&unused.to_string()), "--listen overrides the file");
}
