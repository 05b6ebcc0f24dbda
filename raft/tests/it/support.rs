//! Test harness: a toy state machine and an in-process cluster on 127.0.0.1.
//!
//! Listeners are bound to port 0 before any node starts, so every node's config names its
//! peers' real ports; a restarted node binds its old port again. Waiting is always on a
//! condition with a deadline (`Replicated::wait_status`), never on a guessed sleep.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use superx_raft::{PeerAddr, RaftConfig, RaftStatus, Replicated, StateMachine};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// How long any single condition may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The toy state machine: a list of commands (UTF-8, no newlines); answers the new length.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Commands(pub Vec<String>);

impl StateMachine for Commands {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.push(String::from_utf8_lossy(command).into_owned());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.join("\n").into_bytes()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(snapshot).map_err(|e| e.to_string())?;
        self.0 = text.lines().map(str::to_owned).collect();
        Ok(())
    }
}

/// Decodes a response of [`Commands::apply`].
pub fn length(response: &[u8]) -> u64 {
    u64::from_le_bytes(response.try_into().expect("8-byte response"))
}

/// Limits that keep tests fast: quick elections, frequent snapshots.
pub fn test_config(node_id: u64, data_dir: PathBuf, addr: SocketAddr) -> RaftConfig {
    RaftConfig {
        node_id,
        data_dir,
        raft_listen: addr,
        advertise: PeerAddr { raft: addr.to_string(), api: format!("api-{node_id}.test:80") },
        election_timeout_ms: (300, 600),
        heartbeat_ms: 50,
        reconcile_interval_ms: 100,
        ..RaftConfig::default()
    }
}

pub type Node = Replicated<Commands>;

/// An in-process cluster; nodes can be stopped and restarted from their data dirs.
pub struct Cluster {
    _root: TempDir,
    configs: BTreeMap<u64, RaftConfig>,
    nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) with `tweak` applied to every config.
    pub async fn start(n: u64, tweak: impl Fn(&mut RaftConfig)) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let mut configs = BTreeMap::new();
        for (id, listener) in &listeners {
            let addr = listener.local_addr().unwrap();
            let mut config = test_config(*id, root.path().join(format!("node-{id}")), addr);
            tweak(&mut config);
            configs.insert(*id, config);
        }
        let peers: BTreeMap<u64, PeerAddr> = configs.iter().map(|(id, c)| (*id, c.advertise.clone())).collect();
        for config in configs.values_mut() {
            config.peers = if n == 1 { BTreeMap::new() } else { peers.clone() };
        }
        let starts = listeners.into_iter().map(|(id, listener)| {
            let config = configs[&id].clone();
            async move { (id, Node::start_with_listener(config, Commands::default(), listener).await.unwrap()) }
        });
        let nodes = futures::future::join_all(starts).await.into_iter().collect();
        Cluster { _root: root, configs, nodes }
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    pub fn running(&self) -> impl Iterator<Item = (&u64, &Node)> {
        self.nodes.iter()
    }

    /// Stops a node as a crash looks to the others: it just goes silent.
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.shutdown().await;
    }

    /// Restarts a stopped node from its data dir on its old port.
    pub async fn restart(&mut self, id: u64) {
        let config = self.configs[&id].clone();
        let listener = TcpListener::bind(config.raft_listen).await.unwrap();
        let node = Node::start_with_listener(config, Commands::default(), listener).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// Waits until every running node agrees on one leader among them and returns it.
    pub async fn leader(&self) -> u64 {
        let (status, ok) =
            self.any().wait_status(WAIT, |s| s.leader.is_some_and(|l| self.nodes.contains_key(&l))).await;
        assert!(ok, "no leader among running nodes: {status:?}");
        let leader = status.leader.unwrap();
        for (id, node) in self.running() {
            let (status, ok) = node.wait_status(WAIT, |s| s.leader == Some(leader)).await;
            assert!(ok, "node {id} does not follow {leader}: {status:?}");
        }
        leader
    }

    /// Waits until `pred` holds on node `id`.
    pub async fn wait(&self, id: u64, what: &str, pred: impl Fn(&RaftStatus) -> bool) -> RaftStatus {
        let (status, ok) = self.node(id).wait_status(WAIT, pred).await;
        assert!(ok, "node {id}: timed out waiting for {what}: {status:?}");
        status
    }

    fn any(&self) -> &Node {
        self.nodes.values().next().expect("a running node")
    }

    pub async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}
