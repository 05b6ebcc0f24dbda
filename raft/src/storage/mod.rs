//! Durable raft state in one redb file (`<data_dir>/raft.redb`): the log, the vote, the
//! committed and purged ids, and the current snapshot.
//!
//! redb is ACID and crash-safe (copy-on-write B-trees, a checksummed commit slot, fsync on
//! every `Durability::Immediate` commit), so a crash or a torn write leaves the last committed
//! transaction intact. Every disk access runs on tokio's blocking pool, never on a worker.
//! `log_store.rs` is openraft's log store, `sm_store.rs` its state machine store (the app's
//! state machine stays in memory and is rebuilt from the snapshot plus the log on start).

pub(crate) mod dedup;
pub(crate) mod log_store;
pub(crate) mod sm_store;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, StorageIOError};
use redb::{Database, TableDefinition};

use crate::codec::CodecError;
use crate::error::StartError;
use crate::types::StorageError;

/// Log entries by index; values are [`crate::codec`] encodings of `Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small log-side records: `vote`, `committed`, `purged`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The current snapshot: `meta` (openraft `SnapshotMeta`) and `data` (the snapshot blob).
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// The database file inside `data_dir`.
pub(crate) const DB_FILE: &str = "raft.redb";

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("blocking task: {0}")]
    Join(String),
    #[error("state machine: {0}")]
    Restore(String),
}

/// Every redb error type converts into `redb::Error`, and from there into ours.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The snapshot's own database file inside `data_dir`. Apart from the log's file because redb
/// takes one write transaction at a time per file: storing a large snapshot in the log's file
/// held every log commit back until it was on disk (seconds with 100k tasks).
pub(crate) const SNAPSHOT_DB_FILE: &str = "snapshot.redb";

/// Opens (or creates) the log's database in `dir` and makes sure every table exists. Its
/// `snapshot` table is only read, for a snapshot stored before snapshots got their own file.
pub(crate) fn open_db(dir: &Path) -> Result<Arc<Database>, StartError> {
    open_file(dir, DB_FILE, |tx| {
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.open_table(SNAPSHOT)?;
        Ok(())
    })
}

/// Opens (or creates) the snapshot's database in `dir`.
pub(crate) fn open_snapshot_db(dir: &Path) -> Result<Arc<Database>, StartError> {
    open_file(dir, SNAPSHOT_DB_FILE, |tx| {
        tx.open_table(SNAPSHOT)?;
        Ok(())
    })
}

fn open_file(
    dir: &Path,
    file: &str,
    create_tables: impl FnOnce(&redb::WriteTransaction) -> Result<(), StoreError>,
) -> Result<Arc<Database>, StartError> {
    let storage = |e: &dyn std::fmt::Display| StartError::Storage(format!("{}: {e}", dir.join(file).display()));
    std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
    let db = Database::create(dir.join(file)).map_err(|e| storage(&e))?;
    let created = (|| -> Result<(), StoreError> {
        let tx = db.begin_write()?;
        create_tables(&tx)?;
        tx.commit()?;
        Ok(())
    })();
    created.map_err(|e| storage(&e))?;
    Ok(Arc::new(db))
}

/// Runs blocking disk work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Join(e.to_string()))?
}

/// Nice value of the thread that encodes a snapshot. Encoding a large table takes a CPU second
/// or more; at normal priority it took that second from the threads serving requests and
/// showed as a p99 of 100-200 ms at a moderate load on one core. At 10 it runs on what the
/// serving threads leave.
const SNAPSHOT_NICE: i32 = 10;

/// Runs `f` (snapshot encoding) on a thread of its own at low priority.
async fn background<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raft-snapshot".into())
        .spawn(move || {
            // On Linux a thread id names just this thread.
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SNAPSHOT_NICE) {
                tracing::debug!(error = %e, "snapshot thread keeps normal priority");
            }
            let _ = tx.send(f());
        })
        .map_err(|e| StoreError::Join(format!("cannot start the snapshot thread: {e}")))?;
    rx.await.map_err(|_| StoreError::Join("the snapshot thread ended early".into()))?
}

/// Wraps a storage failure for openraft, which stops the node on any storage error.
fn io_error(make: impl FnOnce(AnyError) -> StorageIOError<u64>, e: StoreError) -> StorageError {
    make(AnyError::error(e)).into()
}
