//! Kubernetes discovery against [`FakeKubeApi`]: HTTPS with a test CA, bearer token required,
//! EndpointSlices shaped like the real API's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use superx_cluster::discovery::{Discoverer, DiscoveryError, KubernetesDiscovery, Strategy, resolve_once};
use superx_cluster::testsuite::{FakeEndpoint, FakeKubeApi};

const SERVICE_LABELS: &[(&str, &str)] = &[("app", "superx"), ("kubernetes.io/service-name", "superx-gossip")];

fn strategy(api: &FakeKubeApi, selector: &str) -> Strategy {
    Strategy::Kubernetes(KubernetesDiscovery {
        api_url: api.url.clone(),
        namespace: "superx".to_owned(),
        selector: selector.to_owned(),
        port_name: "gossip".to_owned(),
        port: 7946,
        token_file: api.token_file.clone(),
        ca_file: api.ca_file.clone(),
        interval: Duration::from_secs(1),
    })
}

fn endpoint(ip: &str, ready: Option<bool>, serving: Option<bool>, terminating: Option<bool>) -> FakeEndpoint {
    FakeEndpoint { ip: ip.to_owned(), hostname: None, ready, serving, terminating }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|addr| addr.parse().unwrap()).collect()
}

fn start(dir: &Path) -> FakeKubeApi {
    let api = FakeKubeApi::start(dir, "token-1");
    let endpoints = vec![
        endpoint("10.0.0.1", Some(true), Some(true), Some(false)),
        // Absent conditions: ready (unknown counts as ready), serving follows ready.
        endpoint("10.0.0.2", None, None, None),
        endpoint("10.0.0.3", Some(false), Some(false), Some(false)),
        // Ready but not serving, and terminating while still serving: neither counts.
        endpoint("10.0.0.4", Some(true), Some(false), Some(false)),
        endpoint("10.0.0.5", Some(false), Some(true), Some(true)),
    ];
    api.set_slice("superx", "superx-gossip-abcde", SERVICE_LABELS, "gossip", 7000, endpoints);
    let other = vec![endpoint("10.0.1.1", Some(true), None, None)];
    api.set_slice("superx", "other-fghij", &[("app", "other")], "gossip", 7000, other.clone());
    api.set_slice("elsewhere", "superx-gossip-klmno", SERVICE_LABELS, "gossip", 7000, other);
    api
}

#[tokio::test]
async fn ready_and_serving_endpoints_are_seeds_with_the_named_port() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    let found = resolve_once(&strategy(&api, "app=superx")).await.unwrap();
    assert_eq!(found, addrs(&["10.0.0.1:7000", "10.0.0.2:7000"]));

    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let (path, accepted) = &requests[0];
    assert!(accepted);
    assert!(
        path.starts_with("/apis/discovery.k8s.io/v1/namespaces/superx/endpointslices?labelSelector=app%3Dsuperx"),
        "{path}"
    );
}

#[tokio::test]
async fn several_labels_select_and_slices_without_the_named_port_use_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    let labels = [("app", "superx"), ("tier", "edge")];
    let endpoints = [endpoint("10.0.2.1", Some(true), Some(true), None), endpoint("fd00::2:2", None, None, None)];
    api.set_slice("superx", "edge-v4", &labels, "metrics", 9090, endpoints[..1].to_vec());
    api.set_slice("superx", "edge-v6", &labels, "metrics", 9090, endpoints[1..].to_vec());
    let found = resolve_once(&strategy(&api, "app=superx,tier=edge")).await.unwrap();
    assert_eq!(found, addrs(&["10.0.2.1:7946", "[fd00::2:2]:7946"]));
}

#[tokio::test]
async fn an_empty_slice_yields_no_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeKubeApi::start(dir.path(), "token-1");
    api.set_slice("superx", "superx-gossip-abcde", SERVICE_LABELS, "gossip", 7000, Vec::new());
    assert_eq!(resolve_once(&strategy(&api, "app=superx")).await, Ok(Vec::new()));
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_401() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    std::fs::write(&api.token_file, "stolen-token").unwrap();
    let error = resolve_once(&strategy(&api, "app=superx")).await.unwrap_err();
    let DiscoveryError::Kubernetes(message) = &error else { panic!("{error}") };
    assert!(message.contains("401 Unauthorized: Unauthorized"), "{error}");
    assert!(message.contains("token was rejected"), "{error}");
    assert_eq!(api.requests().iter().map(|(_, accepted)| *accepted).collect::<Vec<_>>(), vec![false]);
}

#[tokio::test]
async fn the_token_is_reread_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    let discoverer = Discoverer::new(&strategy(&api, "app=superx")).unwrap();
    let expected = addrs(&["10.0.0.1:7000", "10.0.0.2:7000"]);
    assert_eq!(discoverer.resolve().await.unwrap(), expected);
    api.rotate_token("token-2");
    assert_eq!(discoverer.resolve().await.unwrap(), expected);
    api.rotate_token("token-3");
    assert_eq!(discoverer.resolve().await.unwrap(), expected);
    assert!(api.requests().iter().all(|(_, accepted)| *accepted), "{:?}", api.requests());
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_tls() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    let other = FakeKubeApi::start(other_dir.path(), "token-1");
    let Strategy::Kubernetes(mut settings) = strategy(&api, "app=superx") else { unreachable!() };
    settings.ca_file = other.ca_file.clone();
    let error = resolve_once(&Strategy::Kubernetes(settings)).await.unwrap_err();
    let DiscoveryError::Kubernetes(message) = &error else { panic!("{error}") };
    assert!(message.contains("invalid peer certificate: UnknownIssuer"), "{error}");
    assert!(message.contains("does not chain to") && message.contains(&other.ca_file.display().to_string()), "{error}");
    assert!(api.requests().is_empty(), "no request may pass a failed handshake");
}

#[tokio::test]
async fn check_rejects_a_missing_token_or_a_ca_that_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(dir.path());
    let Strategy::Kubernetes(settings) = strategy(&api, "app=superx") else { unreachable!() };
    let mut missing_token = settings.clone();
    missing_token.token_file = dir.path().join("no-such-token");
    let error = Discoverer::new(&Strategy::Kubernetes(missing_token)).err().unwrap();
    assert!(matches!(&error, DiscoveryError::File { path, .. } if path.ends_with("no-such-token")), "{error}");

    let mut bad_ca = settings;
    bad_ca.ca_file = api.token_file.clone();
    let error = Discoverer::new(&Strategy::Kubernetes(bad_ca)).err().unwrap();
    assert!(error.to_string().contains("no PEM certificate in the CA bundle"), "{error}");
}
