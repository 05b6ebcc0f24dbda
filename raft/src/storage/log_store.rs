//! openraft's log store over redb: entries, vote, committed and purged log ids.
//!
//! Group commit: openraft hands `append` a batch of entries (a follower gets up to
//! `append_batch_entries_max` per RPC; a leader gets one entry per batch of proposals) and the
//! whole batch is written in one fsync'd transaction; the flush callback fires only after that
//! commit returned. The vote is fsync'd before `save_vote` returns. The committed id is kept in
//! memory and written along with the next write transaction: it only speeds up a restart
//! (openraft re-applies up to it), so a stale value on disk is safe, and it can never run ahead
//! of the durable log because openraft commits only flushed entries.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};

use super::{LOG, META, StoreError, blocking, io_error};
use crate::codec;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote, index_of};

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "purged";

/// The log store handed to openraft.
pub(crate) struct LogStore {
    db: Arc<Database>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// True when `committed` changed since it was last written.
    committed_dirty: bool,
    purged: Option<LogId>,
    last: Option<LogId>,
    /// The committed index, shared with the node for `status` and readiness.
    committed_index: Arc<AtomicU64>,
}

/// A reader for openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogReader {
    db: Arc<Database>,
}

impl LogStore {
    /// Loads the log-side state from the database.
    pub(crate) async fn open(db: Arc<Database>) -> Result<Self, StoreError> {
        let reader = db.clone();
        let (vote, committed, purged, last) = blocking(move || load(&reader)).await?;
        let last = last.or(purged);
        Ok(LogStore {
            db,
            vote,
            committed_index: Arc::new(AtomicU64::new(index_of(committed.as_ref()))),
            committed,
            committed_dirty: false,
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

    /// The committed id to write with the next transaction, if it changed.
    fn take_dirty_committed(&mut self) -> Option<LogId> {
        if !self.committed_dirty {
            return None;
        }
        self.committed_dirty = false;
        self.committed
    }

    /// Runs `f` in one fsync'd write transaction, with the committed id if it changed.
    async fn write<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        let committed = self.take_dirty_committed();
        blocking(move || {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            let out = f(&tx)?;
            if let Some(committed) = committed {
                put_meta(&tx, COMMITTED_KEY, &committed)?;
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }
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

async fn get_entries<RB: RangeBounds<u64>>(db: &Arc<Database>, range: RB) -> Result<Vec<Entry>, StorageError> {
    let db = db.clone();
    let range = (range.start_bound().cloned(), range.end_bound().cloned());
    blocking(move || read_entries(&db, range)).await.map_err(|e| io_error(StorageIOError::read_logs, e))
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        get_entries(&self.db, range).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        get_entries(&self.db, range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState { last_purged_log_id: self.purged, last_log_id: self.last })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { db: self.db.clone() }
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
        self.write(move |tx| insert_entries(tx, &entries))
            .await
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.last = Some(last);
        // The transaction is committed with Durability::Immediate: the entries are on disk.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let range = (Bound::Included(log_id.index), Bound::Unbounded);
        let left = self
            .write(move |tx| remove_entries(tx, range))
            .await
            .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.last = left.or(self.purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let range = (Bound::Unbounded, Bound::Included(log_id.index));
        self.write(move |tx| {
            remove_entries(tx, range)?;
            put_meta(tx, PURGED_KEY, &log_id)
        })
        .await
        .map_err(|e| io_error(StorageIOError::write_logs, e))?;
        self.purged = Some(log_id);
        if self.last < Some(log_id) {
            self.last = Some(log_id);
        }
        Ok(())
    }
}
