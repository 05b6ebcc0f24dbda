#!/usr/bin/env python3
"""bench/archive.py: what the Postgres archive of terminal tasks costs and how fast
it drains, one superx node on loopback with a private Postgres 15.

Four measurements (the node is always one superx, the agent the bench echo agent,
registered as `default` through A2A_REMOTE_URL):
1. archive drain: Postgres is stopped, the node is filled with --tasks terminal
   tasks (superx-load send1; SUPERX_TASKS__MEMORY_MAX above that, archiver
   backoff capped at 200 ms), then Postgres is started and /metrics is sampled
   every 100 ms until superx_archive_backlog_tasks is 0. Figures: tasks/s
   (tasks / time from Postgres up to backlog 0), the delay to the first batch,
   and the batch write time (superx_archive_last_batch_seconds, each new batch
   seen, p50/max). The node runs with SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT=0, so
   every archived task leaves memory (checked: superx_tasks_in_memory reaches 0).
2. GetTask on archived (evicted) tasks: random ids of the archive, closed loop
   over --get-connections keep-alive connections (a threaded stdlib client),
   --get-requests requests, linearizable and with `SuperX-Read: local` (no read
   barrier); then superx-load on one fixed archived id (both read modes) as a
   check of what the Python client adds.
3. ListTasks spanning memory and archive: the node is restarted with
   SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT=20 and gets 10 fresh tasks (archived,
   still in memory); ListTasks pageSize 50, first page (10 from memory, 40 from
   the archive) and a deep page (a page token 90% deep into the archive), plus
   GetTask on the in-memory tasks as the baseline of part 2.
4. SendMessage with and without the archiver: a fresh node per round, with and
   without DATABASE_URL (defaults otherwise), superx-load send1 closed loop,
   --rounds pairs, the pair's order alternating (without first in odd rounds);
   req/s, p50/p99, each pair's ratio and their median, and the archive rate
   alongside the load (superx_archive_tasks_total growth over the measured
   window). Each round's database is dropped and Postgres checkpointed after it, so
   no round pays for an earlier one's autovacuum or WAL.

Placement (2-core machine): the gateway on core 0 (taskset); the echo agent,
superx-load, Postgres (postmaster and backends) and this script with its client
threads on core 1. Postgres runs with its default durability settings (fsync
on, synchronous_commit on) from a scratch directory owned by `postgres`, on a
free 127.0.0.1 port. Every process started here is stopped on exit (normal end,
error, Ctrl-C or SIGTERM); only loopback addresses are contacted.

The machine may be shared: before each measurement the script waits (up to
--wait-quiet s) for a second in which other processes use less than --quiet-pct
of a core, and it reports their CPU share during each measurement (other%).

Output: a summary table with the targets (>= 20,000 archived tasks/s, archived
GetTask p99 <= 5 ms, SendMessage throughput with the archiver within 10% of
without), and JSON in bench-results/<timestamp>-archive/.

Usage: bench/archive.py [--tasks 100000] [--rounds 2] [--duration 10] [--warmup 2]
                        [--connections 32] [--get-requests 10000] [--get-connections 4]
                        [--list-requests 2000] [--list-connections 2]
                        [--bin-dir target/release] [--pg-bin /usr/lib/postgresql/15/bin]
                        [--wait-quiet 60] [--quiet-pct 15] [--no-pin] [--parts 1234] [--writers 2]
                        [--port-base 4700] [--echo-addr 127.0.0.1:9994] [--memory-max N] [--perf] [--keep]
"""

import argparse
import base64
import http.client as httpclient
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import ROOT, Proc, http, port_busy, wait_until  # noqa: E402

GW_CORE = 0  # the gateway
SIDE_CORE = 1  # echo agent, superx-load, Postgres, this script
A2A = {"Content-Type": "application/json", "A2A-Version": "1.0"}
LOCAL = {**A2A, "SuperX-Read": "local"}
TARGET_ARCHIVE_RATE = 20_000
TARGET_GET_P99_MS = 5.0
TARGET_RATIO = 0.90


def log(msg):
    print(f"archive.py: {msg}", file=sys.stderr, flush=True)


def pinned(core, argv, pin):
    return ["taskset", "-c", str(core), *argv] if pin else argv


def gateway_proc(bin_dir, work, name, api, pin, agents_file, env=None):
    """One pinned gateway (core GW_CORE) serving `api`, its own raft port and data dir in `work`,
    the agents of `agents_file`, with `env` added to its environment; not started yet."""
    argv = [str(bin_dir / "superx"), "serve", "--listen", api, "--raft-listen", f"127.0.0.1:{free_port()}",
            "--data-dir", str(work / f"data-{name}"), "--agents-file", str(agents_file)]
    if env:
        argv = ["env", *[f"{k}={v}" for k, v in env.items()], *argv]
    return Proc(name, pinned(GW_CORE, argv, pin), work / f"{name}.log")


def pct(values, q):
    """Nearest-rank percentile of a list (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- CPU accounting

def core_times():
    """{core: (busy ticks, total ticks, steal ticks)} from /proc/stat. Busy counts steal (time
    the hypervisor gave this vCPU to another guest): it is time the core was not ours."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *fields = line.split()
                v = [int(x) for x in fields]
                total = sum(v[:8])
                out[int(name[3:])] = (total - v[3] - v[4], total, v[7])
    return out


def proc_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def children_of(ppid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids


class CpuWindow:
    """CPU use between start() and stop(): each core busy %, and named process groups in %
    of one core."""

    HZ = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids

    def start(self):
        self.t0 = time.monotonic()
        self.cores0 = core_times()
        self.procs0 = {name: proc_ticks(f()) for name, f in self.groups.items()}
        return self

    def stop(self):
        secs = time.monotonic() - self.t0
        cores1 = core_times()
        out = {"seconds": round(secs, 2)}
        steal = 0.0
        for core, (busy, total, stolen) in cores1.items():
            b0, t0, s0 = self.cores0.get(core, (busy, total, stolen))
            out[f"core{core}_busy_pct"] = round(100 * (busy - b0) / max(1, total - t0), 1)
            steal += 100 * (stolen - s0) / max(1, total - t0)
        ours = 0.0
        for name, f in self.groups.items():
            ticks = proc_ticks(f()) - self.procs0[name]
            out[f"{name}_cpu_pct"] = round(100 * ticks / self.HZ / max(secs, 1e-6), 1)
            ours += out[f"{name}_cpu_pct"]
        busy = sum(v for k, v in out.items() if k.startswith("core") and k.endswith("_busy_pct"))
        # Everything else on the machine (other people's builds and tests, and the time other
        # guests of the hypervisor took, shown on its own as steal), in % of one core.
        out["other_cpu_pct"] = round(max(0.0, busy - ours), 1)
        out["steal_pct"] = round(steal, 1)
        return out


def wait_quiet(window, wait_s, quiet_pct, what, say=None):
    """Waits (up to wait_s) for a second in which processes not started here use less than
    quiet_pct of a core (the machine may be shared); `window()` makes the CpuWindow that
    knows our processes; `say` logs (this script's log by default). Returns the share seen last."""
    deadline = time.monotonic() + wait_s
    while True:
        w = window().start()
        time.sleep(1.0)
        other = w.stop()["other_cpu_pct"]
        if other < quiet_pct:
            return other
        if time.monotonic() >= deadline:
            (say or log)(f"{what}: other processes still use {other}% of a core; measuring anyway")
            return other


def cpu_note(c):
    parts = [f"core0 {c.get('core0_busy_pct')}%", f"core1 {c.get('core1_busy_pct')}%"]
    parts += [f"{k[:-8]} {v}%" for k, v in c.items() if k.endswith("_cpu_pct")]
    parts.append(f"steal {c.get('steal_pct')}%")
    return "busy: " + ", ".join(parts)


# --------------------------------------------------------------------------- Postgres

class Postgres:
    """A private Postgres cluster in a scratch directory owned by `postgres`."""

    def __init__(self, pg_bin, port, pin, nice=0):
        self.nice = nice
        self.bin = Path(pg_bin)
        self.port = port
        self.pin = pin
        self.dir = Path(tempfile.mkdtemp(prefix="superx-archive-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.root = os.geteuid() == 0
        if self.root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.running = False

    def _as_pg(self, argv):
        return ["runuser", "-u", "postgres", "--", *argv] if self.root else argv

    def _run(self, argv, timeout=120, core=None):
        if core is not None and self.pin:
            argv = ["taskset", "-c", str(core), *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{self.tail()}")
        return done.stdout

    def init(self):
        self._run(self._as_pg([str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust",
                               "--username=postgres", "--encoding=UTF8", "--locale=C"]))

    def start(self):
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir}"
        nice = ["nice", "-n", str(self.nice)] if self.nice else []
        self._run([*nice, *self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                                        "-w", "-t", "60", "-o", opts, "start"])], core=SIDE_CORE)
        self.running = True

    def stop(self, mode="fast"):
        if not self.running:
            return
        self._run(self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                               "stop"]))
        self.running = False

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self):
        pid = self.postmaster_pid()
        return [pid, *children_of(pid)] if pid else []

    def psql(self, sql, db="postgres"):
        return self._run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                          "-d", db, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]).strip()

    def create_db(self, name):
        self.psql(f"CREATE DATABASE {name}")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def slow_statements(self, needle):
        """Server-side durations (ms) of logged statements (log_min_duration_statement)
        whose text holds `needle`, in log order."""
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            if "duration: " in line and " ms" in line and needle in line and "execute" in line:
                try:
                    out.append(float(line.split("duration: ", 1)[1].split(" ms", 1)[0]))
                except ValueError:
                    pass
        return out

    def tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def destroy(self):
        try:
            if self.running:
                self.stop("immediate")
        except Exception as err:  # noqa: BLE001 - kill it below
            log(f"stopping Postgres: {err}")
        pid = self.postmaster_pid()
        if pid and self.running:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- superx node

class Node(Proc):
    def __init__(self, name, bin_dir, api, raft, data_dir, echo_addr, env, work, pin):
        argv = pinned(GW_CORE, [str(bin_dir / "superx"), "serve", "--listen", api, "--raft-listen", raft,
                                "--data-dir", str(data_dir)], pin)
        super().__init__(name, argv, work / f"{name}.log")
        self.api = api
        base = {k: v for k, v in os.environ.items()
                if not (k.startswith("SUPERX_") or k in ("DATABASE_URL", "DB_POOL_SIZE", "AGENTS_FILE")
                        or k.startswith("A2A_REMOTE_") or k.startswith("AGENT_"))}
        self.env = {**base, "LOG_LEVEL": "info", "A2A_REMOTE_URL": f"http://{echo_addr}/",
                    # The bench measures the gateway: the agent's own in-flight limit stays out of the way.
                    "AGENT_MAX_IN_FLIGHT": "4096", **env}

    def start(self):
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env)

    def pids(self):
        return [self.popen.pid] if self.alive() else []

    def wait_ready(self, timeout=120):
        wait_until(f"{self.name} ready", lambda: http(f"http://{self.api}/ready", timeout=1)[0] == 200,
                   timeout, [self])

    def metrics(self):
        status, raw = http(f"http://{self.api}/metrics", timeout=2)
        if status != 200:
            raise RuntimeError(f"{self.name}: /metrics answered {status}: {raw[:200]!r}")
        out = {}
        for line in raw.decode().splitlines():
            if line and not line.startswith("#"):
                parts = line.split()
                if len(parts) == 2 and "{" not in parts[0]:
                    out[parts[0]] = float(parts[1])
        return out

    def rpc(self, method, params, headers=A2A, timeout=10):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        status, raw = http(f"http://{self.api}/agents/default", body, headers, timeout)
        if status != 200:
            raise RuntimeError(f"{method} answered HTTP {status}: {raw[:300]!r}")
        answer = json.loads(raw)
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {json.dumps(answer['error'])[:300]}")
        return answer["result"]

    def send(self, text="archive bench"):
        result = self.rpc("SendMessage", {"message": {"messageId": str(uuid.uuid4()), "role": "ROLE_USER",
                                                      "parts": [{"text": text}]}})
        task = result.get("task") or {}
        if task.get("status", {}).get("state") != "TASK_STATE_COMPLETED":
            raise RuntimeError(f"SendMessage did not complete a task: {json.dumps(result)[:300]}")
        return task["id"]


# --------------------------------------------------------------------------- load

def superx_load(bin_dir, out_json, url, args_extra, duration, warmup, connections, pin, work, pids=None):
    argv = pinned(SIDE_CORE, [str(bin_dir / "superx-load"), "--url", url, "--connections", str(connections),
                              "--duration", str(duration), "--warmup", str(warmup), "--json", *args_extra], pin)
    with open(work / "load.log", "ab") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        if pids is not None:
            pids.add(proc.pid)
        try:
            stdout, _ = proc.communicate(timeout=duration + warmup + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if pids is not None:
                pids.discard(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"superx-load failed ({proc.returncode}); see {work / 'load.log'}")
    result = json.loads(stdout)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def closed_loop(api, path, bodies, count, connections, headers, check, warmup=0):
    """`count` POSTs (after `warmup` unmeasured ones) over `connections` keep-alive
    connections, one request in flight each; bodies(i) -> (bytes, expected). Returns
    latencies in ms, errors by kind, and the measured wall time."""
    host, port = api.rsplit(":", 1)
    counter = itertools.count()
    lats, errors = [], {}
    lock = threading.Lock()
    started = {}

    def worker():
        conn = httpclient.HTTPConnection(host, int(port), timeout=30)
        mine, bad = [], {}
        try:
            while True:
                i = next(counter)
                if i >= warmup + count:
                    break
                if i == warmup:
                    started.setdefault("t", time.monotonic())
                body, expected = bodies(i)
                t0 = time.perf_counter_ns()
                try:
                    conn.request("POST", path, body, headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, httpclient.HTTPException) as err:
                    conn.close()
                    conn = httpclient.HTTPConnection(host, int(port), timeout=30)
                    kind = f"transport: {type(err).__name__}"
                    bad[kind] = bad.get(kind, 0) + 1
                    continue
                dt = (time.perf_counter_ns() - t0) / 1e6
                why = None if resp.status == 200 else f"HTTP {resp.status}"
                why = why or check(data, expected)
                if why:
                    bad[why] = bad.get(why, 0) + 1
                elif i >= warmup:
                    mine.append(dt)
        finally:
            conn.close()
            with lock:
                lats.extend(mine)
                for k, v in bad.items():
                    errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started.get("t", time.monotonic())
    return lats, errors, wall


def lat_summary(lats, errors, wall):
    return {"requests": len(lats), "errors": errors, "per_sec": round(len(lats) / wall, 1) if wall > 0 else None,
            "p50_ms": round(pct(lats, 50), 3) if lats else None, "p90_ms": round(pct(lats, 90), 3) if lats else None,
            "p99_ms": round(pct(lats, 99), 3) if lats else None, "max_ms": round(max(lats), 3) if lats else None}


def load_summary(r):
    lat = r["latency_us"]
    return {"requests": r["requests"], "errors": r["errors"]["total"], "per_sec": round(r["req_per_sec"], 1),
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
            "max_ms": lat["max"] / 1000}


def gettask_body(task_id):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}).encode()


def check_task(data, expected):
    if b'"result"' not in data:
        return "json-rpc error: " + data[:120].decode(errors="replace")
    if expected and expected.encode() not in data:
        return "wrong task"
    return None


# --------------------------------------------------------------------------- the parts

class Bench:
    def __init__(self, args, work, out_dir):
        self.args = args
        self.work = work
        self.out = out_dir
        self.bin = Path(args.bin_dir)
        self.pin = args.pin
        self.api = f"127.0.0.1:{args.port_base}"
        self.raft = f"127.0.0.1:{args.port_base + 1}"
        self.procs = []
        self.pg = None
        self.echo = None
        self.results = {}
        self.load_pids = set()

    def node(self, name, data_dir, env):
        node = Node(name, self.bin, self.api, self.raft, data_dir, self.args.echo_addr, env, self.work, self.pin)
        for addr in (self.api, self.raft):
            wait_until(f"{addr} free", lambda a=addr: not port_busy(a), 15)
        self.procs.append(node)
        node.start()
        node.wait_ready()
        node.send("smoke")
        return node

    def stop_node(self, node):
        node.stop()
        if node in self.procs:
            self.procs.remove(node)

    def cpu(self, node):
        groups = {"gateway": node.pids, "postgres": self.pg.pids,
                  "echo": lambda: [self.echo.popen.pid] if self.echo.alive() else [],
                  "load": lambda: list(self.load_pids), "script": lambda: [os.getpid()]}
        return CpuWindow(groups)

    def quiet(self, node, what):
        return wait_quiet(lambda: self.cpu(node), self.args.wait_quiet, self.args.quiet_pct, what)

    def setup(self):
        a = self.args
        self.echo = Proc("echo agent", pinned(SIDE_CORE, [str(self.bin / "superx-echo-agent"), "--listen",
                                                          a.echo_addr, "--workers", "1"], self.pin),
                         self.work / "echo.log")
        self.procs.append(self.echo)
        self.echo.start()
        wait_until("the echo agent",
                   lambda: http(f"http://{a.echo_addr}/.well-known/agent-card.json", timeout=1)[0] == 200,
                   10, [self.echo])
        self.pg = Postgres(a.pg_bin, free_port(), self.pin, a.pg_nice)
        log(f"initdb in {self.pg.dir} ...")
        self.pg.init()
        self.pg.start()
        version = self.pg.psql("SHOW server_version")
        fsync = self.pg.psql("SHOW fsync")
        sync_commit = self.pg.psql("SHOW synchronous_commit")
        self.results["postgres"] = {"version": version, "port": self.pg.port, "fsync": fsync,
                                    "synchronous_commit": sync_commit,
                                    "shared_buffers": self.pg.psql("SHOW shared_buffers")}
        log(f"Postgres {version} on 127.0.0.1:{self.pg.port} (fsync {fsync}, synchronous_commit {sync_commit})")

    # ---- parts 1 and 2

    def fill(self, node, target):
        """superx-load send1 in chunks until the node holds `target` unarchived tasks."""
        rate = 3000.0
        runs = []
        started = time.monotonic()
        while True:
            have = int(node.metrics().get("superx_archive_backlog_tasks", 0))
            if have >= target:
                break
            duration = min(30.0, max(0.5, (target - have) / rate))
            r = superx_load(self.bin, None, f"http://{self.api}/agents/default", ["--method", "send1"], round(duration, 2),
                            0, self.args.connections, self.pin, self.work)
            runs.append(load_summary(r))
            if r["errors"]["total"]:
                log(f"fill: {r['errors']} errors in a chunk")
            rate = max(200.0, r["ok_per_sec"])
            log(f"fill: {have + r['ok']} of {target} tasks ({r['ok_per_sec']:.0f} tasks/s)")
        return {"seconds": round(time.monotonic() - started, 1), "chunks": runs}

    def part1_and_2(self):
        a = self.args
        url = self.pg.create_db("bench_drain")
        # Statements slower than 10 ms are logged with their server-side duration (the batch
        # inserts, ListTasks' count); GetTask's lookups stay below it and are not logged.
        self.pg.psql("ALTER DATABASE bench_drain SET log_min_duration_statement = '10ms'")
        env = {"DATABASE_URL": url, "SUPERX_ARCHIVE__WRITERS": str(a.writers),
               "SUPERX_TASKS__MEMORY_MAX": str(a.tasks + a.tasks // 2 + 20_000),
               "SUPERX_ARCHIVE__RETRY_BACKOFF_MAX_MS": "200", "SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT": "0"}
        self.drain_env = env
        self.drain_dir = self.work / "drain-node"
        node = self.node("drain-node", self.drain_dir, env)
        wait_until("the smoke task archived", lambda: node.metrics().get("superx_archive_backlog_tasks", 1) == 0, 30,
                   [node])
        log("part 1: stopping Postgres, filling the node ...")
        self.pg.stop("fast")
        pg_down = time.monotonic()
        fill = self.fill(node, a.tasks)
        m = node.metrics()
        backlog = int(m["superx_archive_backlog_tasks"])
        errors_before = m.get("superx_archive_write_errors_total", 0)
        log(f"part 1: {backlog} tasks wait for the archive ({int(m['superx_tasks_in_memory'])} in memory, "
            f"{int(errors_before)} failed write attempts so far); starting Postgres")
        self.quiet(node, "part 1")  # also lets the archiver settle into its (<= 200 ms) backoff
        m = node.metrics()
        errors_before = m.get("superx_archive_write_errors_total", 0)
        archived0 = m.get("superx_archive_tasks_total", 0)
        batches0 = m.get("superx_archive_batches_total", 0)
        pg_start = time.monotonic()
        down_s = pg_start - pg_down
        self.pg.start()
        up = time.monotonic()
        cpu = self.cpu(node).start()
        samples = []
        first_progress = None
        before_first = 0.0
        last_batches = batches0
        batch_ms = []
        deadline = up + max(120, a.tasks / 500)
        tick = up
        while True:
            m = node.metrics()
            t = time.monotonic() - up
            s = {"t": round(t, 3), "backlog": int(m["superx_archive_backlog_tasks"]),
                 "archived": int(m["superx_archive_tasks_total"] - archived0),
                 "batches": int(m["superx_archive_batches_total"] - batches0),
                 "in_memory": int(m["superx_tasks_in_memory"]),
                 "last_batch_ms": round(m.get("superx_archive_last_batch_seconds", 0) * 1000, 2)}
            samples.append(s)
            if s["archived"] > 0 and first_progress is None:
                first_progress = round(t, 3)
            elif first_progress is None:
                before_first = t
            if m["superx_archive_batches_total"] != last_batches:
                last_batches = m["superx_archive_batches_total"]
                batch_ms.append(s["last_batch_ms"])
            if s["backlog"] == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backlog did not drain in {deadline - up:.0f}s (last sample {s})")
            if not node.alive():
                raise RuntimeError(f"{node.name} exited while draining:\n{node.tail()}")
            tick += 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
        drain_cpu = cpu.stop()
        drain_s = samples[-1]["t"]
        drained = samples[-1]["archived"]
        batches = samples[-1]["batches"]
        r1 = {"tasks": backlog, "fill": fill, "pg_start_s": round(up - pg_start, 3), "drain_s": drain_s,
              "tasks_per_s": round(backlog / drain_s, 1) if drain_s else None,
              "first_batch_after_s": first_progress,
              "tasks_per_s_from_first_batch": round(backlog / max(1e-3, drain_s - before_first), 1),
              "archived_by_samples": drained, "batches": batches,
              "mean_ms_per_batch": round(1000 * (drain_s - before_first) / max(1, batches), 2),
              "batch_write_ms": {"samples": len(batch_ms), "p50": pct(batch_ms, 50),
                                 "max": max(batch_ms) if batch_ms else None,
                                 "first_seen": batch_ms[0] if batch_ms else None,
                                 "p50_after_first": pct(batch_ms[1:], 50),
                                 "max_after_first": max(batch_ms[1:]) if len(batch_ms) > 1 else None,
                                 "all": batch_ms},
              "write_errors_while_down": int(errors_before), "postgres_down_s": round(down_s, 1),
              "cpu": drain_cpu, "samples": samples}
        log(f"part 1: {backlog} tasks archived in {drain_s:.2f}s from Postgres up ({r1['tasks_per_s']:.0f}/s); "
            f"first batch after {first_progress}s; {batches} batches; {cpu_note(drain_cpu)}")
        # Every archived task leaves memory (retention count 0).
        r1["evicted_all_after_backlog0_s"] = seconds_until(
            "every archived task evicted", lambda: node.metrics()["superx_tasks_in_memory"] == 0, node, "part 1")
        r1["in_memory_after"] = int(node.metrics()["superx_tasks_in_memory"])
        rows = int(self.pg.psql("SELECT count(*) FROM archived_tasks", "bench_drain"))
        r1["rows_in_postgres"] = rows
        r1["table_bytes"] = int(self.pg.psql("SELECT pg_total_relation_size('archived_tasks')", "bench_drain"))
        inserts = self.pg.slow_statements("INSERT INTO archived_tasks")
        r1["postgres_logged_insert_ms"] = {"statements": len(inserts), "p50": pct(inserts, 50),
                                           "max": max(inserts) if inserts else None}
        log(f"part 1: Postgres logged {len(inserts)} batch inserts over 10 ms: server time p50 "
            f"{pct(inserts, 50)} ms, max {max(inserts) if inserts else None} ms")
        r1["postgres_insert_1000_ms"] = self.insert_probe(min(1000, rows))
        log(f"part 1: Postgres alone inserts 1000 archived rows (text -> jsonb, same indexes) in "
            f"{r1['postgres_insert_1000_ms']} ms (EXPLAIN ANALYZE, median of 3, rolled back)")
        self.results["drain"] = r1
        if "2" in self.args.parts:
            self.part2(node)
        return node

    def insert_probe(self, n):
        """Server-side execution time (ms) of inserting n archived rows into an empty copy of
        the table (same indexes), the task column parsed from text as the archiver's statement
        does: what Postgres itself needs per batch, without the client, the network or the
        commit's fsync. Median of 3; every run is rolled back."""
        times = []
        for _ in range(3):
            out = self.pg.psql(
                "BEGIN; CREATE TABLE bench_insert_probe (LIKE archived_tasks INCLUDING ALL); "
                "EXPLAIN (ANALYZE) INSERT INTO bench_insert_probe "
                "(task_id, seq, agent_id, context_id, state, created_at, updated_at, row_version, task) "
                "SELECT task_id, seq, agent_id, context_id, state, created_at, updated_at, row_version, task::text::jsonb "
                f"FROM archived_tasks ORDER BY seq LIMIT {n}; ROLLBACK;", "bench_drain")
            for line in out.splitlines():
                if line.strip().startswith("Execution Time:"):
                    times.append(float(line.split(":")[1].split()[0]))
        return statistics.median(times) if times else None

    def part2(self, node):
        a = self.args
        ids = self.pg.psql(f"SELECT task_id FROM archived_tasks ORDER BY random() LIMIT {min(a.tasks, 20000)}",
                           "bench_drain").split()
        if node.metrics()["superx_tasks_in_memory"] != 0:
            log("part 2: warning: some tasks are still in memory; a few GetTask calls may not reach Postgres")
        r2 = {"ids_sampled": len(ids)}
        warm = min(500, a.get_requests // 10)
        for name, headers in (("archived_linearizable", A2A), ("archived_local", LOCAL)):
            order = [random.choice(ids) for _ in range(warm + a.get_requests)]
            self.quiet(node, f"part 2 {name}")
            cpu = self.cpu(node).start()
            lats, errors, wall = closed_loop(self.api, "/agents/default",
                                             lambda i, o=order: (gettask_body(o[i]), o[i]), a.get_requests,
                                             a.get_connections, headers, check_task, warmup=warm)
            r2[name] = lat_summary(lats, errors, wall) | {"client": f"python, {a.get_connections} connections",
                                                           "cpu": cpu.stop()}
            log(f"part 2: GetTask {name}: {r2[name]['per_sec']}/s p50 {r2[name]['p50_ms']} ms "
                f"p99 {r2[name]['p99_ms']} ms errors {errors or 'none'}; {cpu_note(r2[name]['cpu'])}")
        # The same with superx-load on one archived id: what the Python client adds.
        body = self.work / "gettask.json"
        body.write_text(json.dumps({"jsonrpc": "2.0", "id": "{{messageId}}", "method": "GetTask",
                                    "params": {"id": ids[0]}}))
        for name, extra in (("fixed_id_linearizable", []), ("fixed_id_local", ["--header", "SuperX-Read:local"])):
            self.quiet(node, f"part 2 {name}")
            cpu = self.cpu(node).start()
            r = superx_load(self.bin, self.out / f"gettask-{name}.json", f"http://{self.api}/agents/default",
                            ["--body", str(body), "--header", "A2A-Version:1.0", *extra], 5, 1,
                            a.get_connections, self.pin, self.work, self.load_pids)
            r2[name] = load_summary(r) | {"client": f"superx-load, {a.get_connections} connections",
                                          "cpu": cpu.stop()}
            log(f"part 2: GetTask {name} (superx-load): {r2[name]['per_sec']}/s p50 {r2[name]['p50_ms']} ms "
                f"p99 {r2[name]['p99_ms']} ms errors {r2[name]['errors']}")
        self.results["get_archived"] = r2

    # ---- part 3

    def part3(self, node):
        a = self.args
        log("part 3: restarting the node with memory retention count 20 ...")
        self.stop_node(node)
        # By count only: the age limit (default 10 min) must not evict the fresh tasks mid-run.
        env = {**self.drain_env, "SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT": "20",
               "SUPERX_ARCHIVE__MEMORY_RETENTION_MS": str(86_400_000)}
        started = time.monotonic()
        node = self.node("list-node", self.drain_dir, env)
        restart_s = time.monotonic() - started
        fresh = [node.send(f"fresh {i}") for i in range(10)]
        wait_until("the fresh tasks archived", lambda: node.metrics()["superx_archive_backlog_tasks"] == 0, 30, [node])
        time.sleep(0.3)  # one more archiver round: evictions settle
        m = node.metrics()
        in_memory = int(m["superx_tasks_in_memory"])
        total_rows = int(self.pg.psql("SELECT count(*) FROM archived_tasks WHERE agent_id = 'default'", "bench_drain"))
        first = node.rpc("ListTasks", {"pageSize": 50})
        tasks = first.get("tasks") or []
        first_ids = [t["id"] for t in tasks]
        spans = set(first_ids[:10]) == set(fresh) and len(tasks) == 50
        token = base64.urlsafe_b64decode(first["nextPageToken"] + "=" * (-len(first["nextPageToken"]) % 4)).decode()
        if not token.startswith("v2:"):
            raise RuntimeError(f"unexpected page token format {token!r}; cannot build a deep page token")
        offset = int(total_rows * 0.9)
        seq, deep_id = self.pg.psql(
            "SELECT seq, task_id FROM archived_tasks WHERE agent_id = 'default' "
            f"ORDER BY seq DESC, task_id DESC OFFSET {offset} LIMIT 1", "bench_drain").split("|")
        deep_token = base64.urlsafe_b64encode(f"v2:{seq}:{deep_id}".encode()).decode().rstrip("=")
        deep = node.rpc("ListTasks", {"pageSize": 50, "pageToken": deep_token})
        deep_n = len(deep.get("tasks") or [])
        r3 = {"restart_s": round(restart_s, 2), "in_memory": in_memory, "archived_rows": total_rows,
              "first_page": {"tasks": len(tasks), "first_10_are_in_memory_tasks": spans,
                             "total_size": first.get("totalSize")},
              "deep_page": {"offset": offset, "tasks": deep_n}}
        if not spans:
            log(f"part 3: warning: the first page does not start with the 10 fresh tasks ({first_ids[:10]})")
        log(f"part 3: restart took {restart_s:.1f}s; {in_memory} tasks in memory, {total_rows} archived; "
            f"first page {len(tasks)} tasks (totalSize {first.get('totalSize')}), deep page {deep_n} tasks")
        r3["postgres_statements_ms"] = self.explain(deep_id, seq)
        log(f"part 3: Postgres execution times (EXPLAIN ANALYZE, ms): {r3['postgres_statements_ms']}")
        warm = min(100, a.list_requests // 10)

        def check_page(data, _expected):
            if b'"result"' not in data:
                return "json-rpc error: " + data[:120].decode(errors="replace")
            return None

        for name, params in (("first_page", {"pageSize": 50}), ("deep_page", {"pageSize": 50, "pageToken": deep_token})):
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": params}).encode()
            self.quiet(node, f"part 3 {name}")
            cpu = self.cpu(node).start()
            lats, errors, wall = closed_loop(self.api, "/agents/default", lambda i, b=body: (b, None),
                                             a.list_requests, a.list_connections, A2A, check_page, warmup=warm)
            r3[name] |= lat_summary(lats, errors, wall) | {"cpu": cpu.stop()}
            log(f"part 3: ListTasks {name}: {r3[name]['per_sec']}/s p50 {r3[name]['p50_ms']} ms "
                f"p99 {r3[name]['p99_ms']} ms errors {errors or 'none'}; {cpu_note(r3[name]['cpu'])}")
        counts = self.pg.slow_statements("count(*)")
        r3["postgres_logged_count_ms"] = {"statements": len(counts), "p50": pct(counts, 50),
                                          "max": max(counts) if counts else None}
        log(f"part 3: Postgres logged {len(counts)} ListTasks count(*) statements over 10 ms: server time p50 "
            f"{pct(counts, 50)} ms")
        # Baseline for part 2: GetTask on tasks still in memory.
        for name, headers in (("get_in_memory_linearizable", A2A), ("get_in_memory_local", LOCAL)):
            order = [random.choice(fresh) for _ in range(a.get_requests + 500)]
            self.quiet(node, f"part 3 {name}")
            cpu = self.cpu(node).start()
            lats, errors, wall = closed_loop(self.api, "/agents/default",
                                             lambda i, o=order: (gettask_body(o[i]), o[i]), a.get_requests,
                                             a.get_connections, headers, check_task, warmup=500)
            r3[name] = lat_summary(lats, errors, wall) | {"cpu": cpu.stop()}
            log(f"part 3: GetTask {name}: {r3[name]['per_sec']}/s p50 {r3[name]['p50_ms']} ms "
                f"p99 {r3[name]['p99_ms']} ms errors {errors or 'none'}")
        if node.metrics()["superx_tasks_in_memory"] != in_memory:
            log("part 3: note: the number of tasks in memory changed during the measurements")
        self.results["list"] = r3
        self.stop_node(node)

    def explain(self, ids_sample, seq):
        """Execution time (ms) of the statements the archive runs for GetTask and ListTasks,
        as Postgres reports them (EXPLAIN ANALYZE; the median of 5 runs each)."""
        cols = "task_id, seq, agent_id, row_version, task::text"
        statements = {
            "get_by_id": f"SELECT {cols} FROM archived_tasks WHERE task_id = '{ids_sample}'",
            "list_first_page": f"SELECT {cols} FROM archived_tasks WHERE true AND agent_id = 'default' "
                               "ORDER BY seq DESC, task_id DESC LIMIT 51",
            "list_deep_page": f"SELECT {cols} FROM archived_tasks WHERE true AND agent_id = 'default' "
                              f"AND (seq, task_id) < ({seq}, '{ids_sample}') ORDER BY seq DESC, task_id DESC LIMIT 51",
            "count": "SELECT count(*) FROM archived_tasks WHERE true AND agent_id = 'default'",
        }
        out = {}
        for name, sql in statements.items():
            times = []
            plan = ""
            for _ in range(5):
                plan = self.pg.psql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", "bench_drain")
                for line in plan.splitlines():
                    if line.strip().startswith("Execution Time:"):
                        times.append(float(line.split(":")[1].split()[0]))
            out[name] = statistics.median(times) if times else None
            out[f"{name}_plan"] = plan.splitlines()[:4]
        return {k: v for k, v in out.items() if not k.endswith("_plan")} | {
            "plans": {k[:-5]: v for k, v in out.items() if k.endswith("_plan")}}

    # ---- part 4

    def part4(self):
        a = self.args
        rounds = []
        for number in range(1, a.rounds + 1):
            # Alternating which goes first cancels the machine's drift within a pair.
            for mode in (("without", "with") if number % 2 else ("with", "without")):
                name = f"send-r{number}-{mode}"
                env = {}
                if a.memory_max:
                    env["SUPERX_TASKS__MEMORY_MAX"] = str(a.memory_max)
                    env["SUPERX_ARCHIVE__MEMORY_RETENTION_COUNT"] = str(a.memory_max)
                if mode == "with":
                    env["DATABASE_URL"] = self.pg.create_db(f"bench_send_r{number}")
                    env["SUPERX_ARCHIVE__WRITERS"] = str(a.writers)
                data_dir = self.work / name
                node = self.node(name, data_dir, env)
                self.quiet(node, f"part 4 {name}")
                log(f"part 4: round {number}, {mode} the archiver: superx-load send1 {a.connections} connections, "
                    f"{a.duration}s + {a.warmup}s warmup ...")
                argv = pinned(SIDE_CORE, [str(self.bin / "superx-load"), "--url", f"http://{self.api}/agents/default",
                                          "--method", "send1", "--connections", str(a.connections), "--duration",
                                          str(a.duration), "--warmup", str(a.warmup), "--json"], self.pin)
                out_path = self.out / f"{name}.json"
                with open(out_path, "wb") as out, open(self.work / "load.log", "ab") as err:
                    load = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
                    self.load_pids.add(load.pid)
                    try:
                        started = time.monotonic()
                        time.sleep(a.warmup + 0.05)
                        m0 = node.metrics()
                        t0 = time.monotonic()
                        cpu = self.cpu(node).start()
                        perf = self.perf_start(node, name)
                        time.sleep(max(0.0, started + a.warmup + a.duration - 0.05 - time.monotonic()))
                        m1 = node.metrics()
                        t1 = time.monotonic()
                        window_cpu = cpu.stop()
                        self.perf_stop(perf)
                        rc = load.wait(timeout=a.duration + 120)
                    finally:
                        if load.poll() is None:
                            load.kill()
                            load.wait()
                        self.load_pids.discard(load.pid)
                if rc != 0:
                    raise RuntimeError(f"superx-load failed ({rc}) in {name}; see {self.work / 'load.log'}")
                r = json.loads(out_path.read_text())
                entry = {"round": number, "archiver": mode == "with", **load_summary(r), "cpu": window_cpu,
                         "gateway_cpu_us_per_req": round(window_cpu["gateway_cpu_pct"] / 100 * 1e6
                                                         / max(1.0, r["req_per_sec"]), 1),
                         "tasks_in_memory_end": int(m1["superx_tasks_in_memory"]),
                         "evicted_total_end": int(m1.get("superx_tasks_evicted_total", 0))}
                if mode == "with":
                    grown = m1["superx_archive_tasks_total"] - m0["superx_archive_tasks_total"]
                    entry["archived_per_s"] = round(grown / (t1 - t0), 1)
                    entry["backlog_end"] = int(m1["superx_archive_backlog_tasks"])
                    entry["batches_in_window"] = int(m1["superx_archive_batches_total"]
                                                     - m0["superx_archive_batches_total"])
                    entry["last_batch_ms"] = round(m1.get("superx_archive_last_batch_seconds", 0) * 1000, 2)
                    entry["backlog_drained_after_load_s"] = seconds_until(
                        "the backlog drained after the load",
                        lambda: node.metrics()["superx_archive_backlog_tasks"] == 0, node, "part 4")
                extra = (f"; archived {entry['archived_per_s']:.0f} tasks/s alongside, backlog at end "
                         f"{entry['backlog_end']}, {entry['batches_in_window']} batches, last batch "
                         f"{entry['last_batch_ms']} ms" if mode == "with" else "")
                log(f"part 4: round {number} {mode}: {entry['per_sec']:.0f} req/s, p50 {entry['p50_ms']} ms, "
                    f"p99 {entry['p99_ms']} ms, {entry['errors']} errors{extra}; {cpu_note(window_cpu)}")
                rounds.append(entry)
                self.stop_node(node)
                shutil.rmtree(data_dir, ignore_errors=True)
                if mode == "with":
                    # Every round's Postgres starts alike: no autovacuum of an earlier round's
                    # rows and no checkpoint of its WAL on the load's core during the next.
                    self.pg.psql(f"DROP DATABASE bench_send_r{number}")
                    self.pg.psql("CHECKPOINT")
        without = [r["per_sec"] for r in rounds if not r["archiver"]]
        with_ = [r["per_sec"] for r in rounds if r["archiver"]]
        ratios = [w / wo for w, wo in zip(with_, without)]
        self.results["send"] = {
            "rounds": rounds,
            "without_median_per_s": statistics.median(without),
            "with_median_per_s": statistics.median(with_),
            "round_ratios": [round(r, 4) for r in ratios],
            "ratio": round(statistics.median(ratios), 4),
            "archived_per_s_alongside": [r["archived_per_s"] for r in rounds if r["archiver"]],
            "gateway_cpu_us_per_req_without": statistics.median(
                [r["gateway_cpu_us_per_req"] for r in rounds if not r["archiver"]]),
            "gateway_cpu_us_per_req_with": statistics.median(
                [r["gateway_cpu_us_per_req"] for r in rounds if r["archiver"]]),
        }

    def perf_start(self, node, name):
        """With --perf: `perf record --call-graph dwarf` on the gateway for the measured window, into
        <results>/<name>.perf.data (read with `perf report -i`)."""
        if not self.args.perf:
            return None
        out = self.out / f"{name}.perf.data"
        argv = pinned(SIDE_CORE, ["perf", "record", "-F", "499", "--call-graph", "dwarf,32768", "-o", str(out), "-p", str(node.pids()[0])],
                      self.pin)
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    @staticmethod
    def perf_stop(perf):
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)

    def close(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as err:  # noqa: BLE001 - keep stopping the others
                log(f"stopping {proc.name}: {err}")
        self.procs = []
        if self.pg is not None:
            self.pg.destroy()


# --------------------------------------------------------------------------- report

def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def verdict(ok):
    return "yes" if ok else "NO"


def table(res, args):
    """(measurement, n, per s, p50 ms, p99 ms, max ms, other %, target, met) rows, aligned. `other %`
    is the CPU used by processes not started here during the measurement, in % of one core."""

    def other(r):
        c = r.get("cpu") if isinstance(r, dict) else None
        return fmt(c.get("other_cpu_pct"), 0) if c else ""

    rows = []
    d = res.get("drain")
    if d:
        rows.append((f"archive drain, {d['tasks']} tasks, from Postgres up", d["batches"], fmt(d["tasks_per_s"], 0),
                     "-", "-", "-", other(d), f">= {TARGET_ARCHIVE_RATE:,}/s",
                     verdict(d["tasks_per_s"] >= TARGET_ARCHIVE_RATE)))
        rows.append(("  same, from the first batch", "", fmt(d["tasks_per_s_from_first_batch"], 0), "", "", "", "",
                     "", ""))
        bw = d["batch_write_ms"]
        rows.append(("  batch write (last_batch_seconds, each batch seen)", bw["samples"], "-", fmt(bw["p50"]), "-",
                     fmt(bw["max"]), "", "", ""))
        rows.append(("  batch write, without the first batch", max(0, bw["samples"] - 1), "-",
                     fmt(bw["p50_after_first"]), "-", fmt(bw["max_after_first"]), "", "", ""))
        rows.append(("  wall time per batch (drain / batches)", d["batches"], "-", fmt(d["mean_ms_per_batch"]), "-",
                     "-", "", "", ""))
    s = res.get("send")
    if s:
        rates = s["archived_per_s_alongside"]
        rows.append(("archive rate alongside SendMessage load", len(rates),
                     " / ".join(fmt(x, 0) for x in rates), "-", "-", "-", "", "", ""))
    g = res.get("get_archived")
    if g:
        for key, label in (("archived_linearizable", "GetTask archived, random ids"),
                           ("archived_local", "GetTask archived, random, SuperX-Read: local"),
                           ("fixed_id_linearizable", "GetTask archived, one id (superx-load)"),
                           ("fixed_id_local", "GetTask archived, one id, local (superx-load)")):
            r = g.get(key)
            if not r:
                continue
            target = f"p99 <= {TARGET_GET_P99_MS:g} ms" if key == "archived_linearizable" else ""
            met = verdict(r["p99_ms"] is not None and r["p99_ms"] <= TARGET_GET_P99_MS) if target else ""
            rows.append((label, r["requests"], fmt(r["per_sec"], 0), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         fmt(r["max_ms"]), other(r), target, met))
    li = res.get("list")
    if li:
        for key, label in (("get_in_memory_linearizable", "GetTask in memory (baseline)"),
                           ("get_in_memory_local", "GetTask in memory, SuperX-Read: local"),
                           ("first_page", "ListTasks 50, first page (mem+archive)"),
                           ("deep_page", "ListTasks 50, deep page (archive)")):
            r = li.get(key)
            if not r or "p50_ms" not in r:
                continue
            rows.append((label, r["requests"], fmt(r["per_sec"], 0), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         fmt(r["max_ms"]), other(r), "", ""))
    if s:
        for r in s["rounds"]:
            label = f"SendMessage round {r['round']}, {'with' if r['archiver'] else 'without'} archiver"
            rows.append((label, r["requests"], fmt(r["per_sec"], 0), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         fmt(r["max_ms"]), other(r), f"{r['errors']} errors" if r["errors"] else "", ""))
        rows.append(("SendMessage with / without (median pair)", "", f"{s['ratio'] * 100:.1f}%", "-", "-", "-", "",
                     f">= {TARGET_RATIO * 100:.0f}%", verdict(s["ratio"] >= TARGET_RATIO)))
        rows.append(("gateway CPU µs per SendMessage, without / with", "",
                     f"{s['gateway_cpu_us_per_req_without']:.0f} / {s['gateway_cpu_us_per_req_with']:.0f}",
                     "-", "-", "-", "", "", ""))
    head = ("measurement", "n", "per s", "p50 ms", "p99 ms", "max ms", "other%", "target", "met")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for r in [head, *rows]:
        lines.append("  ".join(str(c).ljust(w) if i in (0, 7) else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


def seconds_until(what, cond, node, part, timeout=120):
    """Seconds until cond() holds (waited on with a deadline), or None, logged, past it."""
    t0 = time.monotonic()
    try:
        wait_until(what, cond, timeout, [node])
    except RuntimeError as err:
        log(f"{part}: {err}")
        return None
    return round(time.monotonic() - t0, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks archived in part 1 (default 100000)")
    parser.add_argument("--rounds", type=int, default=2, help="without/with rounds in part 4 (default 2)")
    parser.add_argument("--duration", type=float, default=10.0, help="part 4 load duration, s (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="part 4 warmup, s (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="superx-load connections (default 32)")
    parser.add_argument("--get-requests", type=int, default=10_000, help="GetTask requests per variant")
    parser.add_argument("--get-connections", type=int, default=4, help="GetTask concurrent connections")
    parser.add_argument("--list-requests", type=int, default=2000, help="ListTasks requests per variant")
    parser.add_argument("--list-connections", type=int, default=2, help="ListTasks concurrent connections")
    parser.add_argument("--bin-dir", default=os.environ.get("BIN_DIR", str(ROOT / "target" / "release")),
                        help="superx, superx-echo-agent, superx-load (env BIN_DIR; default target/release)")
    parser.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin", help="Postgres binaries")
    parser.add_argument("--port-base", type=int, default=4700, help="node API port; raft on the next one")
    parser.add_argument("--echo-addr", default="127.0.0.1:9994", help="echo agent address")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="before each measurement, wait up to S s for the machine to be quiet (default 60)")
    parser.add_argument("--quiet-pct", type=float, default=15.0,
                        help="quiet: processes not started here use less than this %% of a core (default 15)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin processes to cores")
    parser.add_argument("--memory-max", type=int, default=0,
                        help="part 4: tasks.memory_max (and archive.memory_retention_count) of both nodes, so "
                             "both evict at the same rate once full (default: the node's defaults)")
    parser.add_argument("--pg-nice", type=int, default=0,
                        help="niceness of Postgres (it shares core 1 with the agent and superx-load)")
    parser.add_argument("--perf", action="store_true",
                        help="part 4: record a perf profile of the gateway in each measured window")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    parser.add_argument("--writers", type=int, default=2,
                        help="archive.writers of the nodes with an archive (default 2, superx's default); "
                             "SUPERX_* variables of this shell are not passed on")
    parser.add_argument("--parts", default="1234",
                        help="which parts to run, e.g. 1 (drain only) or 4 (send only); 3 needs 1 (default 1234)")
    args = parser.parse_args()
    if not args.parts or not set(args.parts) <= set("1234") or ("3" in args.parts and "1" not in args.parts):
        parser.error("--parts: digits 1-4; part 3 needs part 1")
    if not 1000 <= args.tasks <= 5_000_000:
        parser.error("--tasks must be between 1000 and 5000000")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if args.get_requests < 5000:
        log("note: fewer than 5000 GetTask requests per variant; p99 is coarse")
    args.batch_note = "each new batch seen at 100 ms sampling"
    bin_dir = Path(args.bin_dir)
    if not bin_dir.is_absolute():
        bin_dir = (Path.cwd() / bin_dir).resolve()
        args.bin_dir = str(bin_dir)
    for name in ("superx", "superx-echo-agent", "superx-load"):
        if not os.access(bin_dir / name, os.X_OK):
            sys.exit(f"archive.py: {bin_dir / name} is missing (cargo build --release -p superx -p superx-bench)")
    for name in ("initdb", "pg_ctl", "psql"):
        if not os.access(Path(args.pg_bin) / name, os.X_OK):
            sys.exit(f"archive.py: {Path(args.pg_bin) / name} is missing (Postgres 15 server binaries)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        sys.exit("archive.py: runuser is required to run Postgres as the postgres user")
    cpus = os.cpu_count() or 1
    if args.pin and (shutil.which("taskset") is None or cpus < 2):
        log("no taskset or fewer than 2 cores: not pinning")
        args.pin = False
    api = f"127.0.0.1:{args.port_base}"
    for addr in (args.echo_addr, api, f"127.0.0.1:{args.port_base + 1}"):
        if port_busy(addr):
            sys.exit(f"archive.py: {addr} is already in use")
    if args.pin:
        os.sched_setaffinity(0, {SIDE_CORE})
    placement = ("gateway on core 0; echo agent, superx-load, Postgres and this script's clients on core 1"
                 if args.pin else f"no CPU pinning ({cpus} cores shared)")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = ROOT / "bench-results" / f"{stamp}-archive"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="superx-archive-"))
    load_avg = os.getloadavg()
    log(f"placement: {placement}; load average at start {load_avg[0]:.2f}; scratch {work}")
    bench = Bench(args, work, out_dir)
    aborted = None
    started = time.monotonic()
    try:
        bench.setup()
        if "1" in args.parts or "2" in args.parts:
            node = bench.part1_and_2()
            if "3" in args.parts:
                bench.part3(node)
        if "4" in args.parts:
            bench.part4()
    except (RuntimeError, subprocess.SubprocessError, OSError, KeyError, ValueError) as err:
        aborted = f"{type(err).__name__}: {err}"
        log(f"stopped: {aborted}")
        for proc in bench.procs:
            if isinstance(proc, Node):
                log(f"{proc.name} log tail:\n{proc.tail(30)}")
    finally:
        bench.close()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    res = bench.results
    summary = {
        "timestamp": stamp,
        "git_rev": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True).stdout.strip() or "unknown",
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                    ""),
        "placement": placement,
        "load_average_at_start": [round(x, 2) for x in load_avg],
        "elapsed_s": round(time.monotonic() - started, 1),
        "config": {k: v for k, v in vars(args).items() if k not in ("keep", "batch_note")},
        "targets": {"archive_tasks_per_s_min": TARGET_ARCHIVE_RATE, "archived_gettask_p99_ms_max": TARGET_GET_P99_MS,
                    "send_with_over_without_min": TARGET_RATIO},
        "aborted": aborted,
        "results": res,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(f"superx archive benchmark ({placement}; Postgres {res.get('postgres', {}).get('version', '?')}, "
          f"fsync {res.get('postgres', {}).get('fsync', '?')}; load average at start {load_avg[0]:.2f})")
    print(table(res, args))
    print("other% = CPU used during the measurement by processes not started here, in % of one core "
          "(the machine may be shared); it includes steal, the time the hypervisor gave our vCPUs to "
          "other guests (shown on its own in each round's line)")
    d = res.get("drain")
    if d:
        li_ = d.get("postgres_logged_insert_ms") or {}
        print(f"drain: the archiver's batch insert takes p50 {li_.get('p50')} ms (max {li_.get('max')}) inside "
              f"Postgres (server log, {li_.get('statements')} statements over 10 ms); Postgres alone needs "
              f"{d.get('postgres_insert_1000_ms')} ms to insert 1000 of these rows (EXPLAIN ANALYZE, no client, "
              "no commit)")
        print(f"drain: {d['write_errors_while_down']} failed archive writes while Postgres was down for "
              f"{d['postgres_down_s']} s (backoff capped at 200 ms)")
        print(f"drain: Postgres start took {d['pg_start_s']} s, first batch {d['first_batch_after_s']} s after it; "
              f"{d['rows_in_postgres']} rows, table {d['table_bytes'] / 1e6:.0f} MB; "
              f"all evicted {d['evicted_all_after_backlog0_s']} s after backlog 0 "
              f"({d['in_memory_after']} left in memory); {cpu_note(d['cpu'])}")
    li = res.get("list")
    if li and li.get("postgres_statements_ms"):
        st = li["postgres_statements_ms"]
        print(f"Postgres execution time (EXPLAIN ANALYZE, {li['archived_rows']} rows): GetTask by id "
              f"{st['get_by_id']} ms; ListTasks page {st['list_first_page']} ms, deep page {st['list_deep_page']} ms, "
              f"count(*) {st['count']} ms; count(*) during the ListTasks runs (server log): p50 "
              f"{(li.get('postgres_logged_count_ms') or {}).get('p50')} ms over "
              f"{(li.get('postgres_logged_count_ms') or {}).get('statements')} statements")
    s = res.get("send")
    if s:
        for r in s["rounds"]:
            extra = (f", archived {r['archived_per_s']:.0f}/s, backlog at end {r['backlog_end']}, drained "
                     f"{r['backlog_drained_after_load_s']} s after" if r["archiver"] else "")
            print(f"send round {r['round']} {'with' if r['archiver'] else 'without'}: {cpu_note(r['cpu'])}; "
                  f"gateway {r['gateway_cpu_us_per_req']:.0f} µs CPU per request{extra}")
    if aborted:
        print(f"ABORTED: {aborted}")
    print(f"results: {out_dir}")
    return 1 if aborted else 0


if __name__ == "__main__":
    sys.exit(main())
