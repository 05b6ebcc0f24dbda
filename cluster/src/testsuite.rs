//! Test harnesses shared with the root crate's tests (feature `testsuite`).
//!
//! - [`FakeKubeApi`]: a fake Kubernetes API server: HTTPS with a certificate from a test CA it
//!   generates, requiring `Authorization: Bearer <token>`, answering `GET
//!   /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices?labelSelector=...` with an
//!   `EndpointSliceList` shaped exactly like the real API's, and errors as `Status` objects.
//! - [`Dnsmasq`]: a real name server (the `dnsmasq` binary, Debian package `dnsmasq-base`) on a
//!   free loopback port, serving host and SRV records the test adds and removes.
//!
//! Both run outside the test's runtime (a thread with its own runtime, a child process), so
//! blocking and async tests can use them; both stop on drop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, Query};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::KeyUsagePurpose;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// How long a harness waits for its server to come up or to serve a change before the test
/// fails. Both take milliseconds; ten seconds absorb a loaded CI machine.
const HARNESS_WAIT_MAX: Duration = Duration::from_secs(10);

/// Pause between two polls of a condition that has a deadline.
const POLL_PAUSE: Duration = Duration::from_millis(10);

/// One endpoint of a fake EndpointSlice. `None` conditions are omitted from the JSON, as the
/// real API does (an absent `ready` means ready).
#[derive(Clone, Debug, Default)]
pub struct FakeEndpoint {
    pub ip: String,
    pub hostname: Option<String>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

/// A running fake API server; it runs on its own thread with its own runtime, so blocking and
/// async tests can both use it. Stopped on drop.
pub struct FakeKubeApi {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// PEM of the test CA (written in the directory given to `start`).
    pub ca_file: PathBuf,
    /// The service-account token file (written in the directory given to `start`).
    pub token_file: PathBuf,
    state: Arc<Mutex<FakeState>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct FakeState {
    token: String,
    /// (namespace, name) → the slice.
    slices: BTreeMap<(String, String), FakeSlice>,
    requests: Vec<(String, bool)>,
    /// Bumped on every change, like etcd's revision.
    resource_version: u64,
}

struct FakeSlice {
    labels: BTreeMap<String, String>,
    json: Value,
}

impl FakeKubeApi {
    /// Starts the server; writes `ca.pem` and `token` (containing `token`) into `dir`.
    pub fn start(dir: &Path, token: &str) -> FakeKubeApi {
        let (ca_pem, tls) = test_pki();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("writing the fake api's ca.pem");
        let token_file = dir.join("token");
        std::fs::write(&token_file, token).expect("writing the fake api's token");
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("binding the fake api listener");
        listener.set_nonblocking(true).expect("making the fake api listener non-blocking");
        let url = format!("https://{}", listener.local_addr().expect("fake api listener address"));
        let state = Arc::new(Mutex::new(FakeState { token: token.to_owned(), ..FakeState::default() }));
        let (shutdown, shutdown_rx) = oneshot::channel();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube-api".to_owned())
            .spawn(move || serve(listener, acceptor, thread_state, shutdown_rx))
            .expect("spawning the fake api thread");
        FakeKubeApi { url, ca_file, token_file, state, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// Replaces the EndpointSlice `name` in `namespace` (labels; one port named `port_name`
    /// with number `port`, protocol UDP; the endpoints).
    pub fn set_slice(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        port_name: &str,
        port: u16,
        endpoints: Vec<FakeEndpoint>,
    ) {
        let labels: BTreeMap<String, String> =
            labels.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        let mut state = self.state.lock().expect("fake api state");
        state.resource_version += 1;
        let json = slice_json(namespace, name, &labels, port_name, port, &endpoints, state.resource_version);
        state.slices.insert((namespace.to_owned(), name.to_owned()), FakeSlice { labels, json });
    }

    /// Rotates the token: rewrites the token file; from now on only the new token is accepted.
    pub fn rotate_token(&self, token: &str) {
        let mut state = self.state.lock().expect("fake api state");
        // Replace the file atomically, as the kubelet swaps its symlink.
        let staged = self.token_file.with_extension("rotating");
        std::fs::write(&staged, token).expect("writing the rotated token");
        std::fs::rename(&staged, &self.token_file).expect("replacing the token file");
        state.token = token.to_owned();
    }

    /// Requests served so far: (path with query, whether the bearer was accepted).
    pub fn requests(&self) -> Vec<(String, bool)> {
        self.state.lock().expect("fake api state").requests.clone()
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A test certificate authority issuing server certificates, for TLS tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A CA with a name of its own, so two CAs' certificates are told apart (UnknownIssuer,
    /// not a bad signature from the namesake CA).
    pub fn new(purpose: &str) -> TestCa {
        let ca_key = KeyPair::generate().expect("generating the test ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("test ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        static CA_SERIAL: AtomicU64 = AtomicU64::new(0);
        let serial = CA_SERIAL.fetch_add(1, Ordering::Relaxed);
        let ca_name = format!("superx test {purpose} ca {} {serial}", std::process::id());
        ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing the test ca");
        TestCa { issuer: Issuer::new(ca_params, ca_key), pem: ca_cert.pem() }
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP literals) named `common_name`, signed
    /// by this CA: (certificate PEM, PKCS#8 key PEM, certificate DER).
    pub fn server_cert(&self, names: &[&str], common_name: &str) -> (String, String, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("test server certificate params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generating the test server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signing the test server certificate");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A CA (returned as PEM) and a TLS server config with a certificate for 127.0.0.1 and
/// localhost signed by it.
fn test_pki() -> (String, rustls::ServerConfig) {
    let ca = TestCa::new("kubernetes");
    let (_, key_pem, der) = ca.server_cert(&["127.0.0.1", "localhost"], "kube-apiserver");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("the test server key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der)], key)
        .expect("test server tls config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem, config)
}

fn serve(
    listener: StdTcpListener,
    acceptor: TlsAcceptor,
    state: Arc<Mutex<FakeState>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building the fake api runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("fake api listener");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(serve_connection(stream, acceptor.clone(), state.clone()));
                }
            }
        }
    });
}

async fn serve_connection(stream: tokio::net::TcpStream, acceptor: TlsAcceptor, state: Arc<Mutex<FakeState>>) {
    // A client that does not trust the test CA aborts the handshake here.
    let Ok(tls) = acceptor.accept(stream).await else { return };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let response = handle(&state, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

fn handle(state: &Mutex<FakeState>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path_and_query = request.uri().path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default();
    let mut state = state.lock().expect("fake api state");
    let bearer = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    let accepted = bearer == Some(format!("Bearer {}", state.token).as_str());
    state.requests.push((path_and_query.clone(), accepted));
    if !accepted {
        return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let namespace = list_namespace(request.uri().path()).filter(|_| request.method() == Method::GET);
    let Some(namespace) = namespace else {
        return status_response(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource");
    };
    let selector = query_param(&path_and_query, "labelSelector").unwrap_or_default();
    match parse_selector(&selector) {
        Ok(requirements) => json_response(StatusCode::OK, &list_json(&state, namespace, &requirements)),
        Err(message) => status_response(StatusCode::BAD_REQUEST, "BadRequest", &message),
    }
}

/// `{ns}` of `/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices`.
fn list_namespace(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/apis/discovery.k8s.io/v1/namespaces/")?;
    let namespace = rest.strip_suffix("/endpointslices")?;
    (!namespace.is_empty() && !namespace.contains('/')).then_some(namespace)
}

fn query_param(path_and_query: &str, key: &str) -> Option<String> {
    let url = reqwest::Url::parse(&format!("https://fake{path_and_query}")).ok()?;
    url.query_pairs().find(|(name, _)| name == key).map(|(_, value)| value.into_owned())
}

/// A requirement of an equality-based selector: key, value, and whether it must equal.
type Requirement = (String, String, bool);

/// `k=v`, `k==v`, `k!=v`, comma-separated; set-based selectors are refused.
fn parse_selector(selector: &str) -> Result<Vec<Requirement>, String> {
    let valid = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    let mut requirements = Vec::new();
    for requirement in selector.split(',').map(str::trim).filter(|text| !text.is_empty()) {
        let (key, value, equal) = match requirement.split_once("!=") {
            Some((key, value)) => (key, value, false),
            None => match requirement.split_once("==").or_else(|| requirement.split_once('=')) {
                Some((key, value)) => (key, value, true),
                None => return Err(format!("unable to parse requirement: {requirement:?}")),
            },
        };
        let (key, value) = (key.trim(), value.trim());
        if !valid(key) || !(value.is_empty() || valid(value)) {
            return Err(format!("unable to parse requirement: {requirement:?}"));
        }
        requirements.push((key.to_owned(), value.to_owned(), equal));
    }
    Ok(requirements)
}

fn list_json(state: &FakeState, namespace: &str, requirements: &[Requirement]) -> Value {
    let matches = |labels: &BTreeMap<String, String>| {
        requirements.iter().all(|(key, value, equal)| (labels.get(key) == Some(value)) == *equal)
    };
    let items: Vec<&Value> = state
        .slices
        .iter()
        .filter(|((slice_namespace, _), slice)| slice_namespace == namespace && matches(&slice.labels))
        .map(|(_, slice)| &slice.json)
        .collect();
    json!({
        "kind": "EndpointSliceList",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"resourceVersion": state.resource_version.to_string()},
        "items": items,
    })
}

/// An EndpointSlice as the EndpointSlice controller writes it for a Service.
fn slice_json(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    port_name: &str,
    port: u16,
    endpoints: &[FakeEndpoint],
    resource_version: u64,
) -> Value {
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "uid": fake_uid(resource_version),
        "resourceVersion": resource_version.to_string(),
        "generation": 1,
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": labels,
    });
    if let Some(service) = labels.get("kubernetes.io/service-name") {
        metadata["generateName"] = json!(format!("{service}-"));
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Service", "name": service, "uid": fake_uid(0),
            "controller": true, "blockOwnerDeletion": true,
        }]);
    }
    let all_v6 = !endpoints.is_empty() && endpoints.iter().all(|endpoint| endpoint.ip.contains(':'));
    let endpoints: Vec<Value> =
        endpoints.iter().enumerate().map(|(index, endpoint)| endpoint_json(namespace, name, index, endpoint)).collect();
    json!({
        "metadata": metadata,
        "addressType": if all_v6 { "IPv6" } else { "IPv4" },
        // The API writes `null`, not `[]`, for a slice without endpoints.
        "endpoints": if endpoints.is_empty() { Value::Null } else { Value::Array(endpoints) },
        "ports": [{"name": port_name, "port": port, "protocol": "UDP"}],
    })
}

fn endpoint_json(namespace: &str, slice: &str, index: usize, endpoint: &FakeEndpoint) -> Value {
    let mut conditions = serde_json::Map::new();
    for (key, condition) in
        [("ready", endpoint.ready), ("serving", endpoint.serving), ("terminating", endpoint.terminating)]
    {
        if let Some(condition) = condition {
            conditions.insert(key.to_owned(), json!(condition));
        }
    }
    let pod = endpoint.hostname.clone().unwrap_or_else(|| format!("{slice}-pod-{index}"));
    let mut json = json!({
        "addresses": [endpoint.ip],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": fake_uid(index as u64 + 1000)},
        "nodeName": format!("fake-node-{}", index % 3),
    });
    if let Some(hostname) = &endpoint.hostname {
        json["hostname"] = json!(hostname);
    }
    json
}

fn fake_uid(seed: u64) -> String {
    format!("5e1f0000-0000-4000-8000-{seed:012x}")
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    json_response(code, &status)
}

fn json_response(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().expect("content type"));
    response
}

/// A `dnsmasq` serving only the records a test gives it, on 127.0.0.1 and a free port (UDP and
/// TCP). Host records live in an additional hosts file that dnsmasq re-reads on SIGHUP; SRV
/// records live in its configuration file, which it reads only at start, so adding one
/// restarts it on the same port. Unknown names answer NXDOMAIN. Killed on drop.
pub struct Dnsmasq {
    /// Where dnsmasq listens.
    pub addr: SocketAddr,
    dir: PathBuf,
    process: Mutex<Child>,
    hosts: Mutex<Vec<(IpAddr, String)>>,
    srv_records: Mutex<Vec<String>>,
}

/// dnsmasq starts in milliseconds; a port taken between probing and binding is retried.
const DNSMASQ_START_ATTEMPTS: usize = 5;

impl Dnsmasq {
    /// Starts dnsmasq with its files in `dir`. Panics, telling what to install, when the
    /// `dnsmasq` binary is missing.
    pub fn start(dir: &Path) -> Dnsmasq {
        let binary = dnsmasq_binary();
        std::fs::write(dir.join("hosts"), "").expect("writing the dnsmasq hosts file");
        std::fs::write(dir.join("dnsmasq.conf"), "").expect("writing the dnsmasq configuration");
        let mut failures = Vec::new();
        for _ in 0..DNSMASQ_START_ATTEMPTS {
            let addr = SocketAddr::new([127, 0, 0, 1].into(), free_port());
            match spawn_dnsmasq(&binary, dir, addr) {
                Ok(child) => {
                    return Dnsmasq {
                        addr,
                        dir: dir.to_owned(),
                        process: Mutex::new(child),
                        hosts: Mutex::new(Vec::new()),
                        srv_records: Mutex::new(Vec::new()),
                    };
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!("dnsmasq did not start:\n{}", failures.join("\n"));
    }

    /// Adds a host record (a line in the hosts file, then SIGHUP); returns once dnsmasq
    /// answers it.
    pub fn add_host(&self, name: &str, ip: IpAddr) {
        self.hosts.lock().expect("dnsmasq hosts").push((ip, name.to_owned()));
        self.reload_hosts();
        self.wait_for(&format!("{name} to resolve to {ip}"), || self.resolves_to(name, ip));
    }

    /// Removes a host record; returns once dnsmasq no longer answers it.
    pub fn remove_host(&self, name: &str, ip: IpAddr) {
        self.hosts.lock().expect("dnsmasq hosts").retain(|(host_ip, host)| !(*host_ip == ip && host == name));
        self.reload_hosts();
        self.wait_for(&format!("{name} to stop resolving to {ip}"), || !self.resolves_to(name, ip));
    }

    /// Adds an SRV record `service` (e.g. `_gossip._udp.superx.test`) pointing at `target`
    /// and `port`; restarts dnsmasq on the same port and returns once it answers the record.
    pub fn add_srv(&self, service: &str, target: &str, port: u16) {
        let mut records = self.srv_records.lock().expect("dnsmasq srv records");
        records.push(format!("srv-host={service},{target},{port}\n"));
        std::fs::write(self.dir.join("dnsmasq.conf"), records.concat()).expect("writing the dnsmasq configuration");
        drop(records);
        self.restart();
        self.wait_for(&format!("{service} to list {target}:{port}"), || self.has_srv(service, target, port));
    }

    /// Sends one query and returns the answer (for tests that check the server directly).
    pub fn query(&self, name: &str, record_type: RecordType) -> Result<Message, String> {
        query_once(self.addr, name, record_type)
    }

    fn resolves_to(&self, name: &str, ip: IpAddr) -> bool {
        let record_type = if ip.is_ipv4() { RecordType::A } else { RecordType::AAAA };
        let Ok(answer) = self.query(name, record_type) else { return false };
        answer.answers.iter().any(|record| match &record.data {
            RData::A(a) => IpAddr::V4(a.0) == ip,
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0) == ip,
            _ => false,
        })
    }

    fn has_srv(&self, service: &str, target: &str, port: u16) -> bool {
        let Ok(answer) = self.query(service, RecordType::SRV) else { return false };
        answer.answers.iter().any(|record| match &record.data {
            RData::SRV(srv) => srv.port == port && same_name(&srv.target, target),
            _ => false,
        })
    }

    fn reload_hosts(&self) {
        let lines: String =
            self.hosts.lock().expect("dnsmasq hosts").iter().map(|(ip, name)| format!("{ip} {name}\n")).collect();
        std::fs::write(self.dir.join("hosts"), lines).expect("writing the dnsmasq hosts file");
        let pid = self.process.lock().expect("dnsmasq process").id();
        let status = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("running kill -HUP");
        assert!(status.success(), "kill -HUP {pid} failed: {status}");
    }

    fn restart(&self) {
        let mut process = self.process.lock().expect("dnsmasq process");
        let _ = process.kill();
        let _ = process.wait();
        let binary = dnsmasq_binary();
        let deadline = Instant::now() + HARNESS_WAIT_MAX;
        *process = loop {
            match spawn_dnsmasq(&binary, &self.dir, self.addr) {
                Ok(child) => break child,
                Err(failure) if Instant::now() > deadline => panic!("dnsmasq did not restart: {failure}"),
                Err(_) => std::thread::sleep(POLL_PAUSE),
            }
        };
    }

    fn wait_for(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + HARNESS_WAIT_MAX;
        while !condition() {
            assert!(Instant::now() < deadline, "dnsmasq: waited {HARNESS_WAIT_MAX:?} for {what}");
            std::thread::sleep(POLL_PAUSE);
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Ok(process) = self.process.get_mut() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// The `dnsmasq` binary: on PATH, or in the sbin directories a non-root PATH may lack.
fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq is not installed (not on PATH, /usr/sbin or /sbin): the DNS discovery tests \
                 run a real name server; install the Debian package dnsmasq-base \
                 (apt-get install -y dnsmasq-base)"
            )
        })
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding a probe udp socket");
        let port = udp.local_addr().expect("probe socket address").port();
        if StdTcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Spawns dnsmasq and waits until it answers; `Err` with its log when it exits first.
fn spawn_dnsmasq(binary: &Path, dir: &Path, addr: SocketAddr) -> Result<Child, String> {
    let log_path = dir.join("dnsmasq.log");
    let log = std::fs::File::create(&log_path).map_err(|error| format!("creating {}: {error}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("--keep-in-foreground")
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--listen-address={}", addr.ip()))
        .args([
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--local=/#/",
            "--pid-file",
            "--log-facility=-",
            "--log-queries",
        ])
        .arg(format!("--addn-hosts={}", dir.join("hosts").display()))
        .arg(format!("--conf-file={}", dir.join("dnsmasq.conf").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // As root dnsmasq would switch to `nobody`, who cannot read the test's private directory.
    if std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0) {
        command.arg("--user=root");
    }
    let mut child = command.spawn().map_err(|error| format!("spawning {}: {error}", binary.display()))?;
    let deadline = Instant::now() + HARNESS_WAIT_MAX;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("dnsmasq on {addr} exited with {status}: {log}"));
        }
        if query_once(addr, "dnsmasq-ready.invalid", RecordType::A).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("dnsmasq on {addr} did not answer within {HARNESS_WAIT_MAX:?}"));
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// One UDP query to `addr`, waiting at most [`POLL_PAUSE`] times ten for the answer.
fn query_once(addr: SocketAddr, name: &str, record_type: RecordType) -> Result<Message, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    socket.set_read_timeout(Some(POLL_PAUSE * 10)).map_err(|error| error.to_string())?;
    let name = Name::from_str(name).map_err(|error| error.to_string())?;
    let mut message = Message::query();
    message.add_query(Query::query(name, record_type));
    message.metadata.recursion_desired = true;
    let bytes = message.to_vec().map_err(|error| error.to_string())?;
    socket.send_to(&bytes, addr).map_err(|error| error.to_string())?;
    let mut buffer = [0u8; 4096];
    loop {
        let (length, _) = socket.recv_from(&mut buffer).map_err(|error| error.to_string())?;
        let answer = Message::from_vec(&buffer[..length]).map_err(|error| error.to_string())?;
        if answer.metadata.id == message.metadata.id {
            return Ok(answer);
        }
    }
}

fn same_name(name: &Name, expected: &str) -> bool {
    name.to_ascii().trim_end_matches('.').eq_ignore_ascii_case(expected.trim_end_matches('.'))
}
