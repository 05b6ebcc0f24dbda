//! A cluster of `superx` processes that find each other without `--peers`: by gossip seeds, DNS
//! or the Kubernetes API (the `formation`, `dns`, `kubernetes`, `partition` and `bad_config`
//! tests). Node `n` lives on 127.0.0.n with its own API, raft and gossip ports; each node's
//! stderr goes to `<datadir>.log`. The writes a test makes are recorded, so it can check at the
//! end that no acknowledged write was lost.
//!
//! The temp dir is kept (and its path printed) when a test panics, or always with
//! `SUPERX_KEEP_TEST_DIRS=1`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BIN, Node, command, run_to_exit, wait_until};

/// Source address of every request the tests make, so a partition (which drops traffic
/// between node addresses) never cuts the test off a node.
pub const CLIENT_IP: &str = "127.0.0.100";

/// How long the cluster may take for anything it is expected to do in a few seconds.
pub const DEADLINE: Duration = Duration::from_secs(45);

/// Settings every node of a test cluster gets: short stabilization and dead-voter timeouts so
/// membership changes happen within the test's time.
pub const FAST_MEMBERSHIP: [(&str, &str); 3] = [
    ("SUPERX_CLUSTER__STABILIZATION_MS", "1000"),
    ("SUPERX_CLUSTER__DEAD_VOTER_TIMEOUT_MS", "3000"),
    ("LOG_LEVEL", "info"),
];

/// One node's place: fixed addresses and data dir, so it can be killed and started again.
pub struct Slot {
    pub ip: String,
    pub api: String,
    pub raft: String,
    pub gossip: String,
    pub dir: PathBuf,
    /// Pass `--node-id n`; otherwise the node picks (and keeps) its own id.
    pub node_id_flag: bool,
    /// The node id, once known (the slot number with `--node-id`).
    pub id: Option<u64>,
    /// Run the process as this uid (partition tests match a node's packets by uid).
    pub uid: Option<u32>,
}

/// An acknowledged write: the task and the state its SendMessage answered with.
#[derive(Clone, Debug)]
pub struct Acked {
    pub id: String,
    pub state: Value,
    pub via: u64,
}

pub struct GossipCluster {
    pub slots: BTreeMap<u64, Slot>,
    nodes: HashMap<u64, Node>,
    /// Arguments of every node after its addresses (strategy, seeds, bootstrap_expect...).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Every slot's gossip port, when the strategy needs one port on every address (DNS A
    /// records and EndpointSlice ports carry one port for all nodes).
    pub shared_gossip_port: Option<u16>,
    pub agents_file: PathBuf,
    pub acked: Vec<Acked>,
    /// Slot n's address is this prefix and n. A test whose firewall rules match addresses
    /// uses a prefix of its own, so the rules touch no other test running at the same time.
    pub ip_prefix: String,
    tmp: Option<tempfile::TempDir>,
}

impl Drop for GossipCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let keep = std::thread::panicking() || std::env::var_os("SUPERX_KEEP_TEST_DIRS").is_some();
        if let (true, Some(tmp)) = (keep, self.tmp.take()) {
            eprintln!("test dir kept: {} (node logs: n*.log)", tmp.keep().display());
        }
    }
}

/// A port free for TCP on `ip` a moment ago.
pub fn tcp_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port()
}

/// A port free for UDP on `ip` a moment ago.
pub fn udp_port_on(ip: &str) -> u16 {
    UdpSocket::bind(format!("{ip}:0")).unwrap().local_addr().unwrap().port()
}

/// A UDP port free on every one of `ips` a moment ago.
pub fn udp_port_on_all(ips: &[String]) -> u16 {
    for _ in 0..100 {
        let port = udp_port_on(&ips[0]);
        if ips.iter().all(|ip| UdpSocket::bind(format!("{ip}:{port}")).is_ok()) {
            return port;
        }
    }
    panic!("no UDP port free on all of {ips:?}");
}

impl GossipCluster {
    /// An empty cluster whose nodes use the agent at `agent_url` as `echo`.
    pub fn new(agent_url: &str) -> GossipCluster {
        let tmp = tempfile::Builder::new().prefix("superx-it-").tempdir().unwrap();
        let agents_file = tmp.path().join("agents.yml");
        let mut f = std::fs::File::create(&agents_file).unwrap();
        writeln!(f, "agents:\n  echo:\n    url: {agent_url}\n").unwrap();
        let env = FAST_MEMBERSHIP.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        GossipCluster {
            slots: BTreeMap::new(),
            nodes: HashMap::new(),
            args: Vec::new(),
            env,
            shared_gossip_port: None,
            agents_file,
            acked: Vec::new(),
            ip_prefix: "127.0.0.".into(),
            tmp: Some(tmp),
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.as_ref().unwrap().path()
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Reserves slot `n` on `<ip_prefix>n` (127.0.0.n by default).
    pub fn add(&mut self, n: u64, node_id_flag: bool) {
        let ip = format!("{}{n}", self.ip_prefix);
        let gossip_port = self.shared_gossip_port.unwrap_or_else(|| udp_port_on(&ip));
        let slot = Slot {
            api: format!("{ip}:{}", tcp_port_on(&ip)),
            raft: format!("{ip}:{}", tcp_port_on(&ip)),
            gossip: format!("{ip}:{gossip_port}"),
            dir: self.dir().join(format!("n{n}")),
            node_id_flag,
            id: node_id_flag.then_some(n),
            uid: None,
            ip,
        };
        self.slots.insert(n, slot);
    }

    pub fn slot(&self, n: u64) -> &Slot {
        &self.slots[&n]
    }

    pub fn base(&self, n: u64) -> String {
        format!("http://{}", self.slot(n).api)
    }

    /// Starts slot `n`'s process (not waiting for anything).
    pub fn spawn(&mut self, n: u64) {
        let slot = self.slot(n);
        let node_id = n.to_string();
        let agents = self.agents_file.to_str().unwrap();
        let mut args = vec![
            "--listen",
            &slot.api,
            "--raft-listen",
            &slot.raft,
            "--gossip-listen",
            &slot.gossip,
            "--agents-file",
            agents,
        ];
        if slot.node_id_flag {
            args.extend(["--node-id", &node_id]);
        }
        args.extend(self.args.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut cmd = command(&slot.dir, &args, &env);
        if let Some(uid) = slot.uid {
            use std::os::unix::process::CommandExt;
            std::fs::create_dir_all(&slot.dir).unwrap();
            std::os::unix::fs::chown(&slot.dir, Some(uid), Some(uid)).unwrap();
            cmd.uid(uid).gid(uid);
        }
        let child = cmd.spawn().expect("spawn superx");
        let base = self.base(n);
        self.nodes.insert(n, Node { child, base });
    }

    /// Starts several slots back to back, as close to the same instant as processes allow.
    pub fn spawn_all(&mut self, slots: &[u64]) {
        for n in slots {
            self.spawn(*n);
        }
    }

    pub fn running(&self) -> Vec<u64> {
        let mut slots: Vec<u64> = self.nodes.keys().copied().collect();
        slots.sort();
        slots
    }

    /// SIGKILL: no shutdown, no leave.
    pub fn kill(&mut self, n: u64) {
        let mut node = self.nodes.remove(&n).expect("node running");
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    /// Waits for slot `n`'s process to exit by itself.
    pub fn wait_exit(&mut self, n: u64, deadline: Duration) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(&n).expect("node running");
        let start = Instant::now();
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                self.nodes.remove(&n);
                return status;
            }
            assert!(start.elapsed() < deadline, "node {n} did not exit within {deadline:?}; log: {}", self.log(n));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether slot `n`'s process is still running.
    pub fn alive(&mut self, n: u64) -> bool {
        self.nodes.get_mut(&n).is_some_and(|node| node.child.try_wait().unwrap().is_none())
    }

    /// The tail of slot `n`'s log, for failure messages.
    pub fn log(&self, n: u64) -> String {
        let text = std::fs::read_to_string(self.slot(n).dir.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn ready(&self, n: u64) -> bool {
        get(&format!("{}/ready", self.base(n))).is_some_and(|(s, _)| s == 200)
    }

    pub fn wait_ready(&self, n: u64) {
        let start = Instant::now();
        while !self.ready(n) {
            assert!(start.elapsed() < DEADLINE, "node {n} not ready within {DEADLINE:?}; log:\n{}", self.log(n));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node answers `/ready` with 200.
    pub fn wait_ready_all(&self) {
        for n in self.running() {
            self.wait_ready(n);
        }
    }

    /// `cluster/status` of slot `n`, or None when it does not answer.
    pub fn status(&self, n: u64) -> Option<Value> {
        let reply = rpc(&self.base(n), "/rpc", "cluster/status", json!({}))?;
        reply.get("result").cloned()
    }

    /// Slot `n`'s node id (asked once, then remembered).
    pub fn id(&mut self, n: u64) -> u64 {
        if let Some(id) = self.slot(n).id {
            return id;
        }
        let mut id = None;
        wait_until(DEADLINE, || {
            id = self.status(n).and_then(|s| s["nodeId"].as_u64());
            id.is_some()
        });
        self.slots.get_mut(&n).unwrap().id = id;
        id.unwrap()
    }

    /// The slot whose node has this id.
    pub fn slot_of(&self, id: u64) -> Option<u64> {
        self.slots.iter().find(|(_, s)| s.id == Some(id)).map(|(n, _)| *n)
    }

    /// Waits until every running node agrees on one leader, one term, exactly these voters
    /// and exactly these learners (node ids); returns the leader's id. Panics at the deadline
    /// with every node's last status.
    pub fn wait_membership(&self, voters: &[u64], learners: &[u64]) -> u64 {
        let want_voters: BTreeSet<u64> = voters.iter().copied().collect();
        let want_learners: BTreeSet<u64> = learners.iter().copied().collect();
        let start = Instant::now();
        loop {
            let statuses: Vec<(u64, Option<Value>)> = self.running().into_iter().map(|n| (n, self.status(n))).collect();
            if let Some(leader) = agreement(&statuses, &want_voters, &want_learners) {
                return leader;
            }
            if start.elapsed() > DEADLINE {
                let report: Vec<String> = statuses.iter().map(|(n, s)| format!("node {n}: {}", brief(s))).collect();
                panic!(
                    "no agreement on voters {want_voters:?} learners {want_learners:?} within {DEADLINE:?}:\n{}",
                    report.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one write through slot `n`, retrying retryable errors until the deadline, and
    /// records it. Panics on a non-retryable error.
    pub fn write_through(&mut self, n: u64, tag: &str) -> Acked {
        let base = self.base(n);
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send(&base, &format!("{tag}-via-{n}-{attempt}")) {
                Ok(task) => {
                    let acked = Acked {
                        id: task["id"].as_str().unwrap().to_owned(),
                        state: task["status"]["state"].clone(),
                        via: n,
                    };
                    self.acked.push(acked.clone());
                    return acked;
                }
                Err(e) if is_retryable(&e) || is_transport(&e) => {
                    assert!(
                        start.elapsed() < DEADLINE,
                        "write {tag} via node {n} still failing after {DEADLINE:?}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    for m in self.running() {
                        eprintln!("node {m}: {}", brief(&self.status(m)));
                    }
                    panic!("write {tag} via node {n} failed with a non-retryable error: {e}\nlog:\n{}", self.log(n))
                }
            }
        }
    }

    /// One write through every running node.
    pub fn write_everywhere(&mut self, tag: &str) {
        for n in self.running() {
            self.write_through(n, tag);
        }
    }

    /// Every acknowledged write is readable, in its acknowledged state, through slot `n`.
    pub fn check_acked_on(&self, n: u64) {
        for acked in &self.acked {
            let reply = rpc(&self.base(n), "/agents/echo", "GetTask", json!({"id": acked.id}));
            let reply = reply.unwrap_or_else(|| panic!("node {n} does not answer GetTask {}", acked.id));
            let task = reply.get("result").unwrap_or_else(|| {
                panic!("acknowledged task {} (written via node {}) missing on node {n}: {reply}", acked.id, acked.via)
            });
            assert_eq!(task["status"]["state"], acked.state, "task {} on node {n}: {task}", acked.id);
        }
    }

    /// Every acknowledged write is readable through every running node.
    pub fn check_acked_everywhere(&self) {
        for n in self.running() {
            self.check_acked_on(n);
        }
        eprintln!("{} acknowledged writes readable on nodes {:?}", self.acked.len(), self.running());
    }

    /// `superx leave --url` against slot `n`.
    pub fn leave(&self, n: u64) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("leave").arg("--url").arg(self.base(n));
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        run_to_exit(cmd, DEADLINE)
    }
}

/// The leader every node names, when every node answers with the same leader and term and
/// exactly the wanted voters and learners.
fn agreement(statuses: &[(u64, Option<Value>)], voters: &BTreeSet<u64>, learners: &BTreeSet<u64>) -> Option<u64> {
    let mut seen = BTreeSet::new();
    for (_, status) in statuses {
        let s = status.as_ref()?;
        let leader = s["leader"].as_u64()?;
        if ids(&s["voters"]) != *voters || ids(&s["learners"]) != *learners {
            return None;
        }
        seen.insert((leader, s["term"].as_u64()?));
    }
    (seen.len() == 1).then(|| seen.first().unwrap().0)
}

/// A JSON array of node ids as a set.
pub fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// The raft part of a status, for failure messages.
pub fn brief(status: &Option<Value>) -> String {
    match status {
        None => "no answer".into(),
        Some(s) => format!(
            "role {} term {} leader {} voters {} learners {} applied {} discoveryError {}",
            s["role"], s["term"], s["leader"], s["voters"], s["learners"], s["appliedIndex"], s["discoveryError"]
        ),
    }
}

/// Whether a write error means "not now, try again": the write may or may not have happened
/// and the client should retry. The one place this is decided.
pub fn is_retryable(error: &Value) -> bool {
    let reason = error["data"][0]["reason"].as_str().unwrap_or_default();
    if ["UNAVAILABLE", "NO_LEADER", "CLUSTER_FORMING"].contains(&reason) {
        return true;
    }
    let message = error["message"].as_str().unwrap_or_default().to_lowercase();
    // -32021 UNAVAILABLE, -32020 OVERLOADED: the gateway's retryable codes.
    [-32021, -32020].contains(&error["code"].as_i64().unwrap_or(0))
        || (error["code"] == -32603 && message.contains("retry"))
}

/// A request that got no JSON-RPC answer at all (connection refused, timeout).
pub fn is_transport(error: &Value) -> bool {
    error["code"] == 0
}

fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let local: Ipv4Addr = CLIENT_IP.parse().unwrap();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .local_address(std::net::IpAddr::V4(local))
            .no_proxy()
            .build()
            .unwrap()
    })
}

/// GET from the test client's address: status and body, None when the node does not answer.
pub fn get(url: &str) -> Option<(u16, String)> {
    let r = client().get(url).send().ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

/// A JSON-RPC call on `path`; None when the node does not answer.
pub fn rpc(base: &str, path: &str, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let req = client().post(format!("{base}{path}")).header("A2A-Version", "1.0").json(&body);
    req.send().and_then(|r| r.json::<Value>()).ok()
}

/// SendMessage to the `echo` agent through `base`: the task, or the JSON-RPC error (code 0
/// when the node did not answer).
pub fn send(base: &str, text: &str) -> Result<Value, Value> {
    let params = json!({"message": {"messageId": text, "role": "ROLE_USER", "parts": [{"text": text}]}});
    match rpc(base, "/agents/echo", "SendMessage", params) {
        None => Err(json!({"code": 0, "message": "transport error"})),
        Some(reply) => match reply.get("result") {
            Some(r) => Ok(r["task"].clone()),
            None => Err(reply["error"].clone()),
        },
    }
}
