//! Starting and stopping `superx` processes for tests.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

/// Sends SIGTERM and waits for the process to exit, at most `deadline`.
pub fn terminate(child: &mut Child, deadline: Duration) -> (Duration, std::process::ExitStatus) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -TERM failed");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (start.elapsed(), status);
        }
        assert!(start.elapsed() < deadline, "superx did not exit within {deadline:?} of SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
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
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
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

/// A cluster member's fixed addresses and data dir, so it can be killed and restarted.
pub struct Member {
    pub id: u64,
    pub api: String,
    pub raft: String,
    pub dir: PathBuf,
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub nodes: HashMap<u64, Node>,
    peers: String,
    agents_file: PathBuf,
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

pub fn port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port()
}

impl Cluster {
    pub fn new(size: u64, agent_url: &str, env: &[(&str, &str)]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (1..=size)
            .map(|id| {
                let ip = format!("127.0.0.{id}");
                Member {
                    id,
                    api: format!("{ip}:{}", port_on(&ip)),
                    raft: format!("{ip}:{}", port_on(&ip)),
                    dir: tmp.path().join(format!("n{id}")),
                }
            })
            .collect();
        let peers = members.iter().map(|m| format!("{}={}@{}", m.id, m.raft, m.api)).collect::<Vec<_>>().join(",");
        let agents_file = tmp.path().join("agents.yml");
        let mut f = std::fs::File::create(&agents_file).unwrap();
        writeln!(f, "agents:\n  echo:\n    url: {agent_url}\n").unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut cluster = Cluster { members, nodes: HashMap::new(), peers, agents_file, env, _tmp: tmp };
        for id in 1..=size {
            cluster.spawn(id);
        }
        for id in 1..=size {
            cluster.wait_ready(id);
        }
        cluster.wait_voters(size.min(3) as usize);
        cluster
    }

    pub fn member(&self, id: u64) -> &Member {
        &self.members[(id - 1) as usize]
    }

    pub fn spawn(&mut self, id: u64) {
        let m = self.member(id);
        let node_id = id.to_string();
        let agents = self.agents_file.to_str().unwrap().to_owned();
        let args = [
            "--node-id",
            &node_id,
            "--listen",
            &m.api,
            "--raft-listen",
            &m.raft,
            "--peers",
            &self.peers,
            "--agents-file",
            &agents,
        ];
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let child = command(&m.dir, &args, &env).spawn().expect("spawn superx");
        let base = format!("http://{}", m.api);
        self.nodes.insert(id, Node { child, base });
    }

    pub fn wait_ready(&self, id: u64) {
        let url = format!("{}/ready", self.base(id));
        wait_until(Duration::from_secs(30), || crate::support::get(&url).is_some_and(|(s, _)| s == 200));
    }

    /// Waits until the cluster has formed: this many voters in the membership.
    pub fn wait_voters(&self, voters: usize) {
        wait_until(Duration::from_secs(30), || {
            self.nodes.keys().any(|id| self.status(*id)["voters"].as_array().is_some_and(|v| v.len() == voters))
        });
    }

    pub fn base(&self, id: u64) -> String {
        format!("http://{}", self.member(id).api)
    }

    /// Kills a node with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut node) = self.nodes.remove(&id) {
            node.child.kill().unwrap();
            node.child.wait().unwrap();
        }
    }

    /// Stops a node with SIGTERM (its drain) and waits for it to exit; answers how long that
    /// took and the exit status. Panics if it has not exited by the deadline.
    pub fn terminate(&mut self, id: u64, deadline: Duration) -> (Duration, std::process::ExitStatus) {
        let mut node = self.nodes.remove(&id).expect("a running node");
        let (took, status) = terminate(&mut node.child, deadline);
        (took, status)
    }

    /// `cluster/status`, with the admin token when the cluster requires auth.
    pub fn status(&self, id: u64) -> Value {
        let admin = self.env.iter().find(|(k, _)| k == "SUPERX_AUTH__ADMIN_TOKEN").map(|(_, v)| v.as_str());
        call_as(&self.base(id), "/rpc", "cluster/status", json!({}), admin)["result"].clone()
    }

    pub fn leader(&self) -> u64 {
        let mut leader = 0;
        wait_until(Duration::from_secs(20), || {
            leader = self
                .nodes
                .keys()
                .find_map(|id| {
                    let s = self.status(*id);
                    (s["role"] == "leader").then_some(*id)
                })
                .unwrap_or(0);
            leader != 0
        });
        leader
    }
}

/// A JSON-RPC call as an A2A 1.0 client, to any path, with an optional read mode; a
/// transport failure comes back as an error object with code 0.
pub fn call(base: &str, path: &str, method: &str, params: Value, read: Option<&str>) -> Value {
    call_with(base, path, method, params, read, None)
}

/// [`call`] with a bearer credential (an API key, a JWT, the admin token).
pub fn call_as(base: &str, path: &str, method: &str, params: Value, bearer: Option<&str>) -> Value {
    call_with(base, path, method, params, None, bearer)
}

fn call_with(base: &str, path: &str, method: &str, params: Value, read: Option<&str>, bearer: Option<&str>) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut req = client().post(format!("{base}{path}")).header("A2A-Version", "1.0").json(&body);
    if let Some(mode) = read {
        req = req.header("SuperX-Read", mode);
    }
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    match req.send().and_then(|r| r.json::<Value>()) {
        Ok(v) => v,
        Err(e) => json!({"error": {"code": 0, "message": format!("transport: {e}")}}),
    }
}

pub fn send(base: &str, text: &str) -> Result<Value, Value> {
    let params = json!({"message": {"messageId": text, "role": "ROLE_USER", "parts": [{"text": text}]}});
    let reply = call(base, "/agents/echo", "SendMessage", params, None);
    match reply.get("result") {
        Some(r) => Ok(r["task"].clone()),
        None => Err(reply["error"].clone()),
    }
}

pub fn get_task(base: &str, id: &str, read: Option<&str>) -> Option<Value> {
    let reply = call(base, "/agents/echo", "GetTask", json!({"id": id}), read);
    reply.get("result").cloned()
}
