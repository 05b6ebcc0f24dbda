#!/usr/bin/env python3
"""bench/push.py: push notifications through one superx node (README, Push notifications).

Starts the bench echo agent, a webhook receiver (superx-webhook-sink: Rust, HTTP/1.1
keep-alive, answers 204 and records each delivery's `SuperX-Event-Id` with its arrival time on
CLOCK_MONOTONIC, which every process on the machine shares), and one gateway (release
binaries from --bin-dir) with `push.allow_cidrs` opening loopback. Then:

1. Latency: --latency-rounds SendMessage calls one after another, each with a webhook in its
   configuration. The echo agent answers each with a completed task: one event, delivered
   once. The figure is from the client's acknowledgement (the task is committed before it) to
   the delivery's arrival: ack-to-delivery, a little less than commit-to-delivery.
2. Throughput with push: superx-load closed loop (--connections, --duration) of SendMessage
   with a webhook; deliveries/s is what the receiver got between the first and the last of
   that phase's deliveries, after every acknowledged task's event arrived (or --drain-s);
   after_load_per_sec is the rate at which the backlog the load left was delivered once the
   load stopped (the node doing nothing else; reported when over 1000 deliveries were left).
3. The same load without a webhook: the request throughput push costs.

Placement (2-core machine): the gateway on core 0; the echo agent, the receiver, superx-load
and this script on core 1, so the receiver shares a core with the load: the deliveries/s
figure is a lower bound. Every process started here is stopped on exit; only
loopback addresses are contacted.

--stream makes phases 2 and 3 SendStreamingMessage (six events per task: six deliveries per
request), which measures deliveries/s with the gateway's core mostly delivering.

Usage: bench/push.py [--latency-rounds 300] [--duration 10] [--connections 32]
                     [--stream] [--bin-dir target/release] [--no-pin]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import GW_CORE, SIDE_CORE, free_port, pct, pinned, superx_load  # noqa: E402
from failover import BENCH_AGENT_MAX_IN_FLIGHT, ROOT, Proc, http, wait_until  # noqa: E402

A2A = {"Content-Type": "application/json", "A2A-Version": "1.0"}
TOKEN = "bench-token"


def log(msg):
    print(f"push.py: {msg}", file=sys.stderr, flush=True)


def delivered(port):
    status, raw = http(f"http://127.0.0.1:{port}/count", timeout=2.0)
    return int(raw) if status == 200 else -1


# --------------------------------------------------------------------------- the phases

def send_with_webhook(api, hook):
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
        "message": {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": "push"}]},
        "configuration": {"taskPushNotificationConfig": {"url": hook, "token": TOKEN}}}}
    status, raw = http(f"http://{api}/agents/echo", body, A2A, timeout=5.0)
    acked = time.monotonic()
    answer = json.loads(raw) if status == 200 else {}
    task = (answer.get("result") or {}).get("task")
    if not task:
        raise RuntimeError(f"SendMessage with a webhook failed: HTTP {status} {raw[:300]!r}")
    return task["id"], acked


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-rounds", type=int, default=300)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--drain-s", type=float, default=60.0)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args()
    pin = not args.no_pin
    bin_dir = Path(args.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="superx-push-bench-"))
    echo_addr, api, hook_port = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", free_port()
    hook = f"http://127.0.0.1:{hook_port}/hook"
    (work / "agents.yaml").write_text(
        f"agents:\n  echo:\n    url: http://{echo_addr}/\n    maxInFlight: {BENCH_AGENT_MAX_IN_FLIGHT}\n")
    arrivals_file = work / "arrivals.json"
    echo = Proc("echo", pinned(SIDE_CORE, [str(bin_dir / "superx-echo-agent"), "--listen", echo_addr,
                                           "--workers", "1"], pin), work / "echo.log")
    gateway = Proc("gateway", pinned(GW_CORE, [str(bin_dir / "superx"), "serve", "--listen", api,
                                               "--raft-listen", f"127.0.0.1:{free_port()}",
                                               "--data-dir", str(work / "data"),
                                               "--agents-file", str(work / "agents.yaml")], pin), work / "gw.log")
    receiver = subprocess.Popen(
        pinned(SIDE_CORE, [str(bin_dir / "superx-webhook-sink"), "--listen", f"127.0.0.1:{hook_port}",
                           "--out", str(arrivals_file)], pin), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    procs = [echo, gateway]
    try:
        if receiver.stdout.readline().strip() != b"READY":
            raise RuntimeError("the receiver did not start")
        os.environ["SUPERX_PUSH__ALLOW_CIDRS"] = "127.0.0.0/8"
        os.environ.setdefault("LOG_LEVEL", "warn")
        for p in procs:
            p.start()
        wait_until("the gateway is ready", lambda: http(f"http://{api}/ready")[0] == 200, 60, procs)

        log(f"latency: {args.latency_rounds} sends with a webhook, one after another")
        acks = dict(send_with_webhook(api, hook) for _ in range(args.latency_rounds))
        wait_until("every latency-phase event delivered", lambda: delivered(hook_port) >= len(acks), 60, procs)
        before = delivered(hook_port)

        log(f"throughput with push: {args.connections} connections for {args.duration}s")
        body = work / "send-push.json"
        method = "SendStreamingMessage" if args.stream else "SendMessage"
        body.write_text(json.dumps({"jsonrpc": "2.0", "id": "{{messageId}}", "method": method, "params": {
            "message": {"messageId": "{{messageId}}", "role": "ROLE_USER", "parts": [{"text": "push"}]},
            "configuration": {"taskPushNotificationConfig": {"url": hook, "token": TOKEN}}}}))
        with_push = superx_load(bin_dir, None, f"http://{api}/agents/echo",
                                ["--body", str(body), "--header", "A2A-Version:1.0"],
                                args.duration, args.warmup, args.connections, pin, work)
        load_ended = time.monotonic()
        deadline = time.monotonic() + args.drain_s
        last, same_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = delivered(hook_port)
            if n != last:
                last, same_since = n, time.monotonic()
            elif time.monotonic() - same_since > 2.0:
                break  # nothing more arrived for 2 s: drained
            time.sleep(0.1)
        log("throughput without push")
        without = superx_load(bin_dir, None, f"http://{api}/agents/echo", ["--method", "stream1" if args.stream else "send1"],
                              args.duration, args.warmup, args.connections, pin, work)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
        for p in procs:
            p.stop()

    arrivals = json.loads(arrivals_file.read_text())
    first_at = {}
    for event_id, at in arrivals:
        first_at.setdefault(event_id, at)
    lat_ms = [(first_at[f"{t}:1"] - acked) * 1000 for t, acked in acks.items() if f"{t}:1" in first_at]
    load_phase = [at for _, at in arrivals[before:]]
    span = (max(load_phase) - min(load_phase)) if len(load_phase) > 1 else 0
    # After the load: the backlog it left, delivered by a node doing nothing else.
    drain = [at for at in load_phase if at > load_ended]
    drain_span = (max(drain) - load_ended) if drain else 0
    duplicates = len(arrivals) - len(first_at)
    result = {
        "ack_to_delivery_ms": {"n": len(lat_ms), "p50": round(pct(lat_ms, 50), 2), "p99": round(pct(lat_ms, 99), 2),
                               "max": round(max(lat_ms), 2)},
        "deliveries": {"during_load": len(load_phase), "per_sec": round(len(load_phase) / span) if span else None,
                       "after_load": len(drain),
                       "after_load_per_sec": round(len(drain) / drain_span) if len(drain) > 1000 else None,
                       "duplicates": duplicates},
        "requests_per_sec": {"with_push": round(with_push["req_per_sec"]), "without_push": round(without["req_per_sec"]),
                             "ratio": round(with_push["req_per_sec"] / without["req_per_sec"], 3)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
