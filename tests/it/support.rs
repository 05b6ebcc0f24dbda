//! Starting and stopping `superx` processes for tests.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_superx");

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A gateway process, killed on drop.
pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `superx serve` with the given args and environment, not waited on. Its log goes to
/// `superx.log` beside the data dir (appended across restarts), never to a pipe nobody
/// drains: a full pipe would block the node.
pub fn command(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").arg("--data-dir").arg(data_dir).args(args);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("LOG_LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log_path = data_dir.with_extension("log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).expect("open node log");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    cmd
}

/// Runs `superx serve` expecting it to exit by itself within the deadline.
pub fn run_to_exit(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn superx");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        assert!(start.elapsed() < deadline, "superx did not exit within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a node and waits until `/ready` answers 200.
pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Node {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let raft_listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec!["--listen", listen.as_str(), "--raft-listen", raft_listen.as_str()];
    all.extend_from_slice(args);
    let child = command(data_dir, &all, env).spawn().expect("spawn superx");
    let node = Node { child, base: format!("http://{listen}") };
    wait_until(Duration::from_secs(20), || get(&format!("{}/ready", node.base)).is_some_and(|(s, _)| s == 200));
    node
}

/// Polls a condition until it holds, or panics at the deadline.
pub fn wait_until(deadline: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < deadline, "condition not met within {deadline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

/// GET, returning status and body (None when the node does not answer).
pub fn get(url: &str) -> Option<(u16, String)> {
    let r = client().get(url).send().ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

/// POSTs a JSON-RPC call to `/rpc` and returns the parsed response.
pub fn rpc(base: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    client().post(format!("{base}/rpc")).json(&body).send().unwrap().json().unwrap()
}
