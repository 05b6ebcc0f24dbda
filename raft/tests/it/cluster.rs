//! Several nodes in one process on 127.0.0.1: forwarding, linearizable reads everywhere,
//! leader failover, catch-up by snapshot, idempotent retries, learners beyond `voters_max`.

use std::collections::BTreeSet;

use superx_raft::{ProposeError, ReadError, Role};

use crate::support::{Cluster, length};

/// Reads the command list linearizably on every running node and checks it is `expected`.
async fn assert_everywhere(cluster: &Cluster, expected: &[String]) {
    for (id, node) in cluster.running() {
        let items = node.read_linearizable(|sm| sm.0.clone()).await.unwrap();
        assert_eq!(items, expected, "node {id}");
    }
}

/// Proposes `w{i}` for every `i` in `ids`, concurrently, spread over `via`.
async fn write_concurrently(cluster: &Cluster, via: &[u64], ids: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let writes = ids.map(|i| {
        let node = cluster.node(via[i as usize % via.len()]).clone();
        async move {
            node.propose(u128::from(i), format!("w{i}").into_bytes()).await.unwrap();
            format!("w{i}")
        }
    });
    futures::future::join_all(writes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_failover_and_catch_up() {
    forward_failover_and_catch_up(None).await;
}

/// The same with every RPC tagged with a cluster secret: appends, votes, forwarded writes,
/// read-index and snapshot chunks all pass the listener's check and their answers the
/// client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_failover_and_catch_up_with_a_cluster_secret() {
    let keyring = superx_keyring::Keyring::new(b"a raft test's cluster secret, 32+ bytes").unwrap();
    forward_failover_and_catch_up(Some(keyring)).await;
}

async fn forward_failover_and_catch_up(keyring: Option<superx_keyring::Keyring>) {
    let mut cluster = Cluster::start(3, |c| {
        c.snapshot_logs_since_last = 20;
        c.snapshot_logs_keep = 0;
        c.keyring = keyring.clone();
    })
    .await;
    for id in 1..=3 {
        cluster.wait(id, "three voters", |s| s.voters == [1, 2, 3] && s.leader.is_some()).await;
    }
    let leader = cluster.leader().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // A write through a follower is forwarded; right after the ack every node reads it.
    let first = cluster.node(others[0]).propose(1, b"w1".to_vec()).await.unwrap();
    assert_eq!(length(&first), 1);
    let mut acked = vec!["w1".to_owned()];
    assert_everywhere(&cluster, &acked).await;
    let status = cluster.node(others[1]).status();
    assert_eq!(status.leader_api.as_deref(), Some(format!("api-{leader}.test:80").as_str()));

    // Retrying request id 1 anywhere answers the first response and applies nothing.
    for id in [leader, others[1]] {
        assert_eq!(cluster.node(id).propose(1, b"w1".to_vec()).await.unwrap(), first);
    }
    assert_everywhere(&cluster, &acked).await;

    // Concurrent writes through all nodes are batched, committed and seen everywhere.
    acked.extend(write_concurrently(&cluster, &[1, 2, 3], 2..=60).await);
    let order = cluster.node(leader).read_linearizable(|sm| sm.0.clone()).await.unwrap();
    assert_eq!(sorted(&order), sorted(&acked));
    assert_everywhere(&cluster, &order).await;

    // Stop the leader: the others elect a new one and writes continue.
    let stopped_at = cluster.node(leader).status().applied_index;
    cluster.stop(leader).await;
    // Proposed during the election: waits for the new leader instead of failing.
    cluster.node(others[0]).propose(61, b"w61".to_vec()).await.unwrap();
    acked.push("w61".to_owned());
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    for i in 62..=120u64 {
        let via = others[i as usize % 2];
        cluster.node(via).propose(u128::from(i), format!("w{i}").into_bytes()).await.unwrap();
        acked.push(format!("w{i}"));
    }
    let order = cluster.node(new_leader).read_linearizable(|sm| sm.0.clone()).await.unwrap();
    assert_eq!(sorted(&order), sorted(&acked), "every acknowledged write survives the failover");
    assert_everywhere(&cluster, &order).await;

    // The new leader's log no longer holds what the stopped node misses: it needs a snapshot.
    cluster.wait(new_leader, "a purge past the stopped node", |s| s.purged_index > stopped_at).await;
    cluster.restart(leader).await;
    let target = cluster.node(new_leader).status().committed_index;
    let caught_up = cluster.wait(leader, "catch-up", |s| s.applied_index >= target).await;
    assert!(caught_up.snapshot_index > stopped_at, "caught up through a snapshot: {caught_up:?}");
    assert_eq!(cluster.node(leader).read_local(|sm| sm.0.clone()), order);
    assert_everywhere(&cluster, &order).await;

    // Ids from before the stop are still remembered on the restarted node.
    let retry = cluster.node(leader).propose(1, b"w1".to_vec()).await.unwrap();
    assert_eq!(retry, first);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_beyond_voters_max_stay_learners() {
    let cluster = Cluster::start(4, |c| c.voters_max = 3).await;
    cluster.wait(1, "membership", |s| s.voters == [1, 2, 3] && s.learners == [4]).await;
    let learner = cluster.wait(4, "the final membership", |s| s.voters == [1, 2, 3] && s.leader.is_some()).await;
    assert_eq!(learner.role, Role::Learner);

    // A learner forwards writes and serves linearizable reads like any follower.
    let response = cluster.node(4).propose(7, b"from-learner".to_vec()).await.unwrap();
    assert_eq!(length(&response), 1);
    assert_everywhere(&cluster, &["from-learner".to_owned()]).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_and_reads_answer_no_leader() {
    let mut cluster = Cluster::start(3, |c| {
        c.write_timeout_ms = 1500;
        c.read_timeout_ms = 1500;
    })
    .await;
    cluster.wait(1, "three voters", |s| s.voters == [1, 2, 3]).await;
    let leader = cluster.leader().await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster.node(others[1]).propose(1, b"w1".to_vec()).await.unwrap();
    // The proposing node applied its own write before the ack: a local read sees it.
    assert_eq!(cluster.node(others[1]).read_local(|sm| sm.0.clone()), vec!["w1".to_owned()]);
    cluster.stop(leader).await;
    cluster.stop(others[0]).await;

    let survivor = cluster.node(others[1]);
    assert_eq!(survivor.propose(2, b"w2".to_vec()).await, Err(ProposeError::NoLeader));
    assert_eq!(survivor.read_linearizable(|sm| sm.0.len()).await, Err(ReadError::NoLeader));
    assert!(!survivor.is_ready());
    assert_eq!(survivor.read_local(|sm| sm.0.clone()), vec!["w1".to_owned()], "local reads still work");
    cluster.shutdown().await;
}

fn sorted(items: &[String]) -> BTreeSet<String> {
    let set: BTreeSet<String> = items.iter().cloned().collect();
    assert_eq!(set.len(), items.len(), "no command applied twice");
    set
}
