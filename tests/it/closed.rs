//! A closed cluster (`cluster.secret_file`), with real processes on 127.0.0.1-5 formed by
//! gossip: raw raft RPCs without the secret's tag (or with another secret's) are refused with
//! 401 and change nothing; a node with a wrong secret and one with none are never heard (not
//! in any member list, never a learner); the wrong node given the right secret in its file
//! joins without a restart; then the whole cluster's secret is changed in place and the
//! cluster keeps taking writes through the rotation, after which only the new secret counts.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use superx_keyring::{Keyring, Purpose};

use crate::fake_agent;
use crate::gossip_cluster::{DEADLINE, GossipCluster, get, ids};

const SECRET_A: &str = "cluster secret A: 32 bytes or more, for the test";
const SECRET_B: &str = "cluster secret B: another one, 32 bytes or more";
const SECRET_C: &str = "cluster secret C: the rotated one, 32 bytes or more";

/// The `X-SuperX-Cluster-Auth` value a node holding `secret` would put on this request.
fn tag_header(secret: &str, path: &str, body: &[u8]) -> String {
    let keyring = Keyring::new(secret.as_bytes()).unwrap();
    let (stamp, nonce) = (superx_keyring::now_ms(), 1u64);
    let parts: [&[u8]; 5] = [&stamp.to_be_bytes(), &nonce.to_be_bytes(), b"POST", path.as_bytes(), body];
    let hex: String = keyring.tag(Purpose::RaftRequest, &parts).iter().map(|b| format!("{b:02x}")).collect();
    format!("v1 {stamp} {nonce} {hex}")
}

/// POSTs to a raft listener with this auth header (None: none). Status, or None when the
/// listener did not answer.
fn post_with(addr: &str, path: &str, body: &[u8], header: Option<&str>) -> Option<u16> {
    let client = reqwest::blocking::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let mut request = client.post(format!("http://{addr}{path}")).body(body.to_vec());
    if let Some(header) = header {
        request = request.header("x-superx-cluster-auth", header);
    }
    request.send().ok().map(|r| r.status().as_u16())
}

/// A raft RPC as a node holding `secret` would send it (None: untagged).
fn raft_post(addr: &str, path: &str, body: &[u8], secret: Option<&str>) -> Option<u16> {
    post_with(addr, path, body, secret.map(|s| tag_header(s, path, body)).as_deref())
}

/// `superx_cluster_auth_refused_total{kind}` on slot `n`'s `/metrics`.
fn refused(c: &GossipCluster, n: u64, kind: &str) -> u64 {
    let Some((200, text)) = get(&format!("{}/metrics", c.base(n))) else { return 0 };
    let series = format!("superx_cluster_auth_refused_total{{kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn gossip_ids(status: &Value) -> Vec<u64> {
    status["gossip"].as_array().map(|a| a.iter().filter_map(|m| m["nodeId"].as_u64()).collect()).unwrap_or_default()
}

fn write_secret(path: &Path, secret: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, format!("{secret}\n")).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_cluster_hears_only_nodes_with_its_secret() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let mut c = GossipCluster::new(&agent.url);
        let shared = c.dir().join("cluster-secret");
        let wrong = c.dir().join("wrong-secret");
        write_secret(&shared, SECRET_A);
        write_secret(&wrong, SECRET_B);
        c.set_env("SUPERX_CLUSTER__SECRET_FILE", shared.to_str().unwrap());
        c.set_env("SUPERX_CLUSTER__SECRET_RELOAD_MS", "100");
        c.set_env("SUPERX_CLUSTER__SECRET_GRACE_MS", "3000");
        for n in 1..=5 {
            c.add(n, true);
        }
        let seed = c.slot(1).gossip.clone();
        c.args = ["--strategy", "gossip", "--seeds", &seed, "--bootstrap-expect", "3"].map(String::from).to_vec();
        c.spawn_all(&[1, 2, 3]);
        let leader = c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_everywhere("closed-formed");

        raw_raft_rpcs_are_refused(&c, leader);
        outsiders_are_never_heard(&mut c, &wrong);
        // Node 4 gets the right secret in its file: it joins without a restart.
        write_secret(&wrong, SECRET_A);
        c.wait_membership(&[1, 2, 3], &[4]);
        c.wait_ready(4);
        c.write_everywhere("closed-joined");
        rotation_keeps_the_cluster_writing(&mut c, &shared, &wrong);
        c.check_acked_everywhere();
        for n in 1..=5 {
            let log = std::fs::read_to_string(c.slot(n).dir.with_extension("log")).unwrap();
            for secret in [SECRET_A, SECRET_B, SECRET_C] {
                assert!(!log.contains(secret), "node {n}'s log shows a cluster secret");
            }
        }
    })
    .await
    .unwrap();
}

/// A vote, an elect, an append and a forwarded write without a tag, with another secret's
/// tag, a forged one, a stale one or a replayed one: 401, and the term and leader stay. The
/// same requests tagged with the secret get past the check.
fn raw_raft_rpcs_are_refused(c: &GossipCluster, leader: u64) {
    let before: Vec<Value> = (1..=3).map(|n| c.status(n).unwrap()).collect();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let addr = c.slot(follower).raft.clone();
    for path in ["/raft/vote", "/raft/elect", "/raft/append", "/raft/forward-write"] {
        assert_eq!(raft_post(&addr, path, b"\x00\x01garbage", None), Some(401), "{path} without a tag");
        assert_eq!(raft_post(&addr, path, &[], Some(SECRET_B)), Some(401), "{path} with another secret");
    }
    // A forged header of the right shape but no valid tag.
    let forged = format!("v1 {} 1 {}", superx_keyring::now_ms(), "ab".repeat(32));
    assert_eq!(post_with(&addr, "/raft/elect", &[], Some(&forged)), Some(401));
    // A captured vote replayed: the first copy gets past the check (its empty body is then no
    // valid vote: 400), the second is refused.
    let captured = tag_header(SECRET_A, "/raft/vote", &[]);
    assert_eq!(post_with(&addr, "/raft/vote", &[], Some(&captured)), Some(400));
    assert_eq!(post_with(&addr, "/raft/vote", &[], Some(&captured)), Some(401), "a replayed vote");
    // Stale: stamped 31 s ago.
    let keyring = Keyring::new(SECRET_A.as_bytes()).unwrap();
    let stale = superx_keyring::now_ms() - 31_000;
    let parts: [&[u8]; 5] = [&stale.to_be_bytes(), &1u64.to_be_bytes(), b"POST", b"/raft/initialized", b""];
    let hex: String = keyring.tag(Purpose::RaftRequest, &parts).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(post_with(&addr, "/raft/initialized", &[], Some(&format!("v1 {stale} 1 {hex}"))), Some(401));
    // With the secret the request gets past the check (the empty body is then not a valid
    // encoding: 400, not 401), so the tags the test makes are the real thing.
    let passed = raft_post(&addr, "/raft/initialized", &[], Some(SECRET_A));
    assert_eq!(passed, Some(400), "the tag the test makes is right");
    let after: Vec<Value> = (1..=3).map(|n| c.status(n).unwrap()).collect();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&b["term"], &b["leader"], &b["voters"]), (&a["term"], &a["leader"], &a["voters"]));
    }
    assert!(refused(c, follower, "raft") >= 11, "refusals counted: {}", refused(c, follower, "raft"));
}

/// Node 4 (secret B) and node 5 (no secret at all) gossip with node 1 every round but never
/// enter anyone's member list or the raft membership, and hear nothing back.
fn outsiders_are_never_heard(c: &mut GossipCluster, wrong: &Path) {
    let shared = c.env.iter().find(|(k, _)| k == "SUPERX_CLUSTER__SECRET_FILE").unwrap().1.clone();
    c.set_env("SUPERX_CLUSTER__SECRET_FILE", wrong.to_str().unwrap());
    c.spawn(4);
    c.env.retain(|(k, _)| k != "SUPERX_CLUSTER__SECRET_FILE");
    c.spawn(5);
    c.set_env("SUPERX_CLUSTER__SECRET_FILE", &shared);
    let before = refused(c, 1, "gossip");
    let start = Instant::now();
    // Both greet the seed every round (200 ms): wait until a good number were dropped.
    while refused(c, 1, "gossip") < before + 20 {
        assert!(start.elapsed() < DEADLINE, "outsiders' datagrams not refused: {}", refused(c, 1, "gossip"));
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in 1..=3 {
        let status = c.status(n).unwrap();
        assert_eq!(gossip_ids(&status), vec![1, 2, 3], "node {n} heard an outsider: {status}");
        assert_eq!(ids(&status["voters"]).into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(ids(&status["learners"]).is_empty(), "node {n}: {status}");
    }
    for n in [4, 5] {
        let status = c.status(n).unwrap();
        assert_eq!(gossip_ids(&status), vec![n], "outsider {n} heard the cluster: {status}");
        assert!(ids(&status["voters"]).is_empty() && ids(&status["learners"]).is_empty(), "{status}");
    }
    c.kill(5);
}

/// Every node's secret file changes to C (nodes 1-3 share one file, node 4 has its own). Writes
/// go on through the rotation; once the grace is over, only C is accepted.
fn rotation_keeps_the_cluster_writing(c: &mut GossipCluster, shared: &Path, own: &Path) {
    write_secret(shared, SECRET_C);
    write_secret(own, SECRET_C);
    let rotated = Instant::now();
    let addr = c.slot(2).raft.clone();
    let mut round = 0;
    loop {
        round += 1;
        c.write_everywhere(&format!("closed-rotating-{round}"));
        if raft_post(&addr, "/raft/initialized", &[], Some(SECRET_A)) == Some(401) {
            break;
        }
        assert!(rotated.elapsed() < DEADLINE, "secret A still accepted after the grace");
    }
    assert_eq!(raft_post(&addr, "/raft/initialized", &[], Some(SECRET_C)), Some(400), "C gets past the check");
    eprintln!("A refused {:?} after the files changed ({round} write rounds)", rotated.elapsed());
    c.wait_membership(&[1, 2, 3], &[4]);
    c.write_everywhere("closed-rotated");
    let fingerprints: Vec<Value> = (1..=4).map(|n| c.status(n).unwrap()["clusterSecret"].clone()).collect();
    let c_print = Keyring::new(SECRET_C.as_bytes()).unwrap().fingerprint();
    assert!(fingerprints.iter().all(|f| *f == c_print.as_str()), "every node shows C's fingerprint: {fingerprints:?}");
}
