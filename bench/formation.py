#!/usr/bin/env python3
"""bench/formation.py: how fast superx nodes form, grow and repair a cluster by
themselves (gossip strategy, no --peers), on loopback.

Three figures, each over --rounds rounds where it makes sense:
1. formation: three nodes (node i on 127.0.0.i) started at the same instant with
   --strategy gossip --seeds <node 1's gossip address> --bootstrap-expect 3;
   the figure is spawn -> the first SendMessage that succeeds while every node
   reports the same 3 voters. Checked every round: exactly one leader and the
   same voter set on every node (one cluster).
2. join: a formed cluster is loaded with --tasks tasks (superx-load through all
   three nodes), then node 4 is started; the figure is spawn -> node 4 answers a
   linearizable GetTask (no SuperX-Read: local) for the last task written.
3. replacement: with node 4 a caught-up learner, a voter (not the leader) is
   SIGKILLed; the figure is kill -> node 4 is a voter and the dead node is not,
   as the leader reports. The dead-voter timeout (--dead-voter-timeout-ms) is
   part of it and is also printed apart.

Binaries come from BIN_DIR (default target/release): superx, superx-echo-agent,
superx-load. Nothing is pinned. Every process started here is killed on exit.
Only loopback addresses are contacted. Results go to bench-results/.

Usage: bench/formation.py [--rounds 5] [--tasks 100000] [--dead-voter-timeout-ms 5000]
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import ROOT, Proc, http, log, rpc, send_message, wait_until  # noqa: E402


class GossipNode(Proc):
    def __init__(self, n, work, bin_dir, agents, port_base, env_extra):
        ip = f"127.0.0.{n}"
        self.id = n
        self.api = f"{ip}:{port_base}"
        self.raft = f"{ip}:{port_base + 100}"
        self.gossip = f"{ip}:{port_base + 200}"
        self.dir = work / f"n{n}"
        argv = [
            str(bin_dir / "superx"), "serve", "--node-id", str(n),
            "--listen", self.api, "--raft-listen", self.raft, "--gossip-listen", self.gossip,
            "--strategy", "gossip", "--seeds", f"127.0.0.1:{port_base + 200}",
            "--bootstrap-expect", "3", "--data-dir", str(self.dir), "--agents-file", str(agents),
        ]
        super().__init__(f"node {n}", argv, work / f"n{n}.log")
        self.env = env_extra

    def start(self):
        env = dict(os.environ, LOG_LEVEL="info", **self.env)
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env)

    def status(self):
        return rpc(self.api, "cluster/status", timeout=1.0)


def one_cluster(nodes):
    """Every node reports the same leader and the same 3 voters."""
    statuses = [n.status() for n in nodes]
    if any(s is None for s in statuses):
        return False
    leaders = {s.get("leader") for s in statuses}
    voters = {tuple(s.get("voters") or []) for s in statuses}
    return len(leaders) == 1 and None not in leaders and len(voters) == 1 and len(next(iter(voters))) == 3


def formation_round(work, args, bin_dir, agents, env):
    nodes = [GossipNode(n, work, bin_dir, agents, args.port_base, env) for n in (1, 2, 3)]
    started = time.monotonic()
    for node in nodes:
        node.start()
    try:
        def writable():
            return one_cluster(nodes) and send_message(nodes[0].api, 5)[0]
        wait_until("a formed, writable cluster", writable, 60, nodes)
        took = (time.monotonic() - started) * 1000
        statuses = [n.status() for n in nodes]
        return round(took, 1), statuses[0]["voters"], statuses[0]["leader"]
    finally:
        for node in nodes:
            node.kill9()
        for node in nodes:
            shutil.rmtree(node.dir, ignore_errors=True)


def tasks_in_memory(api):
    status, raw = http(f"http://{api}/metrics", timeout=2)
    if status != 200:
        return 0
    for line in raw.decode().splitlines():
        if line.startswith("superx_tasks_in_memory "):
            return int(float(line.split()[1]))
    return 0


def load_tasks(nodes, bin_dir, target, work):
    """Runs superx-load through every node until the tables hold `target` tasks."""
    while tasks_in_memory(nodes[0].api) < target:
        loads = [subprocess.Popen([str(bin_dir / "superx-load"), "--url", f"http://{n.api}/agents/echo",
                                   "--connections", "16", "--duration", "5", "--warmup", "0", "--json"],
                                  stdout=subprocess.DEVNULL, stderr=open(work / "load.log", "ab"))
                 for n in nodes]
        for p in loads:
            p.wait(timeout=120)
        log(f"tasks in memory: {tasks_in_memory(nodes[0].api)}")


def last_task_id(node):
    ok, _ = send_message(node.api, 10)
    if not ok:
        raise RuntimeError("write before the join failed")
    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {"pageSize": 1}}
    status, raw = http(f"http://{node.api}/agents/echo", body,
                       {"Content-Type": "application/json", "A2A-Version": "1.0"}, 5)
    return json.loads(raw)["result"]["tasks"][0]["id"]


def get_task_linearizable(api, task_id):
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}
    status, raw = http(f"http://{api}/agents/echo", body, {"Content-Type": "application/json", "A2A-Version": "1.0"}, 5)
    return status == 200 and b'"result"' in raw


def grow_and_repair(work, args, bin_dir, agents, env):
    nodes = [GossipNode(n, work, bin_dir, agents, args.port_base, env) for n in (1, 2, 3)]
    for node in nodes:
        node.start()
    wait_until("a formed cluster", lambda: one_cluster(nodes) and send_message(nodes[0].api, 5)[0], 60, nodes)
    load_tasks(nodes, bin_dir, args.tasks, work)
    task_id = last_task_id(nodes[0])
    held = tasks_in_memory(nodes[0].api)
    fourth = GossipNode(4, work, bin_dir, agents, args.port_base, env)
    started = time.monotonic()
    fourth.start()
    wait_until("node 4 serving linearizable reads", lambda: get_task_linearizable(fourth.api, task_id), 120,
               [*nodes, fourth])
    join_ms = (time.monotonic() - started) * 1000
    role = (fourth.status() or {}).get("role")
    log(f"node 4 joined a cluster holding {held} tasks in {join_ms:.0f} ms (role {role})")

    def learner_ready():
        leader = next((s for s in (n.status() for n in nodes) if s and s.get("role") == "leader"), None)
        return leader and 4 in (leader.get("learners") or [])
    wait_until("node 4 a learner", learner_ready, 60, [*nodes, fourth])
    leader_id = next(s["leader"] for s in (n.status() for n in nodes) if s)
    victim = next(n for n in nodes if n.id != leader_id)
    survivors = [n for n in [*nodes, fourth] if n is not victim]
    killed = time.monotonic()
    victim.kill9()

    def replaced():
        for s in (n.status() for n in survivors):
            if s and s.get("role") == "leader":
                voters = s.get("voters") or []
                return 4 in voters and victim.id not in voters
        return False
    wait_until("the dead voter replaced", replaced, 120, survivors)
    replace_ms = (time.monotonic() - killed) * 1000
    log(f"voter {victim.id} killed; replaced by node 4 after {replace_ms:.0f} ms")
    for node in [*nodes, fourth]:
        node.kill9()
    return {"tasks_held": held, "join_ms": round(join_ms, 1), "joined_as": role,
            "replace_ms": round(replace_ms, 1),
            "replace_minus_timeout_ms": round(replace_ms - args.dead_voter_timeout_ms, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="formation rounds (default 5)")
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks held before the join (default 100000)")
    parser.add_argument("--dead-voter-timeout-ms", type=int, default=5000)
    parser.add_argument("--stabilization-ms", type=int, default=2000)
    parser.add_argument("--port-base", type=int, default=4600)
    parser.add_argument("--echo-addr", default="127.0.0.1:9996")
    parser.add_argument("--bin-dir", default=os.environ.get("BIN_DIR", str(ROOT / "target" / "release")))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    bin_dir = Path(args.bin_dir)
    for name in ("superx", "superx-echo-agent", "superx-load"):
        if not os.access(bin_dir / name, os.X_OK):
            sys.exit(f"formation.py: {bin_dir / name} is missing (cargo build --release -p superx -p superx-bench)")
    signal.signal(signal.SIGTERM, lambda s, _f: (_ for _ in ()).throw(SystemExit(128 + s)))
    work = Path(tempfile.mkdtemp(prefix="superx-formation-"))
    env = {"SUPERX_CLUSTER__DEAD_VOTER_TIMEOUT_MS": str(args.dead_voter_timeout_ms),
           "SUPERX_CLUSTER__STABILIZATION_MS": str(args.stabilization_ms),
           "SUPERX_TASKS__MEMORY_MAX": str(max(args.tasks * 2, 100_000))}
    echo = Proc("echo agent", [str(bin_dir / "superx-echo-agent"), "--listen", args.echo_addr], work / "echo.log")
    results = {"formation_ms": [], "id": str(uuid.uuid4())}
    try:
        echo.start()
        wait_until("the echo agent",
                   lambda: http(f"http://{args.echo_addr}/.well-known/agent-card.json", timeout=1)[0] == 200, 10, [echo])
        agents = work / "agents.yaml"
        agents.write_text(f"agents:\n  echo:\n    url: http://{args.echo_addr}/\n    maxInFlight: 4096\n")
        for number in range(1, args.rounds + 1):
            took, voters, leader = formation_round(work, args, bin_dir, agents, env)
            results["formation_ms"].append(took)
            print(f"formation round {number}: writable 3-node cluster after {took:.0f} ms "
                  f"(voters {voters}, leader {leader})", flush=True)
        results.update(grow_and_repair(work, args, bin_dir, agents, env))
    finally:
        echo.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    f = results["formation_ms"]
    print(f"formation: median {statistics.median(f):.0f} ms, max {max(f):.0f} ms over {len(f)} rounds")
    print(f"join with {results['tasks_held']} tasks: {results['join_ms']:.0f} ms; voter death to replacement: "
          f"{results['replace_ms']:.0f} ms ({results['replace_minus_timeout_ms']:.0f} ms beyond the "
          f"{args.dead_voter_timeout_ms} ms timeout)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"formation-{stamp}.json"
    out.write_text(json.dumps({"timestamp": stamp, "config": vars(args) | {"bin_dir": str(bin_dir)},
                               "results": results}, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
