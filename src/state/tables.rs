//! The per-node in-memory tables that `apply` writes and every read is served from: tasks
//! with their agent (the task→agent index), and agents with their cached cards.

use std::ops::Bound;
use std::sync::Arc;

use imbl::{HashMap, OrdMap as BTreeMap};

use super::Refusal;
use super::TaskEvent;
use super::agent::{AgentAuth, AgentRecord, CachedCard, Upstream};
use super::list_index::ListIndex;
use super::push::{OutboxChange, OutboxEvent, PushConfig, PushSnapshot, PushSnapshotRef, PushTables};
use super::task::{self, Task, TaskChange, TransitionError};
use crate::a2a::TaskState;

/// Limits that `apply` enforces. They are part of the state machine, so every node of a
/// cluster must run with the same values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// Tasks kept in memory. When full, the task that became terminal longest ago is evicted
    /// (and later read from the archive); if every task is active, new tasks are refused.
    pub tasks_max: usize,
}

impl Default for TableLimits {
    /// What every node starts from until the log carries settings (`tasks.memory_max`'s
    /// default).
    fn default() -> Self {
        TableLimits { tasks_max: 100_000 }
    }
}

#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct TaskEntry {
    pub task: Task,
    pub agent_id: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Position in the update order (`Tables::recency`), the ListTasks cursor.
    pub seq: u64,
    terminal_seq: Option<u64>,
    /// Stream events recorded for the task: its creation is event 1, and every change after
    /// it (a status, an artifact chunk) is the next. The same on every node (apply counts),
    /// so it is the `id:` of the task's SSE events and a stream resumes from it anywhere.
    pub events: u64,
    /// Who created the task (`auth::Principal::owner`), set by the command that created it
    /// and never changed; `None` for a task created with auth off or before tasks had owners
    /// (an admin's only when auth is on).
    pub owner: Option<String>,
}

/// A task as snapshots V4 to V6 stored it (no owner). Stored type.
#[derive(bincode::Encode, bincode::Decode)]
struct StoredTaskV4 {
    task: Task,
    agent_id: String,
    created_at_ms: u64,
    updated_at_ms: u64,
    seq: u64,
    terminal_seq: Option<u64>,
    events: u64,
}

impl From<StoredTaskV4> for TaskEntry {
    fn from(t: StoredTaskV4) -> Self {
        TaskEntry {
            task: t.task,
            agent_id: t.agent_id,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            seq: t.seq,
            terminal_seq: t.terminal_seq,
            events: t.events,
            owner: None,
        }
    }
}

/// A task as the snapshots before [`SnapshotV4`] stored it (no event count). Stored type.
#[derive(bincode::Encode, bincode::Decode)]
struct StoredTaskV1 {
    task: Task,
    agent_id: String,
    created_at_ms: u64,
    updated_at_ms: u64,
    seq: u64,
    terminal_seq: Option<u64>,
}

impl From<StoredTaskV1> for TaskEntry {
    /// Events before the upgrade are not known: the count restarts at the creation event, so
    /// a client resuming from an older id gets the current task instead of a replay.
    fn from(t: StoredTaskV1) -> Self {
        TaskEntry {
            task: t.task,
            agent_id: t.agent_id,
            created_at_ms: t.created_at_ms,
            updated_at_ms: t.updated_at_ms,
            seq: t.seq,
            terminal_seq: t.terminal_seq,
            events: 1,
            owner: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AgentEntry {
    pub record: AgentRecord,
    /// How the gateway authenticates to the agent besides its bearer (forwarded client
    /// credentials, OAuth2 client credentials); the default for an `UpsertAgent` without it.
    pub auth: AgentAuth,
    pub card: Option<CachedCard>,
    /// Derived from the record and card on every change.
    pub upstream: Upstream,
    pub registered_at_ms: u64,
}

/// The maps are persistent (structurally shared), so cloning the tables is O(1): a raft
/// snapshot clones them under the state lock and encodes the clone outside it, and `apply`
/// never waits for a snapshot.
#[derive(Clone, Debug)]
pub struct Tables {
    limits: TableLimits,
    /// The settings the log set last (they set `limits` and whether terminal tasks wait for
    /// the archive before they may leave memory); `None` until the first.
    settings: Option<super::SettingsV2>,
    /// Entries behind `Arc`: while a snapshot's clone shares the map, a write copies the path
    /// of nodes to its key, and with the entries inline that copied every task in those nodes.
    tasks: HashMap<String, Arc<TaskEntry>>,
    /// Update sequence → task id, newest last: ListTasks order.
    recency: BTreeMap<u64, String>,
    /// The same order per task owner (derived: kept by apply, rebuilt on restore, never in a
    /// snapshot), so a caller's ListTasks walks only its own tasks.
    owned: HashMap<String, BTreeMap<u64, String>>,
    /// Each agent's and context's tasks in the same order, and task counts (derived, like
    /// `owned`): what ListTasks reads instead of walking every task.
    index: ListIndex,
    /// Terminal tasks not archived yet, by the sequence at which they became terminal: the
    /// archiver's work, oldest first. With the archive on, they may not leave memory.
    unarchived: BTreeMap<u64, String>,
    /// Terminal tasks the archive holds, by the same sequence: eviction order.
    archived: BTreeMap<u64, String>,
    agents: BTreeMap<String, AgentEntry>,
    /// Push configs and the webhook outbox.
    push: PushTables,
    /// API keys (hashed).
    keys: super::keys::KeyTables,
    /// Agents' configured rate limits (`state::limits`), dropped with the agent.
    agent_rates: BTreeMap<String, super::RateLimit>,
    seq: u64,
    tasks_evicted_total: u64,
    pub(super) applied_commands: u64,
}

/// A snapshot of the tables, as stored. Stored type: a new shape is a new variant.
#[derive(bincode::Encode, bincode::Decode)]
enum VersionedSnapshot {
    V1(SnapshotV1),
    V2(SnapshotV2),
    V3(SnapshotV3),
    V4(SnapshotV4),
    V5(SnapshotV5),
    V6(SnapshotV6),
    V7(SnapshotV7),
    V8(SnapshotV8),
}

/// V6 with every task's owner and every agent's auth.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV7 {
    tables: SnapshotTables<TaskEntry, StoredAgentV7>,
    push: PushSnapshot,
    keys: Vec<super::ApiKey>,
}

/// V7 and the configured rate limits: the keys' own and the agents'.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV8 {
    tables: SnapshotTables<TaskEntry, StoredAgentV7>,
    push: PushSnapshot,
    keys: Vec<super::ApiKey>,
    key_rates: Vec<(String, super::RateLimit)>,
    agent_rates: Vec<(String, super::RateLimit)>,
}

/// V5 and the API keys.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV6 {
    v4: SnapshotV4,
    push: PushSnapshot,
    keys: Vec<super::ApiKey>,
}

/// V4 and the push configs with the webhook outbox.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV5 {
    v4: SnapshotV4,
    push: PushSnapshot,
}

/// The tables with every task's event count, the settings and what the archive holds.
type SnapshotV4 = SnapshotTables<StoredTaskV4, StoredAgent>;

/// The tables as snapshots from V4 on store them, over their task and agent shapes.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotTables<T, A> {
    tasks: Vec<T>,
    agents: Vec<A>,
    seq: u64,
    tasks_evicted_total: u64,
    applied_commands: u64,
    settings: Option<super::SettingsV2>,
    archived: Vec<u64>,
}

impl SnapshotV4 {
    fn upgrade(self) -> SnapshotTables<TaskEntry, StoredAgentV7> {
        SnapshotTables {
            tasks: self.tasks.into_iter().map(TaskEntry::from).collect(),
            agents: self.agents.into_iter().map(StoredAgentV7::from).collect(),
            seq: self.seq,
            tasks_evicted_total: self.tasks_evicted_total,
            applied_commands: self.applied_commands,
            settings: self.settings,
            archived: self.archived,
        }
    }
}

/// V1, the archive-aware settings, and which terminal tasks the archive holds (by the
/// sequence at which they became terminal).
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV3 {
    v1: SnapshotV1,
    settings: Option<super::SettingsV2>,
    archived: Vec<u64>,
}

/// V1 and the settings carried in the log.
#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV2 {
    v1: SnapshotV1,
    settings: Option<super::Settings>,
}

#[derive(bincode::Encode, bincode::Decode)]
struct SnapshotV1 {
    tasks: Vec<StoredTaskV1>,
    agents: Vec<StoredAgent>,
    seq: u64,
    tasks_evicted_total: u64,
    applied_commands: u64,
}

impl SnapshotV1 {
    fn upgrade(
        self,
        settings: Option<super::SettingsV2>,
        archived: Vec<u64>,
    ) -> SnapshotTables<TaskEntry, StoredAgentV7> {
        SnapshotTables {
            tasks: self.tasks.into_iter().map(TaskEntry::from).collect(),
            agents: self.agents.into_iter().map(StoredAgentV7::from).collect(),
            seq: self.seq,
            tasks_evicted_total: self.tasks_evicted_total,
            applied_commands: self.applied_commands,
            settings,
            archived,
        }
    }
}

#[derive(bincode::Encode, bincode::Decode)]
struct StoredAgent {
    record: AgentRecord,
    card: Option<CachedCard>,
    registered_at_ms: u64,
}

/// An agent with its auth (snapshots from V7 on).
#[derive(bincode::Encode, bincode::Decode)]
struct StoredAgentV7 {
    record: AgentRecord,
    auth: AgentAuth,
    card: Option<CachedCard>,
    registered_at_ms: u64,
}

impl From<StoredAgent> for StoredAgentV7 {
    fn from(a: StoredAgent) -> Self {
        StoredAgentV7 {
            record: a.record,
            auth: AgentAuth::default(),
            card: a.card,
            registered_at_ms: a.registered_at_ms,
        }
    }
}

/// [`VersionedSnapshot`] made of references, for encoding: the same variants and fields in
/// the same order, so the bytes are the same (a round-trip test holds them together).
#[derive(bincode::Encode)]
// Built once per snapshot on the stack and encoded at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum VersionedSnapshotRef<'a> {
    #[allow(dead_code)]
    V1,
    #[allow(dead_code)]
    V2,
    #[allow(dead_code)]
    V3,
    #[allow(dead_code)]
    V4,
    #[allow(dead_code)]
    V5,
    #[allow(dead_code)]
    V6,
    #[allow(dead_code)]
    V7,
    V8(SnapshotTablesRef<'a>, PushSnapshotRef<'a>, Vec<&'a super::ApiKey>, RatesRef),
}

/// The last fields of [`SnapshotV8`] (owned: a few per agent and key).
#[derive(bincode::Encode)]
struct RatesRef {
    key_rates: Vec<(String, super::RateLimit)>,
    agent_rates: Vec<(String, super::RateLimit)>,
}

#[derive(bincode::Encode)]
struct SnapshotTablesRef<'a> {
    tasks: Vec<&'a TaskEntry>,
    agents: Vec<StoredAgentRef<'a>>,
    seq: u64,
    tasks_evicted_total: u64,
    applied_commands: u64,
    settings: Option<super::SettingsV2>,
    archived: Vec<u64>,
}

#[derive(bincode::Encode)]
struct StoredAgentRef<'a> {
    record: &'a AgentRecord,
    auth: &'a AgentAuth,
    card: Option<&'a CachedCard>,
    registered_at_ms: u64,
}

/// A ListTasks query over the tables.
#[derive(Clone, Debug, Default)]
pub struct ListQuery<'a> {
    pub agent_id: Option<&'a str>,
    pub context_id: Option<&'a str>,
    pub state: Option<TaskState>,
    /// Only the tasks of this owner (a caller that is not an admin); `None`: every task.
    pub owner: Option<&'a str>,
    /// Only tasks updated at or after this time (Unix ms).
    pub updated_after_ms: Option<u64>,
    /// Continue below this position in the list order (update sequence, then task id), from
    /// a page token.
    pub before: Option<(u64, &'a str)>,
    pub page_size: usize,
}

impl ListQuery<'_> {
    pub fn matches(&self, e: &TaskEntry) -> bool {
        self.agent_id.is_none_or(|a| e.agent_id == a)
            && self.context_id.is_none_or(|c| e.task.context_id == c)
            && self.state.is_none_or(|s| e.task.status.state == s)
            && self.updated_after_ms.is_none_or(|t| e.updated_at_ms >= t)
            && self.owner.is_none_or(|o| e.owner.as_deref() == Some(o))
    }

    /// Whether a task at this list position comes after the cursor.
    pub fn is_after_cursor(&self, seq: u64, id: &str) -> bool {
        self.before.is_none_or(|(s, i)| (seq, id) < (s, i))
    }
}

pub struct ListPage<'a> {
    /// Up to `page_size` matching tasks after the cursor, newest first.
    pub tasks: Vec<&'a TaskEntry>,
    /// More matching tasks follow this page.
    pub more: bool,
    /// Matching tasks in memory, on every page (the cursor does not count).
    pub total_size: usize,
    /// Of those, how many the archive holds too.
    pub archived_matching: usize,
    /// Of those, the terminal ones not marked archived yet: the archiver may have written
    /// them already (its mark not applied here yet), so a count over memory and archive
    /// checks these ids in the archive. `None`: more than `WAITING_CHECK_MAX`, not checked.
    pub waiting_for_archive: Option<Vec<&'a str>>,
}

/// The most ids ListTasks checks in the archive for tasks written but not marked archived
/// here yet (see [`ListPage::waiting_for_archive`]).
pub const WAITING_CHECK_MAX: usize = 10_000;

impl Tables {
    pub fn new(limits: TableLimits) -> Self {
        Tables {
            limits,
            settings: None,
            tasks: HashMap::new(),
            recency: BTreeMap::new(),
            owned: HashMap::new(),
            index: ListIndex::default(),
            unarchived: BTreeMap::new(),
            archived: BTreeMap::new(),
            agents: BTreeMap::new(),
            push: PushTables::default(),
            keys: Default::default(),
            agent_rates: BTreeMap::new(),
            seq: 0,
            tasks_evicted_total: 0,
            applied_commands: 0,
        }
    }

    pub fn task(&self, id: &str) -> Option<&TaskEntry> {
        self.tasks.get(id).map(|e| &**e)
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Terminal tasks evicted to stay within `tasks_max`, since this node started applying.
    pub fn tasks_evicted_total(&self) -> u64 {
        self.tasks_evicted_total
    }

    /// Tasks in memory by state, in [`TaskState::ALL`] order. A scan of every task: run it on
    /// a clone of the tables (O(1)), never under the state lock.
    /// Tasks in memory per state, in `TaskState::ALL`'s order: a lookup in the list index (a
    /// metrics scrape used to walk every task here, tens of ms at a million).
    pub fn count_by_state(&self) -> [u64; TaskState::ALL.len()] {
        TaskState::ALL.map(|state| self.index.in_memory.get(None, None, Some(state)) as u64)
    }

    pub fn applied_commands(&self) -> u64 {
        self.applied_commands
    }

    pub fn agent(&self, id: &str) -> Option<&AgentEntry> {
        self.agents.get(id)
    }

    pub fn agents(&self) -> impl Iterator<Item = &AgentEntry> {
        self.agents.values()
    }

    /// Tasks matching the query, most recently updated first, one page at a time.
    /// The most recently updated tasks in memory, newest first, at most `n` (walks only
    /// those).
    pub fn recent_tasks(&self, n: usize) -> impl Iterator<Item = &TaskEntry> {
        self.recency.values().rev().filter_map(|id| self.task(id)).take(n)
    }

    pub fn list_tasks(&self, q: &ListQuery<'_>) -> ListPage<'_> {
        let mut page = ListPage {
            tasks: Vec::with_capacity(q.page_size.min(128)),
            more: false,
            total_size: 0,
            archived_matching: 0,
            waiting_for_archive: Some(vec![]),
        };
        // The narrowest order that holds every match: a context's tasks (usually a few), a
        // caller's own, an agent's, or all.
        let order = match (q.context_id, q.owner, q.agent_id) {
            (Some(context), _, _) => self.index.context(context),
            (None, Some(owner), _) => self.owned.get(owner),
            (None, None, Some(agent)) => self.index.agent(agent),
            (None, None, None) => Some(&self.recency),
        };
        let Some(order) = order else { return page };
        if q.context_id.is_some() || q.updated_after_ms.is_some() {
            // No count answers these filters: the order is walked whole.
            self.list_walking(q, order, &mut page);
            return page;
        }
        page.total_size = self.index.in_memory.get(q.owner, q.agent_id, q.state);
        page.archived_matching = self.index.archived.get(q.owner, q.agent_id, q.state);
        let upper = q.before.map_or(Bound::Unbounded, |(seq, _)| Bound::Included(seq));
        let below_cursor = order.range((Bound::Unbounded, upper)).rev().filter_map(|(_, id)| self.task(id));
        for entry in below_cursor.filter(|e| q.matches(e) && q.is_after_cursor(e.seq, &e.task.id)) {
            if page.tasks.len() == q.page_size {
                page.more = true;
                break;
            }
            page.tasks.push(entry);
        }
        page.waiting_for_archive = self.waiting_for_archive(q);
        page
    }

    /// Counts and pages by walking all of `order`.
    fn list_walking<'a>(&'a self, q: &ListQuery<'_>, order: &'a BTreeMap<u64, String>, page: &mut ListPage<'a>) {
        let mut waiting = vec![];
        for entry in order.values().rev().filter_map(|id| self.task(id)).filter(|e| q.matches(e)) {
            page.total_size += 1;
            match entry.terminal_seq {
                Some(ts) if self.archived.contains_key(&ts) => page.archived_matching += 1,
                Some(_) => waiting.push(entry.task.id.as_str()),
                None => {}
            }
            if !q.is_after_cursor(entry.seq, &entry.task.id) {
                continue;
            }
            if page.tasks.len() < q.page_size {
                page.tasks.push(entry);
            } else {
                page.more = true;
            }
        }
        if !self.archive_on() {
            waiting.clear();
        }
        page.waiting_for_archive = (waiting.len() <= WAITING_CHECK_MAX).then_some(waiting);
    }

    /// The matching terminal tasks the archive may hold without their mark applied here yet:
    /// the archiver's backlog (short unless the archive is down), walked up to
    /// `WAITING_CHECK_MAX`; `None` past it. With the archive off there are none.
    fn waiting_for_archive(&self, q: &ListQuery<'_>) -> Option<Vec<&str>> {
        if !self.archive_on() {
            return Some(vec![]);
        }
        if self.unarchived.len() > WAITING_CHECK_MAX {
            return None;
        }
        let backlog = self.unarchived.values().filter_map(|id| self.task(id));
        Some(backlog.filter(|e| q.matches(e)).map(|e| e.task.id.as_str()).collect())
    }

    pub(super) fn upsert_agent(&mut self, record: AgentRecord, auth: AgentAuth, at_ms: u64) {
        let (card, registered_at_ms) = match self.agents.remove(&record.id) {
            Some(old) => (old.card, old.registered_at_ms),
            None => (None, at_ms),
        };
        let upstream = Upstream::choose(&record, card.as_ref());
        let id = record.id.clone();
        self.agents.insert(id, AgentEntry { record, auth, card, upstream, registered_at_ms });
    }

    pub(super) fn delete_agent(&mut self, id: &str) {
        self.agents.remove(id);
        self.agent_rates.remove(id);
    }

    /// Sets or clears a registered agent's rate limit.
    pub(super) fn set_agent_rate(&mut self, id: &str, rate: Option<super::RateLimit>) -> Result<(), Refusal> {
        if !self.agents.contains_key(id) {
            return Err(Refusal::AgentNotFound(id.into()));
        }
        match rate {
            Some(rate) => self.agent_rates.insert(id.to_owned(), rate),
            None => self.agent_rates.remove(id),
        };
        Ok(())
    }

    /// An agent's configured rate limit, if it has one.
    pub fn agent_rate(&self, id: &str) -> Option<super::RateLimit> {
        self.agent_rates.get(id).copied()
    }

    pub(super) fn set_card(&mut self, id: &str, card: CachedCard) -> Result<(), Refusal> {
        let entry = self.agents.get_mut(id).ok_or_else(|| Refusal::AgentNotFound(id.into()))?;
        entry.upstream = Upstream::choose(&entry.record, Some(&card));
        entry.card = Some(card);
        Ok(())
    }

    /// Records a task snapshot. A new task is recorded with `owner`; an existing one keeps
    /// its own (the proposer checked that the caller may see it).
    pub(super) fn record_task(
        &mut self,
        agent_id: String,
        snapshot: Task,
        at_ms: u64,
        owner: Option<String>,
    ) -> Result<TaskEvent, Refusal> {
        let snapshot = task::bounded(snapshot)?;
        let id = snapshot.id.clone();
        match self.tasks.get(&id) {
            Some(entry) if entry.agent_id != agent_id => {
                return Err(Refusal::OwnedByOtherAgent { task: id, owner: entry.agent_id.clone() });
            }
            Some(entry) => {
                let next = task::replace(Some(&entry.task), snapshot)?;
                return self.update_task(&agent_id, &id, at_ms, move |t| {
                    let changes = task::diff(t, &next);
                    *t = next;
                    Ok::<_, TransitionError>(changes)
                });
            }
            None => {}
        }
        self.make_room()?;
        self.seq += 1;
        let seq = self.seq;
        let terminal_seq = snapshot.status.state.is_terminal().then_some(seq);
        if let Some(ts) = terminal_seq {
            self.unarchived.insert(ts, id.clone());
        }
        self.recency.insert(seq, id.clone());
        if let Some(owner) = &owner {
            self.owned.entry(owner.clone()).or_default().insert(seq, id.clone());
        }
        let event = TaskEvent {
            task_id: id.clone(),
            context_id: snapshot.context_id.clone(),
            agent_id: agent_id.clone(),
            at_ms,
            seq,
            events: 1,
            state: snapshot.status.state,
            changes: vec![TaskChange::Created],
        };
        let entry = TaskEntry {
            task: snapshot,
            agent_id,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            seq,
            terminal_seq,
            events: 1,
            owner,
        };
        self.index.add(&entry, false);
        self.tasks.insert(id, Arc::new(entry));
        Ok(event)
    }

    /// Changes an existing task through a transition function; on refusal nothing changes
    /// (transition functions leave the task as it was when they refuse).
    pub(super) fn update_task(
        &mut self,
        agent_id: &str,
        id: &str,
        at_ms: u64,
        change: impl FnOnce(&mut Task) -> Result<Vec<TaskChange>, TransitionError>,
    ) -> Result<TaskEvent, Refusal> {
        let entry = Arc::make_mut(self.tasks.get_mut(id).ok_or_else(|| Refusal::TaskNotFound(id.into()))?);
        if entry.agent_id != agent_id {
            return Err(Refusal::OwnedByOtherAgent { task: id.into(), owner: entry.agent_id.clone() });
        }
        let (old_seq, old_state, old_context) = (entry.seq, entry.task.status.state, entry.task.context_id.clone());
        let changes = change(&mut entry.task)?;
        entry.events += changes.len() as u64;
        self.seq += 1;
        self.recency.remove(&entry.seq);
        if let Some(order) = entry.owner.as_ref().and_then(|o| self.owned.get_mut(o)) {
            order.remove(&entry.seq);
            order.insert(self.seq, id.to_owned());
        }
        entry.seq = self.seq;
        self.recency.insert(self.seq, id.to_owned());
        entry.updated_at_ms = at_ms;
        if entry.terminal_seq.is_none() && entry.task.status.state.is_terminal() {
            entry.terminal_seq = Some(self.seq);
            self.unarchived.insert(self.seq, id.to_owned());
        }
        self.index.changed(entry, old_seq, old_state, &old_context);
        Ok(TaskEvent {
            task_id: id.to_owned(),
            context_id: entry.task.context_id.clone(),
            agent_id: agent_id.to_owned(),
            at_ms,
            seq: self.seq,
            events: entry.events,
            state: entry.task.status.state,
            changes,
        })
    }

    /// The settings the log carries, if any were set.
    pub fn settings(&self) -> Option<super::SettingsV2> {
        self.settings
    }

    /// True when the log says terminal tasks go to the archive before they may leave memory.
    pub fn archive_on(&self) -> bool {
        self.settings.is_some_and(|s| s.archive)
    }

    /// Applies settings from the log. A lower task limit takes effect at the next new task,
    /// which evicts the oldest evictable tasks down to the limit. Turning the archive on makes
    /// every terminal task in memory that is not archived the archiver's work (none is lost).
    pub(super) fn apply_settings(&mut self, settings: super::SettingsV2) {
        self.settings = Some(settings);
        self.limits.tasks_max = usize::try_from(settings.tasks_max).unwrap_or(usize::MAX).max(1);
    }

    /// Marks terminal tasks as held by the archive, so they may leave memory. Ids that are
    /// not in memory, not terminal or already archived are skipped: a repeated or late
    /// command changes nothing.
    pub(super) fn mark_archived(&mut self, ids: &[String]) -> usize {
        let mut marked = 0;
        for id in ids {
            let Some(ts) = self.tasks.get(id).and_then(|e| e.terminal_seq) else { continue };
            if let Some(id) = self.unarchived.remove(&ts) {
                if let Some(entry) = self.tasks.get(&id) {
                    self.index.archived(entry);
                }
                self.archived.insert(ts, id);
                marked += 1;
            }
        }
        marked
    }

    /// Evicts the given tasks from memory where that loses nothing: archived ones, or, with
    /// the archive off, terminal ones. Others are skipped.
    pub(super) fn evict(&mut self, ids: &[String]) -> usize {
        let mut evicted = 0;
        for id in ids {
            let Some(ts) = self.tasks.get(id).and_then(|e| e.terminal_seq) else { continue };
            let evictable =
                self.archived.contains_key(&ts) || (!self.archive_on() && self.unarchived.contains_key(&ts));
            if evictable {
                self.remove_terminal(ts);
                evicted += 1;
            }
        }
        evicted
    }

    /// Removes the terminal task that became terminal at `ts` from memory.
    fn remove_terminal(&mut self, ts: u64) {
        let archived = self.archived.remove(&ts);
        let was_archived = archived.is_some();
        let id = archived.or_else(|| self.unarchived.remove(&ts));
        if let Some(entry) = id.and_then(|id| self.tasks.remove(&id)) {
            self.index.remove(&entry, was_archived);
            self.recency.remove(&entry.seq);
            self.unown(&entry);
            self.tasks_evicted_total += 1;
            self.push.task_left(&entry.task.id);
        }
    }

    /// Takes a task that leaves memory out of its owner's order (and the owner with its last task).
    fn unown(&mut self, entry: &TaskEntry) {
        let Some(owner) = &entry.owner else { return };
        if let Some(order) = self.owned.get_mut(owner) {
            order.remove(&entry.seq);
            if order.is_empty() {
                self.owned.remove(owner);
            }
        }
    }

    /// The oldest task that may leave memory: archived, or with the archive off any terminal
    /// one, whichever became terminal first.
    fn oldest_evictable(&self) -> Option<u64> {
        let archived = self.archived.get_min().map(|(ts, _)| *ts);
        if self.archive_on() {
            return archived;
        }
        let unarchived = self.unarchived.get_min().map(|(ts, _)| *ts);
        archived.into_iter().chain(unarchived).min()
    }

    /// Evicts the tasks that became terminal longest ago (and may leave memory) until there is
    /// room for one more; refuses when none may.
    fn make_room(&mut self) -> Result<(), Refusal> {
        while self.tasks.len() >= self.limits.tasks_max {
            let Some(ts) = self.oldest_evictable() else {
                return Err(Refusal::TableFull(self.limits.tasks_max));
            };
            self.remove_terminal(ts);
        }
        Ok(())
    }

    /// Terminal tasks the archive does not hold yet, oldest first, up to `max`.
    /// Shared, so a caller can collect them under the state lock at the cost of a reference
    /// count each and let go, instead of cloning the tables (a clone held while the tables
    /// change makes every write copy the nodes on its path).
    pub fn unarchived(&self, max: usize) -> impl Iterator<Item = &Arc<TaskEntry>> {
        self.unarchived.values().filter_map(|id| self.tasks.get(id)).take(max)
    }

    /// How many terminal tasks wait for the archive.
    pub fn unarchived_count(&self) -> usize {
        self.unarchived.len()
    }

    /// Archived tasks still in memory, oldest first (the order they leave memory in).
    pub fn archived_in_memory(&self) -> impl ExactSizeIterator<Item = &TaskEntry> + '_ {
        self.archived.values().map(|id| self.task(id).expect("the archived index only names tasks in memory"))
    }

    /// Whether the archive holds this task (it is also still in memory).
    pub fn is_archived(&self, entry: &TaskEntry) -> bool {
        entry.terminal_seq.is_some_and(|ts| self.archived.contains_key(&ts))
    }

    /// Push configs and the webhook outbox.
    pub fn push(&self) -> &PushTables {
        &self.push
    }

    /// The API keys.
    pub fn keys(&self) -> &super::keys::KeyTables {
        &self.keys
    }

    pub(super) fn keys_mut(&mut self) -> &mut super::keys::KeyTables {
        &mut self.keys
    }

    /// Adds or replaces a push config of a task in memory; a new one gets the task's events
    /// from now on.
    pub(super) fn set_push_config(&mut self, config: PushConfig, at_ms: u64) -> Result<(), Refusal> {
        let events = self.task(&config.task_id).ok_or_else(|| Refusal::TaskNotFound(config.task_id.clone()))?.events;
        self.push.set(config, events, at_ms)
    }

    pub(super) fn delete_push_config(&mut self, task_id: &str, config_id: &str) -> bool {
        self.push.delete(task_id, config_id)
    }

    /// Records a task snapshot with the push configs a client's message set for it: they get
    /// the events of this very command (a new task's creation included). Refused as a whole
    /// when the configs do not fit.
    pub(super) fn record_task_with_push(
        &mut self,
        agent_id: String,
        snapshot: Task,
        at_ms: u64,
        mut configs: Vec<PushConfig>,
        owner: Option<String>,
    ) -> Result<TaskEvent, Refusal> {
        // The proposer did not know the task's id: it is the configs' task, and the id of a
        // config that has none (as the SDK does).
        for config in &mut configs {
            config.task_id = snapshot.id.clone();
            if config.id.is_empty() {
                config.id = snapshot.id.clone();
            }
        }
        self.push.check_room(&snapshot.id, &configs)?;
        let event = self.record_task(agent_id, snapshot, at_ms, owner)?;
        let from = event.events - event.changes.len() as u64;
        for config in configs {
            self.push.set(config, from, at_ms).expect("room was checked");
        }
        Ok(event)
    }

    /// Turns a committed change of a task with push configs into outbox events.
    pub(super) fn enqueue_push(&mut self, event: &TaskEvent) {
        if !self.push.has_configs(&event.task_id) {
            return;
        }
        for (n, change) in event.numbered_changes() {
            let change = match change {
                TaskChange::Created => match self.task(&event.task_id) {
                    Some(e) => OutboxChange::Task(e.task.clone()),
                    None => continue,
                },
                TaskChange::Status { status, metadata } => {
                    OutboxChange::Status { status: status.clone(), metadata: metadata.clone() }
                }
                TaskChange::Artifact { artifact, append, last_chunk } => {
                    OutboxChange::Artifact { artifact: artifact.clone(), append: *append, last_chunk: *last_chunk }
                }
            };
            self.push.enqueue(&event.task_id, n, OutboxEvent { context_id: event.context_id.clone(), change });
        }
    }

    pub(super) fn set_signing_key(&mut self, key: &super::push::SigningKey) {
        self.push.set_signing_key(key);
    }

    /// Applies the deliverer's progress. Configs of tasks no longer in memory go once they
    /// have delivered everything.
    pub(super) fn push_progress(&mut self, items: &[super::push::Progress]) {
        for task_id in self.push.progress(items) {
            if self.task(&task_id).is_none() {
                self.push.task_left(&task_id);
            }
        }
    }

    /// The whole state, encoded for a raft snapshot. Tasks go in update order and agents in
    /// id order, so equal tables give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        // Encoded from references: nothing is copied but the bytes.
        let tasks = self.recency.values().filter_map(|id| self.task(id)).collect();
        let agents = self
            .agents
            .values()
            .map(|e| StoredAgentRef {
                record: &e.record,
                auth: &e.auth,
                card: e.card.as_ref(),
                registered_at_ms: e.registered_at_ms,
            })
            .collect();
        let snapshot = SnapshotTablesRef {
            tasks,
            agents,
            seq: self.seq,
            tasks_evicted_total: self.tasks_evicted_total,
            applied_commands: self.applied_commands,
            settings: self.settings,
            archived: self.archived.keys().copied().collect(),
        };
        let keys = self.keys.snapshot_ref();
        let rates = RatesRef {
            key_rates: self.keys.rates_snapshot(),
            agent_rates: self.agent_rates.iter().map(|(id, rate)| (id.clone(), *rate)).collect(),
        };
        crate::codec::encode(&VersionedSnapshotRef::V8(snapshot, self.push.snapshot_ref(), keys, rates))
    }

    /// Rebuilds tables from a snapshot; the derived indexes are recomputed.
    pub fn restore(limits: TableLimits, bytes: &[u8]) -> Result<Tables, bincode::error::DecodeError> {
        let no_rates = || (vec![], vec![]);
        let (s, push, keys, (key_rates, agent_rates)) = match crate::codec::decode(bytes)? {
            VersionedSnapshot::V1(v1) => (v1.upgrade(None, vec![]), PushTables::empty_snapshot(), vec![], no_rates()),
            VersionedSnapshot::V2(SnapshotV2 { v1, settings }) => {
                let v4 = v1.upgrade(settings.map(super::SettingsV2::from), vec![]);
                (v4, PushTables::empty_snapshot(), vec![], no_rates())
            }
            VersionedSnapshot::V3(SnapshotV3 { v1, settings, archived }) => {
                (v1.upgrade(settings, archived), PushTables::empty_snapshot(), vec![], no_rates())
            }
            VersionedSnapshot::V4(s) => (s.upgrade(), PushTables::empty_snapshot(), vec![], no_rates()),
            VersionedSnapshot::V5(SnapshotV5 { v4, push }) => (v4.upgrade(), push, vec![], no_rates()),
            VersionedSnapshot::V6(SnapshotV6 { v4, push, keys }) => (v4.upgrade(), push, keys, no_rates()),
            VersionedSnapshot::V7(SnapshotV7 { tables, push, keys }) => (tables, push, keys, no_rates()),
            VersionedSnapshot::V8(SnapshotV8 { tables, push, keys, key_rates, agent_rates }) => {
                (tables, push, keys, (key_rates, agent_rates))
            }
        };
        let (settings, archived) = (s.settings, s.archived);
        let archived: std::collections::HashSet<u64> = archived.into_iter().collect();
        let mut tables = Tables::new(limits);
        if let Some(settings) = settings {
            tables.apply_settings(settings);
        }
        for entry in s.tasks {
            tables.recency.insert(entry.seq, entry.task.id.clone());
            if let Some(owner) = &entry.owner {
                tables.owned.entry(owner.clone()).or_default().insert(entry.seq, entry.task.id.clone());
            }
            let is_archived = entry.terminal_seq.is_some_and(|ts| archived.contains(&ts));
            if let Some(ts) = entry.terminal_seq {
                let index = if is_archived { &mut tables.archived } else { &mut tables.unarchived };
                index.insert(ts, entry.task.id.clone());
            }
            tables.index.add(&entry, is_archived);
            tables.tasks.insert(entry.task.id.clone(), Arc::new(entry));
        }
        for a in s.agents {
            let upstream = Upstream::choose(&a.record, a.card.as_ref());
            let entry = AgentEntry {
                record: a.record,
                auth: a.auth,
                card: a.card,
                upstream,
                registered_at_ms: a.registered_at_ms,
            };
            tables.agents.insert(entry.record.id.clone(), entry);
        }
        tables.push = PushTables::restore(push);
        tables.keys = super::keys::KeyTables::restore(keys, key_rates);
        tables.agent_rates = agent_rates.into_iter().collect();
        tables.seq = s.seq;
        tables.tasks_evicted_total = s.tasks_evicted_total;
        tables.applied_commands = s.applied_commands;
        Ok(tables)
    }

    /// A stable rendering of the whole table contents, for determinism tests.
    #[cfg(test)]
    pub(crate) fn debug_fingerprint(&self) -> String {
        let mut ids: Vec<_> = self.tasks.keys().collect();
        ids.sort();
        let tasks: Vec<_> = ids.iter().map(|id| format!("{:?}", self.tasks[*id])).collect();
        let agents: Vec<_> = self.agents.values().map(|a| format!("{:?} {:?}", a.record, a.auth)).collect();
        let owned: std::collections::BTreeMap<_, _> = self.owned.iter().collect();
        format!(
            "{tasks:?} {agents:?} {:?} {:?} {:?} {:?} {} {} {:?} {} {} {:?}",
            self.recency,
            owned,
            self.unarchived,
            self.archived,
            self.seq,
            self.tasks_evicted_total,
            self.settings,
            self.push.debug_fingerprint(),
            self.keys.debug_fingerprint(),
            self.agent_rates
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;
    use crate::state::task::tests::task;

    fn filled() -> Tables {
        let mut t = Tables::new(TableLimits { tasks_max: 100 });
        for i in 0..7 {
            let mut tk = task(&format!("t{i}"), if i % 2 == 0 { TaskState::Completed } else { TaskState::Working });
            tk.context_id = if i < 4 { "c1".into() } else { "c2".into() };
            t.apply(Command::RecordTask { agent_id: "a".into(), task: tk, at_ms: i }).unwrap();
        }
        t
    }

    /// The ids of a page, whether more follow, the counts and the ids checked in the archive.
    type PageSummary = (Vec<String>, bool, usize, usize, Option<Vec<String>>);

    fn summary(page: ListPage<'_>) -> PageSummary {
        let ids = page.tasks.iter().map(|e| e.task.id.clone()).collect();
        let mut waiting: Option<Vec<String>> =
            page.waiting_for_archive.map(|w| w.iter().map(|s| s.to_string()).collect());
        if let Some(w) = &mut waiting {
            w.sort();
        }
        (ids, page.more, page.total_size, page.archived_matching, waiting)
    }

    /// Every page of `q`, through the index and by walking every task (what ListTasks did
    /// before the index), compared.
    fn assert_pages_match_a_walk_of_everything(t: &Tables, q: &ListQuery<'_>) {
        let mut cursor: Option<(u64, String)> = None;
        for _ in 0..1000 {
            let q = ListQuery { before: cursor.as_ref().map(|(s, i)| (*s, i.as_str())), ..q.clone() };
            let got = summary(t.list_tasks(&q));
            let mut walked =
                ListPage { tasks: vec![], more: false, total_size: 0, archived_matching: 0, waiting_for_archive: None };
            t.list_walking(&q, &t.recency, &mut walked);
            let want = summary(walked);
            assert_eq!(got, want, "{q:?}");
            if !got.1 {
                return;
            }
            let last = t.task(got.0.last().unwrap()).unwrap();
            cursor = Some((last.seq, last.task.id.clone()));
        }
        panic!("paging did not end");
    }

    /// Tables after a deterministic mix of creations, changes, archive marks and evictions
    /// over two agents, three owners (one none), four contexts.
    fn churned(seed: u64, archive: bool) -> Tables {
        let mut t = Tables::new(TableLimits { tasks_max: 60 });
        t.apply_settings(crate::state::SettingsV2 { tasks_max: 60, archive });
        let mut x = seed;
        let mut next = move |n: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let states = [
            TaskState::Submitted,
            TaskState::Working,
            TaskState::InputRequired,
            TaskState::Completed,
            TaskState::Failed,
        ];
        for i in 0..300u64 {
            let id = format!("t{}", next(90));
            let state = states[next(states.len() as u64) as usize];
            match next(10) {
                0..=6 => {
                    let mut tk = task(&id, state);
                    tk.context_id = format!("c{}", next(4));
                    let agent_id = ["a", "b"][next(2) as usize].to_owned();
                    let owner = ["", "k1", "k2"][next(3) as usize];
                    // Refusals (a terminal task changing, another agent's task, a full table) change nothing.
                    let _ = t.record_task(agent_id, tk, i, (!owner.is_empty()).then(|| owner.to_owned()));
                }
                7 | 8 => {
                    let _ = t.mark_archived(&[id]);
                }
                _ => {
                    let _ = t.evict(&[id]);
                }
            }
        }
        t
    }

    #[test]
    fn pages_and_counts_through_the_index_equal_a_walk_of_every_task() {
        for (seed, archive) in [(1, true), (2, false), (3, true), (4, false)] {
            let t = churned(seed, archive);
            let restored = Tables::restore(TableLimits { tasks_max: 60 }, &t.snapshot()).unwrap();
            for tables in [&t, &restored] {
                let n = tables.task_count();
                assert_eq!(tables.index.entries(), (n, n), "every task once in its agent's and its context's order");
                let walked =
                    TaskState::ALL.map(|s| tables.tasks.values().filter(|e| e.task.status.state == s).count() as u64);
                assert_eq!(tables.count_by_state(), walked);
                for owner in [None, Some("k1"), Some("k2")] {
                    for agent_id in [None, Some("a"), Some("b")] {
                        for state in [None, Some(TaskState::Working), Some(TaskState::Completed)] {
                            for context_id in [None, Some("c1")] {
                                for updated_after_ms in [None, Some(150)] {
                                    for page_size in [1, 7, 100] {
                                        let q = ListQuery {
                                            agent_id,
                                            context_id,
                                            state,
                                            owner,
                                            updated_after_ms,
                                            before: None,
                                            page_size,
                                        };
                                        assert_pages_match_a_walk_of_everything(tables, &q);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pages_walk_every_match_newest_first() {
        let t = filled();
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let before = cursor.as_ref().map(|(s, i): &(u64, String)| (*s, i.as_str()));
            let page = t.list_tasks(&ListQuery { before, page_size: 3, ..Default::default() });
            assert_eq!(page.total_size, 7);
            seen.extend(page.tasks.iter().map(|e| e.task.id.clone()));
            if !page.more {
                break;
            }
            let last = page.tasks.last().unwrap();
            cursor = Some((last.seq, last.task.id.clone()));
        }
        assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
    }

    #[test]
    fn snapshot_restores_equal_tables_that_keep_behaving_alike() {
        let mut a = filled();
        let agent = crate::state::AgentRecord {
            id: "x".into(),
            url: "http://x/".into(),
            bearer: Some("b".into()),
            protocol_version: None,
            metadata: None,
            settings: Default::default(),
            source: "api".into(),
        };
        a.apply(Command::UpsertAgent { agent, at_ms: 9 }).unwrap();
        let bytes = a.snapshot();
        let mut b = Tables::restore(TableLimits { tasks_max: 100 }, &bytes).unwrap();
        assert_eq!(a.debug_fingerprint(), b.debug_fingerprint());
        assert_eq!(b.snapshot(), bytes, "equal tables give equal bytes");
        assert_eq!(b.agent("x").unwrap().upstream, a.agent("x").unwrap().upstream);
        let next = Command::RecordTask { agent_id: "a".into(), task: task("t1", TaskState::Completed), at_ms: 10 };
        assert_eq!(a.apply(next.clone()), b.apply(next));
        assert_eq!(a.debug_fingerprint(), b.debug_fingerprint());
        assert!(Tables::restore(TableLimits { tasks_max: 1 }, &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn snapshots_keep_what_the_archive_holds_and_old_snapshots_still_read() {
        let mut a = filled();
        a.apply_settings(crate::state::SettingsV2 { tasks_max: 100, archive: true });
        assert_eq!(a.mark_archived(&["t0".into(), "t2".into()]), 2);
        let b = Tables::restore(TableLimits::default(), &a.snapshot()).unwrap();
        assert_eq!(a.debug_fingerprint(), b.debug_fingerprint());
        assert!(b.archive_on() && b.is_archived(b.task("t2").unwrap()));
        assert_eq!(b.unarchived_count(), 2, "t4 and t6 still wait for the archive");
        // A V2 snapshot (before the archive): every terminal task reads as not archived.
        let tasks = a
            .recency
            .values()
            .map(|id| {
                let e = &a.tasks[id];
                StoredTaskV1 {
                    task: e.task.clone(),
                    agent_id: e.agent_id.clone(),
                    created_at_ms: e.created_at_ms,
                    updated_at_ms: e.updated_at_ms,
                    seq: e.seq,
                    terminal_seq: e.terminal_seq,
                }
            })
            .collect();
        let v1 = SnapshotV1 { tasks, agents: vec![], seq: a.seq, tasks_evicted_total: 0, applied_commands: 0 };
        let old = VersionedSnapshot::V2(SnapshotV2 { v1, settings: Some(crate::state::Settings { tasks_max: 7 }) });
        let c = Tables::restore(TableLimits::default(), &crate::codec::encode(&old)).unwrap();
        assert_eq!(c.settings(), Some(crate::state::SettingsV2 { tasks_max: 7, archive: false }));
        assert_eq!((c.unarchived_count(), c.archived_in_memory().len(), c.task_count()), (4, 0, 7));
    }

    #[test]
    fn pages_count_what_the_archive_also_holds() {
        let mut t = filled();
        t.mark_archived(&["t0".into(), "t4".into()]);
        let page = t.list_tasks(&ListQuery { page_size: 2, ..Default::default() });
        assert_eq!((page.total_size, page.archived_matching, page.more), (7, 2, true));
        // The cursor is (seq, id): below t5's position.
        let t5 = t.task("t5").unwrap();
        let q = ListQuery { before: Some((t5.seq, "t5")), page_size: 50, ..Default::default() };
        let ids: Vec<_> = t.list_tasks(&q).tasks.iter().map(|e| e.task.id.as_str()).collect();
        assert_eq!(ids, ["t4", "t3", "t2", "t1", "t0"]);
    }

    fn owned(id: &str, owner: &str, state: TaskState, at_ms: u64) -> Command {
        Command::RecordOwnedTask {
            agent_id: "a".into(),
            task: task(id, state),
            at_ms,
            push: vec![],
            owner: owner.into(),
            sees_all: false,
        }
    }

    fn listed(t: &Tables, owner: Option<&str>) -> (Vec<String>, usize) {
        let page = t.list_tasks(&ListQuery { owner, page_size: 50, ..Default::default() });
        (page.tasks.iter().map(|e| e.task.id.clone()).collect(), page.total_size)
    }

    #[test]
    fn owners_list_their_own_tasks_through_the_index() {
        let mut t = Tables::new(TableLimits { tasks_max: 4 });
        t.apply(owned("a1", "key:a", TaskState::Completed, 1)).unwrap();
        t.apply(owned("b1", "key:b", TaskState::Working, 2)).unwrap();
        t.apply(owned("a2", "key:a", TaskState::Working, 3)).unwrap();
        t.apply(Command::RecordTask { agent_id: "a".into(), task: task("open", TaskState::Working), at_ms: 4 })
            .unwrap();
        assert_eq!(listed(&t, Some("key:a")), (vec!["a2".into(), "a1".into()], 2));
        assert_eq!(listed(&t, Some("key:b")).1, 1);
        assert_eq!(listed(&t, Some("nobody")), (vec![], 0));
        assert_eq!(listed(&t, None).1, 4, "no owner filter: every task");
        // An update moves the task to the front of its owner's order too.
        t.apply(Command::UpdateStatus {
            agent_id: "a".into(),
            update: crate::state::task::tests::status("a1", TaskState::Completed, None),
            at_ms: 5,
        })
        .unwrap_err();
        let update = crate::state::task::tests::status("a2", TaskState::Completed, Some("done"));
        t.apply(Command::UpdateStatus { agent_id: "a".into(), update, at_ms: 6 }).unwrap();
        assert_eq!(listed(&t, Some("key:a")).0, ["a2", "a1"]);
        // Evicting a1 (the oldest terminal one) takes it out of the index.
        t.apply(owned("b2", "key:b", TaskState::Working, 7)).unwrap();
        assert!(t.task("a1").is_none());
        assert_eq!(listed(&t, Some("key:a")), (vec!["a2".into()], 1));
        // The index is rebuilt from a snapshot alike.
        let restored = Tables::restore(TableLimits { tasks_max: 4 }, &t.snapshot()).unwrap();
        assert_eq!(restored.debug_fingerprint(), t.debug_fingerprint());
        assert_eq!(restored.task("b2").unwrap().owner.as_deref(), Some("key:b"));
    }

    #[test]
    fn a_task_keeps_its_owner_and_another_callers_record_is_refused() {
        let mut t = Tables::new(TableLimits { tasks_max: 10 });
        t.apply(owned("x", "key:a", TaskState::Working, 1)).unwrap();
        let before = t.debug_fingerprint();
        assert_eq!(
            t.apply(owned("x", "key:b", TaskState::Completed, 2)),
            Err(crate::state::Refusal::OtherOwner("x".into()))
        );
        assert_eq!(t.debug_fingerprint(), before, "a refusal changes nothing");
        // An admin's record updates it; the owner stays.
        let admin = Command::RecordOwnedTask {
            agent_id: "a".into(),
            task: task("x", TaskState::Completed),
            at_ms: 3,
            push: vec![],
            owner: "admin".into(),
            sees_all: true,
        };
        t.apply(admin).unwrap();
        let e = t.task("x").unwrap();
        assert_eq!((e.owner.as_deref(), e.task.status.state), (Some("key:a"), TaskState::Completed));
        // The owner's own record, and the gateway's (no owner), are fine.
        t.apply(owned("y", "key:b", TaskState::Working, 4)).unwrap();
        t.apply(owned("y", "key:b", TaskState::Working, 5)).unwrap();
        t.apply(Command::RecordTask { agent_id: "a".into(), task: task("y", TaskState::Completed), at_ms: 6 }).unwrap();
        assert_eq!(t.task("y").unwrap().owner.as_deref(), Some("key:b"));
    }

    #[test]
    fn a_v6_snapshot_reads_as_tasks_without_owners_and_agents_without_auth() {
        let mut a = filled();
        let agent = crate::state::AgentRecord {
            id: "x".into(),
            url: "http://x/".into(),
            bearer: None,
            protocol_version: None,
            metadata: None,
            settings: Default::default(),
            source: "api".into(),
        };
        a.apply(Command::UpsertAgent { agent: agent.clone(), at_ms: 9 }).unwrap();
        let tasks = a
            .recency
            .values()
            .map(|id| {
                let e = &a.tasks[id];
                StoredTaskV4 {
                    task: e.task.clone(),
                    agent_id: e.agent_id.clone(),
                    created_at_ms: e.created_at_ms,
                    updated_at_ms: e.updated_at_ms,
                    seq: e.seq,
                    terminal_seq: e.terminal_seq,
                    events: e.events,
                }
            })
            .collect();
        let agents = vec![StoredAgent { record: agent, card: None, registered_at_ms: 9 }];
        let v4 = SnapshotV4 {
            tasks,
            agents,
            seq: a.seq,
            tasks_evicted_total: 0,
            applied_commands: a.applied_commands,
            settings: None,
            archived: vec![],
        };
        let old = VersionedSnapshot::V6(SnapshotV6 { v4, push: PushTables::empty_snapshot(), keys: vec![] });
        let b = Tables::restore(TableLimits::default(), &crate::codec::encode(&old)).unwrap();
        assert_eq!(b.debug_fingerprint(), a.debug_fingerprint());
        assert!(b.task("t3").unwrap().owner.is_none());
        assert_eq!(b.agent("x").unwrap().auth, AgentAuth::default());
        // And V7 keeps an agent's auth.
        let auth = AgentAuth { forward_credentials: true, oauth2: None };
        let mut c = b.clone();
        let record = c.agent("x").unwrap().record.clone();
        c.apply(Command::UpsertAgentWithAuth { agent: record, auth: auth.clone(), at_ms: 10 }).unwrap();
        let d = Tables::restore(TableLimits::default(), &c.snapshot()).unwrap();
        assert_eq!(d.agent("x").unwrap().auth, auth);
        assert_eq!(d.snapshot(), c.snapshot());
    }

    #[test]
    fn filters_combine() {
        let t = filled();
        let q = ListQuery {
            context_id: Some("c1"),
            state: Some(TaskState::Completed),
            page_size: 50,
            ..Default::default()
        };
        let ids: Vec<_> = t.list_tasks(&q).tasks.iter().map(|e| e.task.id.as_str()).collect();
        assert_eq!(ids, ["t2", "t0"]);
        let q = ListQuery { agent_id: Some("other"), page_size: 50, ..Default::default() };
        assert_eq!(t.list_tasks(&q).total_size, 0);
        let q = ListQuery { updated_after_ms: Some(5), page_size: 50, ..Default::default() };
        assert_eq!(t.list_tasks(&q).total_size, 2);
    }
}
