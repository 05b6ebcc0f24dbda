//! DNS discovery against a real name server: dnsmasq, started by each test on a free loopback
//! port ([`Dnsmasq`]). These tests fail, naming the package to install, when dnsmasq is absent.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use superx_cluster::discovery::{DNS_LOOKUP_TIMEOUT, Discoverer, DiscoveryError, Strategy, resolve_once};
use superx_cluster::testsuite::Dnsmasq;

fn dns(server: SocketAddr, query: &str) -> Strategy {
    Strategy::Dns { query: query.to_owned(), port: 7946, server: Some(server), interval: Duration::from_secs(1) }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|addr| addr.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_are_resolved_and_changes_seen_on_the_next_round() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path());
    for last in 11..=13 {
        dnsmasq.add_host("nodes.superx.test", ip(&format!("127.0.0.{last}")));
    }
    let discoverer = Discoverer::new(&dns(dnsmasq.addr, "nodes.superx.test")).unwrap();
    let expected = addrs(&["127.0.0.11:7946", "127.0.0.12:7946", "127.0.0.13:7946"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);

    // A fourth line in the hosts file, then SIGHUP; add_host returns once dnsmasq serves it,
    // so the very next round of the same resolver must see it: nothing stale is cached.
    dnsmasq.add_host("nodes.superx.test", ip("127.0.0.14"));
    let expected = addrs(&["127.0.0.11:7946", "127.0.0.12:7946", "127.0.0.13:7946", "127.0.0.14:7946"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);

    dnsmasq.remove_host("nodes.superx.test", ip("127.0.0.12"));
    let expected = addrs(&["127.0.0.11:7946", "127.0.0.13:7946", "127.0.0.14:7946"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_records_are_both_used() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path());
    dnsmasq.add_host("dual.superx.test", ip("127.0.0.31"));
    dnsmasq.add_host("dual.superx.test", ip("fd00::31"));
    dnsmasq.add_host("v6only.superx.test", ip("fd00::32"));
    let found = resolve_once(&dns(dnsmasq.addr, "dual.superx.test")).await.unwrap();
    assert_eq!(found, addrs(&["127.0.0.31:7946", "[fd00::31]:7946"]));
    let found = resolve_once(&dns(dnsmasq.addr, "v6only.superx.test")).await.unwrap();
    assert_eq!(found, addrs(&["[fd00::32]:7946"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_targets_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path());
    dnsmasq.add_host("node1.superx.test", ip("127.0.0.21"));
    dnsmasq.add_host("node2.superx.test", ip("127.0.0.22"));
    dnsmasq.add_host("node2.superx.test", ip("fd00::22"));
    dnsmasq.add_srv("_gossip._udp.superx.test", "node1.superx.test", 7001);
    dnsmasq.add_srv("_gossip._udp.superx.test", "node2.superx.test", 7002);
    // A target without an address is skipped; the others still count.
    dnsmasq.add_srv("_gossip._udp.superx.test", "ghost.superx.test", 7003);

    let discoverer = Discoverer::new(&dns(dnsmasq.addr, "_gossip._udp.superx.test")).unwrap();
    let expected = addrs(&["127.0.0.21:7001", "127.0.0.22:7002", "[fd00::22]:7002"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);

    dnsmasq.add_host("node3.superx.test", ip("127.0.0.23"));
    dnsmasq.add_srv("_gossip._udp.superx.test", "node3.superx.test", 7004);
    let expected = addrs(&["127.0.0.21:7001", "127.0.0.22:7002", "127.0.0.23:7004", "[fd00::22]:7002"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_with_no_resolvable_target_fails() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path());
    dnsmasq.add_srv("_gossip._udp.superx.test", "ghost.superx.test", 7003);
    let error = resolve_once(&dns(dnsmasq.addr, "_gossip._udp.superx.test")).await.unwrap_err();
    let DiscoveryError::Dns { name, reason } = &error else { panic!("{error}") };
    assert_eq!(name, "_gossip._udp.superx.test");
    assert!(reason.contains("no SRV target resolved") && reason.contains("ghost.superx.test"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_fail_with_nxdomain() {
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = Dnsmasq::start(dir.path());
    for query in ["missing.superx.test", "_gossip._udp.missing.superx.test"] {
        let error = resolve_once(&dns(dnsmasq.addr, query)).await.unwrap_err();
        assert_eq!(
            error,
            DiscoveryError::Dns { name: query.to_owned(), reason: "no such domain (NXDOMAIN)".to_owned() }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_within_the_lookup_timeout() {
    // A UDP socket nobody reads: queries vanish, and TCP to the same port is refused.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let error = resolve_once(&dns(silent.local_addr().unwrap(), "nodes.superx.test")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, DiscoveryError::Dns { .. }), "{error}");
    assert!(elapsed < DNS_LOOKUP_TIMEOUT + Duration::from_secs(1), "took {elapsed:?}: {error}");
}
