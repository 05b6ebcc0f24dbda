//! A cluster of one: writes, idempotent retries, snapshots, and restart from the same dir.

use superx_raft::Role;

use crate::support::{Cluster, length};

#[tokio::test]
async fn restart_keeps_state() {
    let mut cluster = Cluster::start(1, |c| c.snapshot_logs_since_last = 1000).await;
    cluster.wait(1, "ready", |s| s.role == Role::Leader).await;
    for i in 1..=50u64 {
        let response = cluster.node(1).propose(u128::from(i), format!("c{i}").into_bytes()).await.unwrap();
        assert_eq!(length(&response), i);
    }
    let before = cluster.node(1).read_local(|sm| sm.0.clone());
    assert_eq!(before.len(), 50);

    cluster.stop(1).await;
    cluster.restart(1).await;
    let status =
        cluster.wait(1, "ready after restart", |s| s.leader == Some(1) && s.applied_index >= s.committed_index).await;
    assert_eq!(status.voters, vec![1]);
    assert!(cluster.node(1).is_ready());
    let after = cluster.node(1).read_linearizable(|sm| sm.0.clone()).await.unwrap();
    assert_eq!(after, before);
    let response = cluster.node(1).propose(51, b"c51".to_vec()).await.unwrap();
    assert_eq!(length(&response), 51, "numbering continues after restart");
    cluster.shutdown().await;
}

#[tokio::test]
async fn retried_request_id_applies_once() {
    let cluster = Cluster::start(1, |_| {}).await;
    let node = cluster.node(1);
    let first = node.propose(42, b"once".to_vec()).await.unwrap();
    let retry = node.propose(42, b"once".to_vec()).await.unwrap();
    assert_eq!(first, retry);
    // Concurrent duplicates land in one batch or in two; either way they apply once.
    let (a, b) = tokio::join!(node.propose(43, b"twice".to_vec()), node.propose(43, b"twice".to_vec()));
    assert_eq!(a.unwrap(), b.unwrap());
    let items = node.read_linearizable(|sm| sm.0.clone()).await.unwrap();
    assert_eq!(items, vec!["once".to_owned(), "twice".to_owned()]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn snapshot_purges_log_and_restores_on_restart() {
    let mut cluster = Cluster::start(1, |c| {
        c.snapshot_logs_since_last = 10;
        c.snapshot_logs_keep = 0;
        c.dedup_entries_max = 5;
    })
    .await;
    for i in 1..=40u64 {
        cluster.node(1).propose(u128::from(i), format!("c{i}").into_bytes()).await.unwrap();
    }
    let status = cluster.wait(1, "a snapshot and a purge", |s| s.snapshot_index >= 30 && s.purged_index >= 20).await;
    let before = cluster.node(1).read_local(|sm| sm.0.clone());

    cluster.stop(1).await;
    cluster.restart(1).await;
    cluster.wait(1, "ready", |s| s.leader == Some(1) && s.applied_index >= status.applied_index).await;
    assert_eq!(cluster.node(1).read_linearizable(|sm| sm.0.clone()).await.unwrap(), before);
    // The idempotency map travels in the snapshot: a recent id still answers its first response,
    // an id evicted by `dedup_entries_max` is new again.
    let recent = cluster.node(1).propose(40, b"c40".to_vec()).await.unwrap();
    assert_eq!(length(&recent), 40);
    let evicted = cluster.node(1).propose(1, b"c1".to_vec()).await.unwrap();
    assert_eq!(length(&evicted), 41);
    cluster.shutdown().await;
}

#[tokio::test]
async fn oversized_command_is_refused() {
    let cluster = Cluster::start(1, |c| c.command_bytes_max = 16).await;
    let err = cluster.node(1).propose(1, vec![0; 17]).await.unwrap_err();
    assert_eq!(err, superx_raft::ProposeError::TooLarge { bytes: 17, max: 16 });
    cluster.shutdown().await;
}
