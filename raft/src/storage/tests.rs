//! Storage tests: openraft's storage suite, crash-restart (a writer process killed with
//! SIGKILL mid-stream) and truncated database files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite, log_id};
use openraft::{EntryPayload, RaftLogReader};
use tempfile::TempDir;

use super::log_store::LogStore;
use super::sm_store::{SmStore, load_snapshot, save_snapshot};
use super::{DB_FILE, open_db, open_snapshot_db};
use crate::StateMachine;
use crate::codec::Blob;
use crate::types::{Batch, Entry, Request, SnapshotMeta, StorageError, TypeConfig, Vote};

/// A toy state machine: a list of commands; answers the list's new length.
#[derive(Default)]
struct Commands(Vec<Vec<u8>>);

impl StateMachine for Commands {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        self.0.push(command.to_vec());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        crate::codec::encode(&self.0.iter().cloned().map(Blob).collect::<Vec<_>>()).unwrap()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let items: Vec<Blob> = crate::codec::decode(snapshot).map_err(|e| e.to_string())?;
        self.0 = items.into_iter().map(|b| b.0).collect();
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, SmStore<Commands>, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, SmStore<Commands>), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("open db");
        let log = LogStore::open(db.clone()).await.expect("open log store");
        let snapshot_db = open_snapshot_db(dir.path()).expect("open snapshot db");
        let sm = SmStore::open(snapshot_db, &db, Commands::default(), 100).await.expect("open sm store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn entry(index: u64) -> Entry {
    let request = Request { id: u128::from(index), command: Blob(vec![index as u8; 200]) };
    Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Normal(Batch { requests: vec![request] }) }
}

/// Environment variable that turns [`crash_child_writer`] into the writer process.
const CRASH_DIR_ENV: &str = "SUPERX_RAFT_CRASH_DIR";

/// The child half of [`acknowledged_appends_survive_sigkill`]: appends batches forever and
/// prints each batch's last index once its flush callback fired. A no-op in a normal run.
#[tokio::test]
async fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let db = open_db(Path::new(&dir)).unwrap();
    let mut log = LogStore::open(db).await.unwrap();
    log.save_vote(&Vote::new(7, 1)).await.unwrap();
    for first in (1u64..).step_by(4) {
        log.blocking_append((first..first + 4).map(entry)).await.unwrap();
        println!("acked {}", first + 3);
    }
}

#[tokio::test]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "storage::tests::crash_child_writer", "--nocapture"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = 0;
    for line in stdout.lines() {
        if let Some(index) = line.unwrap().strip_prefix("acked ") {
            acked = index.parse::<u64>().unwrap();
            if acked >= 200 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-stream: no clean shutdown of anything.
    child.wait().unwrap();

    let db = open_db(dir.path()).unwrap();
    let mut log = LogStore::open(db).await.unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 1)));
    let state = log.get_log_state().await.unwrap();
    let last = state.last_log_id.unwrap().index;
    assert!(last >= acked, "acknowledged up to {acked}, found only {last}");
    let entries = log.try_get_log_entries(1..=last).await.unwrap();
    let expected: Vec<Entry> = (1..=last).map(entry).collect();
    assert_eq!(entries, expected, "the log must be complete and intact up to its last entry");
}

#[tokio::test]
async fn entries_survive_drop_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open_db(dir.path()).unwrap();
        let mut log = LogStore::open(db).await.unwrap();
        log.blocking_append((0..10).map(entry)).await.unwrap();
        log.save_committed(Some(log_id(1, 1, 9))).await.unwrap();
        log.blocking_append((10..12).map(entry)).await.unwrap();
        log.purge(log_id(1, 1, 2)).await.unwrap();
        log.truncate(log_id(1, 1, 11)).await.unwrap();
    }
    let db = open_db(dir.path()).unwrap();
    let mut log = LogStore::open(db).await.unwrap();
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 9)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 10)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(entries, (3..=10).map(entry).collect::<Vec<_>>());
}

#[tokio::test]
async fn stored_snapshot_never_goes_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).unwrap();
    let meta = |index| SnapshotMeta {
        last_log_id: Some(log_id(1, 1, index)),
        last_membership: Default::default(),
        snapshot_id: format!("s{index}"),
    };
    save_snapshot(&db, &meta(10), b"newer").unwrap();
    save_snapshot(&db, &meta(5), b"older, finished late").unwrap();
    let (stored, data) = load_snapshot(&db).unwrap().unwrap();
    assert_eq!(stored, meta(10));
    assert_eq!(data, b"newer");
}

/// Writes a database with 50 entries and returns its bytes.
async fn written_db(dir: &Path) -> Vec<u8> {
    {
        let db = open_db(dir).unwrap();
        let mut log = LogStore::open(db).await.unwrap();
        for first in (0..50).step_by(5) {
            log.blocking_append((first..first + 5).map(entry)).await.unwrap();
        }
    }
    std::fs::read(dir.join(DB_FILE)).unwrap()
}

/// Opens a damaged copy of a database: it must be refused with an error or opened with an
/// intact prefix of the log; it never panics or yields garbage. Returns the refusal, if any.
async fn open_damaged(bytes: &[u8]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), bytes).unwrap();
    let db = match open_db(dir.path()) {
        Ok(db) => db,
        Err(e) => return Some(e.to_string()),
    };
    let mut log = match LogStore::open(db).await {
        Ok(log) => log,
        Err(e) => return Some(e.to_string()),
    };
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    let n = entries.len() as u64;
    assert_eq!(entries, (0..n).map(entry).collect::<Vec<_>>());
    None
}

/// A file cut short (a disk or a copy that lost its tail) is refused at open with a clear
/// error instead of being read as an empty or shorter log. (A crash mid-commit cannot damage
/// live pages: redb writes copy-on-write and picks the last commit whose checksummed slot is
/// complete; the SIGKILL tests exercise that.)
#[tokio::test]
async fn truncated_file_is_refused() {
    let source = tempfile::tempdir().unwrap();
    let bytes = written_db(source.path()).await;
    for cut in [bytes.len() / 4, bytes.len() / 2, bytes.len() - 4096, bytes.len() - 1] {
        let refusal = open_damaged(&bytes[..cut]).await;
        assert!(refusal.is_some(), "a file cut at {cut} of {} bytes was accepted", bytes.len());
    }
}

/// `append` returns before the disk write: the entries must be readable at once (openraft
/// replicates them meanwhile) and the flush reported only once they are on disk.
#[tokio::test]
async fn appended_entries_are_readable_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).unwrap();
    let mut log = LogStore::open(db).await.unwrap();
    log.blocking_append((1..=3).map(entry)).await.unwrap();
    let mut reader = log.get_log_reader().await;
    // Hold the log writer until the gate opens.
    let (open_gate, gate) = std::sync::mpsc::channel::<()>();
    log.queue(
        move |_| {
            let _ = gate.recv();
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    let (flushed_tx, mut flushed) = tokio::sync::oneshot::channel();
    let append = tokio::spawn(async move {
        log.blocking_append((4..=6).map(entry)).await.unwrap();
        let _ = flushed_tx.send(());
        log
    });
    // Readable while the write is held (polled: the spawned append runs on its own).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let entries = reader.try_get_log_entries(1..=6).await.unwrap();
        if entries.len() == 6 {
            assert_eq!(entries, (1..=6).map(entry).collect::<Vec<_>>());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "appended entries never became readable");
        tokio::task::yield_now().await;
    }
    assert!(flushed.try_recv().is_err(), "the flush was reported while the write was held");
    open_gate.send(()).unwrap();
    let mut log = append.await.unwrap();
    drop(reader);
    assert_eq!(log.try_get_log_entries(2..=5).await.unwrap(), (2..=5).map(entry).collect::<Vec<_>>());
    drop(log);
    // And durable: a reopened store has them.
    let mut log = LogStore::open(open_db(dir.path()).unwrap()).await.unwrap();
    assert_eq!(log.try_get_log_entries(1..=6).await.unwrap(), (1..=6).map(entry).collect::<Vec<_>>());
}

/// A snapshot stored in the log's file (before snapshots had their own) is found and moved.
#[tokio::test]
async fn a_snapshot_in_the_log_file_moves_to_its_own_file() {
    use openraft::storage::RaftStateMachine;
    use openraft::{RaftSnapshotBuilder, RaftTypeConfig};
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = {
        let db = open_db(dir.path()).unwrap();
        let mut sm = SmStore::open(open_snapshot_db(dir.path()).unwrap(), &db, Commands::default(), 100).await.unwrap();
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let data: <TypeConfig as RaftTypeConfig>::SnapshotData = *snapshot.snapshot;
        // Where the previous layout kept it.
        save_snapshot(&db, &snapshot.meta, data.get_ref()).unwrap();
        (snapshot.meta, data.into_inner())
    };
    std::fs::remove_file(dir.path().join(super::SNAPSHOT_DB_FILE)).unwrap();
    let db = open_db(dir.path()).unwrap();
    let snapshot_db = open_snapshot_db(dir.path()).unwrap();
    let mut sm = SmStore::open(snapshot_db.clone(), &db, Commands::default(), 100).await.unwrap();
    let current = sm.get_current_snapshot().await.unwrap().expect("the snapshot was found");
    assert_eq!(current.meta, meta);
    assert_eq!(load_snapshot(&snapshot_db).unwrap(), Some((meta, data)));
}
