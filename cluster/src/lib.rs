//! superx-cluster: cluster membership for superx.
//!
//! It will own chitchat gossip (UDP), the gossip key schema (one file), node metadata and
//! liveness, and the discovery of seeds by static list, DNS (hickory-resolver) or the
//! Kubernetes API. It never sees openraft; the root crate turns discovered nodes into raft
//! members.
#![forbid(unsafe_code)]
