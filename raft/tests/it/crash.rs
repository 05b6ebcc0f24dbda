//! Crash recovery: a single node in a child process is killed with SIGKILL while writing;
//! restarted from the same dir, it has every acknowledged write, in order.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use superx_raft::Role;
use tokio::net::TcpListener;

use crate::support::{Commands, Node, WAIT, test_config};

/// Environment variable that turns [`crash_child_node`] into the node process.
const CRASH_DIR_ENV: &str = "SUPERX_RAFT_NODE_CRASH_DIR";

/// The child half of [`acknowledged_writes_survive_sigkill`]: proposes forever, printing each
/// acknowledged command. A no-op in a normal run.
#[tokio::test]
async fn crash_child_node() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = test_config(1, dir.into(), listener.local_addr().unwrap());
    let node = Node::start_with_listener(config, Commands::default(), listener).await.unwrap();
    for i in 1u64.. {
        node.propose(u128::from(i), format!("c{i}").into_bytes()).await.unwrap();
        println!("acked {i}");
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::crash_child_node", "--nocapture"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(i) = line.unwrap().strip_prefix("acked ") {
            acked = i.parse().unwrap();
            if acked >= 100 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL while proposals are in flight.
    child.wait().unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = test_config(1, dir.path().to_owned(), listener.local_addr().unwrap());
    let node = Node::start_with_listener(config, Commands::default(), listener).await.unwrap();
    let (status, ok) = node.wait_status(WAIT, |s| s.role == Role::Leader && s.applied_index >= s.committed_index).await;
    assert!(ok, "node did not recover: {status:?}");
    let items = node.read_linearizable(|sm| sm.0.clone()).await.unwrap();
    assert!(items.len() as u64 >= acked, "acknowledged {acked}, recovered {}", items.len());
    let expected: Vec<String> = (1..=items.len()).map(|i| format!("c{i}")).collect();
    assert_eq!(items, expected, "recovered writes are the acknowledged prefix, in order");
    node.shutdown().await;
}
