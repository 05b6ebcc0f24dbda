//! openraft's state machine store: the app's [`StateMachine`] behind a lock, the idempotency
//! map, and snapshots.
//!
//! The state machine lives in memory; what is durable is the snapshot (in its own redb file)
//! plus the log.
//! On start the last snapshot is restored and openraft re-applies the log after it up to the
//! saved committed id. `apply` takes the write lock once per entry; `read_local` and
//! `read_linearizable` take the read lock. A snapshot is the app's `snapshot()` bytes plus the
//! idempotency map, encoded as a [`SnapshotBlob`]; its metadata (last applied id, membership)
//! is stored beside it.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use parking_lot::RwLock;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::dedup::Dedup;
use super::{SNAPSHOT, StoreError, background, blocking, io_error};
use crate::StateMachine;
use crate::codec::{self, Blob};
use crate::types::{
    BatchResponse, Entry, LogId, Request, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, index_of,
};

const META_KEY: &str = "meta";
const DATA_KEY: &str = "data";

/// What a snapshot holds besides its metadata.
#[derive(Serialize, Deserialize)]
struct SnapshotBlob {
    app: Blob,
    /// The idempotency map, oldest first.
    dedup: Vec<(u128, Blob)>,
}

/// The applied state: everything `apply` changes, under one lock.
pub(crate) struct Applied<SM> {
    pub(crate) sm: SM,
    dedup: Dedup,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl<SM: StateMachine> Applied<SM> {
    fn apply_entry(&mut self, entry: Entry) -> BatchResponse {
        self.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => BatchResponse::default(),
            EntryPayload::Normal(batch) => {
                BatchResponse { responses: batch.requests.into_iter().map(|r| self.apply_request(r)).collect() }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(entry.log_id), membership);
                BatchResponse::default()
            }
        }
    }

    /// Applies a request once: a request id seen before gets its first response again.
    fn apply_request(&mut self, request: Request) -> Blob {
        if let Some(response) = self.dedup.get(request.id) {
            return response.clone();
        }
        let response = Blob(self.sm.apply(&request.command.0));
        self.dedup.insert(request.id, response.clone());
        response
    }

    fn install(&mut self, meta: &SnapshotMeta, blob: SnapshotBlob) -> Result<(), StoreError> {
        self.sm.restore(&blob.app.0).map_err(StoreError::Restore)?;
        self.dedup = Dedup::from_entries(self.dedup_max(), blob.dedup);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    fn dedup_max(&self) -> usize {
        self.dedup.entries_max()
    }
}

/// The part of the state machine store shared with the node: state and applied index.
pub(crate) struct SmShared<SM> {
    pub(crate) state: RwLock<Applied<SM>>,
    applied_tx: watch::Sender<u64>,
}

impl<SM> SmShared<SM> {
    pub(crate) fn applied_index_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    pub(crate) fn applied_index(&self) -> u64 {
        *self.applied_tx.borrow()
    }
}

/// The state machine store handed to openraft.
pub(crate) struct SmStore<SM> {
    shared: Arc<SmShared<SM>>,
    db: Arc<Database>,
    /// Makes snapshot ids unique within this process.
    snapshot_seq: Arc<AtomicU64>,
}

impl<SM: StateMachine> SmStore<SM> {
    /// Wraps `sm`, restoring the last stored snapshot into it if there is one. Snapshots live
    /// in `db`; one that `log_db` still holds from before is moved over first.
    pub(crate) async fn open(
        db: Arc<Database>,
        log_db: &Arc<Database>,
        sm: SM,
        dedup_entries_max: usize,
    ) -> Result<Self, StoreError> {
        let mut applied = Applied {
            sm,
            dedup: Dedup::new(dedup_entries_max),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        let (reader, old_home) = (db.clone(), log_db.clone());
        let stored = blocking(move || match load_snapshot(&reader)? {
            Some(stored) => Ok(Some(stored)),
            None => match load_snapshot(&old_home)? {
                Some((meta, data)) => {
                    save_snapshot(&reader, &meta, &data)?;
                    Ok(Some((meta, data)))
                }
                None => Ok(None),
            },
        })
        .await?;
        if let Some((meta, data)) = stored {
            applied.install(&meta, codec::decode(&data)?)?;
        }
        let (applied_tx, _) = watch::channel(index_of(applied.last_applied.as_ref()));
        let shared = Arc::new(SmShared { state: RwLock::new(applied), applied_tx });
        Ok(SmStore { shared, db, snapshot_seq: Arc::new(AtomicU64::new(0)) })
    }

    pub(crate) fn shared(&self) -> Arc<SmShared<SM>> {
        self.shared.clone()
    }

    /// True when no snapshot was ever stored or installed.
    pub(crate) fn is_pristine(&self) -> bool {
        self.shared.state.read().last_applied.is_none()
    }
}

pub(super) fn load_snapshot(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    let tx = db.begin_read()?;
    let table = tx.open_table(SNAPSHOT)?;
    let (Some(meta), Some(data)) = (table.get(META_KEY)?, table.get(DATA_KEY)?) else {
        return Ok(None);
    };
    Ok(Some((codec::decode(meta.value())?, data.value().to_vec())))
}

/// Replaces the stored snapshot in one fsync'd transaction, unless a newer one is stored: a
/// snapshot build runs in its own task and may finish after a newer snapshot was installed,
/// and the log behind the installed one is already purged, so the stored snapshot must never
/// go backwards.
pub(super) fn save_snapshot(db: &Database, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StoreError> {
    let encoded = codec::encode(meta)?;
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut table = tx.open_table(SNAPSHOT)?;
        let stored = table.get(META_KEY)?.map(|m| codec::decode::<SnapshotMeta>(m.value())).transpose()?;
        if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
            return Ok(());
        }
        table.insert(META_KEY, encoded.as_slice())?;
        table.insert(DATA_KEY, data)?;
    }
    tx.commit()?;
    Ok(())
}

async fn persist(db: &Arc<Database>, meta: &SnapshotMeta, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let db = db.clone();
    let meta = meta.clone();
    blocking(move || save_snapshot(&db, &meta, &data).map(|()| data)).await
}

impl<SM: StateMachine> RaftStateMachine<TypeConfig> for SmStore<SM> {
    type SnapshotBuilder = SnapshotBuilder<SM>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.shared.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            responses.push(self.shared.state.write().apply_entry(entry));
            self.shared.applied_tx.send_replace(index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<SM> {
        SnapshotBuilder { shared: self.shared.clone(), db: self.db.clone(), snapshot_seq: self.snapshot_seq.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let write_err = |e| io_error(StorageIOError::write_state_machine, e);
        let blob: SnapshotBlob = codec::decode(&data).map_err(|e| write_err(e.into()))?;
        self.shared.state.write().install(meta, blob).map_err(write_err)?;
        self.shared.applied_tx.send_replace(index_of(meta.last_log_id.as_ref()));
        persist(&self.db, meta, data).await.map_err(write_err)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        let stored = blocking(move || load_snapshot(&db))
            .await
            .map_err(|e| io_error(|a| StorageIOError::read_snapshot(None, a), e))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Builds a snapshot from the current applied state and stores it.
pub(crate) struct SnapshotBuilder<SM> {
    shared: Arc<SmShared<SM>>,
    db: Arc<Database>,
    snapshot_seq: Arc<AtomicU64>,
}

impl<SM: StateMachine> SnapshotBuilder<SM> {
    /// Captures metadata and state under the read lock, so both describe the same state, and
    /// encodes the app's state after the lock is released (see `StateMachine::snapshot_later`).
    async fn capture(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let (meta, app, dedup) = {
            let state = self.shared.state.read();
            let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match state.last_applied {
                Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id,
            };
            (meta, state.sm.snapshot_later(), state.dedup.entries())
        };
        let data =
            background(move || codec::encode(&SnapshotBlob { app: Blob(app()), dedup }).map_err(StoreError::from))
                .await?;
        Ok((meta, data))
    }
}

impl<SM: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<SM> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let write_err = |e| io_error(|a| StorageIOError::write_snapshot(None, a), e);
        let started = std::time::Instant::now();
        let (meta, data) = self.capture().await.map_err(write_err)?;
        let encoded = started.elapsed();
        let data = persist(&self.db, &meta, data).await.map_err(write_err)?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            bytes = data.len(),
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot built and stored"
        );
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
