//! The replica: the one door through which commands reach the tables, and reads leave them.
//!
//! A node is always a raft group member (a single node is a cluster of one): `propose`
//! encodes the command, hands it to `superx-raft`, and answers once a majority has it on disk
//! and this node applied it. Every node applies the same log into its own `Tables` through
//! [`AppState`], and publishes each applied task event to the local subscriptions. Reads run
//! on the local tables, after a linearizable barrier (read-index through the leader) unless
//! the caller asked for a fast local read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use superx_raft::{PeerAddr, RaftConfig, Replicated, StateMachine};

use super::{Command, Refusal, TableLimits, Tables, VersionedCommand};
use crate::codec;
use crate::config::{Config, parse_peers};
use crate::tasks::Subscriptions;

/// Why a proposal did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused the command; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No leader could take the write in time (an election, or no majority). Retryable.
    #[error("{0}")]
    Unavailable(String),
    /// The node is stopping or its storage failed.
    #[error("replication failed: {0}")]
    Failed(String),
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Sees every write acknowledged before the read began, on any node (read-index).
    Linearizable,
    /// This node's tables as they are: fastest, possibly behind the leader.
    Local,
}

/// What a committed command answers, as stored in the raft response.
#[derive(bincode::Encode, bincode::Decode)]
enum ApplyOutcome {
    V1(Result<(), Refusal>),
}

/// The application state raft replicates: the tables, and where applied events go.
pub struct AppState {
    tables: Tables,
    limits: TableLimits,
    subscriptions: Arc<Subscriptions>,
}

impl StateMachine for AppState {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let outcome = match codec::decode::<VersionedCommand>(command) {
            Ok(VersionedCommand::V1(command)) => self.tables.apply(command).map(|event| {
                // Under raft's write lock on the state: subscribers see apply order.
                if let Some(event) = event {
                    self.subscriptions.publish(event);
                }
            }),
            Err(e) => Err(Refusal::Undecodable(e.to_string())),
        };
        codec::encode(&ApplyOutcome::V1(outcome))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.tables.snapshot()
    }

    fn snapshot_later(&self) -> Box<dyn FnOnce() -> Vec<u8> + Send + 'static> {
        let tables = self.tables.clone();
        Box::new(move || tables.snapshot())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.tables = Tables::restore(self.limits, snapshot).map_err(|e| e.to_string())?;
        Ok(())
    }
}

pub struct Replica {
    raft: Replicated<AppState>,
    subscriptions: Arc<Subscriptions>,
    /// Voters the configured cluster has once formed: until then the first node is a voter
    /// alone, and a write it acknowledged would be on one disk only.
    voters_expected: usize,
    formed: AtomicBool,
    write_timeout: Duration,
}

/// A point-in-time view of replication, for `cluster/status`.
pub type ReplicaStatus = superx_raft::RaftStatus;

/// The raft settings of this node, from the config.
pub fn raft_config(config: &Config) -> Result<RaftConfig, String> {
    let r = &config.raft;
    let peers: BTreeMap<u64, PeerAddr> =
        parse_peers(&r.peers)?.into_iter().map(|p| (p.id, PeerAddr { raft: p.raft, api: p.api })).collect();
    let node_id = config.server.node_id;
    let advertise = peers.get(&node_id).cloned().unwrap_or_else(|| PeerAddr {
        raft: if r.advertise.is_empty() { r.listen.clone() } else { r.advertise.clone() },
        api: if r.api_advertise.is_empty() { config.server.listen.clone() } else { r.api_advertise.clone() },
    });
    Ok(RaftConfig {
        node_id,
        data_dir: Path::new(&config.server.data_dir).join("raft"),
        raft_listen: r.listen.parse().map_err(|e| format!("raft.listen: {e}"))?,
        advertise,
        peers,
        voters_max: r.voters_max as usize,
        election_timeout_ms: (r.election_timeout_min_ms, r.election_timeout_max_ms),
        heartbeat_ms: r.heartbeat_ms,
        snapshot_logs_since_last: r.snapshot_logs_since_last,
        snapshot_logs_keep: r.snapshot_logs_keep,
        write_timeout_ms: r.write_timeout_ms,
        read_timeout_ms: r.read_timeout_ms,
        ..RaftConfig::default()
    })
}

impl Replica {
    /// Opens this node's raft storage in the data dir, replays it, and joins the cluster.
    pub async fn start(
        config: RaftConfig,
        limits: TableLimits,
        subscriptions: Arc<Subscriptions>,
    ) -> anyhow::Result<Self> {
        let voters_expected = config.peers.len().min(config.voters_max).max(1);
        let write_timeout = Duration::from_millis(config.write_timeout_ms);
        let state = AppState { tables: Tables::new(limits), limits, subscriptions: subscriptions.clone() };
        let raft = Replicated::start(config, state).await?;
        Ok(Replica { raft, subscriptions, voters_expected, formed: AtomicBool::new(false), write_timeout })
    }

    /// Waits (up to the write timeout) until the cluster has its configured voters, so that
    /// "acknowledged" means "on a majority of the configured cluster" from the first write.
    async fn wait_formed(&self) -> Result<(), ProposeError> {
        if self.formed.load(Ordering::Acquire) {
            return Ok(());
        }
        let expected = self.voters_expected;
        let (status, formed) = self.raft.wait_status(self.write_timeout, |s| s.voters.len() >= expected).await;
        if !formed {
            let have = status.voters.len();
            return Err(ProposeError::Unavailable(format!(
                "the cluster is forming ({have} of {expected} voters); retry"
            )));
        }
        self.formed.store(true, Ordering::Release);
        Ok(())
    }

    /// The subscriptions that applied task events are published to.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Commits and applies a command; answers after it is applied on this node.
    pub async fn propose(&self, command: Command) -> Result<(), ProposeError> {
        self.wait_formed().await?;
        let request_id = uuid::Uuid::new_v4().as_u128();
        let bytes = codec::encode(&VersionedCommand::V1(command));
        let response = self.raft.propose(request_id, bytes).await.map_err(|e| match e {
            superx_raft::ProposeError::NoLeader => {
                ProposeError::Unavailable("the cluster has no leader right now; retry".into())
            }
            superx_raft::ProposeError::Timeout => {
                ProposeError::Unavailable("the write was not confirmed in time; retry".into())
            }
            other => ProposeError::Failed(other.to_string()),
        })?;
        match codec::decode::<ApplyOutcome>(&response) {
            Ok(ApplyOutcome::V1(outcome)) => outcome.map_err(ProposeError::Refused),
            Err(e) => Err(ProposeError::Failed(format!("unreadable apply outcome: {e}"))),
        }
    }

    /// Waits until this node's tables reflect every write acknowledged before the call
    /// (nothing to wait for in `Local` mode).
    pub async fn barrier(&self, mode: ReadMode) -> Result<(), ProposeError> {
        if mode == ReadMode::Local {
            return Ok(());
        }
        self.raft.read_linearizable(|_| ()).await.map_err(|e| match e {
            superx_raft::ReadError::Fatal(m) => ProposeError::Failed(m),
            other => ProposeError::Unavailable(format!("{other}; retry, or read with SuperX-Read: local")),
        })
    }

    /// Runs a read against the local tables.
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        self.raft.read_local(|state| f(&state.tables))
    }

    /// True when a leader is known and this node has applied what it knows is committed.
    pub fn is_ready(&self) -> bool {
        self.raft.is_ready()
    }

    pub fn status(&self) -> ReplicaStatus {
        self.raft.status()
    }

    pub async fn shutdown(&self) {
        self.raft.shutdown().await;
    }
}
