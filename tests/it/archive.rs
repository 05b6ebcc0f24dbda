//! The Postgres archive with real processes and a real Postgres: the leader killed while its
//! archiver is busy (nothing missing, nothing twice), Postgres stopped under load (writes go
//! on until memory is full of unarchived tasks, then a retryable refusal; the backlog drains
//! once it is back, nothing lost), bad databases refused at startup with a clear message, and
//! archived tasks read back only by the caller that created them (or an admin).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_agent;
use crate::postgres::{Postgres, TestDb};
use crate::support::{Cluster, call, command, free_port, get, run_to_exit, send, start, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// `/health`'s archive section of one node (null when it does not answer).
fn archive_health(base: &str) -> Value {
    get(&format!("{base}/health")).and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok()).unwrap_or_default()
        ["archive"]
        .clone()
}

fn backlog(base: &str) -> Option<u64> {
    archive_health(base)["backlog"].as_u64()
}

/// Every task ListTasks shows on a node, walking all pages; panics on a duplicate.
fn list_all(base: &str, page_size: u64) -> Vec<String> {
    let mut ids = vec![];
    let mut seen = HashSet::new();
    let mut token = String::new();
    loop {
        let reply = call(base, "/agents/echo", "ListTasks", json!({"pageSize": page_size, "pageToken": token}), None);
        let result = &reply["result"];
        for task in result["tasks"].as_array().unwrap_or_else(|| panic!("ListTasks failed: {reply}")) {
            let id = task["id"].as_str().unwrap().to_owned();
            assert!(seen.insert(id.clone()), "task {id} listed twice on {base}");
            ids.push(id);
        }
        token = result["nextPageToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            return ids;
        }
    }
}

fn archived_ids(db: &TestDb) -> HashSet<String> {
    let out = db.query("SELECT task_id FROM archived_tasks");
    out.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_while_archiving_loses_and_duplicates_nothing() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let db = TestDb::create();
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("SUPERX_ARCHIVE__BATCH_MAX", "20"),
            // Archived tasks leave memory at once: reads after the test come from Postgres.
            ("SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT", "0"),
        ];
        let mut cluster = Cluster::new(3, &agent.url, &env);
        let leader = cluster.leader();
        let bases: Vec<String> = (1..=3).map(|id| cluster.base(id)).collect();
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (acked, stop, bases) = (acked.clone(), stop.clone(), bases.clone());
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if let Ok(task) = send(&bases[i % bases.len()], &format!("t{i}")) {
                        acked.lock().unwrap().push(task["id"].as_str().unwrap().to_owned());
                    }
                }
            })
        };
        // The archiver is mid-work: it has archived some, and more wait.
        let leader_base = cluster.base(leader);
        wait_until(DEADLINE, || {
            let h = archive_health(&leader_base);
            h["archivedTotal"].as_u64().unwrap_or(0) > 40 && h["backlog"].as_u64().unwrap_or(0) > 0
        });
        let at_kill = acked.lock().unwrap().len();
        cluster.kill(leader);
        wait_until(DEADLINE, || acked.lock().unwrap().len() >= at_kill + 100);
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap();
        let acked: Vec<String> = acked.lock().unwrap().clone();
        let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        for id in &survivors {
            wait_until(DEADLINE, || backlog(&cluster.base(*id)) == Some(0));
        }
        let in_db = archived_ids(&db);
        let rows: u64 = db.query("SELECT count(*) FROM archived_tasks").parse().unwrap();
        assert_eq!(rows as usize, in_db.len());
        let missing: Vec<_> = acked.iter().filter(|id| !in_db.contains(*id)).collect();
        assert!(missing.is_empty(), "acknowledged tasks not archived: {missing:?}");
        for id in &survivors {
            let base = cluster.base(*id);
            let listed = list_all(&base, 50);
            let listed: HashSet<_> = listed.into_iter().collect();
            // Every task the cluster holds, once: the acknowledged ones and any whose answer
            // was lost in the failover (committed, but the client saw an error).
            assert_eq!(listed, in_db, "node {id}: ListTasks and the archive disagree");
            for task in &acked {
                let reply = call(&base, "/agents/echo", "GetTask", json!({"id": task}), None);
                assert_eq!(reply["result"]["id"], json!(task), "node {id}: GetTask {task}: {reply}");
            }
        }
        eprintln!("{} acknowledged, {} archived, leader {leader} killed after {at_kill}", acked.len(), in_db.len());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fills_memory_then_refuses_and_drains_when_back() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let pg = Postgres::start();
        let db = TestDb::on(&pg);
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("SUPERX_TASKS__MEMORY_MAX", "60"),
            ("SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT", "10"),
            ("SUPERX_ARCHIVE__RETRY_BACKOFF_MAX_MS", "200"),
            ("SUPERX_ARCHIVE__CONNECT_TIMEOUT_MS", "1000"),
            ("SUPERX_ARCHIVE__STATEMENT_TIMEOUT_MS", "1000"),
        ];
        let cluster = Cluster::new(1, &agent.url, &env);
        let base = cluster.base(1);
        let mut acked: Vec<String> =
            (0..30).map(|i| send(&base, &format!("a{i}")).unwrap()["id"].as_str().unwrap().into()).collect();
        wait_until(DEADLINE, || {
            let h = archive_health(&base);
            h["backlog"] == json!(0) && h["tasksInMemory"] == json!(10)
        });
        let evicted = acked[0].clone();

        pg.stop();
        // Writes go on while there is room, then a clear, retryable refusal; nothing is dropped.
        let refusal = loop {
            match send(&base, &format!("b{}", acked.len())) {
                Ok(task) => acked.push(task["id"].as_str().unwrap().into()),
                Err(error) => break error,
            }
            assert!(acked.len() < 200, "memory never filled");
        };
        assert_eq!(refusal["code"], json!(-32020), "{refusal}");
        assert_eq!(refusal["data"][0]["reason"], json!("OVERLOADED"), "retryable, told apart from a bug: {refusal}");
        let message = refusal["message"].as_str().unwrap();
        assert!(message.contains("no room for a new task") && message.contains("retry"), "{refusal}");
        // Room for 60 more: the 10 archived tasks in memory make room, then memory (60) is
        // all tasks waiting for the archive.
        assert_eq!(acked.len(), 30 + 60);
        let health = archive_health(&base);
        assert_eq!((health["backlog"].as_u64(), health["tasksInMemory"].as_u64()), (Some(60), Some(60)), "{health}");
        // The archiver's attempt fails within the connect timeout; health then says why.
        wait_until(DEADLINE, || archive_health(&base)["lastError"].is_string());
        // A task only the archive holds is unavailable, not "not found".
        let reply = call(&base, "/agents/echo", "GetTask", json!({"id": evicted}), None);
        assert_eq!(reply["error"]["data"][0]["reason"], json!("UNAVAILABLE"), "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("archive is unavailable"), "{reply}");
        for task in &acked[30..] {
            let reply = call(&base, "/agents/echo", "GetTask", json!({"id": task}), None);
            assert_eq!(reply["result"]["id"], json!(task), "{reply}");
        }

        pg.start_again();
        wait_until(DEADLINE, || backlog(&base) == Some(0));
        for i in 0..20 {
            acked.push(send(&base, &format!("c{i}")).expect("writes resume")["id"].as_str().unwrap().into());
        }
        wait_until(DEADLINE, || backlog(&base) == Some(0));
        let in_db = archived_ids(&db);
        assert!(acked.iter().all(|id| in_db.contains(id)), "every acknowledged task is archived");
        let listed: HashSet<String> = list_all(&base, 7).into_iter().collect();
        assert_eq!(listed, acked.iter().cloned().collect::<HashSet<_>>());
        assert!(archive_health(&base).get("lastError").is_none(), "the error clears once writes work");
        // The same story on /metrics, as the bench scripts read it (`name value` lines).
        let metrics = get(&format!("{base}/metrics")).expect("/metrics answers").1;
        let metric = |name: &str| -> f64 {
            let line = metrics.lines().find(|l| l.split_whitespace().next() == Some(name));
            line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or_else(|| panic!("{name}:\n{metrics}"))
        };
        assert_eq!(metric("superx_archive_backlog_tasks"), 0.0);
        assert!(metric("superx_archive_tasks_total") >= acked.len() as f64, "{metrics}");
        assert!(metric("superx_archive_batches_total") >= 1.0, "{metrics}");
        assert!(metric("superx_archive_write_errors_total") >= 1.0, "{metrics}");
        assert!(metric("superx_archive_evicted_total") >= 1.0, "{metrics}");
        assert!(metric("superx_archive_last_batch_seconds") >= 0.0, "{metrics}");
        assert!(metric("superx_tasks_evicted_total") >= 1.0, "{metrics}");
        assert!(metric("superx_tasks_in_memory") >= 1.0, "{metrics}");
    })
    .await
    .unwrap();
}

/// `superx serve` with this database URL must exit with `code`, naming the problem.
fn refused_at_start(url: &str, extra: &[(&str, &str)], code: i32, needles: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra);
    let cmd = command(&tmp.path().join("n"), &["--listen", &listen, "--raft-listen", &raft], &env);
    let out = run_to_exit(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{url}: stderr:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing for {url}:\n{stderr}");
    }
    stderr
}

#[test]
fn bad_databases_are_refused_at_startup_with_a_clear_message() {
    let db = TestDb::create();
    // Not a Postgres URL: a config error, before anything starts.
    refused_at_start("mysql://u:p@127.0.0.1/x", &[], 2, &["archive.database_url (DATABASE_URL)", "postgres://"]);
    // Nobody listens there: retried until the startup timeout, then a clear exit; the
    // password is never printed.
    let nowhere = format!("postgres://postgres:s3cret@127.0.0.1:{}/x", free_port());
    let stderr =
        refused_at_start(&nowhere, &[("SUPERX_ARCHIVE__STARTUP_TIMEOUT_MS", "600")], 1, &["archive", "unreachable"]);
    assert!(!stderr.contains("s3cret"), "the password leaked:\n{stderr}");
    // A database that does not exist: at once.
    let (admin, _) = db.url.rsplit_once('/').unwrap();
    refused_at_start(&format!("{admin}/no_such_database_here"), &[], 1, &["refused", "no_such_database_here"]);

    // A database at a newer schema than this binary knows.
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("n"), &[], &[("DATABASE_URL", db.url.as_str())]);
    drop(node);
    assert_eq!(db.query("SELECT max(version) FROM _sqlx_migrations"), "3");
    db.query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    );
    refused_at_start(&db.url, &[], 1, &["schema version 9999", "newer than this superx knows (up to 3)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_rows_older_than_retention_days() {
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let db = TestDb::create();
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("SUPERX_ARCHIVE__RETENTION_DAYS", "1"),
            ("SUPERX_ARCHIVE__RETENTION_BATCH", "3"),
            ("SUPERX_ARCHIVE__RETENTION_INTERVAL_MS", "100"),
        ];
        let cluster = Cluster::new(1, &agent.url, &env);
        let base = cluster.base(1);
        let fresh: Vec<String> =
            (0..5).map(|i| send(&base, &format!("f{i}")).unwrap()["id"].as_str().unwrap().into()).collect();
        wait_until(DEADLINE, || backlog(&base) == Some(0));
        // Ten rows archived two days ago (more than one batch of 3), as an older cluster left them.
        db.query(
            "INSERT INTO archived_tasks (task_id, seq, agent_id, context_id, state, created_at, updated_at, \
               archived_at, row_version, task) \
             SELECT 'old-' || i, i, 'echo', 'ctx', 'TASK_STATE_COMPLETED', now(), now(), now() - interval '2 days', 1, \
               jsonb_build_object('id', 'old-' || i, 'contextId', 'ctx', 'status', \
                 jsonb_build_object('state', 'TASK_STATE_COMPLETED')) \
             FROM generate_series(1, 10) AS i",
        );
        // ... with their counts, as the archiver keeps them.
        db.query(
            "INSERT INTO archived_task_counts (agent_id, state, slot, n) VALUES ('echo', 'TASK_STATE_COMPLETED', 0, 10) \
             ON CONFLICT (agent_id, state, slot) DO UPDATE SET n = archived_task_counts.n + 10",
        );
        wait_until(DEADLINE, || db.query("SELECT count(*) FROM archived_tasks WHERE task_id LIKE 'old-%'") == "0");
        assert_eq!(archived_ids(&db), fresh.iter().cloned().collect::<HashSet<_>>());
        // The deletes took their rows out of the counts: what ListTasks' totalSize reads.
        assert_eq!(db.query("SELECT sum(n) FROM archived_task_counts"), "5");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_tasks_are_read_only_by_their_owner() {
    use crate::owner::{ADMIN, assert_hidden, create_key, list, rpc_raw, send_as};
    let agent = fake_agent::start(0, 0).await;
    tokio::task::spawn_blocking(move || {
        let db = TestDb::create();
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("SUPERX_AUTH__MODE", "required"),
            ("SUPERX_AUTH__ADMIN_TOKEN", ADMIN),
            // Archived tasks leave memory at once: every read below comes from Postgres.
            ("SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT", "0"),
        ];
        let cluster = Cluster::new(1, &agent.url, &env);
        let base = cluster.base(1);
        let (alice, bob) = (create_key(&base, "alice"), create_key(&base, "bob"));
        let alices: Vec<String> = (0..3).map(|i| send_as(&base, &alice, &format!("a{i}"))).collect();
        let bobs: Vec<String> = (0..2).map(|i| send_as(&base, &bob, &format!("b{i}"))).collect();
        wait_until(DEADLINE, || {
            let h = archive_health(&base);
            h["backlog"] == json!(0) && h["tasksInMemory"] == json!(0)
        });
        let owners = db.query("SELECT DISTINCT owner FROM archived_tasks ORDER BY owner");
        assert_eq!(owners.lines().count(), 2, "one owner per key: {owners}");
        assert!(owners.lines().all(|o| o.starts_with("key:")), "{owners}");
        // A row archived before tasks had owners: an admin's only.
        db.query(
            "INSERT INTO archived_tasks (task_id, seq, agent_id, context_id, state, created_at, updated_at, \
               row_version, task) \
             VALUES ('unowned-1', 0, 'echo', 'ctx', 'TASK_STATE_COMPLETED', now(), now(), 1, \
               jsonb_build_object('id', 'unowned-1', 'contextId', 'ctx', 'status', \
                 jsonb_build_object('state', 'TASK_STATE_COMPLETED')))",
        );
        db.query(
            "INSERT INTO archived_task_counts (agent_id, state, slot, n) VALUES ('echo', 'TASK_STATE_COMPLETED', 0, 1) \
             ON CONFLICT (agent_id, state, slot) DO UPDATE SET n = archived_task_counts.n + 1",
        );

        assert_hidden(&base, &bob, &alices[0]);
        assert_hidden(&base, &alice, &bobs[1]);
        assert_hidden(&base, &alice, "unowned-1");
        let got = rpc_raw(&base, "GetTask", json!({"id": alices[2]}), &alice, &[]);
        assert!(got.status == 200 && got.body.contains(&alices[2]), "{got:?}");
        let (ids, total) = list(&base, &alice);
        assert_eq!(total, 3);
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), alices.iter().cloned().collect::<HashSet<_>>());
        assert_eq!(list(&base, &bob).1, 2);
        let (ids, total) = list(&base, ADMIN);
        assert_eq!((ids.len(), total), (6, 6), "the admin lists every task, unowned ones too: {ids:?}");
        let unowned = rpc_raw(&base, "GetTask", json!({"id": "unowned-1"}), ADMIN, &[]);
        assert_eq!(unowned.status, 200, "{unowned:?}");
    })
    .await
    .unwrap();
}
