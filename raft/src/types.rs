//! The openraft type config and the types it carries: what a log entry holds, what applying
//! it answers, and the node metadata stored in membership. None of these leave the crate.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::PeerAddr;
use crate::codec::Blob;

/// One client command with its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Request {
    pub id: u128,
    pub command: Blob,
}

/// The payload of one normal log entry: every command the batcher gathered at once, applied
/// in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub requests: Vec<Request>,
}

/// What applying one entry answers: one response per request of the batch, in order; empty
/// for blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchResponse {
    pub responses: Vec<Blob>,
}

/// Node metadata kept in the raft membership: how to reach a node's raft listener and its
/// public API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerNode {
    pub raft: String,
    pub api: String,
}

impl From<&PeerAddr> for PeerNode {
    fn from(addr: &PeerAddr) -> Self {
        PeerNode { raft: addr.raft.clone(), api: addr.api.clone() }
    }
}

openraft::declare_raft_types!(
    /// The openraft type config of superx-raft.
    pub(crate) TypeConfig:
        D = Batch,
        R = BatchResponse,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<u64>;
pub(crate) type Vote = openraft::Vote<u64>;
pub(crate) type StoredMembership = openraft::StoredMembership<u64, PeerNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, PeerNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<u64>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Metrics = openraft::RaftMetrics<u64, PeerNode>;

/// The log index of an optional log id; 0 when there is none. Index 0 is the initial
/// membership entry, which carries no command, so "none" and "0" never need telling apart.
pub(crate) fn index_of(log_id: Option<&LogId>) -> u64 {
    log_id.map_or(0, |id| id.index)
}
