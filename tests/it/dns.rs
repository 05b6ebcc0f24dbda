//! Cluster formation by DNS with a real name server: dnsmasq (Debian's `dnsmasq-base`, which
//! tests/run.sh installs) answers `superx.test` with the nodes' addresses; three nodes form a
//! cluster from the name alone, and a record added later brings a fourth in.
//!
//! An SRV name works too: its records carry each node's own gossip port.
//!
//! The name server is superx-cluster's testsuite `Dnsmasq`; `dns_cluster` is also used by
//! `bad_config` (a name that resolves only later).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use superx_cluster::testsuite::Dnsmasq;

use crate::fake_agent;
use crate::gossip_cluster::{DEADLINE, GossipCluster, ids, udp_port_on_all};
use crate::support::wait_until;

/// 127.0.0.n
pub fn ip(n: u64) -> IpAddr {
    format!("127.0.0.{n}").parse().unwrap()
}

/// The env of a node of the `dns` strategy asking `dns` for `name` every 500 ms.
pub fn dns_env(dns: &Dnsmasq, name: &str) -> Vec<(String, String)> {
    [
        ("SUPERX_CLUSTER__DNS_QUERY", name.to_owned()),
        ("SUPERX_CLUSTER__DNS_SERVER", dns.addr.to_string()),
        ("SUPERX_CLUSTER__DNS_INTERVAL_MS", "500".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A cluster of up to `size` DNS-strategy nodes on 127.0.0.1..size, every one's gossip on the
/// same port (A records carry no port), bootstrap_expect 3.
pub fn dns_cluster(agent_url: &str, size: u64) -> (GossipCluster, Dnsmasq) {
    let mut c = GossipCluster::new(agent_url);
    let ips: Vec<String> = (1..=size).map(|n| format!("127.0.0.{n}")).collect();
    c.shared_gossip_port = Some(udp_port_on_all(&ips));
    for n in 1..=size {
        c.add(n, true);
    }
    let dns_dir = c.dir().join("dns");
    std::fs::create_dir_all(&dns_dir).unwrap();
    let dns = Dnsmasq::start(&dns_dir);
    c.args = ["--strategy", "dns", "--bootstrap-expect", "3"].map(String::from).to_vec();
    for (k, v) in dns_env(&dns, "superx.test") {
        c.set_env(&k, &v);
    }
    (c, dns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_name_forms_the_cluster_and_a_new_record_brings_a_node_in() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let (mut c, dns) = dns_cluster(&agent.url, 4);
        for n in 1..=3 {
            dns.add_host("superx.test", ip(n));
        }
        let spawned = Instant::now();
        c.spawn_all(&[1, 2, 3]);
        let leader = c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_through(leader, "dns-formed");
        eprintln!("FORMATION (dns): spawn of 3 nodes -> formed and written in {:?}", spawned.elapsed());
        for n in 1..=3 {
            assert_eq!(c.status(n).unwrap()["strategy"], "dns");
        }
        c.write_everywhere("dns-formed");

        dns.add_host("superx.test", ip(4));
        let joined = Instant::now();
        c.spawn(4);
        c.wait_ready(4);
        // Node 4 is a member: a learner at least (voters_max 3 keeps it one).
        wait_until(DEADLINE, || {
            c.status(leader).is_some_and(|s| {
                let all: BTreeSet<u64> = ids(&s["voters"]).union(&ids(&s["learners"])).copied().collect();
                all == BTreeSet::from([1, 2, 3, 4])
            })
        });
        c.wait_membership(&[1, 2, 3], &[4]);
        eprintln!("node 4 (new DNS record) joined in {:?}", joined.elapsed());
        c.write_everywhere("dns-joined");
        c.check_acked_everywhere();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_srv_records_form_the_cluster_with_each_nodes_own_port() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let mut c = GossipCluster::new(&agent.url);
        for n in 1..=3 {
            c.add(n, true);
        }
        let dns_dir = c.dir().join("dns");
        std::fs::create_dir_all(&dns_dir).unwrap();
        let dns = Dnsmasq::start(&dns_dir);
        let service = "_gossip._udp.superx.test";
        for n in 1..=3 {
            let target = format!("superx-{n}.superx.test");
            dns.add_host(&target, ip(n));
            let port: u16 = c.slot(n).gossip.rsplit(':').next().unwrap().parse().unwrap();
            dns.add_srv(service, &target, port);
        }
        c.args = ["--strategy", "dns", "--bootstrap-expect", "3"].map(String::from).to_vec();
        for (k, v) in dns_env(&dns, service) {
            c.set_env(&k, &v);
        }
        c.spawn_all(&[1, 2, 3]);
        c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_everywhere("srv");
        c.check_acked_everywhere();
    })
    .await
    .unwrap();
}
