#!/usr/bin/env python3
"""bench/breaker.py: what a dead agent behind an open circuit breaker costs the
traffic of a healthy agent on the same superx node (target: < 5% throughput).

One superx node (release binary) with two agents from an agents file: `healthy`,
the bench echo agent, and `dead`, a loopback port nothing listens on (every call
is refused at once). Each round starts a fresh node and measures SendMessage
throughput to `healthy` with superx-load (closed loop, --connections) in one of
three modes, alternating for --rounds rounds:

  alone        only the healthy traffic;
  dead         the same, while a second superx-load sends a steady --dead-rate
               req/s (open loop) of SendMessage to `dead`: its breaker opens after
               the first failures (default knobs: 5 failures in 30 s, 30 s
               cooldown) and rejects the rest without calling it;
  no-breaker   the same as `dead`, with the dead agent's failureThreshold so high
               that its breaker never opens: every call tries to connect (the
               cost the breaker saves; a refused connection is the cheapest
               failure there is, a black-holed agent would cost more).

After a dead round the script reads `agents/health` for `dead`: the breaker
state and how many calls were admitted (callsTotal) against how many were sent.

Placement (2-core machine): the gateway on core 0 (taskset); the echo agent,
both superx-load processes and this script on core 1. The VM has noisy
neighbours: each measured window reports both cores' busy %, the CPU of other
processes and the steal the hypervisor took (as bench/archive.py does).

Before each measurement the script waits (up to --wait-quiet s) for a second in
which other processes use less than --quiet-pct of a core.

Output: a table per mode (median goodput over the rounds, p50/p99), the cost of
each dead mode as the median of its per-round ratio to that round's `alone`
(the modes run back to back), against the 5% target, and JSON in
bench-results/<timestamp>-breaker/.

Usage: bench/breaker.py [--rounds 3] [--duration 10] [--warmup 2] [--connections 32]
                        [--dead-rate 500] [--bin-dir target/release] [--no-pin]
                        [--wait-quiet 30] [--quiet-pct 15]
                        [--port-base 4800] [--echo-addr 127.0.0.1:9993]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import CpuWindow, cpu_note, free_port, pinned, wait_quiet  # noqa: E402
from failover import ROOT, Proc, http, port_busy, rpc, wait_until  # noqa: E402

GW_CORE = 0
SIDE_CORE = 1
MODES = ("alone", "dead", "no-breaker")


def log(msg):
    print(f"breaker.py: {msg}", file=sys.stderr, flush=True)


class Node(Proc):
    def __init__(self, name, bin_dir, api, raft, data_dir, agents_file, work, pin):
        argv = pinned(GW_CORE, [str(bin_dir / "superx"), "serve", "--listen", api, "--raft-listen", raft,
                                "--data-dir", str(data_dir), "--agents-file", str(agents_file)], pin)
        super().__init__(name, argv, work / f"{name}.log")
        self.api = api
        # The shell's SUPERX_* and SuperX variables must not change the node under test.
        self.env = {k: v for k, v in os.environ.items()
                    if not (k.startswith("SUPERX_") or k.startswith("AGENT_") or k.startswith("A2A_REMOTE_")
                            or k in ("DATABASE_URL", "AGENTS_FILE"))}
        self.env["LOG_LEVEL"] = "warn"

    def start(self):
        with open(self.log_path, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=self.env)

    def pids(self):
        return [self.popen.pid] if self.alive() else []


def load_argv(bin_dir, url, connections, duration, warmup, rate, pin):
    argv = [str(bin_dir / "superx-load"), "--url", url, "--method", "send1", "--connections", str(connections),
            "--duration", str(duration), "--warmup", str(warmup), "--json"]
    if rate:
        argv += ["--rate", str(rate)]
    return pinned(SIDE_CORE, argv, pin)


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin_dir).resolve()
        self.pin = not args.no_pin and shutil.which("taskset") is not None
        self.work = Path(tempfile.mkdtemp(prefix="superx-breaker-"))
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.out = ROOT / "bench-results" / f"{stamp}-breaker"
        self.out.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self.loads = []
        self.dead_addr = f"127.0.0.1:{free_port()}"  # nothing listens there

    def cleanup(self):
        for p in self.loads:
            if p.poll() is None:
                p.kill()
                p.wait()
        for proc in reversed(self.procs):
            proc.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def start_echo(self):
        a = self.args
        echo = Proc("echo agent", pinned(SIDE_CORE, [str(self.bin / "superx-echo-agent"), "--listen", a.echo_addr,
                                                     "--workers", "1"], self.pin), self.work / "echo.log")
        self.procs.append(echo)
        echo.start()
        wait_until("the echo agent",
                   lambda: http(f"http://{a.echo_addr}/.well-known/agent-card.json", timeout=1)[0] == 200, 10, [echo])
        self.echo = echo

    def node(self, name, mode):
        a = self.args
        threshold = "\n    failureThreshold: 1000000000" if mode == "no-breaker" else ""
        agents = self.work / f"{name}-agents.yml"
        # The healthy agent's in-flight limit is above the load's connections: the bench
        # measures the dead agent's cost, not backpressure on the healthy one.
        agents.write_text(f"agents:\n  healthy:\n    url: http://{a.echo_addr}/\n    maxInFlight: {a.connections * 4}\n"
                          f"  dead:\n    url: http://{self.dead_addr}/\n    protocolVersion: '1.0'{threshold}\n")
        api = f"127.0.0.1:{a.port_base}"
        raft = f"127.0.0.1:{a.port_base + 1}"
        for addr in (api, raft):
            if port_busy(addr):
                raise RuntimeError(f"{addr} is in use; pick another --port-base")
        node = Node(name, self.bin, api, raft, self.work / name, agents, self.work, self.pin)
        self.procs.append(node)
        node.start()
        wait_until(f"{name} ready", lambda: http(f"http://{api}/ready", timeout=1)[0] == 200, 60, [node])
        return node

    def cpu(self, node):
        echo = self.echo
        return CpuWindow({"gateway": node.pids,
                          "echo": lambda: [echo.popen.pid] if echo.alive() else [],
                          "load": lambda: [p.pid for p in self.loads if p.poll() is None],
                          "script": lambda: [os.getpid()]})

    def wait_quiet(self, node, what):
        return wait_quiet(lambda: self.cpu(node), self.args.wait_quiet, self.args.quiet_pct, what, log)

    def round(self, number, mode):
        a = self.args
        name = f"r{number}-{mode}"
        node = self.node(name, mode)
        self.wait_quiet(node, name)
        base = f"http://{node.api}"
        log(f"round {number} {mode}: superx-load send1 {a.connections} connections to healthy"
            + (f", {a.dead_rate} req/s to dead" if mode != "alone" else "") + f", {a.duration}s + {a.warmup}s warmup")
        self.loads = []
        dead_out = self.out / f"{name}-dead.json"
        healthy_out = self.out / f"{name}-healthy.json"
        with open(self.work / "load.log", "ab") as err:
            if mode != "alone":
                # The dead traffic starts first and runs past the healthy window on both ends.
                argv = load_argv(self.bin, f"{base}/agents/dead", 8, a.duration + 2, a.warmup + 1, a.dead_rate,
                                 self.pin)
                self.loads.append(subprocess.Popen(argv, stdout=open(dead_out, "wb"), stderr=err,
                                                   stdin=subprocess.DEVNULL))
                time.sleep(1.0)
            argv = load_argv(self.bin, f"{base}/agents/healthy", a.connections, a.duration, a.warmup, None, self.pin)
            healthy = subprocess.Popen(argv, stdout=open(healthy_out, "wb"), stderr=err, stdin=subprocess.DEVNULL)
            self.loads.append(healthy)
            time.sleep(a.warmup)
            cpu = self.cpu(node).start()
            time.sleep(a.duration)
            window = cpu.stop()
            for p in self.loads:
                if p.wait(timeout=a.duration + 120) != 0:
                    raise RuntimeError(f"superx-load failed in {name}; see {self.work / 'load.log'}")
        r = json.loads(healthy_out.read_text())
        # Goodput: answered without an error (an error would be a rejection, not work done).
        entry = {"round": number, "mode": mode, "req_per_sec": round(r["ok_per_sec"], 1),
                 "errors": r["errors"]["total"], "p50_ms": r["latency_us"]["p50"] / 1000,
                 "p99_ms": r["latency_us"]["p99"] / 1000, "cpu": window}
        if mode != "alone":
            d = json.loads(dead_out.read_text())
            health = rpc(node.api, "agents/health", {"id": "dead"}) or {}
            entry["dead"] = {"sent_per_sec": round(d["req_per_sec"], 1), "sent": d["requests"],
                             "errors": d["errors"]["total"], "breaker": health.get("breakerState"),
                             "admitted": health.get("callsTotal"), "failures": health.get("failuresTotal")}
        log(f"  healthy {entry['req_per_sec']} req/s (errors {entry['errors']}), p50 {entry['p50_ms']} ms "
            f"p99 {entry['p99_ms']} ms; {cpu_note(window)}")
        if "dead" in entry:
            log(f"  dead: {entry['dead']}")
        node.stop()
        self.procs.remove(node)
        return entry

    def run(self):
        a = self.args
        self.start_echo()
        log(f"dead agent at {self.dead_addr} (nothing listens); work dir {self.work}; pinned: {self.pin}")
        rounds = []
        for number in range(1, a.rounds + 1):
            for mode in MODES:
                rounds.append(self.round(number, mode))
        return rounds


def summarize(rounds):
    out = {}
    for mode in MODES:
        rs = [r for r in rounds if r["mode"] == mode]
        out[mode] = {"median_req_per_sec": statistics.median(r["req_per_sec"] for r in rs),
                     "per_round": [r["req_per_sec"] for r in rs],
                     "median_p50_ms": statistics.median(r["p50_ms"] for r in rs),
                     "median_p99_ms": statistics.median(r["p99_ms"] for r in rs),
                     "median_steal_pct": statistics.median(r["cpu"]["steal_pct"] for r in rs),
                     "median_other_cpu_pct": statistics.median(r["cpu"]["other_cpu_pct"] for r in rs)}
    # Each round runs the three modes back to back, so a round's own ratio is less exposed to
    # the neighbours' load drifting over the run than a ratio of medians.
    by_round = {(r["round"], r["mode"]): r["req_per_sec"] for r in rounds}
    for mode in ("dead", "no-breaker"):
        paired = [100 * (1 - by_round[(n, mode)] / by_round[(n, "alone")])
                  for (n, m) in by_round if m == "alone" and by_round[(n, m)]]
        out[mode]["paired_cost_pct"] = [round(c, 1) for c in paired]
        out[mode]["cost_pct"] = round(statistics.median(paired), 1) if paired else None
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32, help="healthy superx-load connections")
    parser.add_argument("--dead-rate", type=float, default=500.0, help="req/s sent to the dead agent")
    parser.add_argument("--bin-dir", default=os.environ.get("BIN_DIR", str(ROOT / "target" / "release")))
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--wait-quiet", type=float, default=30.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--quiet-pct", type=float, default=15.0, help="'quiet': others use less than this %% of a core")
    parser.add_argument("--port-base", type=int, default=4800)
    parser.add_argument("--echo-addr", default="127.0.0.1:9993")
    args = parser.parse_args()
    for name in ("superx", "superx-echo-agent", "superx-load"):
        if not (Path(args.bin_dir) / name).exists():
            sys.exit(f"missing {name} in {args.bin_dir}: cargo build --release -p superx -p superx-bench")
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rounds = bench.run()
    finally:
        bench.cleanup()
    summary = summarize(rounds)
    (bench.out / "results.json").write_text(json.dumps({"args": vars(args), "rounds": rounds,
                                                        "summary": summary}, indent=2) + "\n")
    print(f"\n{'mode':<12} {'req/s (median)':>15} {'per round':>28} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'steal %':>8} {'other %':>8}  cost vs alone")
    for mode in MODES:
        s = summary[mode]
        cost = f"{s['cost_pct']}% (per round {s['paired_cost_pct']})" if "cost_pct" in s else ""
        rounds_txt = ", ".join(f"{v:.0f}" for v in s["per_round"])
        print(f"{mode:<12} {s['median_req_per_sec']:>15.0f} {rounds_txt:>28} {s['median_p50_ms']:>8.2f} "
              f"{s['median_p99_ms']:>8.2f} {s['median_steal_pct']:>8.1f} {s['median_other_cpu_pct']:>8.1f}  {cost}")
    ok = summary["dead"]["cost_pct"] is not None and summary["dead"]["cost_pct"] < 5
    print(f"\ntarget: a dead agent behind an open breaker costs < 5% -> {'met' if ok else 'NOT met'} "
          f"({summary['dead']['cost_pct']}%)\nresults: {bench.out}")


if __name__ == "__main__":
    main()
