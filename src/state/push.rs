//! Push notifications in the state machine: the clients' webhook configs per task, and the
//! outbox of committed task events each config still has to receive.
//!
//! `apply` turns every committed change of a task that has configs into an outbox event
//! (deterministically: the same log gives the same outbox on every node). The deliverer
//! (`crate::push`, on the leader only) posts them in order per (task, config) and commits
//! what became of each through [`PushCommand::Progress`]; a new leader resumes from each
//! config's committed cursor, so every event is delivered at least once. Events are kept
//! once per task and shared by its configs; an event leaves when every config is past it.

use std::sync::Arc;

use imbl::OrdMap;

use super::Refusal;
use super::task::{Artifact, Task, TaskStatus};
use crate::codec::Json;

/// Configs one task may have (a create past it is refused); the SDK keeps no limit, but a
/// client that sets more than a handful of webhooks on one task is misbehaving.
pub const PUSH_CONFIGS_PER_TASK_MAX: usize = 16;
/// Configs in the whole cluster, over all tasks in memory (a create past it is refused,
/// retryable: configs leave with their tasks).
pub const PUSH_CONFIGS_MAX: usize = 100_000;
/// Undelivered events kept in the outbox. Past it, a committed task change is still
/// committed (task updates are never refused for push), but its event is given up for the
/// task's configs on record (their `given_up_total` and `last_error`), and counted in
/// `outbox_overflow_total` (`/health`, metrics).
pub const OUTBOX_EVENTS_MAX: usize = 100_000;
/// Bytes of a delivery error kept in a config's status.
pub const PUSH_ERROR_BYTES_MAX: usize = 512;

/// A client's webhook for one task. Stored type.
#[derive(Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PushConfig {
    pub id: String,
    pub task_id: String,
    pub url: String,
    /// Echoed in `X-A2A-Notification-Token`.
    pub token: Option<String>,
    /// How deliveries authenticate, each applied (a config may carry several: a scheme for
    /// `Authorization` and a signature, as SuperX configs do).
    pub auth: Vec<PushAuth>,
    /// The payload shape the client asked in (the version it set the config in).
    pub format: PushFormat,
}

/// One way deliveries authenticate to the webhook. Stored type: new ways (JWTs signed with
/// the gateway's own key) are new variants at the end, so configs stored before still read.
#[derive(Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum PushAuth {
    /// `Authorization: <scheme> <credentials>` (A2A `AuthenticationInfo`).
    Scheme { scheme: String, credentials: Option<String> },
    /// SuperX's signature (`hmacSecret`): `X-A2A-Signature`, the lowercase hex HMAC-SHA256
    /// of `<X-A2A-Timestamp>.<body>`.
    Hmac { secret: String },
    /// SuperX's JWT (`jwtSecret` and its claims), HS256, in `Authorization: Bearer`.
    JwtHs256 { secret: String, issuer: Option<String>, audience: Option<String>, kid: Option<String> },
    /// A JWT signed with the cluster's own key (ES256), in `Authorization: Bearer`; receivers
    /// verify it with the gateway's JWKS (`/.well-known/jwks.json`). What A2A's
    /// `authentication: {scheme: "Bearer"}` without credentials asks for.
    GatewayJwt,
}

/// The cluster's key for signing webhook JWTs: made by the first leader that needs one and
/// committed, so every node (and every later leader) signs with it and publishes the same
/// JWKS. Stored type.
#[derive(Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct SigningKey {
    pub kid: String,
    /// ECDSA P-256 private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// The A2A generation of a config's payloads. Stored type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum PushFormat {
    /// A 1.0 `StreamResponse`.
    V10,
    /// The 0.3 shape: a bare Task or event with `kind`.
    V03,
}

/// Secrets never show in logs: the token and credentials are redacted.
impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig")
            .field("id", &self.id)
            .field("task_id", &self.task_id)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("format", &self.format)
            .finish()
    }
}

impl std::fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushAuth::Scheme { scheme, .. } => write!(f, "Scheme({scheme}, <redacted>)"),
            PushAuth::Hmac { .. } => f.write_str("Hmac(<redacted>)"),
            PushAuth::GatewayJwt => f.write_str("GatewayJwt"),
            PushAuth::JwtHs256 { issuer, audience, kid, .. } => {
                write!(f, "JwtHs256(iss {issuer:?}, aud {audience:?}, kid {kid:?}, <redacted>)")
            }
        }
    }
}

/// What became of a config's deliveries so far. Stored type.
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct PushStatus {
    /// The task's last event this config is done with (delivered or given up); the next
    /// delivery is the first outbox event after it.
    pub cursor: u64,
    pub delivered_total: u64,
    pub given_up_total: u64,
    /// Attempts made (a delivered event on the third try counts three).
    pub attempts_total: u64,
    pub last_error: Option<String>,
}

/// A config with its delivery status. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct StoredPushConfig {
    pub config: PushConfig,
    pub status: PushStatus,
    pub created_at_ms: u64,
}

/// One committed change of a task, as a webhook receives it. Stored type.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub enum OutboxChange {
    /// The task as it was created (a stream's first event).
    Task(Task),
    Status {
        status: TaskStatus,
        metadata: Option<Json>,
    },
    Artifact {
        artifact: Artifact,
        append: bool,
        last_chunk: bool,
    },
}

/// An outbox event. Stored type.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::Decode)]
pub struct OutboxEvent {
    pub context_id: String,
    pub change: OutboxChange,
}

/// The deliverer's commands, committed after its I/O. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub enum PushCommand {
    /// What became of deliveries, in the order they ended.
    Progress(Vec<Progress>),
    /// The cluster's JWT signing key; ignored when one is set already (the first wins).
    SetSigningKey(SigningKey),
}

/// One event done with for one config. Stored type.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Progress {
    pub task_id: String,
    pub config_id: String,
    /// The task's event number.
    pub event: u64,
    pub attempts: u32,
    /// `None`: delivered; else why it was given up.
    pub error: Option<String>,
}

/// One (task, config) with events to deliver, for the deliverer.
#[derive(Clone, Debug)]
pub struct Lane {
    pub config: PushConfig,
    /// The first event due (after the config's cursor).
    pub event: u64,
    pub payload: Arc<OutboxEvent>,
}

/// A (task id, config id) pair: one lane of deliveries.
pub type LaneKey = (String, String);

/// The push part of the tables. Persistent maps: cloning is O(1).
#[derive(Clone, Debug, Default)]
pub struct PushTables {
    /// task id -> config id -> config.
    configs: OrdMap<String, OrdMap<String, Arc<StoredPushConfig>>>,
    config_count: usize,
    /// task id -> event number -> event, for tasks whose configs have events due.
    outbox: OrdMap<String, OrdMap<u64, Arc<OutboxEvent>>>,
    outbox_events: usize,
    overflow_total: u64,
    signing_key: Option<SigningKey>,
    /// The lanes with an event due, per destination, in the order they became due: what the
    /// deliverer takes work from without scanning the outbox. Derived from the tables above
    /// (kept by every change to them, rebuilt on restore; not in snapshots).
    due: DueIndex,
}

/// Lanes with an event due, by destination (`host:port`), first due first.
#[derive(Clone, Debug, Default, PartialEq)]
struct DueIndex {
    /// destination -> place -> lane.
    queues: OrdMap<String, OrdMap<u64, LaneKey>>,
    /// task id -> config id -> (destination, place): where a due lane sits in `queues`.
    places: OrdMap<String, OrdMap<String, (String, u64)>>,
    /// The next place handed out (places only grow: a lane that becomes due queues last).
    next_place: u64,
    lanes: usize,
}

impl DueIndex {
    fn contains(&self, task_id: &str, config_id: &str) -> bool {
        self.places.get(task_id).is_some_and(|m| m.contains_key(config_id))
    }

    fn add(&mut self, task_id: &str, config_id: &str, destination: String) {
        let place = self.next_place;
        self.next_place += 1;
        let key = (task_id.to_owned(), config_id.to_owned());
        self.queues.entry(destination.clone()).or_default().insert(place, key);
        self.places.entry(task_id.to_owned()).or_default().insert(config_id.to_owned(), (destination, place));
        self.lanes += 1;
    }

    fn remove(&mut self, task_id: &str, config_id: &str) {
        let Some(task_places) = self.places.get_mut(task_id) else { return };
        let Some((destination, place)) = task_places.remove(config_id) else { return };
        if task_places.is_empty() {
            self.places.remove(task_id);
        }
        if let Some(queue) = self.queues.get_mut(&destination) {
            queue.remove(&place);
            if queue.is_empty() {
                self.queues.remove(&destination);
            }
        }
        self.lanes -= 1;
    }

    /// The lanes due, without their places (which depend on the order changes were seen).
    #[cfg(test)]
    fn lane_set(&self) -> std::collections::BTreeMap<String, std::collections::BTreeSet<LaneKey>> {
        self.queues.iter().map(|(d, q)| (d.clone(), q.values().cloned().collect())).collect()
    }
}

/// A webhook's destination (`host:port`), what deliveries are queued and limited by.
pub fn destination(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}:{}", u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0)),
        Err(_) => url.to_owned(),
    }
}

/// The push part of a snapshot. Stored type.
#[derive(bincode::Encode, bincode::Decode)]
pub(super) struct PushSnapshot {
    configs: Vec<StoredPushConfig>,
    outbox: Vec<(String, Vec<(u64, OutboxEvent)>)>,
    overflow_total: u64,
    signing_key: Option<SigningKey>,
}

/// [`PushSnapshot`] of references, for encoding (same fields, same bytes).
#[derive(bincode::Encode)]
pub(super) struct PushSnapshotRef<'a> {
    configs: Vec<&'a StoredPushConfig>,
    outbox: Vec<(&'a String, Vec<(u64, &'a OutboxEvent)>)>,
    overflow_total: u64,
    signing_key: Option<&'a SigningKey>,
}

impl PushTables {
    /// A task's configs, by id.
    pub fn configs(&self, task_id: &str) -> impl Iterator<Item = &StoredPushConfig> {
        self.configs.get(task_id).into_iter().flat_map(|m| m.values().map(|c| &**c))
    }

    pub fn config(&self, task_id: &str, config_id: &str) -> Option<&StoredPushConfig> {
        self.configs.get(task_id)?.get(config_id).map(|c| &**c)
    }

    pub fn has_configs(&self, task_id: &str) -> bool {
        self.configs.contains_key(task_id)
    }

    pub fn config_count(&self) -> usize {
        self.config_count
    }

    /// Undelivered events in the outbox.
    pub fn outbox_events(&self) -> usize {
        self.outbox_events
    }

    /// Events given up because the outbox was full when they were committed.
    pub fn overflow_total(&self) -> u64 {
        self.overflow_total
    }

    /// The cluster's JWT signing key, once a leader made one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        self.signing_key.as_ref()
    }

    /// Sets the signing key unless one is set (the first committed wins, on every node).
    pub(super) fn set_signing_key(&mut self, key: &SigningKey) {
        if self.signing_key.is_none() {
            self.signing_key = Some(key.clone());
        }
    }

    /// Every (task, config) with an event due, with its first one, in task order.
    pub fn lanes(&self) -> impl Iterator<Item = Lane> + '_ {
        self.due().filter_map(|(c, after)| self.next_event(&c.config.task_id, &c.config.id, after))
    }

    /// The destinations with lanes due, and how many each has.
    pub fn due_destinations(&self) -> impl Iterator<Item = (&String, usize)> + '_ {
        self.due.queues.iter().map(|(d, q)| (d, q.len()))
    }

    /// A destination's lanes with an event due, first due first.
    pub fn due_lanes(&self, destination: &str) -> impl Iterator<Item = &LaneKey> + '_ {
        self.due.queues.get(destination).into_iter().flat_map(|q| q.values())
    }

    /// Lanes with an event due, over all destinations.
    pub fn due_lane_count(&self) -> usize {
        self.due.lanes
    }

    /// Puts a lane in the due index or takes it out, as its config and events say now. A lane
    /// that stays due keeps its place.
    fn reindex(&mut self, task_id: &str, config_id: &str) {
        let wanted = self
            .config(task_id, config_id)
            .filter(|c| self.has_event_after(task_id, c.status.cursor))
            .map(|c| c.config.url.clone());
        match (self.due.contains(task_id, config_id), wanted) {
            (true, None) => self.due.remove(task_id, config_id),
            (false, Some(url)) => self.due.add(task_id, config_id, destination(&url)),
            (true, Some(_)) | (false, None) => {}
        }
    }

    fn reindex_task(&mut self, task_id: &str) {
        let ids: Vec<String> = self.configs(task_id).map(|c| c.config.id.clone()).collect();
        for id in ids {
            self.reindex(task_id, &id);
        }
    }

    /// Whether the task has an event after `after` in the outbox.
    pub fn has_event_after(&self, task_id: &str, after: u64) -> bool {
        self.outbox.get(task_id).is_some_and(|events| events.range(after + 1..).next().is_some())
    }

    /// Every config with an event due after its cursor, and that cursor, in task order:
    /// borrowed, so a scan that skips most lanes copies nothing for them.
    pub fn due(&self) -> impl Iterator<Item = (&StoredPushConfig, u64)> + '_ {
        self.outbox.iter().flat_map(move |(task_id, events)| {
            self.configs(task_id)
                .filter(|c| events.range(c.status.cursor + 1..).next().is_some())
                .map(|c| (c, c.status.cursor))
        })
    }

    /// Whether a config has an event due after `after` (and after its cursor).
    pub fn is_due_after(&self, task_id: &str, config_id: &str, after: u64) -> bool {
        self.config(task_id, config_id).is_some_and(|c| self.has_event_after(task_id, after.max(c.status.cursor)))
    }

    /// The event due for a config after `after`, if any (a deliverer walking its lane).
    pub fn next_event(&self, task_id: &str, config_id: &str, after: u64) -> Option<Lane> {
        let config = self.config(task_id, config_id)?;
        let after = after.max(config.status.cursor);
        let (event, payload) = self.outbox.get(task_id)?.range(after + 1..).next()?;
        Some(Lane { config: config.config.clone(), event: *event, payload: payload.clone() })
    }

    /// Adds or replaces a config of a task whose event count is `events`: a new config gets
    /// the events after `from` (at most `events`); a replaced one keeps its status.
    pub(super) fn set(&mut self, config: PushConfig, from: u64, at_ms: u64) -> Result<(), Refusal> {
        let task_configs = self.configs.get(&config.task_id);
        if let Some(old) = task_configs.and_then(|m| m.get(&config.id)) {
            let moved = destination(&old.config.url) != destination(&config.url);
            let (task_id, id) = (config.task_id.clone(), config.id.clone());
            let stored = StoredPushConfig { config, status: old.status.clone(), created_at_ms: old.created_at_ms };
            self.insert(stored);
            if moved {
                self.due.remove(&task_id, &id);
            }
            self.reindex(&task_id, &id);
            return Ok(());
        }
        let count = task_configs.map_or(0, |m| m.len());
        if count >= PUSH_CONFIGS_PER_TASK_MAX {
            return Err(Refusal::PushConfigsPerTaskFull(PUSH_CONFIGS_PER_TASK_MAX));
        }
        if self.config_count >= PUSH_CONFIGS_MAX {
            return Err(Refusal::PushConfigsFull(PUSH_CONFIGS_MAX));
        }
        let status = PushStatus { cursor: from, ..Default::default() };
        let (task_id, id) = (config.task_id.clone(), config.id.clone());
        self.insert(StoredPushConfig { config, status, created_at_ms: at_ms });
        self.config_count += 1;
        self.reindex(&task_id, &id);
        Ok(())
    }

    /// Whether `configs` (new ones or replacements) fit a task's and the cluster's limits.
    pub fn check_room(&self, task_id: &str, configs: &[PushConfig]) -> Result<(), Refusal> {
        let existing = self.configs.get(task_id);
        let mut ids: Vec<&str> = configs.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let new = ids.iter().filter(|id| existing.is_none_or(|m| !m.contains_key(**id))).count();
        if existing.map_or(0, |m| m.len()) + new > PUSH_CONFIGS_PER_TASK_MAX {
            return Err(Refusal::PushConfigsPerTaskFull(PUSH_CONFIGS_PER_TASK_MAX));
        }
        if self.config_count + new > PUSH_CONFIGS_MAX {
            return Err(Refusal::PushConfigsFull(PUSH_CONFIGS_MAX));
        }
        Ok(())
    }

    fn insert(&mut self, stored: StoredPushConfig) {
        let task_id = stored.config.task_id.clone();
        let id = stored.config.id.clone();
        self.configs.entry(task_id).or_default().insert(id, Arc::new(stored));
    }

    /// Removes a config; answers whether it existed. Its due events leave with it.
    pub(super) fn delete(&mut self, task_id: &str, config_id: &str) -> bool {
        let Some(task_configs) = self.configs.get_mut(task_id) else { return false };
        if task_configs.remove(config_id).is_none() {
            return false;
        }
        if task_configs.is_empty() {
            self.configs.remove(task_id);
        }
        self.config_count -= 1;
        self.due.remove(task_id, config_id);
        self.prune(task_id);
        true
    }

    /// Records a committed change of a task as an outbox event for its configs.
    pub(super) fn enqueue(&mut self, task_id: &str, event: u64, payload: OutboxEvent) {
        if self.configs(task_id).all(|c| c.status.cursor >= event) {
            return;
        }
        if self.outbox_events >= OUTBOX_EVENTS_MAX {
            self.overflow_total += 1;
            let ids: Vec<String> = self.configs(task_id).map(|c| c.config.id.clone()).collect();
            for id in ids {
                self.update_status(task_id, &id, |s| {
                    s.cursor = s.cursor.max(event);
                    s.given_up_total += 1;
                    s.last_error = Some(format!("the outbox was full ({OUTBOX_EVENTS_MAX} events)"));
                });
            }
            self.reindex_task(task_id);
            return;
        }
        self.outbox.entry(task_id.to_owned()).or_default().insert(event, Arc::new(payload));
        self.outbox_events += 1;
        self.reindex_task(task_id);
    }

    /// Applies the deliverer's progress; answers the tasks it touched. Stale or repeated
    /// progress (at or before a config's cursor, or for a config gone) changes nothing.
    pub(super) fn progress(&mut self, items: &[Progress]) -> Vec<String> {
        let mut touched: Vec<String> = Vec::new();
        for p in items {
            let due = self.config(&p.task_id, &p.config_id).is_some_and(|c| p.event > c.status.cursor);
            if !due {
                continue;
            }
            self.update_status(&p.task_id, &p.config_id, |s| {
                s.cursor = p.event;
                s.attempts_total += u64::from(p.attempts);
                match &p.error {
                    None => s.delivered_total += 1,
                    Some(e) => {
                        s.given_up_total += 1;
                        s.last_error = Some(e.chars().take(PUSH_ERROR_BYTES_MAX).collect());
                    }
                }
            });
            if !touched.contains(&p.task_id) {
                touched.push(p.task_id.clone());
            }
        }
        for task_id in &touched {
            self.prune(task_id);
            self.reindex_task(task_id);
        }
        touched
    }

    fn update_status(&mut self, task_id: &str, config_id: &str, f: impl FnOnce(&mut PushStatus)) {
        if let Some(c) = self.configs.get_mut(task_id).and_then(|m| m.get_mut(config_id)) {
            f(&mut Arc::make_mut(c).status);
        }
    }

    /// Drops a task's events every config is past (all of them, when it has no config).
    fn prune(&mut self, task_id: &str) {
        let floor = self.configs(task_id).map(|c| c.status.cursor).min().unwrap_or(u64::MAX);
        let Some(events) = self.outbox.get_mut(task_id) else { return };
        let before = events.len();
        // Keys above the floor stay (split leaves the floor itself out of both halves).
        let (_, kept) = events.clone().split(&floor);
        *events = kept;
        let after = events.len();
        self.outbox_events -= before - after;
        if after == 0 {
            self.outbox.remove(task_id);
        }
    }

    /// A task left memory: its configs go once they have nothing left to deliver (until
    /// then the deliverer still needs their URL and credentials).
    pub(super) fn task_left(&mut self, task_id: &str) {
        let drained: Vec<String> = match (self.configs.get(task_id), self.outbox.get(task_id)) {
            (Some(configs), events) => {
                let last = events.and_then(|e| e.keys().next_back().copied()).unwrap_or(0);
                configs.values().filter(|c| c.status.cursor >= last).map(|c| c.config.id.clone()).collect()
            }
            (None, _) => return,
        };
        for id in drained {
            self.delete(task_id, &id);
        }
    }

    pub(super) fn snapshot_ref(&self) -> PushSnapshotRef<'_> {
        PushSnapshotRef {
            configs: self.configs.values().flat_map(|m| m.values().map(|c| &**c)).collect(),
            outbox: self
                .outbox
                .iter()
                .map(|(t, events)| (t, events.iter().map(|(n, e)| (*n, &**e)).collect()))
                .collect(),
            overflow_total: self.overflow_total,
            signing_key: self.signing_key.as_ref(),
        }
    }

    pub(super) fn restore(s: PushSnapshot) -> PushTables {
        let mut t = PushTables { overflow_total: s.overflow_total, signing_key: s.signing_key, ..Default::default() };
        for stored in s.configs {
            t.insert(stored);
            t.config_count += 1;
        }
        for (task_id, events) in s.outbox {
            t.outbox_events += events.len();
            t.outbox.insert(task_id, events.into_iter().map(|(n, e)| (n, Arc::new(e))).collect());
        }
        let tasks: Vec<String> = t.configs.keys().cloned().collect();
        for task_id in tasks {
            t.reindex_task(&task_id);
        }
        t
    }

    /// An empty push part, for snapshots from before push.
    pub(super) fn empty_snapshot() -> PushSnapshot {
        PushSnapshot { configs: vec![], outbox: vec![], overflow_total: 0, signing_key: None }
    }

    /// Asserts the due index holds exactly the lanes a scan of the outbox finds due, each
    /// under its config's destination.
    #[cfg(test)]
    pub(crate) fn check_due_index(&self) {
        let mut scanned: std::collections::BTreeMap<String, std::collections::BTreeSet<LaneKey>> = Default::default();
        for (c, _) in self.due() {
            let key = (c.config.task_id.clone(), c.config.id.clone());
            scanned.entry(destination(&c.config.url)).or_default().insert(key);
        }
        assert_eq!(self.due.lane_set(), scanned);
        assert_eq!(self.due.lanes, scanned.values().map(|s| s.len()).sum::<usize>());
    }

    /// What a node's tables hold, for tests comparing nodes and restores (the due index by
    /// its lanes: places depend on the order changes were seen).
    #[cfg(test)]
    pub(crate) fn debug_fingerprint(&self) -> String {
        format!(
            "{:?} {:?} {} {} {} {:?} {:?} {}",
            self.configs,
            self.outbox,
            self.config_count,
            self.outbox_events,
            self.overflow_total,
            self.signing_key,
            self.due.lane_set(),
            self.due.lanes
        )
    }
}
