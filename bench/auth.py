#!/usr/bin/env python3
"""bench/auth.py: what client authentication costs (README, Security).

Starts the bench echo agent and three gateways (release binaries from --bin-dir) on the same
core: one open, two with `auth.mode = "required"` (an admin token and an HS256 JWT secret).
An API key is made on the second with `keys/create`, and an HS256 JWT is signed here. Then
--rounds times: superx-load closed loop of SendMessage (--connections, --duration) against
the open gateway, the second with `X-API-Key`, and the third with `Authorization: Bearer
<jwt>`, in an order that rotates every round. One gateway per mode, so each holds as many
tasks (and snapshots as often) as the others at the same round; the idle gateways cost
nothing meaningful while one is loaded. Prints the median requests/s of each, their ratios
to the open gateway, and each round's ratios (the fairest pairing: same minute, same state).

Placement (2-core machine): both gateways on core 0; the echo agent, superx-load and this
script on core 1. Every process started here is stopped on exit; only loopback addresses are
contacted.

Usage: bench/auth.py [--rounds 3] [--duration 10] [--connections 32] [--bin-dir target/release]
                     [--no-pin]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive import SIDE_CORE, free_port, gateway_proc, pinned, superx_load  # noqa: E402
from failover import BENCH_AGENT_MAX_IN_FLIGHT, ROOT, Proc, http, wait_until  # noqa: E402

ADMIN = "bench-admin-token-0123456789"
SECRET = "bench-hs256-secret-0123456789abcdef"
ISSUER, AUDIENCE = "https://issuer.bench", "superx-bench"


def log(msg):
    print(f"auth.py: {msg}", file=sys.stderr, flush=True)


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_jwt():
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "iat": now, "exp": now + 3600}
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    pin = not args.no_pin
    bin_dir = Path(args.bin_dir)
    work = Path(tempfile.mkdtemp(prefix="superx-auth-bench-"))
    echo_addr = f"127.0.0.1:{free_port()}"
    open_api, key_api, jwt_api = (f"127.0.0.1:{free_port()}" for _ in range(3))
    (work / "agents.yaml").write_text(
        f"agents:\n  echo:\n    url: http://{echo_addr}/\n    maxInFlight: {BENCH_AGENT_MAX_IN_FLIGHT}\n")
    os.environ.setdefault("LOG_LEVEL", "warn")
    auth_env = {"SUPERX_AUTH__MODE": "required", "SUPERX_AUTH__ADMIN_TOKEN": ADMIN,
                "SUPERX_AUTH__JWT_HS256_SECRET": SECRET, "SUPERX_AUTH__JWT_ISSUER": ISSUER,
                "SUPERX_AUTH__JWT_AUDIENCES": AUDIENCE}
    echo = Proc("echo", pinned(SIDE_CORE, [str(bin_dir / "superx-echo-agent"), "--listen", echo_addr,
                                           "--workers", "1"], pin), work / "echo.log")
    procs = [echo, gateway_proc(bin_dir, work, "open", open_api, pin, work / "agents.yaml"),
             gateway_proc(bin_dir, work, "auth-key", key_api, pin, work / "agents.yaml", auth_env),
             gateway_proc(bin_dir, work, "auth-jwt", jwt_api, pin, work / "agents.yaml", auth_env)]
    figures = {"none": [], "api_key": [], "jwt_hs256": []}
    try:
        for p in procs:
            p.start()
        for api in (open_api, key_api, jwt_api):
            wait_until(f"{api} ready", lambda api=api: http(f"http://{api}/ready")[0] == 200, 60, procs)
        body = {"jsonrpc": "2.0", "id": 1, "method": "keys/create", "params": {"name": "bench"}}
        status, raw = http(f"http://{key_api}/rpc", body,
                           {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN}"}, timeout=10)
        key = (json.loads(raw).get("result") or {}).get("key") if status == 200 else None
        if not key:
            raise RuntimeError(f"keys/create failed: HTTP {status} {raw[:300]!r}")
        runs = [("none", open_api, []), ("api_key", key_api, ["--header", f"X-API-Key:{key}"]),
                ("jwt_hs256", jwt_api, ["--header", f"Authorization:Bearer {hs256_jwt()}"])]
        for round_ in range(args.rounds):
            turn = round_ % len(runs)
            for name, api, headers in runs[turn:] + runs[:turn]:
                log(f"round {round_ + 1}/{args.rounds}: {name}")
                result = superx_load(bin_dir, None, f"http://{api}/agents/echo", ["--method", "send1", *headers],
                                     args.duration, args.warmup, args.connections, pin, work)
                if result["errors"]["total"]:
                    raise RuntimeError(f"{name}: errors {result['errors']}")
                figures[name].append(result["ok_per_sec"])
    finally:
        for p in procs:
            p.stop()
    medians = {name: round(statistics.median(v)) for name, v in figures.items()}
    per_round = [{n: round(figures[n][i] / figures["none"][i], 3) for n in ("api_key", "jwt_hs256")}
                 for i in range(len(figures["none"]))]
    print(json.dumps({"req_per_sec_median": medians, "runs": figures,
                      "ratio_to_none": {n: round(m / medians["none"], 3) for n, m in medians.items()},
                      "ratio_per_round": per_round}))


if __name__ == "__main__":
    main()
