//! Seed discovery: a [`Strategy`] yields gossip addresses to contact; gossip decides who is
//! alive.
//!
//! INTERFACE STUB (to be completed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// Resolves `strategy` once into gossip addresses.
pub async fn resolve_once(_strategy: &Strategy) -> Result<Vec<SocketAddr>, DiscoveryError> {
    todo!()
}
