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

use superx_raft::{MembershipControl, PeerAddr, RaftConfig, Replicated, StateMachine};

use super::{ArchiveCommand, Command, Refusal, SettingsV2, TableLimits, Tables, VersionedCommand};
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
    /// This node has as many writes waiting as it may queue. Retryable.
    #[error("{0}")]
    Overloaded(String),
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
    /// For a sequence: how many commands were applied, and the refusal that stopped it.
    V1Sequence {
        applied: u32,
        refused: Option<Refusal>,
    },
    /// A command's outcome with, for a task command, the task's event count after it.
    V2(Result<Option<u64>, Refusal>),
    /// For a sequence: the event count after each command applied (its length is how many
    /// were), and the refusal that stopped it.
    V2Sequence {
        events: Vec<Option<u64>>,
        refused: Option<Refusal>,
    },
}

/// The application state raft replicates: the tables, and where applied events go.
pub struct AppState {
    tables: Tables,
    limits: TableLimits,
    subscriptions: Arc<Subscriptions>,
}

impl AppState {
    /// Applies a command; for a task command, answers the task's event count after it.
    fn apply_one(&mut self, command: Command) -> Result<Option<u64>, Refusal> {
        let event = self.tables.apply(command)?;
        // Under raft's write lock on the state: subscribers see apply order.
        Ok(event.map(|event| {
            let events = event.events;
            self.subscriptions.publish(event);
            events
        }))
    }
}

impl StateMachine for AppState {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let outcome = match codec::decode::<VersionedCommand>(command) {
            Ok(VersionedCommand::V1(command)) => ApplyOutcome::V2(self.apply_one(command)),
            Ok(VersionedCommand::V1Settings(settings)) => {
                self.tables.apply_settings(settings.into());
                ApplyOutcome::V1(Ok(()))
            }
            Ok(VersionedCommand::V2Settings(settings)) => {
                self.tables.apply_settings(settings);
                ApplyOutcome::V1(Ok(()))
            }
            Ok(VersionedCommand::V1Archive(command)) => {
                self.tables.apply_archive(&command);
                ApplyOutcome::V1(Ok(()))
            }
            Ok(VersionedCommand::V1Push(command)) => {
                self.tables.apply_push(&command);
                ApplyOutcome::V1(Ok(()))
            }
            Ok(VersionedCommand::V1Keys(command)) => ApplyOutcome::V1(self.tables.apply_keys(&command)),
            Ok(VersionedCommand::V1Limits(command)) => ApplyOutcome::V1(self.tables.apply_limits(&command)),
            Ok(VersionedCommand::V1Sequence(commands)) => {
                let mut events = Vec::with_capacity(commands.len());
                let mut refused = None;
                for command in commands {
                    match self.apply_one(command) {
                        Ok(count) => events.push(count),
                        Err(refusal) => {
                            refused = Some(refusal);
                            break;
                        }
                    }
                }
                ApplyOutcome::V2Sequence { events, refused }
            }
            Err(e) => ApplyOutcome::V1(Err(Refusal::Undecodable(e.to_string()))),
        };
        codec::encode(&outcome)
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
        membership: if config.cluster.strategy == "static" {
            MembershipControl::Static
        } else {
            MembershipControl::External
        },
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
        bootstrap_expect: usize,
    ) -> anyhow::Result<Self> {
        // Static peers: wait for them (up to voters_max). Formed by gossip: the founders are
        // voters from the first entry, so any membership with `bootstrap_expect` voters is whole.
        let voters_expected = match config.membership {
            MembershipControl::Static => config.peers.len(),
            MembershipControl::External => bootstrap_expect,
        }
        .min(config.voters_max)
        .max(1);
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

    /// The raft node, for membership operations.
    pub fn raft(&self) -> &Replicated<AppState> {
        &self.raft
    }

    /// The apply-affecting settings the log carries, if any were set yet.
    pub fn settings(&self) -> Option<SettingsV2> {
        self.read(|t| t.settings())
    }

    /// Commits new apply-affecting settings for every node.
    pub async fn propose_settings(&self, settings: SettingsV2) -> Result<(), ProposeError> {
        self.propose_plain(VersionedCommand::V2Settings(settings)).await
    }

    /// Commits what the archiver did.
    pub async fn propose_archive(&self, command: ArchiveCommand) -> Result<(), ProposeError> {
        self.propose_plain(VersionedCommand::V1Archive(command)).await
    }

    /// Commits what the push deliverer did.
    pub async fn propose_push(&self, command: super::PushCommand) -> Result<(), ProposeError> {
        self.propose_plain(VersionedCommand::V1Push(command)).await
    }

    /// Commits an API key's creation or revocation.
    pub async fn propose_keys(&self, command: super::KeyCommand) -> Result<(), ProposeError> {
        self.propose_plain(VersionedCommand::V1Keys(command)).await
    }

    /// Commits a configured rate limit.
    pub async fn propose_limits(&self, command: super::LimitCommand) -> Result<(), ProposeError> {
        self.propose_plain(VersionedCommand::V1Limits(command)).await
    }

    /// Commits a command whose outcome is a single result.
    async fn propose_plain(&self, command: VersionedCommand) -> Result<(), ProposeError> {
        self.propose_single(command).await.map(|_| ())
    }

    /// A single command's outcome, in either answer version (a leader of the previous version
    /// answers without event counts).
    async fn propose_single(&self, command: VersionedCommand) -> Result<Option<u64>, ProposeError> {
        match self.propose_versioned(command).await? {
            ApplyOutcome::V1(outcome) => outcome.map(|()| None).map_err(ProposeError::Refused),
            ApplyOutcome::V2(outcome) => outcome.map_err(ProposeError::Refused),
            ApplyOutcome::V1Sequence { .. } | ApplyOutcome::V2Sequence { .. } => {
                Err(ProposeError::Failed("a sequence outcome for one command".into()))
            }
        }
    }

    /// The subscriptions that applied task events are published to.
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Commits and applies a command; answers after it is applied on this node, with the
    /// task's event count after it for a task command (`None` otherwise, or when the leader
    /// that applied it does not count events yet).
    pub async fn propose(&self, command: Command) -> Result<Option<u64>, ProposeError> {
        self.propose_single(VersionedCommand::V1(command)).await
    }

    /// Commits `commands` in one log entry and applies them in order, stopping at the first
    /// refusal. Answers the event count after each command that was applied (as
    /// [`Replica::propose`]; as many as were applied), and why the rest were not (if they were
    /// not). Nothing is known to be applied when the write itself failed (none, with the error).
    pub async fn propose_sequence(&self, commands: Vec<Command>) -> (Vec<Option<u64>>, Result<(), ProposeError>) {
        let expected = commands.len();
        let (events, refused) = match self.propose_versioned(VersionedCommand::V1Sequence(commands)).await {
            Ok(ApplyOutcome::V2Sequence { events, refused }) => (events, refused),
            Ok(ApplyOutcome::V1Sequence { applied, refused }) => (vec![None; applied as usize], refused),
            // An undecodable entry answers a single refusal.
            Ok(ApplyOutcome::V1(outcome)) => return (vec![], outcome.map_err(ProposeError::Refused)),
            Ok(ApplyOutcome::V2(outcome)) => return (vec![], outcome.map(|_| ()).map_err(ProposeError::Refused)),
            Err(e) => return (vec![], Err(e)),
        };
        let applied = events.len();
        let outcome = match refused {
            Some(r) => Err(ProposeError::Refused(r)),
            None if applied == expected => Ok(()),
            None => Err(ProposeError::Failed(format!("{applied} of {expected} applied, no refusal"))),
        };
        (events, outcome)
    }

    async fn propose_versioned(&self, command: VersionedCommand) -> Result<ApplyOutcome, ProposeError> {
        self.wait_formed().await?;
        let request_id = uuid::Uuid::new_v4().as_u128();
        let bytes = codec::encode(&command);
        let proposed = std::time::Instant::now();
        let response = self.raft.propose(request_id, bytes).await.map_err(|e| match e {
            superx_raft::ProposeError::NoLeader => {
                ProposeError::Unavailable("the cluster has no leader right now; retry".into())
            }
            superx_raft::ProposeError::Timeout => {
                ProposeError::Unavailable("the write was not confirmed in time; retry".into())
            }
            superx_raft::ProposeError::Stopped => {
                ProposeError::Unavailable("this node is shutting down; retry (another node serves)".into())
            }
            superx_raft::ProposeError::Busy { queued } => {
                ProposeError::Overloaded(format!("this node has {queued} writes waiting, its limit; retry later"))
            }
            other => ProposeError::Failed(other.to_string()),
        })?;
        crate::telemetry::metrics::raft_commit(proposed.elapsed().as_secs_f64());
        codec::decode::<ApplyOutcome>(&response)
            .map_err(|e| ProposeError::Failed(format!("unreadable apply outcome: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use crate::state::task::tests::{status, task};

    fn state() -> (AppState, Arc<Subscriptions>) {
        let subscriptions = Arc::new(Subscriptions::new(
            16,
            4,
            crate::tasks::HistoryLimits { tasks_max: 16, events_max: 16, bytes_max: 1 << 20 },
        ));
        let limits = TableLimits { tasks_max: 10 };
        (AppState { tables: Tables::new(limits), limits, subscriptions: subscriptions.clone() }, subscriptions)
    }

    fn update(id: &str, state: TaskState) -> Command {
        Command::UpdateStatus { agent_id: "a".into(), update: status(id, state, None), at_ms: 2 }
    }

    #[test]
    fn a_sequence_applies_in_order_and_stops_at_the_first_refusal() {
        let (mut app, subscriptions) = state();
        app.apply(&codec::encode(&VersionedCommand::V1(Command::RecordTask {
            agent_id: "a".into(),
            task: task("t1", TaskState::Working),
            at_ms: 1,
        })));
        let mut events = subscriptions.subscribe("t1").unwrap();
        let sequence = VersionedCommand::V1Sequence(vec![
            update("t1", TaskState::Working),
            update("t1", TaskState::Completed),
            // Refused: the task is terminal now. What follows is not applied either, even
            // though, alone, it would be (another task).
            update("t1", TaskState::Working),
            Command::RecordTask { agent_id: "a".into(), task: task("t2", TaskState::Working), at_ms: 3 },
        ]);
        let outcome = codec::decode::<ApplyOutcome>(&app.apply(&codec::encode(&sequence))).unwrap();
        let ApplyOutcome::V2Sequence { events: counts, refused } = outcome else {
            panic!("a sequence answers a sequence")
        };
        assert_eq!(counts, [Some(2), Some(3)], "each applied command answers the task's event count after it");
        assert_eq!(refused, Some(Refusal::Transition(crate::state::TransitionError::Terminal("t1".into()))));
        assert_eq!(app.tables.task("t1").unwrap().task.status.state, TaskState::Completed);
        assert!(app.tables.task("t2").is_none());
        // Subscribers got each applied command as its own event, in order.
        let states: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.state).collect();
        assert_eq!(states, [TaskState::Working, TaskState::Completed]);
    }

    #[test]
    fn a_whole_sequence_applies() {
        let (mut app, _) = state();
        let sequence = VersionedCommand::V1Sequence(vec![
            Command::RecordTask { agent_id: "a".into(), task: task("t1", TaskState::Submitted), at_ms: 1 },
            update("t1", TaskState::Working),
            update("t1", TaskState::InputRequired),
        ]);
        let outcome = codec::decode::<ApplyOutcome>(&app.apply(&codec::encode(&sequence))).unwrap();
        assert!(matches!(outcome, ApplyOutcome::V2Sequence { ref events, refused: None } if events.len() == 3));
        assert_eq!(app.tables.task("t1").unwrap().task.status.state, TaskState::InputRequired);
    }
}
