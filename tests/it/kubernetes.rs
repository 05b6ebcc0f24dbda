//! Cluster formation by the Kubernetes API: a fake API server (superx-cluster's testsuite:
//! TLS with a test CA, bearer token required, EndpointSlices shaped like the real API's)
//! lists three ready and serving endpoints plus a terminating one and a not-ready one; the
//! three nodes form a cluster, the other two endpoints are never contacted, and every request
//! the API saw carried the token, also after it rotates.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use superx_cluster::testsuite::{FakeEndpoint, FakeKubeApi};

use crate::fake_agent;
use crate::gossip_cluster::{DEADLINE, GossipCluster, udp_port_on_all};
use crate::support::wait_until;

/// A UDP socket on an address discovery must not hand out as a seed, counting what it gets.
struct Decoy {
    received: Arc<AtomicUsize>,
}

impl Decoy {
    fn bind(addr: &str) -> Decoy {
        let socket = UdpSocket::bind(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        // Ends with the test process; a datagram that arrives is counted, never answered.
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            loop {
                if socket.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Decoy { received }
    }
}

fn endpoint(n: u64, ready: bool, serving: bool, terminating: bool) -> FakeEndpoint {
    FakeEndpoint {
        ip: format!("127.0.0.{n}"),
        hostname: Some(format!("superx-{n}")),
        ready: Some(ready),
        serving: Some(serving),
        terminating: Some(terminating),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_endpoint_slices_form_the_cluster_with_the_bearer_token() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let mut c = GossipCluster::new(&agent.url);
        let ips: Vec<String> = (1..=5).map(|n| format!("127.0.0.{n}")).collect();
        let port = udp_port_on_all(&ips);
        c.shared_gossip_port = Some(port);
        for n in 1..=3 {
            c.add(n, true);
        }
        let terminating = Decoy::bind(&format!("127.0.0.4:{port}"));
        let not_ready = Decoy::bind(&format!("127.0.0.5:{port}"));

        let kube_dir = c.dir().join("kube");
        std::fs::create_dir_all(&kube_dir).unwrap();
        let api = FakeKubeApi::start(&kube_dir, "token-1");
        let labels = [("app", "superx"), ("kubernetes.io/service-name", "superx")];
        let endpoints = vec![
            endpoint(1, true, true, false),
            endpoint(2, true, true, false),
            endpoint(3, true, true, false),
            endpoint(4, false, true, true),
            endpoint(5, false, false, false),
        ];
        api.set_slice("superx", "superx-x7k2p", &labels, "gossip", port, endpoints);
        // Another namespace's slice, and one this selector does not match: neither may count.
        api.set_slice("other", "superx-other", &labels, "gossip", port, vec![endpoint(4, true, true, false)]);
        api.set_slice("superx", "unrelated", &[("app", "else")], "gossip", port, vec![endpoint(5, true, true, false)]);

        c.args = ["--strategy", "kubernetes", "--bootstrap-expect", "3"].map(String::from).to_vec();
        for (k, v) in [
            ("SUPERX_CLUSTER__K8S_API_URL", api.url.clone()),
            ("SUPERX_CLUSTER__K8S_TOKEN_FILE", api.token_file.display().to_string()),
            ("SUPERX_CLUSTER__K8S_CA_FILE", api.ca_file.display().to_string()),
            ("SUPERX_CLUSTER__K8S_NAMESPACE", "superx".to_owned()),
            ("SUPERX_CLUSTER__K8S_SELECTOR", "app=superx".to_owned()),
            ("SUPERX_CLUSTER__K8S_INTERVAL_MS", "500".to_owned()),
        ] {
            c.set_env(k, &v);
        }
        let spawned = Instant::now();
        c.spawn_all(&[1, 2, 3]);
        let leader = c.wait_membership(&[1, 2, 3], &[]);
        c.wait_ready_all();
        c.write_through(leader, "k8s-formed");
        eprintln!("FORMATION (kubernetes): spawn of 3 nodes -> formed and written in {:?}", spawned.elapsed());
        for n in 1..=3 {
            let s = c.status(n).unwrap();
            assert_eq!(s["strategy"], "kubernetes");
            assert!(s["discoveryError"].is_null(), "node {n}: {}", s["discoveryError"]);
        }
        c.write_everywhere("k8s");

        let requests = api.requests();
        assert!(!requests.is_empty(), "the fake API saw no request");
        let rejected: Vec<_> = requests.iter().filter(|(_, ok)| !ok).collect();
        assert!(rejected.is_empty(), "requests without the right token: {rejected:?}");
        for (path, _) in &requests {
            assert!(
                path.starts_with("/apis/discovery.k8s.io/v1/namespaces/superx/endpointslices")
                    && path.contains("labelSelector="),
                "unexpected request {path}"
            );
        }

        // The token rotates: the nodes read the file again and are still let in.
        let before = api.requests().len();
        api.rotate_token("token-2");
        wait_until(DEADLINE, || api.requests().iter().skip(before).filter(|(_, ok)| *ok).count() >= 3);
        let after: Vec<_> = api.requests().into_iter().skip(before).collect();
        let late_rejects = after.iter().rev().take(3).filter(|(_, ok)| !ok).count();
        assert_eq!(late_rejects, 0, "requests after the rotation: {after:?}");

        assert_eq!(terminating.received.load(Ordering::Relaxed), 0, "gossip sent to the terminating endpoint");
        assert_eq!(not_ready.received.load(Ordering::Relaxed), 0, "gossip sent to the not-ready endpoint");
        c.check_acked_everywhere();
    })
    .await
    .unwrap();
}
