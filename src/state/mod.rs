//! The state machine: `Command`s and the deterministic `apply` that turns them into the
//! per-node in-memory [`Tables`].
//!
//! Every state change in superx is a `Command`, proposed through the [`Replica`] and applied
//! here in log order. `apply` reads no clock, draws no random numbers and does no I/O: the
//! proposer stamps time and ids into the command, so every node that applies the same log
//! holds the same tables. Side effects (upstream calls, webhooks, archive writes) happen
//! outside, before proposing or after the commit.

pub mod agent;
pub mod keys;
pub mod limits;
mod list_index;
pub mod push;
mod replica;
mod tables;
pub mod task;

pub use agent::{AgentAuth, AgentRecord, AgentSettings, CachedCard, ClientAuth, OAuth2Client, SecretSource, Upstream};
pub use keys::{ApiKey, KeyCommand, KeyRole};
pub use limits::{LimitCommand, RateLimit};
pub use push::{PushAuth, PushCommand, PushConfig, PushFormat, PushStatus, StoredPushConfig};
pub use replica::{ProposeError, ReadMode, Replica, ReplicaStatus, raft_config};
pub use tables::{AgentEntry, ListPage, ListQuery, TableLimits, Tables, TaskEntry};
pub use task::{Artifact, ArtifactUpdate, StatusUpdate, Task, TaskChange, TaskStatus, TransitionError};

use crate::a2a::TaskState;

/// A state change, as stored in the log. Stored type: changing it is a compatibility change,
/// so new shapes get a new [`VersionedCommand`] variant rather than an edit.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub enum Command {
    /// Registers an agent or replaces its registration (its card is kept).
    UpsertAgent { agent: AgentRecord, at_ms: u64 },
    /// Removes an agent. Its tasks stay readable.
    DeleteAgent { id: String },
    /// Caches the card fetched for an agent.
    SetAgentCard { id: String, card: CachedCard },
    /// Records a task snapshot returned by its agent.
    RecordTask { agent_id: String, task: Task, at_ms: u64 },
    /// Applies a status update event from the agent.
    UpdateStatus { agent_id: String, update: StatusUpdate, at_ms: u64 },
    /// Applies an artifact update event from the agent.
    UpdateArtifact { agent_id: String, update: ArtifactUpdate, at_ms: u64 },
    /// Adds a client's message to a task's history (a follow-up the agent answers with a
    /// stream of updates, which never carry it), as the agent's own task manager does.
    AppendMessage { agent_id: String, task_id: String, message: crate::codec::Json, at_ms: u64 },
    /// Adds a push config to a task in memory, or replaces the config with its id (keeping
    /// its delivery status). A new config gets the task's events after this one.
    SetPushConfig { config: PushConfig, at_ms: u64 },
    /// Removes a push config (nothing, when it does not exist: delete is idempotent).
    DeletePushConfig { task_id: String, config_id: String },
    /// [`Command::RecordTask`] with the push configs the client's message set: they get
    /// this command's events (a new task's creation included).
    RecordTaskWithPush { agent_id: String, task: Task, at_ms: u64, push: Vec<PushConfig> },
    /// [`Command::RecordTaskWithPush`] by an authenticated caller: a task it creates is
    /// recorded with its `owner` (`auth::Principal::owner`); an existing task keeps its own,
    /// and one of another owner is refused ([`Refusal::OtherOwner`]) unless the caller is an
    /// admin (`sees_all`): an agent answering with a task another caller created never shows
    /// it. With auth off the proposer sends the commands above, so the log is what it was.
    RecordOwnedTask { agent_id: String, task: Task, at_ms: u64, push: Vec<PushConfig>, owner: String, sees_all: bool },
    /// [`Command::UpsertAgent`] with how the gateway authenticates to the agent
    /// ([`AgentAuth`]); a plain `UpsertAgent` registers the agent with none.
    UpsertAgentWithAuth { agent: AgentRecord, auth: AgentAuth, at_ms: u64 },
    /// [`Command::UpdateStatus`] unless the agent's task already has it
    /// ([`task::has_status`]), then nothing (no event). An agent's webhook may bring an update
    /// twice, to two nodes at once, or after the safety-net poll saw it; judged in apply, so
    /// concurrent deliveries commit it once.
    UpdateStatusOnce { agent_id: String, update: StatusUpdate, at_ms: u64 },
    /// [`Command::UpdateArtifact`] unless the agent's task already has the chunk
    /// ([`task::has_artifact`]), as [`Command::UpdateStatusOnce`].
    UpdateArtifactOnce { agent_id: String, update: ArtifactUpdate, at_ms: u64 },
}

/// What a committed command did to one task: the subscribers of that task get it, on every
/// node, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    pub task_id: String,
    pub context_id: String,
    /// The agent the task belongs to.
    pub agent_id: String,
    /// When the change was made (the proposer's clock, as the task's `updated_at_ms`).
    pub at_ms: u64,
    /// The task's update sequence after this change (subscribers skip events at or below the
    /// sequence of the snapshot they started from).
    pub seq: u64,
    /// The task's event count after this change ([`TaskEntry::events`]): its changes are the
    /// events numbered `events - changes.len() + 1 ..= events`.
    pub events: u64,
    /// The task's state after the change.
    pub state: TaskState,
    pub changes: Vec<TaskChange>,
}

impl TaskEvent {
    /// Each change with its event number.
    pub fn numbered_changes(&self) -> impl Iterator<Item = (u64, &TaskChange)> {
        let first = self.events + 1 - self.changes.len() as u64;
        (first..).zip(&self.changes)
    }
}

/// The envelope written to the log: a version tag before every command.
// Built once per proposal and encoded at once: the size difference between variants costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub enum VersionedCommand {
    V1(Command),
    /// Commands applied in order in one log entry, stopping at the first refusal: those after
    /// it are not applied. One stream's events that arrived together commit this way, with
    /// exactly the outcome of proposing them one by one and stopping at the first refusal.
    V1Sequence(Vec<Command>),
    /// Settings that change what `apply` does, the same on every node because they are in the
    /// log (a node's own config only proposes them).
    V1Settings(Settings),
    /// What the archiver did, committed after its I/O (apply only marks and evicts).
    V1Archive(ArchiveCommand),
    /// Settings with the archive switch.
    V2Settings(SettingsV2),
    /// What the push deliverer did, committed after its I/O.
    V1Push(PushCommand),
    /// An API key created or revoked (`keys/*`).
    V1Keys(KeyCommand),
    /// A configured rate limit set or cleared (an agent's spec).
    V1Limits(LimitCommand),
}

/// The apply-affecting settings carried in the log (first version). Stored type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Settings {
    /// `tasks.memory_max`: tasks kept in memory.
    pub tasks_max: u64,
}

/// The apply-affecting settings carried in the log. Stored type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SettingsV2 {
    /// `tasks.memory_max`: tasks kept in memory.
    pub tasks_max: u64,
    /// The cluster archives terminal tasks: a terminal task may leave memory only once the
    /// archive holds it (else a full table evicts the oldest terminal task, and it is gone).
    pub archive: bool,
}

impl From<Settings> for SettingsV2 {
    fn from(s: Settings) -> Self {
        SettingsV2 { tasks_max: s.tasks_max, archive: false }
    }
}

/// The archiver's commands. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum ArchiveCommand {
    /// The archive holds these tasks now (written and confirmed before this was proposed).
    /// Unknown, active or already archived ids are skipped.
    Archived { ids: Vec<String> },
    /// These tasks leave memory (the archiver's retention policy chose them). Only tasks that
    /// may leave are evicted: archived ones, or terminal ones with the archive off.
    Evict { ids: Vec<String> },
}

/// Why `apply` refused a command. A refused command changes nothing. Stored type (it is the
/// response of a committed command).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, bincode::Encode, bincode::Decode)]
pub enum Refusal {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("task {task} belongs to agent {owner}")]
    OwnedByOtherAgent { task: String, owner: String },
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("agent {0} not found")]
    AgentNotFound(String),
    #[error("the task table is full of active tasks ({0})")]
    TableFull(usize),
    /// The log entry is not a command this version can read.
    #[error("undecodable command: {0}")]
    Undecodable(String),
    #[error("the task has {0} push notification configs, the most one task may have")]
    PushConfigsPerTaskFull(usize),
    #[error("the gateway holds {0} push notification configs, its limit; retry once tasks end")]
    PushConfigsFull(usize),
    #[error("the gateway holds {0} API keys, its limit; revoke unused ones")]
    KeysFull(usize),
    #[error("API key {0} exists")]
    KeyExists(String),
    /// A caller's record of a task another caller created (`Command::RecordOwnedTask`).
    #[error("task {0} was created by another caller")]
    OtherOwner(String),
}

impl Tables {
    /// Applies one committed command. Deterministic: the same tables and command give the
    /// same tables and result on every node.
    pub fn apply(&mut self, command: Command) -> Result<Option<TaskEvent>, Refusal> {
        self.applied_commands += 1;
        let event = self.apply_command(command)?;
        if let Some(event) = &event {
            self.enqueue_push(event);
        }
        Ok(event)
    }

    fn apply_command(&mut self, command: Command) -> Result<Option<TaskEvent>, Refusal> {
        match command {
            Command::UpsertAgent { agent, at_ms } => {
                self.upsert_agent(agent, AgentAuth::default(), at_ms);
                Ok(None)
            }
            Command::UpsertAgentWithAuth { agent, auth, at_ms } => {
                self.upsert_agent(agent, auth, at_ms);
                Ok(None)
            }
            Command::DeleteAgent { id } => {
                self.delete_agent(&id);
                Ok(None)
            }
            Command::SetAgentCard { id, card } => self.set_card(&id, card).map(|()| None),
            Command::RecordTask { agent_id, task, at_ms } => self.record_task(agent_id, task, at_ms, None).map(Some),
            Command::UpdateStatus { agent_id, update, at_ms } => {
                let id = update.task_id.clone();
                self.update_task(&agent_id, &id, at_ms, |t| task::apply_status(t, update)).map(Some)
            }
            Command::UpdateArtifact { agent_id, update, at_ms } => {
                let id = update.task_id.clone();
                self.update_task(&agent_id, &id, at_ms, |t| task::apply_artifact(t, update)).map(Some)
            }
            Command::UpdateStatusOnce { agent_id, update, at_ms } => {
                if self.agent_task_has(&agent_id, &update.task_id, |t| task::has_status(t, &update)) {
                    return Ok(None);
                }
                self.apply_command(Command::UpdateStatus { agent_id, update, at_ms })
            }
            Command::UpdateArtifactOnce { agent_id, update, at_ms } => {
                if self.agent_task_has(&agent_id, &update.task_id, |t| task::has_artifact(t, &update)) {
                    return Ok(None);
                }
                self.apply_command(Command::UpdateArtifact { agent_id, update, at_ms })
            }
            Command::AppendMessage { agent_id, task_id, message, at_ms } => {
                self.update_task(&agent_id, &task_id, at_ms, |t| task::append_message(t, message)).map(Some)
            }
            Command::SetPushConfig { config, at_ms } => self.set_push_config(config, at_ms).map(|()| None),
            Command::DeletePushConfig { task_id, config_id } => {
                self.delete_push_config(&task_id, &config_id);
                Ok(None)
            }
            Command::RecordTaskWithPush { agent_id, task, at_ms, push } => {
                self.record_task_with_push(agent_id, task, at_ms, push, None).map(Some)
            }
            Command::RecordOwnedTask { agent_id, task, at_ms, push, owner, sees_all } => {
                let theirs = self.task(&task.id).is_some_and(|e| e.owner.as_deref() != Some(owner.as_str()));
                if theirs && !sees_all {
                    return Err(Refusal::OtherOwner(task.id));
                }
                self.record_task_with_push(agent_id, task, at_ms, push, Some(owner)).map(Some)
            }
        }
    }
}

impl Tables {
    /// Whether `agent_id`'s task `task_id` is in memory and passes `check`.
    fn agent_task_has(&self, agent_id: &str, task_id: &str, check: impl FnOnce(&Task) -> bool) -> bool {
        self.task(task_id).is_some_and(|e| e.agent_id == agent_id && check(&e.task))
    }
}

impl Tables {
    /// Applies a push deliverer command.
    pub fn apply_push(&mut self, command: &PushCommand) {
        self.applied_commands += 1;
        match command {
            PushCommand::Progress(items) => self.push_progress(items),
            PushCommand::SetSigningKey(key) => self.set_signing_key(key),
        }
    }
}

impl Tables {
    /// Applies an API key command.
    pub fn apply_keys(&mut self, command: &KeyCommand) -> Result<(), Refusal> {
        self.applied_commands += 1;
        self.keys_mut().apply(command)
    }
}

impl Tables {
    /// Applies an archiver command; answers how many tasks it changed.
    pub fn apply_archive(&mut self, command: &ArchiveCommand) -> usize {
        self.applied_commands += 1;
        match command {
            ArchiveCommand::Archived { ids } => self.mark_archived(ids),
            ArchiveCommand::Evict { ids } => self.evict(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use crate::codec;
    use task::tests::task;

    fn limits(tasks_max: usize) -> TableLimits {
        TableLimits { tasks_max }
    }

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            url: "http://agent:1/".into(),
            bearer: None,
            protocol_version: None,
            metadata: None,
            settings: AgentSettings::default(),
            source: "api".into(),
        }
    }

    fn record(agent: &str, t: Task, at_ms: u64) -> Command {
        Command::RecordTask { agent_id: agent.into(), task: t, at_ms }
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        let cmd = VersionedCommand::V1(record("a", task("t1", TaskState::Working), 5));
        let bytes = codec::encode(&cmd);
        assert_eq!(codec::decode::<VersionedCommand>(&bytes).unwrap(), cmd);
    }

    #[test]
    fn terminal_tasks_are_immutable_through_apply() {
        let mut tables = Tables::new(limits(10));
        tables.apply(record("a", task("t1", TaskState::Completed), 1)).unwrap();
        let refused = tables.apply(record("a", task("t1", TaskState::Working), 2));
        assert_eq!(refused, Err(Refusal::Transition(TransitionError::Terminal("t1".into()))));
        assert_eq!(tables.task("t1").unwrap().task.status.state, TaskState::Completed);
        assert_eq!(tables.task("t1").unwrap().updated_at_ms, 1);
    }

    #[test]
    fn a_task_stays_with_its_agent() {
        let mut tables = Tables::new(limits(10));
        tables.apply(record("a", task("t1", TaskState::Working), 1)).unwrap();
        let refused = tables.apply(record("b", task("t1", TaskState::Completed), 2));
        assert!(matches!(refused, Err(Refusal::OwnedByOtherAgent { .. })));
        assert_eq!(tables.task("t1").unwrap().agent_id, "a");
    }

    #[test]
    fn oldest_terminal_task_is_evicted_first() {
        let mut tables = Tables::new(limits(3));
        tables.apply(record("a", task("active", TaskState::Working), 1)).unwrap();
        tables.apply(record("a", task("done1", TaskState::Completed), 2)).unwrap();
        tables.apply(record("a", task("done2", TaskState::Failed), 3)).unwrap();
        tables.apply(record("a", task("new", TaskState::Working), 4)).unwrap();
        assert!(tables.task("done1").is_none());
        assert!(tables.task("done2").is_some() && tables.task("active").is_some());
        assert_eq!(tables.tasks_evicted_total(), 1);
        // Now two active and one terminal: one more evicts done2, then the table is full.
        tables.apply(record("a", task("new2", TaskState::Working), 5)).unwrap();
        assert!(tables.task("done2").is_none());
        let refused = tables.apply(record("a", task("new3", TaskState::Working), 6));
        assert_eq!(refused, Err(Refusal::TableFull(3)));
        assert_eq!(tables.task_count(), 3);
    }

    fn archive_on(tables: &mut Tables, tasks_max: u64) {
        tables.apply_settings(SettingsV2 { tasks_max, archive: true });
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn with_the_archive_on_only_archived_tasks_leave_memory() {
        let mut tables = Tables::new(limits(100));
        archive_on(&mut tables, 3);
        tables.apply(record("a", task("done1", TaskState::Completed), 1)).unwrap();
        tables.apply(record("a", task("done2", TaskState::Failed), 2)).unwrap();
        tables.apply(record("a", task("active", TaskState::Working), 3)).unwrap();
        // Full, and nothing archived: refused, nothing lost.
        let before = tables.debug_fingerprint();
        assert_eq!(tables.apply(record("a", task("new", TaskState::Working), 4)), Err(Refusal::TableFull(3)));
        assert_eq!(tables.debug_fingerprint(), before);
        assert_eq!(tables.unarchived_count(), 2);
        // done2 archived: it makes room, done1 (older, not archived) stays.
        assert_eq!(tables.apply_archive(&ArchiveCommand::Archived { ids: ids(&["done2"]) }), 1);
        tables.apply(record("a", task("new", TaskState::Working), 5)).unwrap();
        assert!(tables.task("done2").is_none() && tables.task("done1").is_some());
        assert_eq!(tables.tasks_evicted_total(), 1);
    }

    #[test]
    fn archived_and_evict_change_only_what_they_may() {
        let mut tables = Tables::new(limits(100));
        archive_on(&mut tables, 100);
        for (id, state) in
            [("done", TaskState::Completed), ("kept", TaskState::Canceled), ("active", TaskState::Working)]
        {
            tables.apply(record("a", task(id, state), 1)).unwrap();
        }
        // Unknown, active and terminal ids: only the terminal one is marked; again, nothing.
        let archived = ArchiveCommand::Archived { ids: ids(&["done", "active", "missing"]) };
        assert_eq!(tables.apply_archive(&archived), 1);
        let marked = tables.debug_fingerprint();
        assert_eq!(tables.apply_archive(&archived), 0);
        assert_eq!(tables.debug_fingerprint(), marked);
        // Evict: the active and the unarchived terminal task stay.
        assert_eq!(
            tables.apply_archive(&ArchiveCommand::Evict { ids: ids(&["done", "kept", "active", "missing"]) }),
            1
        );
        assert!(tables.task("done").is_none());
        assert!(tables.task("kept").is_some() && tables.task("active").is_some());
        // With the archive off, a terminal task may leave without being archived.
        tables.apply_settings(SettingsV2 { tasks_max: 100, archive: false });
        assert_eq!(tables.apply_archive(&ArchiveCommand::Evict { ids: ids(&["kept", "active"]) }), 1);
        assert!(tables.task("kept").is_none() && tables.task("active").is_some());
    }

    #[test]
    fn a_task_that_becomes_terminal_waits_for_the_archive() {
        let mut tables = Tables::new(limits(100));
        archive_on(&mut tables, 100);
        tables.apply(record("a", task("t", TaskState::Working), 1)).unwrap();
        assert_eq!(tables.unarchived_count(), 0);
        tables
            .apply(Command::UpdateStatus {
                agent_id: "a".into(),
                update: task::tests::status("t", TaskState::Completed, None),
                at_ms: 2,
            })
            .unwrap();
        let waiting: Vec<_> = tables.unarchived(10).map(|e| e.task.id.clone()).collect();
        assert_eq!(waiting, ["t"]);
    }

    #[test]
    fn same_log_same_tables() {
        let log = [
            record("a", task("t1", TaskState::Working), 1),
            record("a", task("t2", TaskState::Completed), 2),
            record("a", task("t1", TaskState::Completed), 3),
            record("b", task("t1", TaskState::Working), 4),
        ];
        let run = || {
            let mut t = Tables::new(limits(10));
            archive_on(&mut t, 10);
            let mut results: Vec<_> = log.iter().cloned().map(|c| t.apply(c)).collect();
            t.apply_archive(&ArchiveCommand::Archived { ids: ids(&["t2", "t1"]) });
            t.apply_archive(&ArchiveCommand::Evict { ids: ids(&["t2"]) });
            results.push(t.apply(record("a", task("t3", TaskState::Working), 5)));
            (format!("{:?}", t.debug_fingerprint()), results)
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn every_change_of_a_task_is_its_next_event_number() {
        let mut t = Tables::new(limits(10));
        let created = t.apply(record("a", task("t1", TaskState::Working), 1)).unwrap().unwrap();
        assert_eq!((created.events, created.numbered_changes().map(|(n, _)| n).collect::<Vec<_>>()), (1, vec![1]));
        let update = task::tests::status("t1", TaskState::Working, Some("busy"));
        let status = t.apply(Command::UpdateStatus { agent_id: "a".into(), update, at_ms: 2 }).unwrap().unwrap();
        assert_eq!(status.events, 2);
        // A snapshot with a new artifact and a new status: two changes, events 3 and 4.
        let mut done = task("t1", TaskState::Completed);
        done.artifacts.push(Artifact {
            artifact_id: "a1".into(),
            parts: vec![crate::codec::Json(serde_json::json!({"text": "x"}))],
            rest: crate::codec::Json(serde_json::json!({})),
        });
        let last = t.apply(record("a", done, 3)).unwrap().unwrap();
        assert_eq!(last.numbered_changes().map(|(n, _)| n).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(t.task("t1").unwrap().events, 4);
        // Snapshots keep the count.
        let restored = Tables::restore(limits(10), &t.snapshot()).unwrap();
        assert_eq!(restored.task("t1").unwrap().events, 4);
    }

    #[test]
    fn once_updates_apply_only_what_the_task_lacks() {
        let mut t = Tables::new(limits(10));
        t.apply(record("a", task("t1", TaskState::Working), 1)).unwrap();
        let update = task::tests::status("t1", TaskState::Working, Some("step 1"));
        let once = |agent: &str, update: &StatusUpdate| Command::UpdateStatusOnce {
            agent_id: agent.into(),
            update: update.clone(),
            at_ms: 2,
        };
        let first = t.apply(once("a", &update)).unwrap().unwrap();
        assert_eq!(first.events, 2);
        // The same update again (a second delivery, or one another node received): no event.
        let before = t.debug_fingerprint();
        assert_eq!(t.apply(once("a", &update)), Ok(None));
        assert_eq!(t.debug_fingerprint(), before);
        // Another agent's claim on the task is judged as UpdateStatus judges it: refused.
        assert!(matches!(t.apply(once("b", &update)), Err(Refusal::OwnedByOtherAgent { .. })));
        // An artifact chunk: once, then nothing; appending new parts is an event.
        let chunk = |text: &str, append: bool| Command::UpdateArtifactOnce {
            agent_id: "a".into(),
            update: ArtifactUpdate {
                task_id: "t1".into(),
                context_id: task("t1", TaskState::Working).context_id,
                artifact: Artifact {
                    artifact_id: "out".into(),
                    parts: vec![crate::codec::Json(serde_json::json!({"text": text}))],
                    rest: crate::codec::Json(serde_json::json!({})),
                },
                append,
                last_chunk: false,
            },
            at_ms: 3,
        };
        assert_eq!(t.apply(chunk("x", false)).unwrap().unwrap().events, 3);
        assert_eq!(t.apply(chunk("x", false)), Ok(None));
        assert_eq!(t.apply(chunk("y", true)).unwrap().unwrap().events, 4);
        assert_eq!(t.apply(chunk("y", true)), Ok(None));
        // A task that is not there: the refusal UpdateStatus gives.
        assert!(t.apply(once("a", &task::tests::status("nope", TaskState::Working, None))).is_err());
    }

    fn hook(task: &str, id: &str) -> PushConfig {
        PushConfig {
            id: id.into(),
            task_id: task.into(),
            url: "https://hook.example/x".into(),
            token: Some("tok".into()),
            auth: vec![],
            format: PushFormat::V10,
        }
    }

    fn set_hook(task: &str, id: &str) -> Command {
        Command::SetPushConfig { config: hook(task, id), at_ms: 1 }
    }

    fn working(id: &str, text: &str) -> Command {
        Command::UpdateStatus {
            agent_id: "a".into(),
            update: task::tests::status(id, TaskState::Working, Some(text)),
            at_ms: 2,
        }
    }

    fn done(task: &str, config: &str, event: u64, error: Option<&str>) -> push::Progress {
        push::Progress {
            task_id: task.into(),
            config_id: config.into(),
            event,
            attempts: 1,
            error: error.map(str::to_owned),
        }
    }

    /// The lanes due (by a scan of the outbox), after checking the due index agrees.
    fn due(t: &Tables) -> Vec<(String, u64)> {
        t.push().check_due_index();
        t.push().lanes().map(|l| (l.config.id, l.event)).collect()
    }

    #[test]
    fn push_configs_need_a_task_and_respect_their_limits() {
        let mut t = Tables::new(limits(10));
        assert_eq!(t.apply(set_hook("t1", "c")), Err(Refusal::TaskNotFound("t1".into())));
        t.apply(record("a", task("t1", TaskState::Working), 1)).unwrap();
        for i in 0..push::PUSH_CONFIGS_PER_TASK_MAX {
            t.apply(set_hook("t1", &format!("c{i}"))).unwrap();
        }
        let before = t.debug_fingerprint();
        assert_eq!(t.apply(set_hook("t1", "one-more")), Err(Refusal::PushConfigsPerTaskFull(16)));
        // Replacing an existing id is not one more.
        t.apply(set_hook("t1", "c0")).unwrap();
        assert_eq!(t.debug_fingerprint().len(), before.len());
        assert_eq!(t.push().config_count(), push::PUSH_CONFIGS_PER_TASK_MAX);
        // Delete is idempotent.
        t.apply(Command::DeletePushConfig { task_id: "t1".into(), config_id: "c0".into() }).unwrap();
        let after = t.debug_fingerprint();
        t.apply(Command::DeletePushConfig { task_id: "t1".into(), config_id: "c0".into() }).unwrap();
        assert_eq!(t.debug_fingerprint(), after);
        assert!(t.push().config("t1", "c0").is_none());
    }

    #[test]
    fn committed_changes_become_outbox_events_delivered_in_order() {
        let mut t = Tables::new(limits(10));
        t.apply(record("a", task("t1", TaskState::Working), 1)).unwrap();
        t.apply(working("t1", "before any config")).unwrap();
        t.apply(set_hook("t1", "c")).unwrap();
        assert!(due(&t).is_empty(), "a new config gets only later events");
        t.apply(working("t1", "three")).unwrap();
        t.apply(working("t1", "four")).unwrap();
        assert_eq!(due(&t), [("c".to_string(), 3)]);
        assert_eq!(t.push().outbox_events(), 2);
        // Event 3 delivered: 4 is due; a repeated or stale outcome changes nothing.
        t.apply_push(&PushCommand::Progress(vec![done("t1", "c", 3, None)]));
        assert_eq!(due(&t), [("c".to_string(), 4)]);
        let once = t.debug_fingerprint();
        t.apply_push(&PushCommand::Progress(vec![done("t1", "c", 3, None)]));
        assert_eq!(t.debug_fingerprint(), once);
        // Event 4 given up: counted, its error kept, nothing left.
        t.apply_push(&PushCommand::Progress(vec![done("t1", "c", 4, Some("HTTP 400"))]));
        let status = &t.push().config("t1", "c").unwrap().status;
        assert_eq!((status.delivered_total, status.given_up_total, status.cursor), (1, 1, 4));
        assert_eq!(status.last_error.as_deref(), Some("HTTP 400"));
        assert_eq!((t.push().outbox_events(), due(&t).len()), (0, 0));
    }

    #[test]
    fn configs_set_with_the_message_get_the_task_from_its_creation() {
        let mut t = Tables::new(limits(10));
        let mut unnamed = hook("", "");
        unnamed.token = None;
        let cmd = Command::RecordTaskWithPush {
            agent_id: "a".into(),
            task: task("t1", TaskState::Working),
            at_ms: 1,
            push: vec![unnamed, hook("", "named")],
        };
        t.apply(cmd).unwrap();
        let lanes: Vec<_> = t.push().lanes().map(|l| (l.config.id, l.config.task_id, l.event)).collect();
        assert_eq!(lanes, [("named".into(), "t1".into(), 1), ("t1".into(), "t1".into(), 1)]);
        assert!(matches!(t.push().lanes().next().unwrap().payload.change, push::OutboxChange::Task(_)));
        // Too many configs: refused as a whole, the task is not recorded either.
        let many = (0..=push::PUSH_CONFIGS_PER_TASK_MAX).map(|i| hook("", &format!("c{i}"))).collect();
        let cmd = Command::RecordTaskWithPush {
            agent_id: "a".into(),
            task: task("t2", TaskState::Working),
            at_ms: 2,
            push: many,
        };
        assert_eq!(t.apply(cmd), Err(Refusal::PushConfigsPerTaskFull(16)));
        assert!(t.task("t2").is_none());
    }

    #[test]
    fn an_evicted_task_keeps_its_configs_until_they_delivered_everything() {
        let mut t = Tables::new(limits(2));
        t.apply(record("a", task("t1", TaskState::Working), 1)).unwrap();
        t.apply(set_hook("t1", "c")).unwrap();
        t.apply(Command::UpdateStatus {
            agent_id: "a".into(),
            update: task::tests::status("t1", TaskState::Completed, None),
            at_ms: 2,
        })
        .unwrap();
        t.apply(record("a", task("t2", TaskState::Working), 3)).unwrap();
        t.apply(record("a", task("t3", TaskState::Working), 4)).unwrap();
        assert!(t.task("t1").is_none(), "evicted");
        assert_eq!(due(&t), [("c".to_string(), 2)], "its last event is still due");
        t.apply_push(&PushCommand::Progress(vec![done("t1", "c", 2, None)]));
        assert_eq!((t.push().config_count(), t.push().outbox_events()), (0, 0));
    }

    #[test]
    fn the_due_index_queues_lanes_per_destination_first_due_first() {
        let mut t = Tables::new(limits(10));
        for id in ["t2", "t1", "t3"] {
            t.apply(record("a", task(id, TaskState::Working), 1)).unwrap();
            t.apply(set_hook(id, "c")).unwrap();
        }
        let mut other = hook("t3", "elsewhere");
        other.url = "http://other.example:8080/hook".into();
        t.apply(Command::SetPushConfig { config: other.clone(), at_ms: 1 }).unwrap();
        // Due in the order their events were committed, not in task id order.
        for id in ["t2", "t3", "t1"] {
            t.apply(working(id, "x")).unwrap();
        }
        due(&t);
        let queue = |t: &Tables, d: &str| -> Vec<String> {
            t.push().due_lanes(d).map(|(task, config)| format!("{task}/{config}")).collect()
        };
        assert_eq!(queue(&t, "hook.example:443"), ["t2/c", "t3/c", "t1/c"]);
        assert_eq!(queue(&t, "other.example:8080"), ["t3/elsewhere"]);
        assert_eq!(t.push().due_lane_count(), 4);
        // A lane that stays due keeps its place; one done with leaves.
        t.apply(working("t2", "y")).unwrap();
        t.apply_push(&PushCommand::Progress(vec![done("t3", "c", 2, None)]));
        assert_eq!(queue(&t, "hook.example:443"), ["t2/c", "t1/c"]);
        // A config moved to another receiver moves its lane there.
        other.url = "https://hook.example/again".into();
        t.apply(Command::SetPushConfig { config: other, at_ms: 1 }).unwrap();
        assert_eq!(queue(&t, "hook.example:443"), ["t2/c", "t1/c", "t3/elsewhere"]);
        assert!(queue(&t, "other.example:8080").is_empty());
        due(&t);
        t.apply(Command::DeletePushConfig { task_id: "t2".into(), config_id: "c".into() }).unwrap();
        assert_eq!(queue(&t, "hook.example:443"), ["t1/c", "t3/elsewhere"]);
        due(&t);
    }

    #[test]
    fn push_apply_is_deterministic_and_survives_snapshots() {
        let log = [
            record("a", task("t1", TaskState::Working), 1),
            set_hook("t1", "c1"),
            set_hook("t1", "c2"),
            working("t1", "x"),
            working("t1", "y"),
            Command::DeletePushConfig { task_id: "t1".into(), config_id: "c2".into() },
            working("t1", "z"),
        ];
        let run = || {
            let mut t = Tables::new(limits(10));
            let results: Vec<_> = log.iter().cloned().map(|c| t.apply(c)).collect();
            t.apply_push(&PushCommand::Progress(vec![done("t1", "c1", 2, None), done("t1", "c1", 3, Some("boom"))]));
            for kid in ["first", "second"] {
                t.apply_push(&PushCommand::SetSigningKey(push::SigningKey { kid: kid.into(), pkcs8: vec![1, 2] }));
            }
            (t, results)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!((a.debug_fingerprint(), ra), (b.debug_fingerprint(), rb));
        assert_eq!(due(&a), [("c1".to_string(), 4)]);
        assert_eq!(a.push().signing_key().unwrap().kid, "first", "the first key committed wins");
        let restored = Tables::restore(limits(10), &a.snapshot()).unwrap();
        assert_eq!(restored.debug_fingerprint(), a.debug_fingerprint());
        restored.push().check_due_index();
        assert_eq!(restored.snapshot(), a.snapshot());
        let cmd = VersionedCommand::V1Push(PushCommand::Progress(vec![done("t1", "c1", 4, None)]));
        assert_eq!(codec::decode::<VersionedCommand>(&codec::encode(&cmd)).unwrap(), cmd);
    }

    #[test]
    fn keys_apply_alike_and_survive_snapshots() {
        let key = |id: &str| keys::ApiKey {
            id: id.into(),
            hash: [3; 32],
            name: "n".into(),
            role: keys::KeyRole::Admin,
            agents: vec![],
            created_at_ms: 5,
        };
        let mut t = Tables::new(limits(10));
        t.apply_keys(&KeyCommand::Create(key("a"))).unwrap();
        t.apply_keys(&KeyCommand::Create(key("b"))).unwrap();
        assert_eq!(t.apply_keys(&KeyCommand::Create(key("a"))), Err(Refusal::KeyExists("a".into())));
        t.apply_keys(&KeyCommand::Revoke { id: "b".into() }).unwrap();
        let restored = Tables::restore(limits(10), &t.snapshot()).unwrap();
        assert_eq!(restored.debug_fingerprint(), t.debug_fingerprint());
        assert_eq!(restored.keys().get("a"), Some(&key("a")));
        assert!(restored.keys().get("b").is_none(), "a revoked key stays revoked after a snapshot");
        let cmd = VersionedCommand::V1Keys(KeyCommand::Create(key("c")));
        assert_eq!(codec::decode::<VersionedCommand>(&codec::encode(&cmd)).unwrap(), cmd);
    }

    #[test]
    fn rate_limits_apply_alike_go_with_their_owner_and_survive_snapshots() {
        let key = |id: &str| keys::ApiKey {
            id: id.into(),
            hash: [3; 32],
            name: "n".into(),
            role: keys::KeyRole::Client,
            agents: vec![],
            created_at_ms: 5,
        };
        let rate = |r: f64| RateLimit::new(r, 4).unwrap();
        let run = || {
            let mut t = Tables::new(limits(10));
            t.apply_keys(&KeyCommand::CreateWithRate { key: key("k1"), rate: rate(2.5) }).unwrap();
            t.apply_keys(&KeyCommand::CreateWithRate { key: key("k2"), rate: rate(1.0) }).unwrap();
            let again = t.apply_keys(&KeyCommand::CreateWithRate { key: key("k1"), rate: rate(9.0) });
            assert_eq!(again, Err(Refusal::KeyExists("k1".into())));
            t.apply_keys(&KeyCommand::Revoke { id: "k2".into() }).unwrap();
            let unknown = t.apply_limits(&LimitCommand::AgentRate { id: "nobody".into(), rate: Some(rate(1.0)) });
            assert_eq!(unknown, Err(Refusal::AgentNotFound("nobody".into())));
            for id in ["a", "b"] {
                t.apply(Command::UpsertAgent { agent: agent(id), at_ms: 1 }).unwrap();
                t.apply_limits(&LimitCommand::AgentRate { id: id.into(), rate: Some(rate(50.0)) }).unwrap();
            }
            t.apply(Command::DeleteAgent { id: "b".into() }).unwrap();
            t
        };
        let (a, b) = (run(), run());
        assert_eq!(a.debug_fingerprint(), b.debug_fingerprint());
        assert_eq!(a.keys().rate("k1"), Some(rate(2.5)));
        assert_eq!(a.keys().rate("k2"), None, "a revoked key's rate goes with it");
        assert_eq!(a.agent_rate("a"), Some(rate(50.0)));
        assert_eq!(a.agent_rate("b"), None, "a deleted agent's rate goes with it");
        let restored = Tables::restore(limits(10), &a.snapshot()).unwrap();
        assert_eq!(restored.debug_fingerprint(), a.debug_fingerprint());
        assert_eq!(restored.snapshot(), a.snapshot());
        let mut cleared = restored.clone();
        cleared.apply_limits(&LimitCommand::AgentRate { id: "a".into(), rate: None }).unwrap();
        assert_eq!(cleared.agent_rate("a"), None);
        let cmd = VersionedCommand::V1Limits(LimitCommand::AgentRate { id: "a".into(), rate: Some(rate(0.5)) });
        assert_eq!(codec::decode::<VersionedCommand>(&codec::encode(&cmd)).unwrap(), cmd);
    }
}
