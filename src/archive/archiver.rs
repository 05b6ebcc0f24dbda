//! The archiver: on the raft leader only, moves terminal tasks into Postgres and lets them
//! leave memory.
//!
//! One round: take the oldest terminal tasks the archive does not hold yet, up to
//! `archive.writers` x `archive.batch_max` (shared entries collected under the state lock,
//! rows rendered after it), write them in idempotent batches of `batch_max` (one statement
//! each, `writers` at once on their own connections), then commit `Archived` for all of them
//! in one entry. Then commit `Evict` for the archived tasks the retention policy
//! (`archive.memory_retention_*`) lets go. A
//! failed write is retried with backoff; meanwhile the tasks stay in memory, and when memory
//! is full of tasks that may not leave it, new tasks are refused (retryable). A leader
//! change mid-round is harmless: the new leader rewrites what was not committed as archived,
//! and the rewrite changes nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Archive, ArchiveError, ArchiveRow};
use crate::config::ArchiveConfig;
use crate::gateway::Gateway;
use crate::state::{ArchiveCommand, ProposeError, Tables, TaskEntry};

/// Pause between rounds when there is nothing to do, or this node is not the leader.
const IDLE_PAUSE: Duration = Duration::from_millis(50);

/// First pause after a failed round; it doubles up to `archive.retry_backoff_max_ms`.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// Retention statements per period (`archive.retention_interval_ms`) at most (each deletes `archive.retention_batch` rows).
const RETENTION_BATCHES_MAX: usize = 100;

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("committing the archive's progress failed: {0}")]
    Propose(#[from] ProposeError),
}

/// Runs on every node for the life of the process; acts while this node leads.
pub async fn run(gw: Arc<Gateway>, archive: Arc<Archive>) {
    let c = gw.config.archive.clone();
    let mut failures = 0u32;
    let mut next_retention = Instant::now();
    loop {
        if !gw.replica.raft().membership().is_leader {
            tokio::time::sleep(IDLE_PAUSE).await;
            continue;
        }
        match round(&gw, &archive, &c).await {
            Ok(busy) => {
                if failures > 0 {
                    tracing::info!(failures, "archive writes resumed");
                }
                failures = 0;
                archive.stats.clear_error();
                if !busy {
                    tokio::time::sleep(IDLE_PAUSE).await;
                }
            }
            Err(RoundError::Propose(e)) => {
                // Usually leadership moved on; the next leader picks the work up.
                tracing::debug!(error = %e, "archive round not committed");
                tokio::time::sleep(IDLE_PAUSE).await;
            }
            Err(RoundError::Archive(e)) => {
                failures = failures.saturating_add(1);
                archive.stats.write_errors_total.fetch_add(1, Ordering::Relaxed);
                archive.stats.note_error(&e);
                let pause = backoff(failures, Duration::from_millis(c.retry_backoff_max_ms));
                let backlog = gw.replica.read(|t| t.unarchived_count());
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, backlog, retry_in = ?pause, "archive write failed; tasks stay in memory");
                }
                tokio::time::sleep(pause).await;
            }
        }
        if c.retention_days > 0 && Instant::now() >= next_retention {
            next_retention = Instant::now() + Duration::from_millis(c.retention_interval_ms);
            delete_expired(&archive, &c).await;
        }
    }
}

/// Up to `writers` batches archived and one eviction committed; true when the round was
/// full (more work is likely waiting).
async fn round(gw: &Gateway, archive: &Archive, c: &ArchiveConfig) -> Result<bool, RoundError> {
    let round_max = c.batch_max.saturating_mul(c.writers as usize);
    // Under the state lock only the entries' reference counts; rendering the rows happens
    // after it is released.
    let entries: Vec<Arc<TaskEntry>> = gw.replica.read(|t| t.unarchived(round_max).cloned().collect());
    let rows: Vec<ArchiveRow> = entries.iter().map(|e| ArchiveRow::of(e)).collect();
    drop(entries);
    let written = rows.len();
    if written > 0 {
        store_batches(archive, &rows, c.batch_max).await?;
        let ids = rows.into_iter().map(|r| r.task_id).collect();
        gw.replica.propose_archive(ArchiveCommand::Archived { ids }).await?;
        archive.stats.archived_total.fetch_add(written as u64, Ordering::Relaxed);
    }
    let now_ms = gw.now_ms();
    // Stops at the first task that stays, so the lock is held for at most `round_max` steps.
    let leaving = gw.replica.read(|t| evictions(t, now_ms, c.memory_retention_ms, c.memory_retention_count, round_max));
    let evicted = leaving.len();
    if evicted > 0 {
        gw.replica.propose_archive(ArchiveCommand::Evict { ids: leaving }).await?;
        archive.stats.evicted_total.fetch_add(evicted as u64, Ordering::Relaxed);
    }
    Ok(written == round_max || evicted == round_max)
}

/// Writes `rows` in batches of `batch_max`, all at once (each statement on its own
/// connection); fails if any batch fails. Batches are independent and idempotent, so a
/// round that failed halfway is simply written again.
async fn store_batches(archive: &Archive, rows: &[ArchiveRow], batch_max: usize) -> Result<(), ArchiveError> {
    let writes = rows.chunks(batch_max).enumerate().map(|(slot, batch)| async move {
        let started = Instant::now();
        archive.store(batch, slot as i16).await?;
        archive.stats.last_batch_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        archive.stats.batches_total.fetch_add(1, Ordering::Relaxed);
        Ok::<_, ArchiveError>(())
    });
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// The archived tasks that leave memory now, oldest first: those beyond `count`, then those
/// last updated `age_ms` or longer ago; at most `max`.
pub fn evictions(tables: &Tables, now_ms: u64, age_ms: u64, count: usize, max: usize) -> Vec<String> {
    let archived = tables.archived_in_memory();
    let excess = archived.len().saturating_sub(count);
    archived
        .enumerate()
        .take_while(|(i, e)| *i < excess || e.updated_at_ms.saturating_add(age_ms) <= now_ms)
        .take(max)
        .map(|(_, e)| e.task.id.clone())
        .collect()
}

fn backoff(failures: u32, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(max)
}

async fn delete_expired(archive: &Archive, c: &ArchiveConfig) {
    for _ in 0..RETENTION_BATCHES_MAX {
        match archive.delete_expired(c.retention_days, c.retention_batch).await {
            Ok(n) => {
                archive.stats.retention_deleted_total.fetch_add(n, Ordering::Relaxed);
                if n < c.retention_batch as u64 {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "archive retention failed; retried next period");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::TaskState;
    use crate::state::task::tests::task;
    use crate::state::{Command, TableLimits};

    fn tables_with_archived(n: u64) -> Tables {
        let mut t = Tables::new(TableLimits { tasks_max: 100 });
        let mut ids = vec![];
        for i in 0..n {
            let id = format!("t{i}");
            let cmd =
                Command::RecordTask { agent_id: "a".into(), task: task(&id, TaskState::Completed), at_ms: i * 10 };
            t.apply(cmd).unwrap();
            ids.push(id);
        }
        t.apply_archive(&ArchiveCommand::Archived { ids });
        t
    }

    #[test]
    fn retention_evicts_the_oldest_beyond_the_count_then_by_age() {
        let t = tables_with_archived(5);
        // Count 3: the two oldest go; nothing is old enough by age.
        assert_eq!(evictions(&t, 0, 1_000, 3, 100), ["t0", "t1"]);
        // Age: updated at 0, 10, 20, 30, 40; at time 125 with age 100, t0..t2 are old.
        assert_eq!(evictions(&t, 125, 100, 10, 100), ["t0", "t1", "t2"]);
        // At most `max` per command.
        assert_eq!(evictions(&t, 125, 100, 10, 2), ["t0", "t1"]);
        assert!(evictions(&t, 0, 1_000, 10, 100).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let max = Duration::from_secs(1);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(3, max), Duration::from_millis(400));
        assert_eq!(backoff(30, max), max);
    }
}
