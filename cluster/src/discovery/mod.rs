//! Seed discovery: a [`Strategy`] yields gossip addresses to contact; gossip decides who is
//! alive.
//!
//! The gossip node (`node.rs`) resolves its strategy every interval and gossips with each
//! address; a [`Discoverer`] held across rounds reuses its DNS resolver or HTTPS client, and
//! [`resolve_once`] builds one per call. A failed round only means no new seeds this round:
//! discovery never removes a member, gossip decides who is alive.
//!
//! - `Static`: no seeds (raft peers are configured statically).
//! - `Gossip`: fixed `host:port` seeds, resolved with the system resolver every round.
//! - `Dns` (`dns.rs`): A/AAAA records, or SRV records when the name starts with `_`.
//! - `Kubernetes` (`kubernetes.rs`): ready and serving endpoints of EndpointSlices.
//!
//! [`check`] validates a strategy at startup without network I/O, so a typo fails the start
//! instead of every discovery round.

mod dns;
mod kubernetes;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing::debug;

pub use dns::{DNS_CACHE_TTL_MAX, DNS_LOOKUP_TIMEOUT};
pub use kubernetes::{
    KUBERNETES_REQUEST_TIMEOUT, SERVICE_ACCOUNT_CA_FILE, SERVICE_ACCOUNT_NAMESPACE_FILE, SERVICE_ACCOUNT_TOKEN_FILE,
    api_url_from_env,
};

/// Where seeds come from (`cluster.strategy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Static raft peers: no gossip seeds.
    Static,
    /// Fixed `host:port` gossip addresses (`cluster.seeds`).
    Gossip { seeds: Vec<String> },
    /// DNS: A/AAAA records of `query` (each address with `port`), or SRV records when `query`
    /// starts with `_` (target and port from each record). Re-resolved every `interval`.
    Dns {
        query: String,
        port: u16,
        /// Name server to ask (`host:port`); `None`: the system's (`/etc/resolv.conf`).
        server: Option<SocketAddr>,
        interval: Duration,
    },
    /// Kubernetes: ready and serving endpoints of the EndpointSlices matching `selector` in
    /// `namespace`, listed through the API server at `api_url` every `interval`.
    Kubernetes(KubernetesDiscovery),
}

impl Strategy {
    /// How often the strategy wants to be re-resolved; `None` for strategies whose answer only
    /// changes when the configuration does (`Static`, `Gossip`).
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Strategy::Static | Strategy::Gossip { .. } => None,
            Strategy::Dns { interval, .. } => Some(*interval),
            Strategy::Kubernetes(k8s) => Some(k8s.interval),
        }
    }
}

/// Settings of the Kubernetes strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesDiscovery {
    /// `https://host:port` of the API server (from `KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_url: String,
    pub namespace: String,
    /// Label selector, e.g. `app=superx`.
    pub selector: String,
    /// Name of the EndpointSlice port carrying gossip; when absent, `port` is used.
    pub port_name: String,
    pub port: u16,
    /// Service-account token, re-read on every call (it rotates).
    pub token_file: PathBuf,
    /// CA bundle (PEM) the API server's certificate must chain to.
    pub ca_file: PathBuf,
    pub interval: Duration,
}

/// Why a discovery round found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("dns lookup of {name}: {reason}")]
    Dns { name: String, reason: String },
    #[error("kubernetes api: {0}")]
    Kubernetes(String),
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
}

/// A strategy ready to be resolved round after round: it keeps one DNS resolver or one HTTPS
/// client (connection pool, parsed CA) across calls. Create it inside a tokio runtime.
pub struct Discoverer {
    inner: Inner,
}

enum Inner {
    Static,
    Gossip(Vec<String>),
    Dns(dns::DnsDiscoverer),
    Kubernetes(kubernetes::KubeDiscoverer),
}

impl Discoverer {
    /// Validates `strategy` (see [`check`]) and builds what its rounds reuse.
    pub fn new(strategy: &Strategy) -> Result<Self, DiscoveryError> {
        check(strategy)?;
        let inner = match strategy {
            Strategy::Static => Inner::Static,
            Strategy::Gossip { seeds } => Inner::Gossip(seeds.clone()),
            Strategy::Dns { query, port, server, .. } => Inner::Dns(dns::DnsDiscoverer::new(query, *port, *server)?),
            Strategy::Kubernetes(settings) => Inner::Kubernetes(kubernetes::KubeDiscoverer::new(settings.clone())?),
        };
        Ok(Discoverer { inner })
    }

    /// One discovery round: the seed addresses, sorted and without duplicates.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, DiscoveryError> {
        let found = match &self.inner {
            Inner::Static => Vec::new(),
            Inner::Gossip(seeds) => resolve_seeds(seeds).await?,
            Inner::Dns(dns) => dns.resolve().await?,
            Inner::Kubernetes(k8s) => k8s.resolve().await?,
        };
        Ok(sorted_unique(found))
    }
}

/// Resolves `strategy` once into gossip addresses (sorted, without duplicates). Builds a
/// [`Discoverer`] for the call; hold a [`Discoverer`] instead to resolve repeatedly.
pub async fn resolve_once(strategy: &Strategy) -> Result<Vec<SocketAddr>, DiscoveryError> {
    Discoverer::new(strategy)?.resolve().await
}

/// Validates `strategy` at startup without network I/O: names and selectors are well formed,
/// the service-account token and the CA bundle are readable and the bundle holds certificates.
pub fn check(strategy: &Strategy) -> Result<(), DiscoveryError> {
    match strategy {
        Strategy::Static => Ok(()),
        Strategy::Gossip { seeds } => seeds.iter().try_for_each(|seed| check_seed(seed)),
        Strategy::Dns { query, port, server, interval } => {
            if interval.is_zero() {
                return Err(DiscoveryError::Dns { name: query.clone(), reason: INTERVAL_ZERO.to_owned() });
            }
            dns::check(query, *port, *server)
        }
        Strategy::Kubernetes(settings) => {
            if settings.interval.is_zero() {
                return Err(DiscoveryError::Kubernetes(INTERVAL_ZERO.to_owned()));
            }
            kubernetes::check(settings)
        }
    }
}

/// A zero interval would re-resolve in a busy loop.
const INTERVAL_ZERO: &str = "the discovery interval must be greater than zero";

/// A seed is `host:port` (`[v6]:port` for IPv6 literals) with a non-zero port.
fn check_seed(seed: &str) -> Result<(), DiscoveryError> {
    let invalid = |reason: &str| DiscoveryError::Dns { name: seed.to_owned(), reason: reason.to_owned() };
    let (host, port) = seed.rsplit_once(':').ok_or_else(|| invalid("a seed must be host:port"))?;
    if host.is_empty() || host == "[]" {
        return Err(invalid("a seed must be host:port, the host is empty"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(invalid("an ipv6 seed must be written [address]:port"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid("the port must be a number from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

/// Resolves every seed with the system resolver; a seed that does not resolve is skipped (its
/// node may not exist yet), but if none resolves the round fails.
async fn resolve_seeds(seeds: &[String]) -> Result<Vec<SocketAddr>, DiscoveryError> {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for seed in seeds {
        let lookup = tokio::time::timeout(DNS_LOOKUP_TIMEOUT, tokio::net::lookup_host(seed.as_str()));
        match lookup.await {
            Ok(Ok(addrs)) => found.extend(addrs),
            Ok(Err(error)) => failures.push(format!("{seed}: {error}")),
            Err(_) => failures.push(format!("{seed}: timed out after {DNS_LOOKUP_TIMEOUT:?}")),
        }
    }
    for failure in &failures {
        debug!(failure = %failure, "gossip seed did not resolve");
    }
    if found.is_empty() && !seeds.is_empty() {
        return Err(DiscoveryError::Dns {
            name: seeds.join(","),
            reason: format!("no seed resolved: {}", failures.join("; ")),
        });
    }
    Ok(found)
}

fn sorted_unique(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// `error` and its sources, joined by `: ` (TLS and connection failures hide the useful part
/// in the sources).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_yields_no_seeds() {
        assert_eq!(resolve_once(&Strategy::Static).await, Ok(Vec::new()));
    }

    #[tokio::test]
    async fn gossip_seeds_are_sorted_and_deduplicated() {
        let seeds = vec!["127.0.0.2:7946".to_owned(), "127.0.0.1:7946".to_owned(), "127.0.0.2:7946".to_owned()];
        let found = resolve_once(&Strategy::Gossip { seeds }).await.unwrap();
        let expected: Vec<SocketAddr> = vec!["127.0.0.1:7946".parse().unwrap(), "127.0.0.2:7946".parse().unwrap()];
        assert_eq!(found, expected);
    }

    #[tokio::test]
    async fn gossip_skips_seeds_that_do_not_resolve() {
        let seeds = vec!["no-such-host.invalid:7946".to_owned(), "[::1]:7946".to_owned()];
        let found = resolve_once(&Strategy::Gossip { seeds }).await.unwrap();
        assert_eq!(found, vec!["[::1]:7946".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn gossip_fails_when_no_seed_resolves() {
        let seeds = vec!["no-such-host.invalid:7946".to_owned()];
        let error = resolve_once(&Strategy::Gossip { seeds }).await.unwrap_err();
        assert!(error.to_string().contains("no seed resolved"), "{error}");
    }

    #[tokio::test]
    async fn gossip_with_no_seeds_yields_none() {
        assert_eq!(resolve_once(&Strategy::Gossip { seeds: Vec::new() }).await, Ok(Vec::new()));
    }

    /// The gossip node runs discovery in a spawned task.
    #[test]
    fn discoverer_and_its_rounds_can_move_between_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let discoverer = Discoverer::new(&Strategy::Static).unwrap();
        send_sync(&discoverer);
        send(discoverer.resolve());
        send(resolve_once(&Strategy::Static));
    }

    #[test]
    fn seeds_must_be_host_port() {
        for good in ["node1:7946", "10.0.0.1:1", "[::1]:7946", "node1.example.com:65535"] {
            assert_eq!(check_seed(good), Ok(()), "{good}");
        }
        for bad in ["node1", ":7946", "node1:0", "node1:70000", "node1:x", "::1:7946", "[]:7946"] {
            assert!(check_seed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_interval_is_rejected() {
        let strategy =
            Strategy::Dns { query: "superx.test".into(), port: 7946, server: None, interval: Duration::ZERO };
        let error = check(&strategy).unwrap_err();
        assert!(error.to_string().contains("interval must be greater than zero"), "{error}");
    }

    #[test]
    fn interval_is_reported_for_polling_strategies() {
        assert_eq!(Strategy::Static.interval(), None);
        let dns = Strategy::Dns { query: "a".into(), port: 1, server: None, interval: Duration::from_secs(3) };
        assert_eq!(dns.interval(), Some(Duration::from_secs(3)));
    }
}
