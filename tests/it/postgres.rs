//! PostgreSQL for the tests: a private server ([`Postgres`], its own data dir and port, for
//! tests that stop and start it) and a fresh database per test ([`TestDb`]).
//!
//! `TestDb::create()` uses the server in `SUPERX_TEST_DATABASE_URL` (tests/run.sh starts one,
//! see tests/postgres.sh), else one private server per test process, started on first use.
//! The binaries come from `SUPERX_PG_BIN`, else the newest `/usr/lib/postgresql/<v>/bin`
//! (Debian's `postgresql` package). Postgres refuses to run as root: as root the server runs
//! as the `postgres` user, or as a system user `superx-pg` created for it.
//!
//! A server never outlives its test process: a watchdog (`sh`, in its own process group) holds
//! the read end of a pipe whose write end only this process has; when the process ends, even
//! killed, the pipe closes and the watchdog stops the server and removes its directory. That
//! also covers the per-process shared server, which lives in a static and is never dropped.
//!
//! Everything is synchronous (std::process) and talks to Postgres through `psql`.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::free_port;

/// The system user created for the server when the tests run as root and `postgres` does not
/// exist.
const SERVER_USER_FALLBACK: &str = "superx-pg";

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT_SECONDS: &str = "60";

/// Attempts to start on a free port (another process may take the port first).
const START_ATTEMPTS: usize = 3;

/// A private Postgres server (its own data dir and port), for tests that stop and start it.
/// Stopped (immediate mode) and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// The user the server runs as (`runuser -u`), when the tests run as root.
    user: Option<String>,
    /// Stops the server and removes `dir` once this process lets go of its stdin.
    watchdog: Option<Child>,
}

impl Postgres {
    /// initdb and `pg_ctl start -w` on a free port of 127.0.0.1, as a non-root user when
    /// running as root. fsync=off, max_connections=300.
    pub fn start() -> Postgres {
        let bin = server_bin();
        let user = running_as_root().then(server_user);
        let dir = tempfile::Builder::new().prefix("superx-pg-").tempdir().expect("create a temp dir for PostgreSQL");
        if let Some(user) = &user {
            let (uid, gid) = user_ids(user).unwrap_or_else(|| panic!("user {user} vanished"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", dir.path().display()));
        }
        let mut pg = Postgres { dir, port: 0, bin, user, watchdog: None };
        pg.watchdog = Some(pg.spawn_watchdog());

        let initdb = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed ({}):\n{}{}",
            initdb.status,
            String::from_utf8_lossy(&initdb.stdout),
            String::from_utf8_lossy(&initdb.stderr)
        );
        let conf = format!(
            "\n# tests/it/postgres.rs: a throwaway server for one test process\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 300\n",
            pg.dir.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("append to postgresql.conf");

        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            pg.port = free_port();
            match pg.pg_ctl_start() {
                Ok(()) => return pg,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start in {START_ATTEMPTS} attempts: {last}\nserver log:\n{}", pg.log_tail());
    }

    /// postgres://postgres@127.0.0.1:PORT/postgres
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `pg_ctl stop -m fast -w`: returns once the server is down.
    pub fn stop(&self) {
        let out =
            self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", PG_CTL_WAIT_SECONDS]).output().expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed ({}):\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    /// `pg_ctl start -w` on the same data dir and port: returns once it accepts connections.
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("PostgreSQL did not start again on port {}: {e}\nserver log:\n{}", self.port, self.log_tail());
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The last lines of the server's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("<no log: {e}>"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The argv that runs a server program as the server's user.
    fn argv(&self, program: &str) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(user) = &self.user {
            argv.extend(["runuser", "-u", user.as_str(), "--"].map(OsString::from));
        }
        argv.push(self.bin.join(program).into_os_string());
        argv
    }

    /// A server program as the server's user, in the server's directory (which that user can
    /// enter, unlike the test's working directory perhaps), stdin from /dev/null.
    fn command(&self, program: &str) -> Command {
        let argv = self.argv(program);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).args(args);
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        // -l: the server's output goes to the log, not to the pipes `output()` waits on.
        let out = self
            .pg_ctl(&["start", "-w", "-t", PG_CTL_WAIT_SECONDS, "-o", &format!("-p {}", self.port)])
            .arg("-l")
            .arg(self.log_path())
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `sh` waiting for EOF on its stdin, then stopping the server and removing the directory.
    /// In its own process group, so that a runner killing the test's group still gets it.
    fn spawn_watchdog(&self) -> Child {
        use std::os::unix::process::CommandExt;
        let mut stop = self.argv("pg_ctl");
        stop.extend(["stop", "-m", "immediate", "-w", "-D"].map(OsString::from));
        stop.push(self.data_dir().into_os_string());
        Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _ || true; dir=$1; shift; "$@" >/dev/null 2>&1; rm -rf "$dir""#)
            .arg("superx-pg-watchdog")
            .arg(self.dir.path())
            .args(stop)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the PostgreSQL watchdog (sh)")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
        // The temp dir goes with the field (the watchdog has usually removed it already).
    }
}

/// A fresh, uniquely named database for one test, dropped at the end.
pub struct TestDb {
    /// The database's URL.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// On the shared server: `SUPERX_TEST_DATABASE_URL` if set, else a process-wide private
    /// [`Postgres`] started once and kept for the test process.
    pub fn create() -> TestDb {
        match std::env::var("SUPERX_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => TestDb::on_admin_url(admin_url),
            _ => TestDb::on(shared_server()),
        }
    }

    /// On the given private server.
    pub fn on(pg: &Postgres) -> TestDb {
        TestDb::on_admin_url(pg.admin_url())
    }

    fn on_admin_url(admin_url: String) -> TestDb {
        let name = unique_name();
        if let Err(e) = psql(&admin_url, &format!("CREATE DATABASE \"{name}\"")) {
            panic!("could not create the test database {name} on {admin_url}:\n{e}");
        }
        TestDb { url: database_url(&admin_url, &name), name, admin_url }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs SQL with `psql -X -A -t -v ON_ERROR_STOP=1` and returns its trimmed stdout;
    /// panics with psql's stderr on failure. The SQL is a script: several statements run in
    /// turn (each in its own transaction unless it says otherwise), the first error stops it,
    /// and the output has every statement's rows (`|`-separated columns) and command tags
    /// (`INSERT 0 1`) one a line.
    pub fn query(&self, sql: &str) -> String {
        self.try_query(sql).unwrap_or_else(|e| panic!("psql failed on {}: {sql}\n{e}", self.name))
    }

    /// Like [`TestDb::query`], with psql's exit status and stderr as the error.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        psql(&self.url, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
    }
}

/// The per-process server of [`TestDb::create`] without `SUPERX_TEST_DATABASE_URL` (its
/// watchdog stops it when the process ends).
fn shared_server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// superx_test_<pid>_<counter>_<nanos>: unique across processes and threads.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("superx_test_{}_{n}_{nanos}", std::process::id())
}

/// `url` with its database (the path) replaced by `name`; the query string is kept.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Runs `sql` (as a script on stdin, so several statements may follow each other) with
/// `psql "<url>" -X -A -t -v ON_ERROR_STOP=1`; its trimmed stdout, or its status and stderr.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let program = psql_program();
    let mut child = Command::new(&program)
        .arg(url)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e} (install Debian's postgresql-client)", program.display()));
    let mut stdin = child.stdin.take().expect("psql stdin");
    let sql = sql.to_owned();
    // Written from a thread: psql's output may fill its pipe before it has read all the input.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(sql.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for psql");
    let _ = writer.join();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("psql exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `psql` from `SUPERX_PG_BIN` or /usr/lib/postgresql/*/bin, else from PATH.
fn psql_program() -> PathBuf {
    bin_dir_with("psql").map_or_else(|| PathBuf::from("psql"), |dir| dir.join("psql"))
}

/// The bin dir of the server programs (initdb, pg_ctl), or a panic saying how to get them.
fn server_bin() -> PathBuf {
    bin_dir_with("initdb").unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in $SUPERX_PG_BIN or \
             /usr/lib/postgresql/*/bin: install Debian's `postgresql` package (tests/run.sh does), \
             or set SUPERX_TEST_DATABASE_URL to an existing server"
        )
    })
}

/// `SUPERX_PG_BIN` if it has `program`, else the newest /usr/lib/postgresql/<version>/bin that
/// has it.
fn bin_dir_with(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("SUPERX_PG_BIN").filter(|d| !d.is_empty()) {
        dirs.push(dir.into());
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version =
                entry.file_name().to_str()?.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    dirs.extend(versions.into_iter().rev().map(|(_, dir)| dir));
    dirs.into_iter().find(|dir| dir.join(program).is_file())
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The uid and gid of `user`, if it exists.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).stderr(Stdio::null()).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// The user the server runs as when the tests run as root: `postgres`, else `superx-pg`,
/// created if missing. Test processes run in parallel, so another may be creating it right now
/// (useradd then fails on its lock or on the name): retried until the user exists.
fn server_user() -> String {
    if user_ids("postgres").is_some() {
        return "postgres".to_owned();
    }
    let deadline = Duration::from_secs(30);
    let start = Instant::now();
    loop {
        if user_ids(SERVER_USER_FALLBACK).is_some() {
            return SERVER_USER_FALLBACK.to_owned();
        }
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER_FALLBACK])
            .output();
        let last = match out {
            Ok(out) if out.status.success() => continue,
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => format!("run useradd: {e}"),
        };
        assert!(
            start.elapsed() < deadline,
            "could not create the system user {SERVER_USER_FALLBACK} to run PostgreSQL as (Postgres refuses \
             root): {last}"
        );
        // Polling interval while another process holds the user database's lock.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_db_answers_queries() {
    let db = TestDb::create();
    assert_eq!(db.query("select 1"), "1");
    assert_eq!(db.query("select current_database()"), db.name());
    // Several statements, each in turn; the output of all of them, command tags included.
    assert_eq!(
        db.query("create table t (n int); insert into t values (7), (8); select sum(n) from t"),
        "CREATE TABLE\nINSERT 0 2\n15"
    );
    let err = db.try_query("select * from no_such_table").unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
}

#[test]
fn test_dbs_are_separate_and_dropped() {
    let a = TestDb::create();
    let b = TestDb::create();
    assert_ne!(a.url, b.url);
    a.query("create table only_in_a (n int)");
    assert!(b.try_query("select * from only_in_a").is_err());
    let (name, admin_url) = (a.name().to_owned(), a.admin_url.clone());
    drop(a);
    let exists = psql(&admin_url, &format!("select count(*) from pg_database where datname = '{name}'")).unwrap();
    assert_eq!(exists, "0");
}

#[test]
fn private_server_stops_and_starts_again() {
    let pg = Postgres::start();
    let admin_url = pg.admin_url();
    assert_eq!(admin_url, format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port()));
    let db = TestDb::on(&pg);
    db.query("create table t (n int); insert into t values (42)");
    assert_eq!(db.query("show max_connections"), "300");
    assert_eq!(db.query("show fsync"), "off");

    // stop and start_again wait (pg_ctl -w, with a deadline) until the server is down or
    // accepts connections: no waiting is needed here.
    pg.stop();
    let err = db.try_query("select 1").unwrap_err();
    assert!(err.contains("Connection refused") || err.contains("shut"), "{err}");

    pg.start_again();
    assert_eq!(pg.admin_url(), admin_url);
    assert_eq!(db.query("select n from t"), "42");
}

#[test]
fn dropped_private_server_is_gone() {
    let pg = Postgres::start();
    let dir = pg.dir.path().to_owned();
    let db = TestDb::on(&pg);
    let url = db.url.clone();
    assert_eq!(db.query("select 1"), "1");
    drop(db);
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(psql(&url, "select 1").is_err());
}

#[test]
fn database_url_replaces_the_path() {
    let f = |url| database_url(url, "db");
    assert_eq!(f("postgres://postgres@127.0.0.1:5432/postgres"), "postgres://postgres@127.0.0.1:5432/db");
    assert_eq!(f("postgres://u:p@h:1/x?sslmode=disable"), "postgres://u:p@h:1/db?sslmode=disable");
    assert_eq!(f("postgresql://h:1"), "postgresql://h:1/db");
    assert_eq!(f("postgres://h?application_name=a/b"), "postgres://h/db?application_name=a/b");
}
