//! Rough write and read throughput figures; ignored by default. Run with
//! `cargo test -p superx-raft --release --test it throughput -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use crate::support::Cluster;

/// Concurrent clients per run.
const CLIENTS: u64 = 256;
/// How long each run lasts.
const RUN: Duration = Duration::from_secs(3);

struct Figures {
    ops: usize,
    latencies: Vec<Duration>,
}

impl Figures {
    fn print(mut self, what: &str) {
        self.latencies.sort();
        let at = |q: f64| self.latencies[((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1)];
        println!("{what}: {:.0} ops/s, p50 {:?}, p99 {:?}", self.ops as f64 / RUN.as_secs_f64(), at(0.5), at(0.99));
    }
}

/// Runs `CLIENTS` loops for `RUN`, spread over `via`; `write` picks proposals or reads.
async fn run(cluster: &Cluster, via: &[u64], write: bool) -> Figures {
    let start = Instant::now();
    let clients = (0..CLIENTS).map(|client| {
        let node = cluster.node(via[client as usize % via.len()]).clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            for seq in 0u64.. {
                if start.elapsed() >= RUN {
                    break;
                }
                let began = Instant::now();
                if write {
                    let id = (u128::from(client) << 64) | u128::from(seq);
                    node.propose(id, vec![b'x'; 100]).await.unwrap();
                } else {
                    node.read_linearizable(|sm| sm.0.len()).await.unwrap();
                }
                latencies.push(began.elapsed());
            }
            latencies
        })
    });
    let mut latencies = Vec::new();
    for client in futures::future::join_all(clients).await {
        latencies.extend(client.unwrap());
    }
    Figures { ops: latencies.len(), latencies }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_single_node() {
    let cluster = Cluster::start(1, |_| {}).await;
    cluster.leader().await;
    run(&cluster, &[1], true).await.print("1 node, writes");
    println!("log entries: {}", cluster.node(1).status().committed_index);
    run(&cluster, &[1], false).await.print("1 node, linearizable reads");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_three_nodes() {
    three_nodes(None).await;
}

/// The same with every raft RPC and answer tagged with a cluster secret, to compare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput_three_nodes_with_a_cluster_secret() {
    three_nodes(Some(superx_keyring::Keyring::new(b"a raft benchmark's secret, 32+ bytes").unwrap())).await;
}

async fn three_nodes(keyring: Option<superx_keyring::Keyring>) {
    let cluster = Cluster::start(3, |c| c.keyring = keyring.clone()).await;
    cluster.wait(1, "three voters", |s| s.voters == [1, 2, 3]).await;
    let leader = cluster.leader().await;
    let before = cluster.node(leader).status().committed_index;
    run(&cluster, &[1, 2, 3], true).await.print("3 nodes, writes spread over all");
    println!("log entries: {}", cluster.node(leader).status().committed_index - before);
    run(&cluster, &[1, 2, 3], false).await.print("3 nodes, linearizable reads spread over all");
    cluster.shutdown().await;
}
