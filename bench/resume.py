#!/usr/bin/env python3
"""bench/resume.py: how fast a stream resumes on another node (docs/resumable-streams.md).

Starts the bench echo agent and three superx nodes (release binaries from BIN_DIR, default
target/release; node i on 127.0.0.i), then, --rounds times: starts the echo agent's 6-event
stream (SendStreamingMessage) on node 1, reads its first 3 events and hangs up, waits until
node 2 has the task completed, and resumes on node 2 with SubscribeToTask and
`Last-Event-ID: 3`. The round's figure is the time from sending the resume request to
reading the first replayed event (connection included); every round checks that exactly
events 4..6 arrive. Prints the median, p99 and max. Nothing is pinned; every process started
here is stopped on exit. Only loopback addresses are contacted. Python 3.11 standard library.

Usage: bench/resume.py [--rounds 200] [--port-base 4300] [--bin-dir DIR]
"""

import argparse
import http.client as httpclient
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover import BENCH_AGENT_MAX_IN_FLIGHT, ROOT, Node, Proc, http, three_node_addrs, wait_until  # noqa: E402

STREAM_READ_TIMEOUT_S = 10.0


def log(msg):
    print(f"resume.py: {msg}", file=sys.stderr, flush=True)


def sse_events(response, count):
    """Reads up to `count` SSE events (id, JSON-RPC message) from an http.client response."""
    events, event_id, data = [], None, None
    while len(events) < count:
        line = response.readline()
        if not line:
            break
        line = line.decode().rstrip("\r\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            events.append((event_id, data))
            event_id, data = None, None
    return events


def post_stream(api, method, params, last_event_id=None):
    host, port = api.split(":")
    conn = httpclient.HTTPConnection(host, int(port), timeout=STREAM_READ_TIMEOUT_S)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    headers = {"Content-Type": "application/json", "A2A-Version": "1.0"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("POST", "/agents/echo", body, headers)
    return conn, conn.getresponse()


def one_round(origin, other):
    message = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": "resume"}]}
    conn, response = post_stream(origin.api, "SendStreamingMessage", {"message": message})
    first = sse_events(response, 3)
    conn.close()
    ids = [i for i, _ in first]
    if ids != [1, 2, 3]:
        raise RuntimeError(f"the stream's first ids were {ids}")
    task_id = first[0][1]["result"]["task"]["id"]

    def completed():
        status, raw = http(f"http://{other.api}/agents/echo",
                           {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}},
                           {"Content-Type": "application/json", "A2A-Version": "1.0"}, 2.0)
        return status == 200 and b"TASK_STATE_COMPLETED" in raw

    wait_until("the task completed on the other node", completed, 10)
    started = time.perf_counter()
    conn, response = post_stream(other.api, "SubscribeToTask", {"id": task_id}, last_event_id=3)
    replay = sse_events(response, 1)
    took_ms = (time.perf_counter() - started) * 1000
    replay += sse_events(response, 10)
    conn.close()
    if response.getheader("SuperX-Resume") != "replayed" or [i for i, _ in replay] != [4, 5, 6]:
        raise RuntimeError(f"resume got {response.getheader('SuperX-Resume')} {[i for i, _ in replay]}")
    return took_ms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--port-base", type=int, default=4300)
    parser.add_argument("--echo-addr", default="127.0.0.1:9996")
    parser.add_argument("--bin-dir", default=os.environ.get("BIN_DIR", str(ROOT / "target" / "release")))
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100_000:
        parser.error("--rounds must be between 1 and 100000")
    apis, rafts = three_node_addrs("resume.py", Path(args.bin_dir), args.echo_addr, args.port_base)
    bin_dir = Path(args.bin_dir)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="superx-resume-"))
    procs = []
    try:
        echo = Proc("echo agent", [str(bin_dir / "superx-echo-agent"), "--listen", args.echo_addr], work / "echo.log")
        procs.append(echo)
        echo.start()
        wait_until("the echo agent",
                   lambda: http(f"http://{args.echo_addr}/.well-known/agent-card.json", timeout=1)[0] == 200, 10, [echo])
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
        lats = [one_round(nodes[0], nodes[1]) for _ in range(args.rounds)]
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    lats.sort()
    p99 = lats[min(len(lats) - 1, int(len(lats) * 0.99))]
    print(json.dumps({"rounds": len(lats), "resume_to_first_event_ms": {
        "p50": round(statistics.median(lats), 3), "p99": round(p99, 3), "max": round(lats[-1], 3)}}))


if __name__ == "__main__":
    main()
