#!/usr/bin/env python3
"""bench/overload.py: one superx node under twice the load it can serve.

1. Capacity: superx-load send1 closed loop (--connections) against a fresh node for
   --duration s (as long as the overload run by default); its SendMessage rate is the node's
   maximum.
2. Overload: a second fresh node (same settings, empty data dir), superx-load open loop at
   --factor x that rate for --overload-duration s over
   --overload-connections connections (so far more requests are in flight than the node's
   server.requests_in_flight_max); the node is started with --requests-max as that limit.
   Figures: goodput (ok/s) against the maximum, the p50/p99 of accepted calls, how many were
   refused (HTTP 503) and how fast, and the node's RSS before, during (sampled every 0.5 s,
   max) and after.

Placement (2-core machine): the gateway on core 0; the echo agent, superx-load and this
script on core 1. CPU steal (time the hypervisor gave our vCPUs to other guests) is shown
per phase: figures taken with high steal are not comparable.

Each of --rounds rounds is such a pair on fresh nodes (and a fresh echo agent); the figure is
the median of the rounds' goodput/capacity ratios. The VM's steal moves single runs by tens of
percent between minutes, so a capacity and an overload run taken minutes apart compare badly.

Usage: bench/overload.py [--rounds 3] [--duration <overload duration>] [--overload-duration 30] [--factor 2]
                         [--connections 32] [--overload-connections 2048]
                         [--requests-max 256] [--bin-dir target/release] [--no-pin] [--keep]
Output: a summary and JSON in bench-results/<timestamp>-overload/.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import GW_CORE, SIDE_CORE, CpuWindow, cpu_note, free_port, pinned  # noqa: E402
from failover import ROOT, Proc, http, wait_until  # noqa: E402


def log(msg):
    print(f"overload.py: {msg}", file=sys.stderr, flush=True)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def load(bin_dir, url, out, work, pin, duration, warmup, connections, rate=None):
    argv = [str(bin_dir / "superx-load"), "--url", url, "--method", "send1", "--connections", str(connections),
            "--duration", str(duration), "--warmup", str(warmup), "--json"]
    if rate:
        argv += ["--rate", str(rate)]
    with open(out, "wb") as stdout, open(work / "load.log", "ab") as stderr:
        rc = subprocess.run(pinned(SIDE_CORE, argv, pin), stdout=stdout, stderr=stderr,
                            stdin=subprocess.DEVNULL, timeout=duration + warmup + 120).returncode
    if rc != 0:
        raise RuntimeError(f"superx-load failed ({rc}); see {work / 'load.log'}")
    return json.loads(Path(out).read_text())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None,
                   help="capacity run, s (default: as long as the overload run, so the node holds as many "
                        "tasks at the end of both and their figures compare)")
    p.add_argument("--overload-duration", type=float, default=30.0, help="overload run, s")
    p.add_argument("--factor", type=float, default=2.0, help="offered load as a multiple of capacity")
    p.add_argument("--connections", type=int, default=32, help="capacity run connections")
    p.add_argument("--overload-connections", type=int, default=2048, help="overload run connections")
    p.add_argument("--requests-max", type=int, default=256, help="the node's server.requests_in_flight_max")
    p.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    p.add_argument("--port", type=int, default=4750)
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--rounds", type=int, default=3,
                   help="capacity-then-overload pairs, each on fresh nodes; the median ratio is the figure")
    a = p.parse_args()
    if a.duration is None:
        a.duration = a.overload_duration
    out_root = ROOT / "bench-results" / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-overload")
    ratios = []
    for number in range(1, a.rounds + 1):
        out_dir = out_root / f"round{number}"
        out_dir.mkdir(parents=True)
        log(f"round {number}/{a.rounds}")
        ratios.append(one_round(a, out_dir))
    median = statistics.median(ratios)
    print()
    print(f"goodput / capacity per round: {', '.join(f'{100 * r:.1f}%' for r in ratios)}; "
          f"median {100 * median:.1f}% (target >= 90%)  {'yes' if median >= 0.9 else 'NO'}")
    (out_root / "summary.json").write_text(json.dumps({"ratios": ratios, "median": median}, indent=2) + "\n")
    print(f"results: {out_root}")
    return 0


def one_round(a, out_dir):
    """One capacity run and one overload run, each on a fresh node; prints both and returns
    goodput / capacity."""
    bin_dir = Path(a.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="superx-overload-"))
    echo_addr = f"127.0.0.1:{free_port()}"
    api, raft = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    echo = Proc("echo", pinned(SIDE_CORE, [str(bin_dir / "superx-echo-agent"), "--listen", echo_addr,
                                           "--workers", "1"], a.pin), work / "echo.log")
    env_node = ["env", "-i", f"PATH={shutil.os.environ.get('PATH', '')}", "LOG_LEVEL=warn",
                f"A2A_REMOTE_URL=http://{echo_addr}/", f"SUPERX_SERVER__REQUESTS_IN_FLIGHT_MAX={a.requests_max}",
                # The node's admission is under test, not the agent's in-flight limit.
                "AGENT_MAX_IN_FLIGHT=1000000"]

    def fresh_node(name):
        return Proc(name, pinned(GW_CORE, [*env_node, str(bin_dir / "superx"), "serve", "--listen", api,
                                           "--raft-listen", raft, "--data-dir", str(work / name)], a.pin),
                    work / f"{name}.log")

    # Each phase gets a node of its own, started empty: both end holding as many tasks as they
    # committed in as long a run, so capacity and goodput are measured on the same footing.
    node = fresh_node("capacity-node")
    results = {"args": vars(a)}
    try:
        echo.start()
        wait_until("echo agent", lambda: http(f"http://{echo_addr}/.well-known/agent-card.json")[0] == 200, 10, [echo])
        node.start()
        wait_until("node ready", lambda: http(f"http://{api}/ready")[0] == 200, 60, [node])
        pid = node.popen.pid
        url = f"http://{api}/agents/default"
        cpu_groups = {"gateway": lambda: [node.popen.pid], "echo": lambda: [echo.popen.pid]}

        log(f"capacity: closed loop, {a.connections} connections, {a.duration}s ...")
        cpu = CpuWindow(cpu_groups).start()
        cap = load(bin_dir, url, out_dir / "capacity.json", work, a.pin, a.duration, 2, a.connections)
        cap_cpu = cpu.stop()
        max_rps = cap["ok_per_sec"]
        log(f"capacity {max_rps:.0f} ok/s, p99 {cap['latency_us']['p99'] / 1000:.2f} ms; {cpu_note(cap_cpu)}")
        results["capacity"] = {"ok_per_s": max_rps, "latency_us": cap["latency_us"], "cpu": cap_cpu}
        node.stop()
        node = fresh_node("overload-node")
        node.start()
        wait_until("overload node ready", lambda: http(f"http://{api}/ready")[0] == 200, 60, [node])
        pid = node.popen.pid

        rss_before = rss_kib(pid)
        samples, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                samples.append(rss_kib(pid))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rate = a.factor * max_rps
        log(f"overload: open loop at {rate:.0f}/s ({a.factor}x), {a.overload_connections} connections, "
            f"{a.overload_duration}s ...")
        cpu = CpuWindow(cpu_groups).start()
        over = load(bin_dir, url, out_dir / "overload.json", work, a.pin, a.overload_duration, 2,
                    a.overload_connections, rate)
        over_cpu = cpu.stop()
        stop.set()
        sampler.join()
        # After: the node settles back (nothing in flight) within a few seconds.
        wait_until("node idle", lambda: http(f"http://{api}/ready")[0] == 200, 30, [node])
        time.sleep(2)
        rss_after = rss_kib(pid)
        goodput = over["ok_per_sec"]
        refused = over["errors"]["http"]
        results["overload"] = {
            "offered_per_s": rate, "ok_per_s": goodput, "goodput_ratio": round(goodput / max_rps, 4),
            "refused_503": refused, "other_errors": over["errors"]["total"] - refused,
            "latency_us_accepted": over["latency_us"], "missed_slots": over["missed_slots"], "cpu": over_cpu,
            "rss_kib": {"before": rss_before, "during_max": max(samples or [0]), "after": rss_after},
        }
        o = results["overload"]
        print()
        print(f"superx overload benchmark (gateway on core 0; echo agent and superx-load on core 1; "
              f"requests_in_flight_max {a.requests_max})")
        print(f"capacity (closed loop, {a.connections} conns)   {max_rps:10.0f} ok/s   "
              f"p50 {cap['latency_us']['p50'] / 1000:.2f} ms  p99 {cap['latency_us']['p99'] / 1000:.2f} ms  "
              f"steal {cap_cpu['steal_pct']}%")
        print(f"overload offered ({a.factor}x, open loop)      {rate:10.0f} /s")
        print(f"goodput                                  {goodput:10.0f} ok/s   {100 * o['goodput_ratio']:.1f}% "
              f"of capacity (target >= 90%)  {'yes' if o['goodput_ratio'] >= 0.9 else 'NO'}")
        print(f"accepted calls                           p50 {over['latency_us']['p50'] / 1000:.2f} ms  "
              f"p99 {over['latency_us']['p99'] / 1000:.2f} ms  max {over['latency_us']['max'] / 1000:.2f} ms")
        print(f"refused (503 + Retry-After)              {refused} ({refused / max(1, over['requests']) * 100:.1f}% "
              f"of requests); other errors {o['other_errors']}")
        print(f"RSS KiB before / during (max) / after    {rss_before} / {o['rss_kib']['during_max']} / {rss_after}")
        print(f"cpu during overload: {cpu_note(over_cpu)}")
        (out_dir / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
        return o["goodput_ratio"]
    finally:
        node.stop()
        echo.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
