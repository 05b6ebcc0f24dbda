//! Node configuration: identity, addresses, static peers and every limit, with defaults.
//!
//! The root crate fills a [`RaftConfig`] from its own config tree; this module checks it and
//! derives the openraft `Config` from it. Limits that change what `apply` does (today only
//! `dedup_entries_max`) must be equal on every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::NodeId;
use crate::error::StartError;

/// How other nodes reach a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerAddr {
    /// `host:port` of the node's internal raft listener.
    pub raft: String,
    /// `host:port` of the node's public API; carried in membership so followers can name the
    /// leader's API address.
    pub api: String,
}

/// Who decides the membership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MembershipControl {
    /// `peers` is the membership: the lowest id initializes on empty storage, and the leader's
    /// reconciler adds the other peers as learners and promotes them up to `voters_max`.
    #[default]
    Static,
    /// The application decides: nothing initializes or changes membership by itself; the
    /// application calls [`crate::Replicated::initialize`], `add_learner`, `set_voters`...
    External,
}

/// Everything a node needs to join or form a cluster.
#[derive(Clone, Debug)]
pub struct RaftConfig {
    /// This node's id; stable across restarts.
    pub node_id: NodeId,
    /// Durable storage (one redb file) lives here.
    pub data_dir: PathBuf,
    /// The internal raft listener, separate from the public API.
    pub raft_listen: SocketAddr,
    /// How others reach this node.
    pub advertise: PeerAddr,
    /// Static membership, this node included; empty means a single-node cluster.
    pub peers: BTreeMap<NodeId, PeerAddr>,
    /// Whether `peers` drives membership, or the application does.
    pub membership: MembershipControl,
    /// Voters wanted (3 or 5): the lowest caught-up ids become voters, the rest stay learners.
    pub voters_max: usize,
    /// A follower starts an election after a random silence in `[min, max)` milliseconds.
    /// 400..800 ms lets a cluster elect a new leader well under the 2 s write-resume target
    /// without electing on every scheduling hiccup of a loaded 2-core machine.
    pub election_timeout_ms: (u64, u64),
    /// The leader's heartbeat period; a quarter of the election timeout minimum.
    pub heartbeat_ms: u64,
    /// Build a snapshot (and purge the log behind it) after this many entries since the last
    /// one. Each entry is a batch of commands, so 5000 entries is at least 5000 commands.
    pub snapshot_logs_since_last: u64,
    /// Entries kept behind a snapshot so a briefly lagging follower catches up from the log
    /// instead of a full snapshot.
    pub snapshot_logs_keep: u64,
    /// Size of one install-snapshot chunk; well under `rpc_body_bytes_max`.
    pub snapshot_chunk_bytes_max: u64,
    /// Timeout of one install-snapshot chunk RPC (includes the receiver's disk write).
    pub snapshot_chunk_timeout_ms: u64,
    /// How long a write waits (e.g. during an election) before a retryable error; covers one
    /// election with margin.
    pub write_timeout_ms: u64,
    /// How long a linearizable read waits for a leader and for the local apply to catch up.
    pub read_timeout_ms: u64,
    /// Timeout of one forward-write or read-index attempt to the leader; on expiry the call is
    /// retried (same request id) until `write_timeout_ms` runs out.
    pub forward_timeout_ms: u64,
    /// Pause before re-routing a write or read when no leader is known or it did not answer,
    /// unless the leader view changes first.
    pub retry_backoff_ms: u64,
    /// Idempotency keys remembered (FIFO by count); part of the replicated state. 100k keys
    /// cover several minutes of retries at 10k writes/s.
    pub dedup_entries_max: usize,
    /// Commands per log entry at most (one batch).
    pub propose_batch_entries_max: usize,
    /// A batch closes once its commands reach this many bytes.
    pub propose_batch_bytes_max: usize,
    /// Batches this node has being committed at once; meanwhile new proposals queue up and
    /// make the next batch bigger. Each log entry has a fixed cost on the leader (append,
    /// fsync, replication round, forward hop), so fewer bigger batches win: 3 in-process nodes
    /// on a 2-core box with 256 clients did ~37k writes/s with 1 and ~21k with 4. At low load 1
    /// costs at most one commit of extra wait.
    pub propose_batches_in_flight_max: usize,
    /// Proposals waiting for a batch; when full, `propose` refuses at once with
    /// `ProposeError::Busy` (load shedding: a queue that only grows adds latency to every
    /// write and memory to the node, and the client may as well retry elsewhere). About a
    /// second of writes at this node's peak.
    pub propose_queue_max: usize,
    /// Linearizable reads waiting for the next read-index round; `read_linearizable` waits for
    /// room when full.
    pub read_queue_max: usize,
    /// `is_ready` tolerates the applied index trailing the committed index by this many
    /// entries: on a busy node apply always trails commit by a few entries, and `/ready` must
    /// not flap under load; a node replaying its log after a restart is thousands behind.
    pub ready_lag_entries_max: u64,
    /// Largest command accepted; above the root crate's 4 MiB request body limit.
    pub command_bytes_max: usize,
    /// Log entries per append-entries RPC at most.
    pub append_batch_entries_max: u64,
    /// Largest raft RPC body sent or accepted; a larger append is split by entry count.
    pub rpc_body_bytes_max: usize,
    /// TCP connect timeout towards a peer's raft listener.
    pub rpc_connect_timeout_ms: u64,
    /// Pause before retrying a peer whose raft listener refused the connection.
    pub unreachable_backoff_ms: u64,
    /// How often the leader's reconciler compares membership with `peers`.
    pub reconcile_interval_ms: u64,
    /// A learner is promoted to voter once it is at most this many entries behind the leader.
    pub promote_lag_entries_max: u64,
    /// How long `shutdown` waits for the storage to be released by openraft's tasks.
    pub shutdown_timeout_ms: u64,
    /// The cluster secret: with it, the raft listener accepts only requests tagged with it and
    /// this node tags its own and checks its peers' answers (`network/auth.rs`). None: the
    /// listener is open to anyone who reaches it.
    pub keyring: Option<superx_keyring::Keyring>,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            node_id: 1,
            data_dir: PathBuf::from("data/raft"),
            raft_listen: SocketAddr::from(([127, 0, 0, 1], 7380)),
            advertise: PeerAddr { raft: "127.0.0.1:7380".to_owned(), api: "127.0.0.1:8080".to_owned() },
            peers: BTreeMap::new(),
            membership: MembershipControl::Static,
            voters_max: 3,
            election_timeout_ms: (400, 800),
            heartbeat_ms: 100,
            snapshot_logs_since_last: 5000,
            snapshot_logs_keep: 1000,
            snapshot_chunk_bytes_max: 4 << 20,
            snapshot_chunk_timeout_ms: 5000,
            write_timeout_ms: 3000,
            read_timeout_ms: 3000,
            forward_timeout_ms: 2000,
            retry_backoff_ms: 20,
            dedup_entries_max: 100_000,
            propose_batch_entries_max: 1024,
            propose_batch_bytes_max: 1 << 20,
            propose_batches_in_flight_max: 1,
            propose_queue_max: 8_192,
            read_queue_max: 65_536,
            ready_lag_entries_max: 64,
            command_bytes_max: 8 << 20,
            append_batch_entries_max: 64,
            rpc_body_bytes_max: 64 << 20,
            rpc_connect_timeout_ms: 1000,
            unreachable_backoff_ms: 200,
            reconcile_interval_ms: 500,
            promote_lag_entries_max: 100,
            shutdown_timeout_ms: 5000,
            keyring: None,
        }
    }
}

impl RaftConfig {
    /// Checks the config; all problems are reported together.
    pub(crate) fn validate(&self) -> Result<(), StartError> {
        let mut problems = Vec::new();
        let (min, max) = self.election_timeout_ms;
        if min == 0 || min >= max {
            problems.push(format!("election_timeout_ms ({min}, {max}) must satisfy 0 < min < max"));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= min {
            problems.push("heartbeat_ms must be above 0 and below election_timeout_ms.0".into());
        }
        if self.voters_max == 0 {
            problems.push("voters_max must be at least 1".into());
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            problems.push(format!("peers must include this node ({})", self.node_id));
        }
        let entry_bytes_max = self.propose_batch_bytes_max + self.command_bytes_max;
        if entry_bytes_max >= self.rpc_body_bytes_max {
            problems.push("propose_batch_bytes_max + command_bytes_max must stay below rpc_body_bytes_max".into());
        }
        if self.snapshot_chunk_bytes_max as usize >= self.rpc_body_bytes_max / 2 {
            problems.push("snapshot_chunk_bytes_max must stay below half of rpc_body_bytes_max".into());
        }
        problems.extend(self.zero_limits());
        if problems.is_empty() { Ok(()) } else { Err(StartError::Config(problems.join("; "))) }
    }

    /// Names every limit that must not be zero but is.
    fn zero_limits(&self) -> Vec<String> {
        let limits = [
            ("snapshot_logs_since_last", self.snapshot_logs_since_last),
            ("write_timeout_ms", self.write_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("forward_timeout_ms", self.forward_timeout_ms),
            ("dedup_entries_max", self.dedup_entries_max as u64),
            ("propose_batch_entries_max", self.propose_batch_entries_max as u64),
            ("propose_batches_in_flight_max", self.propose_batches_in_flight_max as u64),
            ("propose_queue_max", self.propose_queue_max as u64),
            ("read_queue_max", self.read_queue_max as u64),
            ("append_batch_entries_max", self.append_batch_entries_max),
            ("reconcile_interval_ms", self.reconcile_interval_ms),
        ];
        limits.iter().filter(|(_, v)| *v == 0).map(|(name, _)| format!("{name} must be above 0")).collect()
    }

    /// The openraft configuration derived from ours.
    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, StartError> {
        let config = openraft::Config {
            cluster_name: "superx".to_owned(),
            election_timeout_min: self.election_timeout_ms.0,
            election_timeout_max: self.election_timeout_ms.1,
            heartbeat_interval: self.heartbeat_ms,
            install_snapshot_timeout: self.snapshot_chunk_timeout_ms,
            max_payload_entries: self.append_batch_entries_max,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            snapshot_max_chunk_size: self.snapshot_chunk_bytes_max,
            max_in_snapshot_log_to_keep: self.snapshot_logs_keep,
            ..openraft::Config::default()
        };
        config.validate().map_err(|e| StartError::Config(format!("raft config: {e}")))
    }

    /// The peers, or this node alone when no peers are configured.
    pub(crate) fn members(&self) -> BTreeMap<NodeId, PeerAddr> {
        if self.peers.is_empty() {
            BTreeMap::from([(self.node_id, self.advertise.clone())])
        } else {
            self.peers.clone()
        }
    }
}
