//! Kubernetes seed discovery: the ready and serving endpoints of the EndpointSlices that match
//! a label selector, listed through the API server with the pod's service account.
//!
//! `GET {api_url}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices
//! ?labelSelector=...` with `Authorization: Bearer <token>`; the token file is read on every
//! call because the kubelet rotates it. TLS is verified against the CA bundle in `ca_file`
//! only, never the system roots. The response is read through the small serde types below,
//! which keep only the fields discovery needs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer};
use tracing::{debug, warn};

use super::{DiscoveryError, KubernetesDiscovery, error_chain};

/// The service-account token the kubelet mounts into every pod (rotated in place).
pub const SERVICE_ACCOUNT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA bundle mounted next to the token.
pub const SERVICE_ACCOUNT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The pod's namespace, mounted next to the token.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Bound on one list request, connection and TLS handshake included. The API server answers
/// a list of a few slices in milliseconds; five seconds tolerate a busy control plane and still
/// end the round before the next one.
pub const KUBERNETES_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on connecting to the API server (TCP and TLS). Two seconds: the API server is in the
/// same cluster, a slower connect means it is unreachable.
const KUBERNETES_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// EndpointSlices asked for per page (`limit`). A Service has one slice per 100 endpoints, so
/// 500 slices cover any cluster of this gateway in one page.
const LIST_PAGE_ITEMS: u32 = 500;

/// Most pages followed (`continue`) in one round; beyond it the round keeps what it has.
const LIST_PAGES_MAX: usize = 20;

/// Largest response body read. A page of 500 slices of 100 endpoints stays below a few MiB;
/// 16 MiB bounds the memory a broken or hostile server can make us use.
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest token file read. Service-account JWTs are 1-2 KiB.
const TOKEN_BYTES_MAX: usize = 64 * 1024;

/// The Kubernetes API base URL from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`,
/// as the kubelet sets them in every pod; `None` outside a pod.
pub fn api_url_from_env(env: &HashMap<String, String>) -> Option<String> {
    let host = env.get("KUBERNETES_SERVICE_HOST")?.trim();
    let port = env.get("KUBERNETES_SERVICE_PORT")?.trim();
    if host.is_empty() || port.is_empty() {
        return None;
    }
    if host.contains(':') && !host.starts_with('[') {
        return Some(format!("https://[{host}]:{port}"));
    }
    Some(format!("https://{host}:{port}"))
}

/// Lists EndpointSlices through one HTTPS client (connection pool, parsed CA) reused across
/// rounds.
pub(super) struct KubeDiscoverer {
    client: reqwest::Client,
    settings: KubernetesDiscovery,
    list_url: Url,
}

impl KubeDiscoverer {
    pub(super) fn new(settings: KubernetesDiscovery) -> Result<Self, DiscoveryError> {
        let list_url = list_url(&settings)?;
        let roots = read_roots(&settings.ca_file)?;
        let client = build_client(roots)?;
        Ok(KubeDiscoverer { client, settings, list_url })
    }

    /// One round: every page of matching slices, the counted endpoints of each.
    pub(super) async fn resolve(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let token = read_token(&self.settings.token_file).await?;
        let mut found = Vec::new();
        let mut continue_token: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let page = self.list_page(&token, continue_token.as_deref()).await?;
            found.extend(seeds_of(&page.items, &self.settings.port_name, self.settings.port));
            continue_token = page.metadata.continue_token.filter(|token| !token.is_empty());
            if continue_token.is_none() {
                debug!(selector = %self.settings.selector, seeds = found.len(), "kubernetes discovery round");
                return Ok(found);
            }
        }
        warn!(selector = %self.settings.selector, pages = LIST_PAGES_MAX, "too many endpointslice pages, using the first");
        Ok(found)
    }

    async fn list_page(&self, token: &str, continue_token: Option<&str>) -> Result<EndpointSliceList, DiscoveryError> {
        let mut url = self.list_url.clone();
        if let Some(continue_token) = continue_token {
            url.query_pairs_mut().append_pair("continue", continue_token);
        }
        let request = self.client.get(url).bearer_auth(token).header(ACCEPT, "application/json");
        let namespace = &self.settings.namespace;
        let response = request.send().await.map_err(|error| self.send_error(&error))?;
        let status = response.status();
        let body = read_body(response).await.map_err(|reason| {
            DiscoveryError::Kubernetes(format!("reading the endpointslice list of namespace {namespace}: {reason}"))
        })?;
        if !status.is_success() {
            return Err(status_error(namespace, status, &body));
        }
        serde_json::from_slice(&body).map_err(|error| {
            DiscoveryError::Kubernetes(format!("the endpointslice list of namespace {namespace} is malformed: {error}"))
        })
    }

    /// A failed request; a certificate failure names the CA bundle it was checked against.
    fn send_error(&self, error: &reqwest::Error) -> DiscoveryError {
        let chain = error_chain(error);
        let hint = match chain.contains("invalid peer certificate") {
            true => format!(" (the api server's certificate does not chain to {})", self.settings.ca_file.display()),
            false => String::new(),
        };
        let namespace = &self.settings.namespace;
        DiscoveryError::Kubernetes(format!("listing endpointslices in namespace {namespace}: {chain}{hint}"))
    }
}

/// Validates the settings without network I/O: URL, namespace, selector, port, and that the
/// token and the CA bundle are readable.
pub(super) fn check(settings: &KubernetesDiscovery) -> Result<(), DiscoveryError> {
    let invalid = |reason: String| Err(DiscoveryError::Kubernetes(reason));
    list_url(settings)?;
    let namespace = &settings.namespace;
    let label = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if namespace.is_empty() || namespace.len() > 63 || !namespace.chars().all(label) {
        return invalid(format!("namespace {namespace:?} is not a valid namespace name"));
    }
    if settings.selector.trim().is_empty() {
        return invalid("the label selector is empty (it would list every endpointslice)".to_owned());
    }
    if settings.port_name.is_empty() && settings.port == 0 {
        return invalid("no gossip port: set a port name or a port number".to_owned());
    }
    read_token_sync(&settings.token_file)?;
    read_roots(&settings.ca_file)?;
    Ok(())
}

/// `{api_url}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=..`
fn list_url(settings: &KubernetesDiscovery) -> Result<Url, DiscoveryError> {
    let api_url = &settings.api_url;
    let invalid = |reason: String| DiscoveryError::Kubernetes(format!("api url {api_url:?}: {reason}"));
    let mut url = Url::parse(api_url).map_err(|error| invalid(error.to_string()))?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err(invalid("must be https://host:port".to_owned()));
    }
    let path = ["apis", "discovery.k8s.io", "v1", "namespaces", &settings.namespace, "endpointslices"];
    url.path_segments_mut().map_err(|()| invalid("cannot hold a path".to_owned()))?.pop_if_empty().extend(path);
    url.query_pairs_mut()
        .append_pair("labelSelector", &settings.selector)
        .append_pair("limit", &LIST_PAGE_ITEMS.to_string());
    Ok(url)
}

/// The bundle's certificates as the only trust anchors.
fn read_roots(ca_file: &Path) -> Result<RootCertStore, DiscoveryError> {
    let file_error = |reason: String| DiscoveryError::File { path: ca_file.display().to_string(), reason };
    let pem = std::fs::read(ca_file).map_err(|error| file_error(error.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| file_error(format!("not a PEM certificate bundle: {error}")))?;
        roots.add(cert).map_err(|error| file_error(format!("not a usable CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(file_error("no PEM certificate in the CA bundle".to_owned()));
    }
    Ok(roots)
}

fn build_client(roots: RootCertStore) -> Result<reqwest::Client, DiscoveryError> {
    let failed = |reason: String| DiscoveryError::Kubernetes(format!("building the https client: {reason}"));
    // reqwest is built without a default crypto provider; the rest of superx uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| failed(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .connect_timeout(KUBERNETES_CONNECT_TIMEOUT)
        .timeout(KUBERNETES_REQUEST_TIMEOUT)
        .build()
        .map_err(|error| failed(error_chain(&error)))
}

async fn read_token(path: &Path) -> Result<String, DiscoveryError> {
    let bytes = tokio::fs::read(path).await.map_err(|error| token_error(path, error.to_string()))?;
    parse_token(path, bytes)
}

fn read_token_sync(path: &Path) -> Result<String, DiscoveryError> {
    let bytes = std::fs::read(path).map_err(|error| token_error(path, error.to_string()))?;
    parse_token(path, bytes)
}

fn parse_token(path: &Path, bytes: Vec<u8>) -> Result<String, DiscoveryError> {
    if bytes.len() > TOKEN_BYTES_MAX {
        return Err(token_error(path, format!("the token is larger than {TOKEN_BYTES_MAX} bytes")));
    }
    let token = String::from_utf8(bytes).map_err(|_| token_error(path, "the token is not utf-8".to_owned()))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(token_error(path, "the token file is empty".to_owned()));
    }
    Ok(token.to_owned())
}

fn token_error(path: &Path, reason: String) -> DiscoveryError {
    DiscoveryError::File { path: path.display().to_string(), reason }
}

/// The body, refused beyond [`RESPONSE_BYTES_MAX`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_large = || format!("the response is larger than {RESPONSE_BYTES_MAX} bytes");
    if response.content_length().is_some_and(|length| length > RESPONSE_BYTES_MAX as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error_chain(&error))? {
        if body.len() + chunk.len() > RESPONSE_BYTES_MAX {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error answer, with the `message` of the API's `Status` object when there is one.
fn status_error(namespace: &str, status: StatusCode, body: &[u8]) -> DiscoveryError {
    let message = serde_json::from_slice::<Status>(body).ok().and_then(|status| status.message);
    let message = message.filter(|message| !message.is_empty()).map(|message| format!(": {message}"));
    let hint = match status {
        StatusCode::UNAUTHORIZED => " (the service-account token was rejected)",
        StatusCode::FORBIDDEN => {
            " (the service account needs list on endpointslices.discovery.k8s.io in this namespace)"
        }
        _ => "",
    };
    DiscoveryError::Kubernetes(format!(
        "listing endpointslices in namespace {namespace} answered {status}{}{hint}",
        message.unwrap_or_default()
    ))
}

/// The gossip addresses of the counted endpoints of `slices`.
fn seeds_of(slices: &[EndpointSlice], port_name: &str, port: u16) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for slice in slices {
        let slice_name = slice.metadata.name.as_deref().unwrap_or("");
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            debug!(slice = slice_name, address_type = %slice.address_type, "endpointslice skipped");
            continue;
        }
        let Some(port) = slice_port(slice, port_name, port) else {
            warn!(slice = slice_name, port_name, "endpointslice has no usable gossip port, skipped");
            continue;
        };
        for endpoint in &slice.endpoints {
            if !endpoint.conditions.counts() {
                let pod = endpoint.target_ref.as_ref().and_then(|target| target.name.as_deref());
                debug!(slice = slice_name, pod, hostname = endpoint.hostname.as_deref(), node = endpoint.node_name.as_deref(), conditions = ?endpoint.conditions, "endpoint not counted");
                continue;
            }
            for address in &endpoint.addresses {
                match address.parse::<IpAddr>() {
                    Ok(ip) => found.push(SocketAddr::new(ip, port)),
                    Err(_) => warn!(slice = slice_name, address = %address, "endpoint address is not an ip"),
                }
            }
        }
    }
    found
}

/// The number of the slice port named `port_name`, else `port`; `None` when neither is set.
fn slice_port(slice: &EndpointSlice, port_name: &str, port: u16) -> Option<u16> {
    let named = slice
        .ports
        .iter()
        .filter(|_| !port_name.is_empty())
        .find(|candidate| candidate.name.as_deref() == Some(port_name))
        .and_then(|candidate| candidate.port)
        .and_then(|number| u16::try_from(number).ok());
    named.or(Some(port)).filter(|number| *number != 0)
}

/// `discovery.k8s.io/v1` `EndpointSliceList`, the fields discovery reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSliceList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default, deserialize_with = "null_as_empty")]
    items: Vec<EndpointSlice>,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    /// Set when more pages follow.
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSlice {
    #[serde(default)]
    metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN` (the last is skipped: gossip needs addresses).
    #[serde(default)]
    address_type: String,
    /// The API writes `null` for a slice without endpoints.
    #[serde(default, deserialize_with = "null_as_empty")]
    endpoints: Vec<Endpoint>,
    #[serde(default, deserialize_with = "null_as_empty")]
    ports: Vec<EndpointPort>,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectMeta {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(default, deserialize_with = "null_as_empty")]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: EndpointConditions,
    hostname: Option<String>,
    target_ref: Option<ObjectReference>,
    node_name: Option<String>,
}

/// An absent condition is `None`; see [`EndpointConditions::counts`] for how each is read.
#[derive(Debug, Default, Deserialize)]
struct EndpointConditions {
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
}

impl EndpointConditions {
    /// Whether the endpoint is a seed: ready AND serving AND not terminating. Per the API
    /// reference, a nil `ready` is an unknown state consumers treat as ready, a nil `serving`
    /// defers to `ready`, and a nil `terminating` means not terminating.
    fn counts(&self) -> bool {
        let ready = self.ready.unwrap_or(true);
        let serving = self.serving.unwrap_or(ready);
        let terminating = self.terminating.unwrap_or(false);
        ready && serving && !terminating
    }
}

#[derive(Debug, Default, Deserialize)]
struct ObjectReference {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct EndpointPort {
    name: Option<String>,
    port: Option<i32>,
}

/// The `Status` object the API answers errors with.
#[derive(Debug, Default, Deserialize)]
struct Status {
    message: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn settings(dir: &Path) -> KubernetesDiscovery {
        KubernetesDiscovery {
            api_url: "https://10.96.0.1:443".to_owned(),
            namespace: "superx".to_owned(),
            selector: "app=superx".to_owned(),
            port_name: "gossip".to_owned(),
            port: 7946,
            token_file: dir.join("token"),
            ca_file: dir.join("ca.crt"),
            interval: Duration::from_secs(5),
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn api_url_comes_from_the_service_env() {
        let env = |host: &str, port: &str| {
            HashMap::from([
                ("KUBERNETES_SERVICE_HOST".to_owned(), host.to_owned()),
                ("KUBERNETES_SERVICE_PORT".to_owned(), port.to_owned()),
            ])
        };
        assert_eq!(api_url_from_env(&env("10.96.0.1", "443")).as_deref(), Some("https://10.96.0.1:443"));
        assert_eq!(api_url_from_env(&env("fd00::1", "6443")).as_deref(), Some("https://[fd00::1]:6443"));
        assert_eq!(api_url_from_env(&env("", "443")), None);
        assert_eq!(api_url_from_env(&HashMap::new()), None);
    }

    #[test]
    fn list_url_encodes_the_selector() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings(dir.path());
        settings.selector = "app=superx,tier in (a b)".to_owned();
        let url = list_url(&settings).unwrap();
        assert_eq!(
            url.as_str(),
            "https://10.96.0.1/apis/discovery.k8s.io/v1/namespaces/superx/endpointslices\
             ?labelSelector=app%3Dsuperx%2Ctier+in+%28a+b%29&limit=500"
        );
    }

    #[test]
    fn check_reports_unreadable_token_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let error = check(&settings).unwrap_err();
        assert!(matches!(&error, DiscoveryError::File { path, .. } if path.ends_with("token")), "{error}");
        write(dir.path(), "token", "\n");
        assert!(check(&settings).unwrap_err().to_string().contains("token file is empty"));
        write(dir.path(), "token", "secret\n");
        let error = check(&settings).unwrap_err();
        assert!(matches!(&error, DiscoveryError::File { path, .. } if path.ends_with("ca.crt")), "{error}");
        write(dir.path(), "ca.crt", "not a certificate");
        assert!(check(&settings).unwrap_err().to_string().contains("no PEM certificate"));
        write(dir.path(), "ca.crt", "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        let error = check(&settings).unwrap_err();
        assert!(error.to_string().contains("ca.crt"), "{error}");
    }

    #[test]
    fn check_rejects_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        type Mutation = fn(&mut KubernetesDiscovery);
        let cases: [(Mutation, &str); 5] = [
            (|s| s.api_url = "http://10.96.0.1".into(), "must be https"),
            (|s| s.api_url = "not a url".into(), "api url"),
            (|s| s.namespace = "Super_X".into(), "not a valid namespace"),
            (|s| s.selector = " ".into(), "selector is empty"),
            (|s| (s.port_name, s.port) = (String::new(), 0), "no gossip port"),
        ];
        for (mutate, expected) in cases {
            let mut settings = settings(dir.path());
            mutate(&mut settings);
            let error = check(&settings).unwrap_err();
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn conditions_follow_the_api_reference() {
        let counts = |ready, serving, terminating| EndpointConditions { ready, serving, terminating }.counts();
        assert!(counts(None, None, None));
        assert!(counts(Some(true), Some(true), Some(false)));
        assert!(counts(Some(true), None, None));
        assert!(!counts(Some(false), None, None), "serving defers to ready");
        assert!(!counts(None, Some(false), None));
        assert!(!counts(Some(true), Some(true), Some(true)), "terminating");
        assert!(!counts(Some(false), Some(true), Some(false)), "not ready");
    }

    #[test]
    fn seeds_come_from_counted_endpoints_with_the_named_port() {
        let list: EndpointSliceList = serde_json::from_value(serde_json::json!({
            "kind": "EndpointSliceList",
            "items": [
                {"metadata": {"name": "a"}, "addressType": "IPv4",
                 "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                    {"addresses": ["10.0.0.3"], "conditions": {}}],
                 "ports": [{"name": "api", "port": 8080}, {"name": "gossip", "port": 7000, "protocol": "UDP"}]},
                {"metadata": {"name": "b"}, "addressType": "IPv6",
                 "endpoints": [{"addresses": ["fd00::1"]}], "ports": null},
                {"metadata": {"name": "c"}, "addressType": "FQDN",
                 "endpoints": [{"addresses": ["node.example.com"]}], "ports": []},
                {"metadata": {"name": "d"}, "addressType": "IPv4", "endpoints": null, "ports": null}
            ]
        }))
        .unwrap();
        let found = seeds_of(&list.items, "gossip", 7946);
        let expected: Vec<SocketAddr> =
            ["10.0.0.1:7000", "10.0.0.3:7000", "[fd00::1]:7946"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn status_errors_carry_the_api_message() {
        let body = br#"{"kind":"Status","status":"Failure","message":"endpointslices is forbidden","code":403}"#;
        let error = status_error("superx", StatusCode::FORBIDDEN, body).to_string();
        assert!(error.contains("403 Forbidden: endpointslices is forbidden"), "{error}");
        assert!(error.contains("needs list on endpointslices"), "{error}");
        let error = status_error("superx", StatusCode::BAD_GATEWAY, b"<html>").to_string();
        assert!(error.ends_with("answered 502 Bad Gateway"), "{error}");
    }
}
