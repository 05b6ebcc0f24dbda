//! openraft's log store over redb: entries, vote, committed and purged log ids.
//!
//! Writes never block raft: `append` puts the entries in `pending` (where readers find them at
//! once, as openraft requires) and queues them for the log writer, a thread of its own that
//! owns every write to the database. The writer takes every job queued at that moment (up to
//! `WRITE_JOBS_MAX`) into one fsync'd transaction, so appends that arrive while a commit is on
//! disk share the next fsync, then fires each append's flush callback and drops its entries
//! from `pending`. Raft meanwhile goes on: it replicates, takes new proposals and appends
//! again. Every write (vote, truncate, purge too) goes through the same FIFO queue, so writes
//! are applied in the order raft issued them; the vote, truncate and purge still wait for
//! their commit before returning. The committed id is kept in memory and written along with
//! the next job at most once a second: it only speeds up a restart (openraft re-applies up to it), so a stale value
//! on disk is safe, and it can never run ahead of the durable log because openraft commits
//! only flushed entries.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use super::{LOG, META, StoreError, blocking, io_error};
use crate::codec;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote, index_of};

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "purged";

/// The committed id is written at most this often (see `take_dirty_committed`).
const COMMITTED_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Jobs one transaction of the log writer takes at most.
const WRITE_JOBS_MAX: usize = 1024;

/// Jobs waiting for the log writer at most. Past it, queuing waits for the writer (the disk)
/// to catch up: raft slows down, the proposal queue fills, and new writes are refused at once
/// (`ProposeError::Busy`) instead of the queue growing without end. Proposals are capped
/// before this, so it is only reached when the disk stalls.
const WRITE_QUEUE_MAX: usize = 4 * WRITE_JOBS_MAX;

/// Entries appended but not yet durable, by index: readers look here as well as on disk.
type Pending = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// The changes one job makes inside the writer's transaction.
type Write = Box<dyn FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send>;

/// One queued write: the changes it makes inside the shared transaction, and what to tell
/// its caller once that transaction committed (or failed).
struct WriteJob {
    write: Write,
    done: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// The log store handed to openraft.
pub(crate) struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    /// The log writer's queue; the writer thread ends when this is dropped.
    writer: Option<mpsc::SyncSender<WriteJob>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// True when `committed` changed since it was last written.
    committed_dirty: bool,
    /// When `committed` was last queued for writing.
    committed_written_at: Option<std::time::Instant>,
    purged: Option<LogId>,
    last: Option<LogId>,
    /// The committed index, shared with the node for `status` and readiness.
    committed_index: Arc<AtomicU64>,
}

/// A reader for openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogReader {
    db: Arc<Database>,
    pending: Pending,
}

impl LogStore {
    /// Loads the log-side state from the database.
    pub(crate) async fn open(db: Arc<Database>) -> Result<Self, StoreError> {
        let reader = db.clone();
        let (vote, committed, purged, last) = blocking(move || load(&reader)).await?;
        let last = last.or(purged);
        let (writer, jobs) = mpsc::sync_channel(WRITE_QUEUE_MAX);
        let writer_db = db.clone();
        let writer_thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_loop(&writer_db, &jobs))
            .map_err(|e| StoreError::Join(format!("cannot start the log writer: {e}")))?;
        Ok(LogStore {
            db,
            pending: Arc::default(),
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            vote,
            committed_index: Arc::new(AtomicU64::new(index_of(committed.as_ref()))),
            committed,
            committed_dirty: false,
            committed_written_at: None,
            purged,
            last,
        })
    }

    /// True when nothing was ever stored: no vote and no log. Only such a node may initialize a
    /// cluster.
    pub(crate) fn is_pristine(&self) -> bool {
        self.vote.is_none() && self.last.is_none()
    }

    /// The committed index, updated as openraft reports commits.
    pub(crate) fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    /// The committed id to write with the next transaction, if it changed and was not written
    /// in the last `COMMITTED_WRITE_INTERVAL`: it changes with every entry, and writing it each
    /// time would add its table's pages to every commit, for a restart that re-applies at most
    /// that much less.
    fn take_dirty_committed(&mut self) -> Option<LogId> {
        let recent = self.committed_written_at.is_some_and(|at| at.elapsed() < COMMITTED_WRITE_INTERVAL);
        if !self.committed_dirty || recent {
            return None;
        }
        self.committed_dirty = false;
        self.committed_written_at = Some(std::time::Instant::now());
        self.committed
    }

    /// Queues `f` for the log writer, with the committed id if it changed, and calls `done`
    /// once the transaction holding it committed.
    pub(super) fn queue(
        &mut self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let committed = self.take_dirty_committed();
        let write = move |tx: &WriteTransaction| {
            f(tx)?;
            match committed {
                Some(committed) => put_meta(tx, COMMITTED_KEY, &committed),
                None => Ok(()),
            }
        };
        let job = WriteJob { write: Box::new(write), done: Box::new(done) };
        let stopped = || StoreError::Join("the log writer stopped".into());
        self.writer.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }

    /// Runs `f` in the log writer's next fsync'd transaction and waits until it committed.
    async fn write<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out = Arc::new(Mutex::new(None));
        let slot = out.clone();
        self.queue(
            move |t| {
                *slot.lock() = Some(f(t)?);
                Ok(())
            },
            move |result| {
                let _ = tx.send(result);
            },
        )?;
        let result = rx.await.map_err(|_| StoreError::Join("the log writer stopped".into()))?;
        result.map_err(StoreError::Join)?;
        out.lock().take().ok_or_else(|| StoreError::Join("a committed write left no result".into()))
    }
}

impl Drop for LogStore {
    /// Lets the writer finish what is queued and waits for it, so the database is closed (and
    /// can be opened again) once the store is gone.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// The log writer: commits every job queued at once in one fsync'd transaction, then tells
/// each job's caller, in queue order.
fn write_loop(db: &Database, jobs: &mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < WRITE_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(batch.len());
        let mut dones = Vec::with_capacity(batch.len());
        for job in batch {
            writes.push(job.write);
            dones.push(job.done);
        }
        let result = commit_all(db, writes).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = dones.len(), "raft log write failed");
        }
        for done in dones {
            done(result.clone());
        }
    }
}

fn commit_all(db: &Database, writes: Vec<Write>) -> Result<(), StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    for write in writes {
        write(&tx)?;
    }
    tx.commit()?;
    Ok(())
}

type Loaded = (Option<Vote>, Option<LogId>, Option<LogId>, Option<LogId>);

/// Reads vote, committed, purged and the last entry's id.
fn load(db: &Database) -> Result<Loaded, StoreError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> { Ok(meta.get(key)?.map(|v| v.value().to_vec())) };
    let vote = get(VOTE_KEY)?.map(|b| codec::decode(&b)).transpose()?;
    let committed = get(COMMITTED_KEY)?.map(|b| codec::decode(&b)).transpose()?;
    let purged = get(PURGED_KEY)?.map(|b| codec::decode(&b)).transpose()?;
    let log = tx.open_table(LOG)?;
    let last = match log.last()? {
        Some((_, v)) => Some(codec::decode::<Entry>(v.value())?.log_id),
        None => None,
    };
    Ok((vote, committed, purged, last))
}

fn put_meta<T: serde::Serialize>(tx: &WriteTransaction, key: &str, value: &T) -> Result<(), StoreError> {
    let bytes = codec::encode(value)?;
    tx.open_table(META)?.insert(key, bytes.as_slice())?;
    Ok(())
}

fn insert_entries(tx: &WriteTransaction, entries: &[Entry]) -> Result<(), StoreError> {
    let mut log = tx.open_table(LOG)?;
    for entry in entries {
        log.insert(entry.log_id.index, codec::encode(entry)?.as_slice())?;
    }
    Ok(())
}

/// Removes the entries in `range` and returns the id of the last entry left, if any.
fn remove_entries(tx: &WriteTransaction, range: (Bound<u64>, Bound<u64>)) -> Result<Option<LogId>, StoreError> {
    let mut log = tx.open_table(LOG)?;
    log.retain_in(range, |_, _| false)?;
    let last = match log.last()? {
        Some((_, v)) => Some(codec::decode::<Entry>(v.value())?.log_id),
        None => None,
    };
    Ok(last)
}

fn read_entries(db: &Database, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, StoreError> {
    let tx = db.begin_read()?;
    let log = tx.open_table(LOG)?;
    let mut entries = Vec::new();
    for item in log.range(range)? {
        let (_, value) = item?;
        entries.push(codec::decode(value.value())?);
    }
    Ok(entries)
}

/// Entries in `range`, from disk and from `pending`. `pending` is looked at first: an entry
/// the writer drops from it meanwhile is already on disk when the disk is read.
async fn get_entries<RB: RangeBounds<u64>>(
    db: &Arc<Database>,
    pending: &Pending,
    range: RB,
) -> Result<Vec<Entry>, StorageError> {
    let range = (range.start_bound().cloned(), range.end_bound().cloned());
    let recent: Vec<Entry> = pending.lock().range(range).map(|(_, e)| e.clone()).collect();
    let first_pending = recent.first().map(|e| e.log_id.index);
    // Everything from the first pending entry on is pending (appends are consecutive).
    let disk_range = match first_pending {
        Some(first) => (range.0, Bound::Excluded(first)),
        None => range,
    };
    if range_is_empty(disk_range) {
        return Ok(recent);
    }
    let db = db.clone();
    let mut entries =
        blocking(move || read_entries(&db, disk_range)).await.map_err(|e| io_error(StorageIOError::read_logs, e))?;
    entries.extend(recent);
    Ok(entries)
}

fn range_is_empty(range: (Bound<u64>, Bound<u64>)) -> bool {
    let start = match range.0 {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    match range.1 {
        Bound::Included(e) => start > e,
        Bound::Excluded(e) => start >= e,
        Bound::Unbounded => false,
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        get_entries(&self.db, &self.pending, range).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        get_entries(&self.db, &self.pending, range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState { last_purged_log_id: self.purged, last_log_id: self.last })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { db: self.db.clone(), pending: self.pending.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let saved = *vote;
        self.write(move |tx| put_meta(tx, VOTE_KEY, &saved))
            .await
            .map_err(|e| io_error(StorageIOError::write_vote, e))?;
        self.vote = Some(saved);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed = committed;
        self.committed_dirty = true;
        self.committed_index.store(index_of(committed.as_ref()), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Readable from now on; durable when the callback fires.
        self.pending.lock().extend(entries.iter().map(|e| (e.log_id.index, e.clone())));
        self.last = Some(last);
        let pending = self.pending.clone();
        let written: Vec<LogId> = entries.iter().map(|e| e.log_id).collect();
        let done = move |result: Result<(), String>| {
            if result.is_ok() {
                // On disk now. An entry replaced meanwhile (truncated, appended again) stays.
                let mut pending = pending.lock();
                for id in written {
                    if pending.get(&id.index).is_some_and(|e| e.log_id == id) {
                        pending.remove(&id.index);
                    }
                }
            }
            callback.log_io_completed(result.map_err(std::io::Error::other));
        };
        self.queue(move |tx| insert_entries(tx, &entries), done).map_err(|e| io_error(StorageIOError::write_logs, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.pending.lock().retain(|&index, _| index < log_id.index);
        let range = (Bound::Included(log_id.index), Bound::Unbounded);
        let left = self
            .write(move |tx| remove_entries(tx, range))
            .await
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.last = left.or(self.purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        self.pending.lock().retain(|&index, _| index > log_id.index);
        let range = (Bound::Unbounded, Bound::Included(log_id.index));
        self.write(move |tx| {
            remove_entries(tx, range)?;
            put_meta(tx, PURGED_KEY, &log_id)
        })
        .await
        .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        tracing::info!(upto = log_id.index, ms = started.elapsed().as_millis() as u64, "log purged");
        self.purged = Some(log_id);
        if self.last < Some(log_id) {
            self.last = Some(log_id);
        }
        Ok(())
    }
}
