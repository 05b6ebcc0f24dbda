#!/usr/bin/env python3
"""bench/failover.py: how long a three-node superx cluster refuses writes after
its leader is killed, on loopback.

Starts the bench echo agent and three superx nodes (release binaries from
BIN_DIR, default /work/main/target/release; node i on 127.0.0.i, API port
PORT_BASE+i, raft port PORT_BASE+100+i), waits until the cluster has 3 voters,
then, --kills times: finds the leader, SIGKILLs it, and sends SendMessage to
the two other nodes in a tight loop (alternating nodes, --pause-ms between
tries) until one succeeds; the round's figure is (first success - kill time).
The killed node is then restarted with the same arguments and data directory,
and the next round waits until it is ready, reports 3 voters and has applied
what the leader had committed. A round gives up after --round-timeout seconds
(recorded as a failure). Prints every round, then the median and max, and
writes JSON to bench-results/failover-<timestamp>.json.

Placement: nothing is pinned. Every process started here is killed on exit
(normal end, error, Ctrl-C or SIGTERM). Only loopback addresses are contacted.
Python 3.11 standard library only.

Usage: bench/failover.py [--kills 20] [--round-timeout 30] [--try-timeout 5]
                         [--pause-ms 5] [--port-base 4200] [--bin-dir DIR]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
# Benches measure the gateway: the agent's own in-flight limit (agents.max_in_flight) stays out of the way.
BENCH_AGENT_MAX_IN_FLIGHT = 4096


def log(msg):
    print(f"failover.py: {msg}", file=sys.stderr, flush=True)


def port_busy(addr):
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def http(url, body=None, headers=None, timeout=2.0):
    """One HTTP call; returns (status, body bytes), status 0 on a transport failure."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        return 0, str(getattr(err, "reason", err)).encode()


def rpc(api, method, params=None, timeout=2.0):
    body = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    status, raw = http(f"http://{api}/rpc", body, {"Content-Type": "application/json"}, timeout)
    if status != 200:
        return None
    try:
        return json.loads(raw).get("result")
    except ValueError:
        return None


def send_message(api, timeout):
    """SendMessage (A2A 1.0) to the echo agent through `api`; returns (ok, detail)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": str(uuid.uuid4()),
                "role": "ROLE_USER",
                "parts": [{"text": "failover"}],
            }
        },
    }
    headers = {"Content-Type": "application/json", "A2A-Version": "1.0"}
    status, raw = http(f"http://{api}/agents/echo", body, headers, timeout)
    if status == 0:
        return False, f"transport: {raw.decode(errors='replace')}"
    if status != 200:
        return False, f"HTTP {status}"
    try:
        answer = json.loads(raw)
    except ValueError:
        return False, "bad JSON"
    if "error" in answer:
        err = answer["error"]
        return False, f"{err.get('code')}: {str(err.get('message'))[:120]}"
    task = (answer.get("result") or {}).get("task") or {}
    if task.get("status", {}).get("state") == "TASK_STATE_COMPLETED":
        return True, "ok"
    return False, f"unexpected result: {raw[:200]!r}"


class Proc:
    """A child process with its log file."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen = None

    def start(self):
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill9(self):
        if self.alive():
            self.popen.kill()
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def stop(self):
        if not self.alive():
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def tail(self, lines=20):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Node(Proc):
    def __init__(self, node_id, api, raft, peers, data_dir, agents_file, bin_dir, work):
        argv = [
            str(bin_dir / "superx"), "serve",
            "--node-id", str(node_id),
            "--listen", api,
            "--raft-listen", raft,
            "--peers", peers,
            "--data-dir", str(data_dir),
            "--agents-file", str(agents_file),
        ]
        super().__init__(f"node {node_id}", argv, work / f"n{node_id}.log")
        self.id = node_id
        self.api = api
        self.raft = raft

    def ready(self):
        status, _ = http(f"http://{self.api}/ready", timeout=1.0)
        return status == 200

    def status(self):
        return rpc(self.api, "cluster/status", timeout=1.0)


def three_node_addrs(script, bin_dir, echo_addr, port_base):
    """The API and raft addresses of a three-node cluster (node i on 127.0.0.i, API port
    PORT_BASE+i, raft PORT_BASE+100+i); exits if a binary is missing or an address is taken."""
    for name in ("superx", "superx-echo-agent"):
        if not os.access(bin_dir / name, os.X_OK):
            sys.exit(f"{script}: {bin_dir / name} is missing (cargo build --release -p superx -p superx-bench)")
    apis = [f"{HOSTS[i]}:{port_base + i + 1}" for i in range(3)]
    rafts = [f"{HOSTS[i]}:{port_base + 101 + i}" for i in range(3)]
    for addr in [echo_addr, *apis, *rafts]:
        if port_busy(addr):
            sys.exit(f"{script}: {addr} is already in use")
    return apis, rafts


def wait_until(what, check, timeout, procs=()):
    """Polls check() until it returns a truthy value; fails if a proc dies."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def find_leader(nodes, timeout=15.0):
    """The node that says it leads, once every live node agrees on it."""

    def check():
        statuses = {n.id: n.status() for n in nodes if n.alive()}
        if any(s is None for s in statuses.values()):
            return None
        leaders = {s.get("leader") for s in statuses.values()}
        if len(leaders) != 1:
            return None
        for node in nodes:
            s = statuses.get(node.id)
            if s and s.get("role") == "leader" and s.get("leader") == node.id:
                return node, s
        return None

    return wait_until("an agreed leader", check, timeout, [n for n in nodes if n.alive()])


def caught_up(node, others):
    """Ready, 3 voters, and applied what a live peer has committed."""
    if not node.ready():
        return False
    mine = node.status()
    if not mine or len(mine.get("voters") or []) != 3:
        return False
    committed = [s.get("committedIndex", 0) for s in (o.status() for o in others) if s]
    return bool(committed) and mine.get("appliedIndex", 0) >= max(committed)


def run_round(number, nodes, args):
    leader, status = find_leader(nodes)
    others = [n for n in nodes if n is not leader]
    term = status.get("term")
    killed_at = time.monotonic()
    leader.kill9()
    tries = 0
    errors = {}
    result = {"round": number, "killed": leader.id, "killed_term": term}
    success_at = None
    answered_by = None
    request_ms = None
    while True:
        now = time.monotonic()
        remaining = killed_at + args.round_timeout - now
        if remaining <= 0:
            break
        target = others[tries % len(others)]
        tries += 1
        started = time.monotonic()
        ok, detail = send_message(target.api, min(args.try_timeout, remaining))
        if ok:
            success_at = time.monotonic()
            answered_by = target.id
            request_ms = (success_at - started) * 1000
            break
        errors[detail] = errors.get(detail, 0) + 1
        time.sleep(args.pause_ms / 1000)
    result.update(tries=tries, errors=errors)
    if success_at is None:
        result.update(ok=False, unavailable_ms=None)
    else:
        result.update(ok=True, unavailable_ms=round((success_at - killed_at) * 1000, 1),
                      answered_by=answered_by, request_ms=round(request_ms, 1))
        try:
            new_leader, new_status = find_leader(others, timeout=10)
            result.update(new_leader=new_leader.id, new_term=new_status.get("term"))
        except RuntimeError:
            pass
    restarted_at = time.monotonic()
    leader.start()
    wait_until(f"node {leader.id} to rejoin", lambda: caught_up(leader, others), 60, nodes)
    result["rejoin_ms"] = round((time.monotonic() - restarted_at) * 1000, 1)
    return result


def describe(r):
    head = f"round {r['round']:2d}: killed leader {r['killed']} (term {r['killed_term']})"
    if not r["ok"]:
        return f"{head} -> no successful write within the round timeout ({r['tries']} tries; {r['errors']})"
    errs = ", ".join(f"{v}x {k}" for k, v in r["errors"].items()) or "none"
    leader = f"; new leader {r.get('new_leader', '?')} term {r.get('new_term', '?')}"
    return (f"{head} -> first success after {r['unavailable_ms']:.0f} ms (node {r['answered_by']}, "
            f"try {r['tries']}, that request took {r['request_ms']:.0f} ms; failed tries: {errs}){leader}; "
            f"rejoined in {r['rejoin_ms']:.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--round-timeout", type=float, default=30.0,
                        help="seconds a round may wait for a write (default 30)")
    parser.add_argument("--try-timeout", type=float, default=5.0,
                        help="HTTP timeout of one try, s (default 5: above the gateway's 3 s write timeout)")
    parser.add_argument("--pause-ms", type=float, default=5.0, help="pause between tries (default 5)")
    parser.add_argument("--port-base", type=int, default=4200, help="API ports BASE+i, raft BASE+100+i")
    parser.add_argument("--echo-addr", default="127.0.0.1:9997", help="echo agent address")
    parser.add_argument("--bin-dir", default=os.environ.get("BIN_DIR", str(ROOT / "target" / "release")),
                        help="where superx and superx-echo-agent are (env BIN_DIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    args = parser.parse_args()
    if not 1 <= args.kills <= 1000:
        parser.error("--kills must be between 1 and 1000")
    if not 0 < args.round_timeout <= 600:
        parser.error("--round-timeout must be in (0, 600]")

    bin_dir = Path(args.bin_dir)
    apis, rafts = three_node_addrs("failover.py", bin_dir, args.echo_addr, args.port_base)

    work = Path(tempfile.mkdtemp(prefix="superx-failover-"))
    procs = []

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    results = []
    aborted = None
    try:
        echo = Proc("echo agent", [str(bin_dir / "superx-echo-agent"), "--listen", args.echo_addr],
                    work / "echo.log")
        procs.append(echo)
        echo.start()
        wait_until("the echo agent",
                   lambda: http(f"http://{args.echo_addr}/.well-known/agent-card.json", timeout=1)[0] == 200,
                   10, [echo])
        agents = work / "agents.yaml"
        agents.write_text(f"agents:\n  echo:\n    url: http://{args.echo_addr}/\n    maxInFlight: {BENCH_AGENT_MAX_IN_FLIGHT}\n")
        peers = ",".join(f"{i + 1}={rafts[i]}@{apis[i]}" for i in range(3))
        nodes = [Node(i + 1, apis[i], rafts[i], peers, work / f"n{i + 1}", agents, bin_dir, work) for i in range(3)]
        for node in nodes:
            procs.append(node)
            node.start()
        for node in nodes:
            wait_until(f"{node.name} ready", node.ready, 60, nodes)
        wait_until("3 voters", lambda: all(len((n.status() or {}).get("voters") or []) == 3 for n in nodes), 60, nodes)
        for node in nodes:
            ok, detail = send_message(node.api, 10)
            if not ok:
                raise RuntimeError(f"SendMessage through {node.name} failed: {detail}")
        log(f"cluster up on {', '.join(apis)}; placement: no CPU pinning (nodes, echo agent and this "
            f"script share all {os.cpu_count()} cores); {args.kills} rounds")

        for number in range(1, args.kills + 1):
            result = run_round(number, nodes, args)
            results.append(result)
            print(describe(result), flush=True)
    except RuntimeError as err:
        aborted = str(err)
        log(f"stopped: {aborted}")
    finally:
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as err:  # noqa: BLE001 - keep stopping the others
                log(f"stopping {proc.name}: {err}")
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    ok = [r["unavailable_ms"] for r in results if r["ok"]]
    failed = len(results) - len(ok)
    summary = {
        "rounds": len(results),
        "aborted": aborted,
        "ok": len(ok),
        "failed": failed,
        "unavailable_ms": {
            "median": statistics.median(ok) if ok else None,
            "max": max(ok) if ok else None,
            "min": min(ok) if ok else None,
            "mean": round(statistics.fmean(ok), 1) if ok else None,
        },
        "rejoin_ms_median": statistics.median([r["rejoin_ms"] for r in results]) if results else None,
    }
    if ok:
        print(f"{len(results)} rounds, {failed} failed; unavailable after a leader kill: "
              f"median {summary['unavailable_ms']['median']:.0f} ms, max {summary['unavailable_ms']['max']:.0f} ms, "
              f"min {summary['unavailable_ms']['min']:.0f} ms")
    else:
        print(f"{len(results)} rounds, all failed")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"failover-{stamp}.json"
    out.write_text(json.dumps({
        "timestamp": stamp,
        "config": {k: v for k, v in vars(args).items() if k != "keep"},
        "placement": "no CPU pinning",
        "summary": summary,
        "rounds": results,
    }, indent=2) + "\n")
    print(f"results: {out}")
    return 0 if failed == 0 and aborted is None else 1


if __name__ == "__main__":
    sys.exit(main())
