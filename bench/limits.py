#!/usr/bin/env python3
"""bench/limits.py: what rate limiting costs, and that one node holds its rate (README, Security).

Starts the bench echo agent and two gateways (release binaries from --bin-dir) on the same
core, both open: one whose agent has no rate limit, one whose agent `echo` has a limit far
above what a node serves (1,000,000/s: every call is checked, none refused) and whose agent
`capped` has `--rate` requests per second. Then --rounds times, in turn: superx-load closed loop
of SendMessage (--connections, --duration) against `echo` on each gateway, and against
`capped`. Prints the median requests/s of the first two and their ratio (the limiter's cost
on the hot path), and what `capped` admitted per second (the rest were refused with 429).

The cluster-wide figure (three nodes, uneven spreads, a shift of load) is the integration test
`tests/it/limits.rs`, which prints what it admitted per second.

Placement (2-core machine): both gateways on core 0; the echo agent, superx-load and this
script on core 1. Every process started here is stopped on exit; only loopback addresses are
contacted.

Usage: bench/limits.py [--rounds 3] [--duration 10] [--connections 32] [--rate 500]
                       [--bin-dir target/release] [--no-pin]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import SIDE_CORE, free_port, gateway_proc, pinned, superx_load  # noqa: E402
from failover import BENCH_AGENT_MAX_IN_FLIGHT, ROOT, Proc, http, wait_until  # noqa: E402

NEVER_BINDING = 1_000_000


def log(msg):
    print(f"limits.py: {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    pin = not args.no_pin
    bin_dir = Path(args.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="superx-limits-bench-"))
    echo_addr = f"127.0.0.1:{free_port()}"
    plain_api, limited_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    agent = f"    url: http://{echo_addr}/\n    maxInFlight: {BENCH_AGENT_MAX_IN_FLIGHT}\n"
    (work / "plain.yaml").write_text(f"agents:\n  echo:\n{agent}")
    (work / "limited.yaml").write_text(
        f"agents:\n  echo:\n{agent}    rateLimit: {{requestsPerSecond: {NEVER_BINDING}}}\n"
        f"  capped:\n{agent}    rateLimit: {{requestsPerSecond: {args.rate}}}\n")
    os.environ.setdefault("LOG_LEVEL", "warn")
    echo = Proc("echo", pinned(SIDE_CORE, [str(bin_dir / "superx-echo-agent"), "--listen", echo_addr,
                                           "--workers", "1"], pin), work / "echo.log")
    procs = [echo, gateway_proc(bin_dir, work, "plain", plain_api, pin, work / "plain.yaml"),
             gateway_proc(bin_dir, work, "limited", limited_api, pin, work / "limited.yaml")]
    figures = {"no_limit": [], "limit_checked": [], "capped_admitted": []}
    try:
        for p in procs:
            p.start()
        for api in (plain_api, limited_api):
            wait_until(f"{api} ready", lambda api=api: http(f"http://{api}/ready")[0] == 200, 60, procs)
        runs = {"no_limit": f"http://{plain_api}/agents/echo", "limit_checked": f"http://{limited_api}/agents/echo",
                "capped_admitted": f"http://{limited_api}/agents/capped"}
        for round_ in range(args.rounds):
            for name, url in runs.items():
                log(f"round {round_ + 1}/{args.rounds}: {name}")
                result = superx_load(bin_dir, None, url, ["--method", "send1"], args.duration, args.warmup,
                                     args.connections, pin, work)
                if name != "capped_admitted" and result["errors"]["total"]:
                    raise RuntimeError(f"{name}: errors {result['errors']}")
                figures[name].append(result["ok_per_sec"])
    finally:
        for p in procs:
            p.stop()
    medians = {name: round(statistics.median(v), 1) for name, v in figures.items()}
    print(json.dumps({"req_per_sec_median": medians, "runs": figures, "capped_rate": args.rate,
                      "limit_checked_to_no_limit": round(medians["limit_checked"] / medians["no_limit"], 3)}))


if __name__ == "__main__":
    main()
