//! Cluster settings an operator gets wrong: an unknown strategy, bootstrap_expect without a
//! discovering strategy, an unreadable Kubernetes token file, an even voters_max. Each exits
//! with code 2 and names the setting on stderr, and leaves the data dir of an existing node
//! exactly as it was. A DNS name that does not resolve yet is not an error: the node keeps
//! running (no crash loop), not ready, shows the discovery error, and forms its cluster once
//! the name resolves.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dns::{dns_cluster, ip};
use crate::fake_agent;
use crate::gossip_cluster::{DEADLINE, brief};
use crate::support::{command, run_to_exit, start, wait_until};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Runs `superx serve` on a data dir that holds a node's data, expecting exit code 2 with each
/// of `needles` on stderr, and the data dir unchanged.
fn refused(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    {
        let node = start(&data, &["--node-id", "1"], &[]);
        let reply = crate::support::rpc(
            &node.base,
            "agents/upsert",
            serde_json::json!({"id": "a", "url": "http://127.0.0.1:9/"}),
        );
        assert!(reply.get("result").is_some(), "a write before the bad start: {reply}");
    }
    let before = snapshot(&data);
    assert!(!before.is_empty());
    let out = run_to_exit(command(&data, args, env), Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?} env {env:?}: exit {:?}, stderr:\n{stderr}", out.status);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing from stderr of {args:?} {env:?}:\n{stderr}");
    }
    assert!(before == snapshot(&data), "the refused start changed the data dir");
}

#[test]
fn unknown_strategy_is_refused() {
    refused(&["--strategy", "carrier-pigeon"], &[], &["carrier-pigeon", "strategy"]);
    refused(&[], &[("CLUSTER_STRATEGY", "carrier-pigeon")], &["carrier-pigeon", "strategy"]);
}

#[test]
fn bootstrap_expect_with_the_static_strategy_is_refused() {
    refused(&["--strategy", "static", "--bootstrap-expect", "3"], &[], &["bootstrap_expect"]);
    refused(&["--bootstrap-expect", "3"], &[], &["bootstrap_expect"]);
}

#[test]
fn kubernetes_strategy_with_an_unreadable_token_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("no-such-token");
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let (token_s, ca_s) = (token.display().to_string(), ca.display().to_string());
    let env = [
        ("SUPERX_CLUSTER__K8S_API_URL", "https://127.0.0.1:1"),
        ("SUPERX_CLUSTER__K8S_TOKEN_FILE", token_s.as_str()),
        ("SUPERX_CLUSTER__K8S_CA_FILE", ca_s.as_str()),
        ("SUPERX_CLUSTER__K8S_NAMESPACE", "superx"),
    ];
    refused(&["--strategy", "kubernetes", "--bootstrap-expect", "3"], &env, &[&token_s]);
}

#[test]
fn even_voters_max_is_refused() {
    refused(&[], &[("SUPERX_RAFT__VOTERS_MAX", "4")], &["voters_max"]);
}

#[test]
fn leave_against_a_node_that_does_not_answer_fails_with_a_message() {
    let url = format!("http://127.0.0.1:{}", crate::support::free_port());
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.args(["leave", "--url", &url]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    let out = run_to_exit(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "leave succeeded against nothing: {stderr}");
    assert!(stderr.contains(&url), "the message names the node: {stderr}");
}

/// Three DNS-strategy nodes whose name does not resolve yet: they keep running, not ready,
/// with the discovery error shown; once the records exist they form the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_name_that_does_not_resolve_yet_keeps_nodes_waiting_then_they_form() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let (mut c, dns) = dns_cluster(&agent.url, 3);
        c.spawn_all(&[1, 2, 3]);
        let mut error = None;
        wait_until(DEADLINE, || {
            error = c.status(1).and_then(|s| s["discoveryError"].as_str().map(str::to_owned));
            error.is_some()
        });
        eprintln!("discovery error while the name does not resolve: {}", error.unwrap());
        // Several discovery rounds (500 ms each) later, every node still runs, not ready.
        let waiting = Instant::now();
        wait_until(DEADLINE, || {
            for n in 1..=3 {
                assert!(c.alive(n), "node {n} exited while the name did not resolve:\n{}", c.log(n));
                assert!(!c.ready(n), "node {n} ready without a cluster: {}", brief(&c.status(n)));
            }
            waiting.elapsed() > Duration::from_millis(2500)
        });
        for n in 1..=3 {
            let s = c.status(n).unwrap();
            assert!(s["discoveryError"].is_string(), "node {n}: {}", brief(&Some(s.clone())));
            assert!(s["voters"].as_array().is_none_or(|v| v.is_empty()), "node {n} formed alone: {}", brief(&Some(s)));
        }
        for n in 1..=3 {
            dns.add_host("superx.test", ip(n));
        }
        let resolved = Instant::now();
        let leader = c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_everywhere("resolved");
        eprintln!("formed {:?} after the name resolved (leader {leader})", resolved.elapsed());
        wait_until(DEADLINE, || (1..=3).all(|n| c.status(n).is_some_and(|s| s["discoveryError"].is_null())));
        c.check_acked_everywhere();
    })
    .await
    .unwrap();
}
