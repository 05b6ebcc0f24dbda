//! superx-raft: the replicated state machine under superx.
//!
//! The root crate gives it a deterministic [`StateMachine`] (apply, snapshot, restore); this
//! crate makes every command durable on a majority before answering, from any node. It never
//! sees A2A JSON, tasks or sqlx, and no openraft type appears in its public API.
//!
//! # Why openraft 0.9 (pinned `=0.9.25`)
//!
//! 0.9 is the stable line: its storage-v2 traits (`RaftLogStorage`, `RaftStateMachine`), its
//! storage test `Suite` and its chunked snapshot transport are settled, while each 0.10 alpha
//! breaks the API. The 0.10 line's main draw for us is write batching inside openraft (merged
//! client writes, non-blocking log IO); in 0.9 the core appends one entry per `client_write`
//! and awaits its flush before taking the next message. We get group commit anyway, one level
//! up: [`Replicated::propose`] queues the command, and a batcher puts every command waiting at
//! that moment into ONE log entry (a batch of `(request_id, command)` pairs), so one append,
//! one fsync and one replication round carry many client writes. That is the proposal batching
//! of etcd and TiKV; it also keeps entries few, which makes replication and apply cheaper than
//! one entry per command would. Nothing else we need is missing from 0.9: read-index
//! (`get_read_log_id`), learners and joint membership changes, snapshot install.
//!
//! # Layout
//!
//! - `lib.rs`: this map, the [`StateMachine`] trait and the public re-exports.
//! - `config.rs`: [`RaftConfig`], every limit with its default, and the openraft `Config` made
//!   from it.
//! - `error.rs`: [`StartError`], [`ProposeError`], [`ReadError`].
//! - `codec.rs`: the only place bytes are made: bincode 2 for log entries, snapshots, vote and
//!   raft RPC bodies, with a format-version byte in front of everything stored on disk.
//! - `types.rs`: the openraft type config, the log payload (a batch of requests) and the node
//!   metadata carried in membership (raft address and public API address).
//! - `storage/`: durable state in one redb file in `data_dir`: `log_store.rs` (log entries,
//!   vote, committed and purged ids; one fsync'd transaction per append), `sm_store.rs` (the
//!   app's state machine behind a lock, the idempotency map, snapshots), `dedup.rs` (the bounded
//!   request-id → response map).
//! - `network/`: the internal HTTP listener (`server.rs`, axum) and its client (`client.rs`, one
//!   pooled reqwest client): append-entries, vote, install-snapshot chunks, forward-write,
//!   read-index. `mod.rs` holds the wire types and routes.
//! - `node.rs`: [`Replicated`]: start, status, readiness, shutdown.
//! - `propose.rs`: the write path: batcher, local commit on the leader, one-hop forwarding from
//!   a follower, waiting out elections up to `write_timeout_ms`.
//! - `read.rs`: linearizable reads by read-index, also on followers; concurrent reads share one
//!   leadership-confirming round.
//! - `route.rs`: where the leader is, and waiting for that to change.
//! - `status.rs`: [`RaftStatus`] and [`Role`].
//! - `bootstrap.rs`: with static peers, who initializes the cluster (lowest id, empty storage
//!   only) and the leader's reconciler that turns configured peers into learners, then voters
//!   up to a cap.
//! - `membership.rs`: membership for an application that manages it itself
//!   ([`MembershipControl::External`]): a view of members, voters, learners and replication
//!   progress, and one-change-at-a-time operations (initialize, add learner, set voters,
//!   remove nodes, update addresses).
//!
//! # Wiring it in
//!
//! `Replicated::start(config, sm)` binds `raft_listen` itself and serves the internal routes
//! (`/raft/*`) there; the application never mounts them on its public router. The listener has
//! no authentication: keep it on a private network. The crate installs rustls' ring provider as
//! the process default if none is installed yet (reqwest needs one to build a client, even for
//! plain http). Call `shutdown().await` before exiting or reopening the same `data_dir` in one
//! process. A node is ready for traffic when `is_ready()`; `status()` feeds `cluster/status`.
//!
//! # Invariants
//!
//! - **A command is answered only after its entry is committed (on disk on a majority) and
//!   applied locally.** Nothing acknowledged is lost to a crash or a leader change.
//! - **Apply is deterministic and runs in log order on every node**, including the idempotency
//!   map: a request id applies at most once while it is among the last `dedup_entries_max`.
//! - **A write crosses at most one hop**: a follower forwards to the leader, which commits or
//!   refuses, never forwards.
#![forbid(unsafe_code)]

mod bootstrap;
mod codec;
mod config;
mod error;
mod handoff;
mod membership;
mod network;
mod node;
mod propose;
mod read;
mod route;
mod status;
mod storage;
mod types;

pub use config::{MembershipControl, PeerAddr, RaftConfig};
pub use error::{MembershipError, ProposeError, ReadError, StartError};
pub use handoff::HandOff;
pub use membership::MembershipView;
pub use node::Replicated;
pub use status::{RaftStatus, Role};

/// A node's identity in the cluster; stable across restarts.
pub type NodeId = u64;

/// The application's deterministic state machine.
///
/// `apply` runs on every node in log order and must give the same result everywhere: no clock,
/// no randomness, no I/O. The proposer stamps time and ids into the command instead.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed command (bytes encoded by the app); returns the response bytes.
    /// Deterministic.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;
    /// Serializes the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Captures the state cheaply now and serializes it later, off the state lock, so a large
    /// snapshot does not stall `apply`. The default serializes at once; a state machine with
    /// cheap clones (persistent maps) should clone here and encode in the closure.
    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Vec<u8> + Send + 'static> {
        let bytes = self.snapshot();
        Box::new(move || bytes)
    }
    /// Replaces the whole state from a snapshot.
    ///
    /// On error the state must be left as it was: the node then stops rather than serve a
    /// state it cannot vouch for.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
