//! Multi-node gossip tests: real chitchat nodes on UDP sockets of 127.0.0.1, in one process.
//! They wait on conditions (the member list, the change stream, chitchat's failure detector)
//! with a generous deadline; the expected times, printed with `--nocapture`, are far shorter.

use std::net::UdpSocket;
use std::sync::atomic::AtomicU32;

use tokio::sync::broadcast;
use tokio::time::timeout;

use super::*;

/// The gossip interval the design targets.
const ROUND: Duration = Duration::from_millis(200);

/// Deadline of every wait: convergence and failure detection take 1 to 2 s, but the host may
/// be a loaded 2-core machine building other crates.
const DEADLINE: Duration = Duration::from_secs(20);

/// A port the OS just gave out; tests of one run use distinct ports, and distinct cluster ids
/// keep a port reused by another test from joining the wrong cluster.
fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn unique_cluster_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("gossip-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn config(cluster_id: &str, node_id: u64, addr: SocketAddr, strategy: Strategy) -> ClusterConfig {
    ClusterConfig {
        node_id,
        cluster_id: cluster_id.to_string(),
        gossip_listen: addr,
        gossip_advertise: addr,
        gossip_interval: ROUND,
        dead_node_grace: Duration::from_secs(60),
        strategy,
        keyring: None,
    }
}

fn meta(node_id: u64) -> NodeMeta {
    NodeMeta {
        api_addr: format!("10.0.0.{node_id}:4000"),
        raft_addr: format!("10.0.0.{node_id}:4001"),
        version: "test-1".to_string(),
    }
}

async fn start_node(cluster_id: &str, node_id: u64, addr: SocketAddr, seeds: &[SocketAddr]) -> Cluster {
    let seeds = seeds.iter().map(ToString::to_string).collect();
    Cluster::start(config(cluster_id, node_id, addr, Strategy::Gossip { seeds }), meta(node_id)).await.unwrap()
}

/// Waits until `cluster`'s member list satisfies `condition`.
async fn wait_list(cluster: &Cluster, what: &str, mut condition: impl FnMut(&[Member]) -> bool) -> Vec<Member> {
    let mut members = cluster.watch();
    match timeout(DEADLINE, members.wait_for(|list| condition(list))).await {
        Ok(Ok(list)) => list.as_ref().clone(),
        _ => panic!("node {}: {what} not within {DEADLINE:?}: {:#?}", cluster.node_id(), cluster.members()),
    }
}

/// Waits for the first event matching `wanted`; returns it and the events skipped before it.
async fn next_event(
    events: &mut broadcast::Receiver<ClusterEvent>,
    what: &str,
    mut wanted: impl FnMut(&ClusterEvent) -> bool,
) -> (ClusterEvent, Vec<ClusterEvent>) {
    let mut skipped = Vec::new();
    let found = timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("the change stream stays open and keeps up");
            if wanted(&event) {
                return event;
            }
            skipped.push(event);
        }
    })
    .await;
    match found {
        Ok(event) => (event, skipped),
        Err(_) => panic!("{what} not within {DEADLINE:?}; events seen: {skipped:#?}"),
    }
}

/// Events already sent (the member task sends a round's events without yielding, so after
/// seeing a list change every event of that round is here).
fn drain(events: &mut broadcast::Receiver<ClusterEvent>) -> Vec<ClusterEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

fn all_live(list: &[Member], count: usize) -> bool {
    list.len() == count && list.iter().all(|m| m.live)
}

fn is_dead_of(event: &ClusterEvent, node_id: u64) -> bool {
    matches!(event, ClusterEvent::Dead(m) if m.node_id == node_id)
}

/// Nodes 1, 2, 3, seeded with node 1, each seeing all three live; returns the time that took.
async fn three_nodes(cluster_id: &str) -> (Vec<Cluster>, Duration) {
    let first = free_addr();
    let started = Instant::now();
    let mut nodes = vec![start_node(cluster_id, 1, first, &[]).await];
    for node_id in [2, 3] {
        nodes.push(start_node(cluster_id, node_id, free_addr(), &[first]).await);
    }
    for node in &nodes {
        wait_list(node, "three live members", |list| all_live(list, 3)).await;
    }
    (nodes, started.elapsed())
}

async fn shutdown_all(nodes: &[Cluster]) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn three_nodes_see_each_other_with_all_fields() {
    let cluster_id = unique_cluster_id();
    let (nodes, converged) = three_nodes(&cluster_id).await;
    eprintln!("3-node convergence: {converged:?}");
    for observer in &nodes {
        let list = observer.members();
        assert_eq!(list.iter().map(|m| m.node_id).collect::<Vec<_>>(), vec![1, 2, 3]);
        for (member, node) in list.iter().zip(&nodes) {
            assert_eq!(member.generation, node.generation());
            assert_eq!(member.gossip_addr, node.gossip_addr());
            assert_eq!(member.api_addr, meta(member.node_id).api_addr);
            assert_eq!(member.raft_addr, meta(member.node_id).raft_addr);
            assert_eq!((member.version.as_str(), member.cluster_id.as_str()), ("test-1", cluster_id.as_str()));
            assert_eq!((member.ready, member.raft_state, member.left), (false, RaftState::Pristine, false));
            assert_eq!((member.health.as_ref(), member.bootstrap_view.as_ref()), (None, None));
            assert_eq!(member.is_self, member.node_id == observer.node_id());
        }
        assert_eq!(observer.self_member().node_id, observer.node_id());
        assert_eq!(observer.discovery_error(), None);
    }
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn published_changes_are_updated_events_on_the_others() {
    let (nodes, _) = three_nodes(&unique_cluster_id()).await;
    let mut observers = [nodes[1].subscribe(), nodes[2].subscribe()];
    let digest = HealthDigest {
        in_flight: 2,
        tasks: 7,
        applied_index: 40,
        agents_failing: 1,
        breakers_open: 0,
        role: "follower".into(),
        term: 3,
        committed_index: 41,
    };

    nodes[0].set_ready(true).await;
    for events in &mut observers {
        next_event(events, "ready", |e| matches!(e, ClusterEvent::Updated(m) if m.node_id == 1 && m.ready)).await;
    }
    nodes[0].set_health(&digest).await;
    nodes[0].set_raft_state(RaftState::Member).await;
    nodes[0].set_bootstrap_view(Some(&[3, 1, 2])).await;
    for events in &mut observers {
        next_event(events, "health, raft state and view", |e| {
            let m = e.member();
            matches!(e, ClusterEvent::Updated(_))
                && m.node_id == 1
                && m.health.as_ref() == Some(&digest)
                && m.raft_state == RaftState::Member
                && m.bootstrap_view == Some(vec![1, 2, 3])
        })
        .await;
    }
    nodes[0].set_bootstrap_view(None).await;
    for events in &mut observers {
        next_event(
            events,
            "view withdrawn",
            |e| matches!(e, ClusterEvent::Updated(m) if m.node_id == 1 && m.bootstrap_view.is_none() && m.ready),
        )
        .await;
    }
    shutdown_all(&nodes).await;
}

#[tokio::test]
async fn leave_is_a_left_event_and_no_dead_follows() {
    let (nodes, _) = three_nodes(&unique_cluster_id()).await;
    let mut observers = [nodes[0].subscribe(), nodes[1].subscribe()];
    nodes[2].leave().await;
    for events in &mut observers {
        let (left, _) = next_event(events, "left", |e| matches!(e, ClusterEvent::Left(m) if m.node_id == 3)).await;
        assert!(left.member().left && left.member().live);
    }
    nodes[2].shutdown().await;
    for (node, events) in nodes.iter().zip(&mut observers) {
        wait_list(node, "node 3 dead", |list| list.iter().any(|m| m.node_id == 3 && !m.live && m.left)).await;
        let after = drain(events);
        assert!(!after.iter().any(|e| is_dead_of(e, 3)), "a left node that stops is not also dead: {after:#?}");
    }
    shutdown_all(&nodes[..2]).await;
}

#[tokio::test]
async fn a_stopped_node_is_dead_on_the_others() {
    let (nodes, _) = three_nodes(&unique_cluster_id()).await;
    let mut observers = [nodes[0].subscribe(), nodes[1].subscribe()];
    let stopped = Instant::now();
    nodes[2].shutdown().await;
    for (node, events) in nodes.iter().zip(&mut observers) {
        let (dead, _) = next_event(events, "dead", |e| is_dead_of(e, 3)).await;
        eprintln!("node {} saw node 3 dead after {:?}", node.node_id(), stopped.elapsed());
        assert!(!dead.member().live);
        assert!(node.members().iter().any(|m| m.node_id == 3 && !m.live));
    }
    shutdown_all(&nodes[..2]).await;
}

#[tokio::test]
async fn a_restarted_node_is_one_live_member_and_live_not_dead() {
    let cluster_id = unique_cluster_id();
    let (mut nodes, _) = three_nodes(&cluster_id).await;
    let mut observers = [nodes[0].subscribe(), nodes[1].subscribe()];
    let (old_generation, addr) = (nodes[2].generation(), nodes[2].gossip_addr());
    nodes[2].shutdown().await;
    let restarted = Instant::now();
    nodes[2] = start_node(&cluster_id, 3, addr, &[nodes[0].gossip_addr(), nodes[1].gossip_addr()]).await;
    let new_generation = nodes[2].generation();
    assert!(new_generation > old_generation);

    for (node, events) in nodes.iter().zip(&mut observers) {
        let (_, skipped) = next_event(
            events,
            "live new generation",
            |e| matches!(e, ClusterEvent::Live(m) if m.node_id == 3 && m.generation == new_generation),
        )
        .await;
        eprintln!("node {} saw node 3 restarted after {:?}", node.node_id(), restarted.elapsed());
        assert!(!skipped.iter().any(|e| is_dead_of(e, 3)), "a quick restart is not a death: {skipped:#?}");
    }
    for (node, events) in nodes.iter().zip(&mut observers) {
        wait_old_generation_dead(node, old_generation).await;
        assert_no_dead_until_next_round(node, &nodes[0], events).await;
        let list = node.members();
        let node3: Vec<&Member> = list.iter().filter(|m| m.node_id == 3).collect();
        assert_eq!(node3.len(), 1, "one member per node id: {list:#?}");
        assert_eq!((node3[0].generation, node3[0].live), (new_generation, true));
    }
    wait_list(&nodes[2], "the restarted node sees all", |list| all_live(list, 3)).await;
    shutdown_all(&nodes).await;
}

/// Waits until `node`'s failure detector no longer counts node 3's old generation live.
async fn wait_old_generation_dead(node: &Cluster, old_generation: u64) {
    let mut live_nodes = node.inner.chitchat.lock().await.live_nodes_watcher();
    let is_old = |id: &ChitchatId| &*id.node_id == "3" && id.generation_id == old_generation;
    let gone = live_nodes.wait_for(|live| !live.keys().any(is_old));
    assert!(matches!(timeout(DEADLINE, gone).await, Ok(Ok(_))), "old generation still live");
}

/// A sentinel change made after the failure detector's verdict: once it is seen, the member
/// task has observed that verdict, and any `Dead` it caused has been sent.
async fn assert_no_dead_until_next_round(
    node: &Cluster,
    sentinel: &Cluster,
    events: &mut broadcast::Receiver<ClusterEvent>,
) {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let digest = HealthDigest { tasks: NEXT.fetch_add(1, Ordering::Relaxed).into(), ..HealthDigest::default() };
    sentinel.set_health(&digest).await;
    let (sentinel_id, observer_id) = (sentinel.node_id(), node.node_id());
    let what = format!("node {observer_id}: sentinel {digest:?} of node {sentinel_id}");
    let (_, mut seen) = next_event(events, &what, |e| {
        let m = e.member();
        m.node_id == sentinel_id && m.health.as_ref() == Some(&digest)
    })
    .await;
    seen.extend(drain(events));
    assert!(!seen.iter().any(|e| is_dead_of(e, 3)), "node {}: old generation died loudly: {seen:#?}", node.node_id());
}

#[tokio::test]
async fn a_static_node_is_alone_and_a_taken_port_is_a_bind_error() {
    let addr = free_addr();
    let cluster_id = unique_cluster_id();
    let node = Cluster::start(config(&cluster_id, 1, addr, Strategy::Static), meta(1)).await.unwrap();
    let list = node.members();
    assert_eq!(list.len(), 1);
    assert!(list[0].is_self && list[0].live);
    assert_eq!(node.discovery_error(), None);

    let taken = Cluster::start(config(&cluster_id, 2, addr, Strategy::Static), meta(2)).await;
    assert!(matches!(taken, Err(ClusterError::Bind { addr: a, .. }) if a == addr));

    node.shutdown().await;
    node.shutdown().await;
    // The port is free again once shutdown returns.
    Cluster::start(config(&cluster_id, 1, addr, Strategy::Static), meta(1)).await.unwrap().shutdown().await;
}

/// Polls a plain getter (the discovery error has no watch) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "{what} not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dns(server: SocketAddr, port: u16) -> Strategy {
    Strategy::Dns { query: "nodes.superx.test".to_string(), port, server: Some(server), interval: ROUND }
}

#[tokio::test]
async fn dns_discovery_finds_a_peer_and_reports_a_failing_server() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = crate::testsuite::Dnsmasq::start(dir.path());
    dnsmasq.add_host("nodes.superx.test", "127.0.0.1".parse().unwrap());
    let cluster_id = unique_cluster_id();
    let (addr_a, addr_b) = (free_addr(), free_addr());
    let b = Cluster::start(config(&cluster_id, 2, addr_b, Strategy::Gossip { seeds: Vec::new() }), meta(2)).await;
    let b = b.unwrap();
    let a = Cluster::start(config(&cluster_id, 1, addr_a, dns(dnsmasq.addr, addr_b.port())), meta(1)).await.unwrap();
    for node in [&a, &b] {
        wait_list(node, "two live members", |list| all_live(list, 2)).await;
    }
    assert_eq!(a.discovery_error(), None);

    // Nothing answers on this port: every round times out.
    let silent = Cluster::start(config(&cluster_id, 3, free_addr(), dns(free_addr(), 7946)), meta(3)).await.unwrap();
    wait_until("a discovery error", || silent.discovery_error().is_some()).await;
    let error = silent.discovery_error().unwrap();
    assert!(error.contains("nodes.superx.test"), "{error}");
    shutdown_all(&[a, b, silent]).await;
}

async fn start_keyed(
    cluster_id: &str,
    node_id: u64,
    addr: SocketAddr,
    seeds: &[SocketAddr],
    keyring: &Keyring,
) -> Cluster {
    let seeds = seeds.iter().map(ToString::to_string).collect();
    let mut config = config(cluster_id, node_id, addr, Strategy::Gossip { seeds });
    config.keyring = Some(keyring.clone());
    Cluster::start(config, meta(node_id)).await.unwrap()
}

/// Nodes with the cluster secret gossip; a node with another secret and one with none never
/// enter their member list (nor they its), whoever seeds whom, and their datagrams are counted
/// as refused.
#[tokio::test]
async fn only_nodes_with_the_cluster_secret_are_heard() {
    let secret = Keyring::new(b"the cluster secret, 32 bytes or more").unwrap();
    let other = Keyring::new(b"another cluster secret, 32 bytes or more").unwrap();
    let cluster_id = unique_cluster_id();
    let first = free_addr();
    // Node 1 has a keyring of its own (same secret) so its refusals are counted apart.
    let keyring_one = Keyring::new(b"the cluster secret, 32 bytes or more").unwrap();
    let one = start_keyed(&cluster_id, 1, first, &[], &keyring_one).await;
    let two = start_keyed(&cluster_id, 2, free_addr(), &[first], &secret).await;
    let stranger = start_keyed(&cluster_id, 3, free_addr(), &[first], &other).await;
    let open = start_node(&cluster_id, 4, free_addr(), &[first, two.gossip_addr()]).await;
    for node in [&one, &two] {
        wait_list(node, "the two keyed members", |list| all_live(list, 2)).await;
    }
    // The outsiders keep greeting node 1 every round; wait until both were refused a few
    // times, then check nobody got in either direction.
    let refused = || keyring_one.refusals().1;
    let deadline = Instant::now() + DEADLINE;
    while refused() < 6 {
        assert!(Instant::now() < deadline, "outsiders' datagrams were not refused: {}", refused());
        tokio::time::sleep(ROUND).await;
    }
    for node in [&one, &two] {
        let ids: Vec<u64> = node.members().iter().map(|m| m.node_id).collect();
        assert_eq!(ids, vec![1, 2], "node {}", node.node_id());
    }
    for outsider in [&stranger, &open] {
        let ids: Vec<u64> = outsider.members().iter().map(|m| m.node_id).collect();
        assert_eq!(ids, vec![outsider.node_id()], "an outsider heard the cluster");
    }
    shutdown_all(&[one, two, stranger, open]).await;
}
