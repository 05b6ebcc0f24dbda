//! The errors this crate returns to the application, one enum per entry point.
//!
//! A variant exists when a caller branches on it: `NoLeader` and `Timeout` are retryable (with
//! the same request id for writes), `Fatal` means the node is stopping or broken.

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is inconsistent; the message lists every problem.
    #[error("invalid raft config: {0}")]
    Config(String),
    /// The data directory or the database in it could not be opened or is damaged.
    #[error("raft storage: {0}")]
    Storage(String),
    /// The internal raft listener could not be bound.
    #[error("raft listener {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    /// openraft refused to start or initialize.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal was not (known to be) applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader with a majority became known within `write_timeout_ms` (an election is in
    /// progress, or a majority is down). Retryable with the same request id.
    #[error("no raft leader within the write timeout")]
    NoLeader,
    /// A leader was known but the write was not confirmed within `write_timeout_ms`; it may
    /// still commit. Retryable with the same request id.
    #[error("raft write timed out")]
    Timeout,
    /// `propose_queue_max` proposals already wait for a batch on this node; nothing was
    /// proposed. Retryable (later, or on another node): the node sheds load at once instead of
    /// queueing without end.
    #[error("{queued} proposals already wait on this node (propose_queue_max)")]
    Busy { queued: usize },
    /// The command exceeds `command_bytes_max`; nothing was proposed.
    #[error("command of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    /// The node is shutting down or its storage failed.
    #[error("raft failure: {0}")]
    Fatal(String),
    /// This node's raft was shut down (the process is stopping); nothing was proposed.
    /// Retryable on another node.
    #[error("raft node is shut down")]
    Stopped,
}

/// Why a linearizable read could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// No leader became known within `read_timeout_ms`. Retryable.
    #[error("no raft leader within the read timeout")]
    NoLeader,
    /// The leader did not confirm its leadership, or this node did not apply up to the read
    /// index, within `read_timeout_ms`. Retryable.
    #[error("raft read timed out")]
    Timeout,
    /// The node is shutting down or its storage failed.
    #[error("raft failure: {0}")]
    Fatal(String),
}

/// Why a membership operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Only the leader changes membership; this node is not it (any more).
    #[error("this node is not the raft leader")]
    NotLeader,
    /// A previous membership change is still in progress (joint configuration); retry later.
    #[error("a membership change is in progress")]
    InProgress,
    /// The cluster is already initialized (initialize only).
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    /// The change would leave no voter, or names an unknown node.
    #[error("invalid membership change: {0}")]
    Invalid(String),
    /// Raft refused or failed otherwise.
    #[error("membership change failed: {0}")]
    Failed(String),
}
