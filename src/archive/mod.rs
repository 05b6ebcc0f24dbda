//! The Postgres archive of terminal tasks (sqlx).
//!
//! The archiver ([`archiver`]) runs on the raft leader: it writes terminal tasks that are not
//! archived yet to Postgres in idempotent batches, then commits `ArchiveCommand::Archived`;
//! only an archived task may leave memory (`ArchiveCommand::Evict`, or a full table). Apply
//! never does I/O: it only marks and evicts. Every node reads archived tasks back through
//! [`Archive`] when they are no longer in its memory.
//!
//! Rows are this module's own versioned type ([`ROW_VERSION`]): the task as A2A 1.0 JSON
//! (rendered and parsed by `crate::a2a`, opaque here) with the columns ListTasks filters and
//! orders by. The schema is in `migrations/`, embedded and run at startup.

pub mod archiver;

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};

use crate::a2a::task::{TaskView, WireTask, task_from_wire};
use crate::config::ArchiveConfig;
use crate::state::{ListQuery, Task, TaskEntry};

/// The migrations in `migrations/`, compiled into the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The format of a row's `task` column this binary writes and reads: the A2A 1.0 Task JSON
/// with its whole history and artifacts.
pub const ROW_VERSION: i16 = 1;

/// The `archived_task_counts` slot retention subtracts from (writers use 0..`archive.writers`).
const RETENTION_SLOT: i16 = -1;

/// Pause before the first retry of an unreachable database at startup.
const STARTUP_RETRY_FIRST: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The database cannot be reached (connection refused, timeout, pool exhausted). Retryable.
    #[error("the archive database is unreachable: {0}")]
    Unreachable(String),
    /// The database answered with an error (wrong password, missing database, a failed
    /// statement).
    #[error("the archive database refused: {0}")]
    Refused(String),
    #[error(
        "the archive database is at schema version {found}, newer than this superx knows (up to {known}): \
         run a newer superx, or point archive.database_url (DATABASE_URL) at another database"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("the archive schema could not be brought up to date: {0}")]
    Migration(String),
    /// A row this binary cannot read (a newer row version, or a task that does not parse).
    #[error("archived task {id} is not readable: {why}")]
    BadRow { id: String, why: String },
}

impl ArchiveError {
    /// Worth retrying: the database may answer later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ArchiveError::Unreachable(_))
    }
}

impl From<sqlx::Error> for ArchiveError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                ArchiveError::Unreachable(e.to_string())
            }
            // 57P01..57P03: the server is shutting down or starting; 53300: too many
            // connections; 08xxx: connection exceptions.
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300") =>
            {
                ArchiveError::Unreachable(e.to_string())
            }
            _ => ArchiveError::Refused(e.to_string()),
        }
    }
}

/// The connection settings from the config: the URL (SuperX's `ecto://` accepted), the
/// statement timeout and an application name on every connection. The error never repeats
/// the URL (it may hold a password).
pub fn connect_options(c: &ArchiveConfig) -> Result<PgConnectOptions, String> {
    let url = match c.database_url.strip_prefix("ecto://") {
        Some(rest) => format!("postgres://{rest}"),
        None => c.database_url.clone(),
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a URL starting with postgres:// or postgresql://".into());
    }
    let options = PgConnectOptions::from_str(&url).map_err(|e| format!("not a valid Postgres URL ({e})"))?;
    Ok(options.application_name("superx").options([("statement_timeout", format!("{}ms", c.statement_timeout_ms))]))
}

/// One row to write.
#[derive(Clone, Debug)]
pub struct ArchiveRow {
    pub task_id: String,
    pub seq: i64,
    pub agent_id: String,
    pub context_id: String,
    pub state: &'static str,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Who created the task (`state::TaskEntry::owner`).
    pub owner: Option<String>,
    /// The A2A 1.0 Task JSON, whole.
    pub task_json: String,
}

impl ArchiveRow {
    pub fn of(entry: &TaskEntry) -> ArchiveRow {
        ArchiveRow {
            task_id: entry.task.id.clone(),
            seq: entry.seq as i64,
            agent_id: entry.agent_id.clone(),
            context_id: entry.task.context_id.clone(),
            state: entry.task.status.state.v10_name(),
            created_at_ms: entry.created_at_ms as i64,
            updated_at_ms: entry.updated_at_ms as i64,
            owner: entry.owner.clone(),
            task_json: serde_json::to_string(&WireTask { task: &entry.task, view: TaskView::FULL })
                .expect("a task of JSON values serializes"),
        }
    }
}

/// A task read back from the archive.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchivedTask {
    pub agent_id: String,
    pub owner: Option<String>,
    pub seq: u64,
    pub task: Task,
}

/// Counters for `/metrics` and `/health`.
#[derive(Default)]
pub struct ArchiveStats {
    pub archived_total: AtomicU64,
    pub batches_total: AtomicU64,
    pub write_errors_total: AtomicU64,
    pub read_errors_total: AtomicU64,
    pub evicted_total: AtomicU64,
    pub retention_deleted_total: AtomicU64,
    /// Duration of the last batch write, in microseconds.
    pub last_batch_us: AtomicU64,
    last_error: Mutex<Option<(String, Instant)>>,
}

impl ArchiveStats {
    pub fn note_error(&self, error: &ArchiveError) {
        *self.last_error.lock().expect("stats lock") = Some((error.to_string(), Instant::now()));
    }

    pub fn clear_error(&self) {
        *self.last_error.lock().expect("stats lock") = None;
    }

    /// The last error and how long ago it happened, while the archiver has not succeeded since.
    pub fn last_error(&self) -> Option<(String, Duration)> {
        self.last_error.lock().expect("stats lock").as_ref().map(|(e, at)| (e.clone(), at.elapsed()))
    }
}

/// The archive: a connection pool to the database, its schema up to date.
pub struct Archive {
    pool: PgPool,
    pub stats: ArchiveStats,
}

type Row = (String, i64, String, Option<String>, i16, String);

/// The columns a [`Row`] is read from.
const ROW_COLUMNS: &str = "SELECT task_id, seq, agent_id, owner, row_version, task::text FROM archived_tasks";

impl Archive {
    /// Connects and brings the schema up to date. An unreachable database is retried until
    /// `startup_timeout_ms`; anything else (bad credentials, a missing database, a schema
    /// newer than this binary) fails at once.
    pub async fn open(c: &ArchiveConfig) -> Result<Archive, ArchiveError> {
        let options = connect_options(c).map_err(ArchiveError::Refused)?;
        let deadline = Instant::now() + Duration::from_millis(c.startup_timeout_ms);
        let mut pause = STARTUP_RETRY_FIRST;
        loop {
            match Self::try_open(c, options.clone()).await {
                Err(e) if e.is_transient() && Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, retry_in = ?pause, "archive database not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    async fn try_open(c: &ArchiveConfig, options: PgConnectOptions) -> Result<Archive, ArchiveError> {
        let pool = PgPoolOptions::new()
            .max_connections(c.pool_max)
            .acquire_timeout(Duration::from_millis(c.connect_timeout_ms))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(migrate_error)?;
        Ok(Archive { pool, stats: ArchiveStats::default() })
    }

    /// Writes a batch in one statement (one transaction, with its counts; see
    /// `archived_task_counts`). Idempotent: a row already there with the same or a newer
    /// sequence is left as it is, so a retried batch (or one written twice by an old and a
    /// new leader) changes nothing. `slot` is the writer's counts row: writers at once use
    /// different slots (0..`archive.writers`). Answers how many rows were new.
    pub async fn store(&self, rows: &[ArchiveRow], slot: i16) -> Result<u64, ArchiveError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        let mut agents = Vec::with_capacity(rows.len());
        let mut contexts = Vec::with_capacity(rows.len());
        let mut states = Vec::with_capacity(rows.len());
        let mut created = Vec::with_capacity(rows.len());
        let mut updated = Vec::with_capacity(rows.len());
        let mut tasks = Vec::with_capacity(rows.len());
        let mut owners = Vec::with_capacity(rows.len());
        for r in rows {
            owners.push(r.owner.as_deref());
            ids.push(r.task_id.as_str());
            seqs.push(r.seq);
            agents.push(r.agent_id.as_str());
            contexts.push(r.context_id.as_str());
            states.push(r.state);
            created.push(r.created_at_ms);
            updated.push(r.updated_at_ms);
            tasks.push(r.task_json.as_str());
        }
        // `xmax = 0` tells an inserted row from an updated one. An update keeps the row's
        // agent and state (a terminal task's never change), so only new rows are counted.
        let (new,): (i64,) = sqlx::query_as(
            "WITH written AS ( \
               INSERT INTO archived_tasks \
                 (task_id, seq, agent_id, context_id, state, created_at, updated_at, row_version, task, owner) \
               SELECT t.id, t.seq, t.agent, t.ctx, t.state, \
                      to_timestamp(t.created / 1000.0), to_timestamp(t.updated / 1000.0), $9, t.task::jsonb, t.owner \
               FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::text[], \
                           $11::text[]) \
                 AS t(id, seq, agent, ctx, state, created, updated, task, owner) \
               ON CONFLICT (task_id) DO UPDATE SET \
                 seq = EXCLUDED.seq, context_id = EXCLUDED.context_id, \
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                 archived_at = now(), row_version = EXCLUDED.row_version, task = EXCLUDED.task, \
                 owner = EXCLUDED.owner \
               WHERE archived_tasks.seq < EXCLUDED.seq \
               RETURNING agent_id, state, xmax = 0 AS inserted), \
             counted AS ( \
               INSERT INTO archived_task_counts (agent_id, state, slot, n) \
               SELECT agent_id, state, $10, count(*) FROM written WHERE inserted GROUP BY agent_id, state \
               ON CONFLICT (agent_id, state, slot) DO UPDATE SET n = archived_task_counts.n + EXCLUDED.n) \
             SELECT count(*) FROM written WHERE inserted",
        )
        .bind(&ids)
        .bind(&seqs)
        .bind(&agents)
        .bind(&contexts)
        .bind(&states)
        .bind(&created)
        .bind(&updated)
        .bind(&tasks)
        .bind(ROW_VERSION)
        .bind(slot)
        .bind(&owners)
        .fetch_one(&self.pool)
        .await?;
        Ok(new as u64)
    }

    /// One archived task by id.
    pub async fn get(&self, id: &str) -> Result<Option<ArchivedTask>, ArchiveError> {
        let row: Option<Row> = sqlx::query_as(&format!("{ROW_COLUMNS} WHERE task_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.read_failed(e))?;
        row.map(decode_row).transpose()
    }

    /// Archived tasks matching the query after its cursor, newest first: up to `limit`.
    pub async fn list(&self, q: &ListQuery<'_>, limit: usize) -> Result<Vec<ArchivedTask>, ArchiveError> {
        let mut sql = QueryBuilder::<Postgres>::new(format!("{ROW_COLUMNS} WHERE true"));
        push_filters(&mut sql, q);
        if let Some((seq, id)) = q.before {
            sql.push(" AND (seq, task_id) < (").push_bind(seq as i64).push(", ").push_bind(id).push(")");
        }
        sql.push(" ORDER BY seq DESC, task_id DESC LIMIT ").push_bind(limit as i64);
        let rows: Vec<Row> = sql.build_query_as().fetch_all(&self.pool).await.map_err(|e| self.read_failed(e))?;
        rows.into_iter().map(decode_row).collect()
    }

    /// How many archived tasks match the query (the cursor does not count), and how many of
    /// `ids` the archive holds, in one statement (one snapshot of the table, so a batch
    /// written meanwhile is in both counts or in neither). Without a context, owner or time
    /// filter the count comes from `archived_task_counts` (a few rows, whatever the archive's
    /// size); with one, from the rows (a context's are few; an owner's through its index, as
    /// many as it archived; a time filter scans).
    pub async fn count(&self, q: &ListQuery<'_>, ids: &[&str]) -> Result<(u64, u64), ArchiveError> {
        let mut sql = QueryBuilder::<Postgres>::new("SELECT (");
        if q.context_id.is_none() && q.updated_after_ms.is_none() && q.owner.is_none() {
            sql.push("SELECT greatest(coalesce(sum(n), 0), 0)::int8 FROM archived_task_counts WHERE true");
            if let Some(agent) = q.agent_id {
                sql.push(" AND agent_id = ").push_bind(agent.to_owned());
            }
            if let Some(state) = q.state {
                sql.push(" AND state = ").push_bind(state.v10_name());
            }
        } else {
            sql.push("SELECT count(*) FROM archived_tasks WHERE true");
            push_filters(&mut sql, q);
        }
        sql.push("), (SELECT count(*) FROM archived_tasks WHERE task_id = ANY(").push_bind(ids).push("))");
        let (n, present): (i64, i64) =
            sql.build_query_as().fetch_one(&self.pool).await.map_err(|e| self.read_failed(e))?;
        Ok((n as u64, present as u64))
    }

    fn read_failed(&self, e: sqlx::Error) -> ArchiveError {
        self.stats.read_errors_total.fetch_add(1, Ordering::Relaxed);
        e.into()
    }

    /// Deletes up to `batch` rows archived more than `days` days ago, oldest first, with
    /// their counts; answers how many.
    pub async fn delete_expired(&self, days: u64, batch: usize) -> Result<u64, ArchiveError> {
        let (deleted,): (i64,) = sqlx::query_as(
            "WITH gone AS ( \
               DELETE FROM archived_tasks WHERE task_id IN ( \
                 SELECT task_id FROM archived_tasks WHERE archived_at < now() - make_interval(days => $1) \
                 ORDER BY archived_at LIMIT $2) \
               RETURNING agent_id, state), \
             counted AS ( \
               INSERT INTO archived_task_counts (agent_id, state, slot, n) \
               SELECT agent_id, state, $3, -count(*) FROM gone GROUP BY agent_id, state \
               ON CONFLICT (agent_id, state, slot) DO UPDATE SET n = archived_task_counts.n + EXCLUDED.n) \
             SELECT count(*) FROM gone",
        )
        .bind(i32::try_from(days).unwrap_or(i32::MAX))
        .bind(batch as i64)
        .bind(RETENTION_SLOT)
        .fetch_one(&self.pool)
        .await?;
        Ok(deleted as u64)
    }
}

fn push_filters(sql: &mut QueryBuilder<'_, Postgres>, q: &ListQuery<'_>) {
    if let Some(agent) = q.agent_id {
        sql.push(" AND agent_id = ").push_bind(agent.to_owned());
    }
    if let Some(context) = q.context_id {
        sql.push(" AND context_id = ").push_bind(context.to_owned());
    }
    if let Some(owner) = q.owner {
        sql.push(" AND owner = ").push_bind(owner.to_owned());
    }
    if let Some(state) = q.state {
        // A literal (a closed set of names), so the planner sees whether the partial state
        // index applies; a bound parameter would hide it from a cached generic plan.
        sql.push(" AND state = '").push(state.v10_name()).push("'");
    }
    if let Some(ms) = q.updated_after_ms {
        sql.push(" AND updated_at >= to_timestamp(").push_bind(ms as f64).push(" / 1000.0)");
    }
}

fn decode_row((id, seq, agent_id, owner, version, task): Row) -> Result<ArchivedTask, ArchiveError> {
    let bad = |why: String| ArchiveError::BadRow { id: id.clone(), why };
    if version != ROW_VERSION {
        return Err(bad(format!("row version {version}; this superx reads version {ROW_VERSION}")));
    }
    let json: serde_json::Value = serde_json::from_str(&task).map_err(|e| bad(e.to_string()))?;
    let task = task_from_wire(json).map_err(|e| bad(e.to_string()))?;
    Ok(ArchivedTask { agent_id, owner, seq: seq as u64, task })
}

fn migrate_error(e: sqlx::migrate::MigrateError) -> ArchiveError {
    use sqlx::migrate::MigrateError;
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    match e {
        MigrateError::VersionMissing(found) => ArchiveError::NewerSchema { found, known },
        MigrateError::Execute(e) => e.into(),
        other => ArchiveError::Migration(other.to_string()),
    }
}
