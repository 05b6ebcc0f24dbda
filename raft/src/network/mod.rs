//! The internal raft network: routes, wire types, server (`server.rs`) and client
//! (`client.rs`).
//!
//! Every body is a [`crate::codec`] encoding (bincode), sent as `POST` to the raft listener,
//! which is separate from the public API and never exposed by it. Raft RPCs carry openraft's
//! own request and `Result<response, RaftError>` types; forward-write and read-index carry the
//! small types below. With a cluster secret (`RaftConfig::keyring`) every request and answer
//! is tagged with it (`auth.rs`).

pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod server;

use serde::{Deserialize, Serialize};

use crate::codec::Blob;

pub(crate) const APPEND_PATH: &str = "/raft/append";
pub(crate) const VOTE_PATH: &str = "/raft/vote";
pub(crate) const SNAPSHOT_PATH: &str = "/raft/snapshot";
pub(crate) const FORWARD_PATH: &str = "/raft/forward-write";
pub(crate) const READ_INDEX_PATH: &str = "/raft/read-index";
pub(crate) const INITIALIZED_PATH: &str = "/raft/initialized";
/// Asks this node to campaign now (a leader handing over before it stops).
pub(crate) const ELECT_PATH: &str = "/raft/elect";

/// A follower's batch of writes, for the leader to commit. `B` is `&Batch` when sending (no
/// copy) and `Batch` when receiving; both encode the same.
#[derive(Serialize, Deserialize)]
pub(crate) struct ForwardRequest<B> {
    pub batch: B,
    /// How long the follower will wait; the leader gives up after this (capped by its own
    /// `forward_timeout_ms`).
    pub timeout_ms: u64,
}

/// The outcome of committing a batch on the node that believes it leads.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CommitReply {
    /// Committed and applied at log `index`: one response per request, in order.
    Applied { index: u64, responses: Vec<Blob> },
    /// This node is not the leader (any more); ask again where the leader is.
    NotLeader,
    /// Not committed within the timeout; it may still commit.
    Timeout,
    /// Raft on this node stopped or failed.
    Failed(String),
}

/// A follower asking the leader for a read index.
#[derive(Serialize, Deserialize)]
pub(crate) struct ReadIndexRequest {
    pub timeout_ms: u64,
}

/// The leader's answer to a read-index request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ReadIndexReply {
    /// Leadership confirmed by a quorum; a read is linearizable once applied up to this index.
    Index(u64),
    NotLeader,
    Timeout,
    Failed(String),
}
