//! superx-cluster: cluster membership for superx.
//!
//! It owns chitchat gossip (UDP), the gossip key schema (one file), node metadata and
//! liveness, and the discovery of seeds by static list, DNS (hickory-resolver) or the
//! Kubernetes API. It never sees openraft or A2A; the root crate turns what this crate reports
//! into raft membership.
//!
//! # Layout
//!
//! - `keys.rs`: every gossip key as a `const`, with a typed accessor; the only place keys are
//!   named.
//! - `node.rs`: [`Cluster`], one chitchat node: start, publish this node's state, the member
//!   list and the change stream ([`ClusterEvent`]), leave, shutdown; `node/members.rs`: the
//!   member-list and event rules (newest generation per node id, what counts as live, dead,
//!   left or updated) as pure functions.
//! - `discovery/`: [`Strategy`] and the loops that turn it into seed addresses: `dns.rs`
//!   (A/AAAA or SRV, re-resolved with hickory-resolver), `kubernetes.rs` (EndpointSlices
//!   through the API server, service-account token re-read on every call). A strategy only
//!   yields seeds; gossip decides who is alive.
//! - `testsuite.rs` (feature `testsuite`): a fake Kubernetes API server (TLS with a test CA,
//!   bearer token required) and a dnsmasq harness, for tests here and in the root crate.
#![forbid(unsafe_code)]

pub mod discovery;
pub mod keys;
mod node;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use discovery::{DiscoveryError, Strategy};
pub use keys::{HealthDigest, RaftState, RateDigest};
pub use node::{Cluster, ClusterConfig, ClusterError, ClusterEvent, Member, NodeMeta};
