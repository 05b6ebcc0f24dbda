#!/usr/bin/env python3
"""bench/list.py: ListTasks latency and memory as a node fills up (issue 16's ListTasks and
memory targets: a page of 50 with 1M tasks in memory p99 <= 2 ms; RSS at 100k and 1M tasks).

One superx node (release binaries from --bin-dir, pinned to core 0, tasks.memory_max above
the largest checkpoint, no archive) with the bench echo agent registered as `echo`. The node
is filled with SendMessage (superx-load send1, closed loop, --connections) up to each
checkpoint in --checkpoints; at each one, once the node is idle again (under 5% of a core
for a second: the snapshot filling triggered is done), the script records the node's RSS
(and RSS per task in memory) and measures, each for --duration s over --list-connections closed-loop
connections (superx-load with a fixed body):
  first:  ListTasks pageSize 50 on /agents/echo (the newest page of the agent's tasks),
  state:  the same with status TASK_STATE_COMPLETED,
  deep:   the same with a page token half way down the update order,
  all:    ListTasks pageSize 50 on /rpc (every agent's tasks, an admin's view).
Every answer is checked by superx-load (HTTP 200, a JSON-RPC result); errors fail the run.

Placement (2-core machine): the gateway on core 0; the echo agent, superx-load and this
script on core 1. Every process started here is stopped on exit; only loopback is contacted.

Usage: bench/list.py [--checkpoints 100000,1000000] [--duration 10] [--list-connections 2]
                     [--connections 32] [--bin-dir target/release] [--no-pin]
Output: a table, and JSON in bench-results/<timestamp>-list/.
"""

import argparse
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import SIDE_CORE, free_port, gateway_proc, pinned, superx_load  # noqa: E402
from failover import BENCH_AGENT_MAX_IN_FLIGHT, ROOT, Proc, http, wait_until  # noqa: E402
from overload import rss_kib  # noqa: E402

TARGET_P99_MS = 2.0


def log(msg):
    print(f"list.py: {msg}", file=sys.stderr, flush=True)


def in_memory(api):
    status, raw = http(f"http://{api}/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    for line in raw.decode().splitlines():
        if line.startswith("superx_tasks_in_memory "):
            return int(float(line.split()[1]))
    raise RuntimeError("no superx_tasks_in_memory in /metrics")


def cpu_share(pid, window):
    """The share of one core `pid` used over the next `window` seconds."""
    def ticks():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    before = ticks()
    time.sleep(window)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / window


def list_body(path, params, work):
    body = work / f"list-{path}.json"
    body.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": params}))
    return body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default="100000,1000000")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--list-connections", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    pin = not args.no_pin
    bin_dir = Path(args.bin_dir)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    work = Path(tempfile.mkdtemp(prefix="superx-list-bench-"))
    out_dir = ROOT / "bench-results" / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-list"
    out_dir.mkdir(parents=True, exist_ok=True)
    echo_addr, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    (work / "agents.yaml").write_text(
        f"agents:\n  echo:\n    url: http://{echo_addr}/\n    maxInFlight: {BENCH_AGENT_MAX_IN_FLIGHT}\n")
    os.environ.setdefault("LOG_LEVEL", "warn")
    echo = Proc("echo", pinned(SIDE_CORE, [str(bin_dir / "superx-echo-agent"), "--listen", echo_addr,
                                           "--workers", "1"], pin), work / "echo.log")
    env = {"SUPERX_TASKS__MEMORY_MAX": str(int(checkpoints[-1] * 1.1) + 1000)}
    node = gateway_proc(bin_dir, work, "node", api, pin, work / "agents.yaml", env)
    procs = [echo, node]
    results = []
    try:
        for p in procs:
            p.start()
        wait_until("node ready", lambda: http(f"http://{api}/ready")[0] == 200, 60, procs)
        for target in checkpoints:
            while (n := in_memory(api)) < target:
                # At about 5k tasks/s on one core; a chunk is at most 60 s.
                seconds = max(2.0, min(60.0, (target - n) / 5000))
                log(f"filling: {n} tasks in memory, {target} wanted: {seconds:.0f} s of SendMessage")
                r = superx_load(bin_dir, None, f"http://{api}/agents/echo", ["--method", "send1"], seconds, 0.0,
                                args.connections, pin, work)
                if r["errors"]["total"]:
                    raise RuntimeError(f"filling: errors {r['errors']}")
            # Filling leaves work behind (a snapshot of the tables): measure once the node is idle.
            wait_until("node idle after filling", lambda: cpu_share(node.popen.pid, 1.0) < 0.05, 120, procs)
            n = in_memory(api)
            rss = rss_kib(node.popen.pid)
            deep = base64.urlsafe_b64encode(f"v1:{n // 2}".encode()).decode().rstrip("=")
            variants = {
                "first": ("agents/echo", {"pageSize": 50}),
                "state": ("agents/echo", {"pageSize": 50, "status": "TASK_STATE_COMPLETED"}),
                "deep": ("agents/echo", {"pageSize": 50, "pageToken": deep}),
                "all": ("rpc", {"pageSize": 50}),
            }
            row = {"tasks_in_memory": n, "rss_kib": rss, "rss_bytes_per_task": round(rss * 1024 / max(1, n))}
            for name, (path, params) in variants.items():
                body = list_body(name, params, work)
                r = superx_load(bin_dir, None, f"http://{api}/{path}",
                                ["--body", str(body), "--header", "A2A-Version: 1.0"], args.duration, 1.0,
                                args.list_connections, pin, work)
                if r["errors"]["total"] or not r["ok"]:
                    raise RuntimeError(f"ListTasks {name}: {r['ok']} ok, errors {r['errors']}")
                lat = r["latency_us"]
                row[name] = {"per_sec": round(r["ok_per_sec"]), "p50_ms": lat["p50"] / 1000,
                             "p99_ms": lat["p99"] / 1000, "max_ms": lat["max"] / 1000}
                log(f"{n} tasks: ListTasks {name}: {row[name]}")
            results.append(row)
    finally:
        for p in reversed(procs):
            p.stop()
    print(f"\nsuperx ListTasks benchmark (gateway on core 0; echo agent and superx-load on core 1; "
          f"{args.list_connections} connections, pageSize 50)")
    print(f"{'tasks':>9} {'RSS MiB':>8} {'B/task':>7}  " + "  ".join(f"{v + ' p50/p99/max ms':>26}" for v in variants))
    for row in results:
        cells = "  ".join(f"{row[v]['p50_ms']:>8.3f} /{row[v]['p99_ms']:>7.3f} /{row[v]['max_ms']:>7.2f}"
                          for v in variants)
        print(f"{row['tasks_in_memory']:>9} {row['rss_kib'] / 1024:>8.0f} {row['rss_bytes_per_task']:>7}  {cells}")
    worst = max(row[v]["p99_ms"] for row in results for v in variants)
    print(f"worst p99 {worst:.3f} ms (target <= {TARGET_P99_MS} ms at 1M tasks): "
          f"{'yes' if worst <= TARGET_P99_MS else 'NO'}")
    (out_dir / "summary.json").write_text(json.dumps({"results": results, "args": vars(args)}, indent=1))
    print(f"results: {out_dir}")


if __name__ == "__main__":
    main()
