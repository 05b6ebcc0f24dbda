#!/usr/bin/env bash
# bench/run.sh: measures what the superx gateway costs on loopback, by loading
# the bench echo agent directly and through the gateway, at maximum throughput
# and at a fixed open-loop rate, then printing a summary table and writing JSON
# results to bench-results/<timestamp>/.
#
# Placement (2-core machine): the echo agent and the load generator share core
# 1, the gateway gets core 0. Every process this script starts is killed on
# exit. Only loopback addresses are contacted.
#
# Usage: bench/run.sh [--streams] [--rest] [--direct-only] [--no-build]
#                     [--duration S] [--warmup S] [--connections C] [--rate R]
#   --streams       also run the same four measurements with stream1 (SSE)
#   --rest          also load the gateway over HTTP+JSON (rest-send1, and rest-stream1
#                   with --streams), compared with the same direct JSON-RPC runs
#   --direct-only   skip the gateway (build and measure only the echo agent)
#   --no-build      use the existing target/release binaries
# Environment: DURATION, WARMUP, CONNECTIONS, RATE give the same defaults;
# BIN_DIR overrides where the binaries are taken from (default target/release).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
RATE="${RATE:-2000}"
STREAMS=0
REST=0
DIRECT_ONLY=0
BUILD=1

ECHO_ADDR=127.0.0.1:9999
GW_ADDR=127.0.0.1:4000
DIRECT_URL="http://$ECHO_ADDR/"
GW_URL="http://$GW_ADDR/agents/echo"
ECHO_CORE=1
LOAD_CORE=1
GW_CORE=0

SCRIPT=run.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"  # die, wait_ready

while [[ $# -gt 0 ]]; do
    case "$1" in
        --streams) STREAMS=1 ;;
        --rest) REST=1 ;;
        --direct-only) DIRECT_ONLY=1 ;;
        --no-build) BUILD=0 ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift ;;
        --rate) RATE="${2:?--rate needs a value}"; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

for tool in curl jq taskset; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
done

if [[ $BUILD -eq 1 ]]; then
    if [[ $DIRECT_ONLY -eq 1 ]]; then
        cargo build --release -p superx-bench
    else
        cargo build --release -p superx -p superx-bench
    fi
fi
BIN="${BIN_DIR:-$ROOT/target/release}"
for bin in superx-echo-agent superx-load; do
    [[ -x "$BIN/$bin" ]] || die "$BIN/$bin is missing (build it or drop --no-build)"
done
if [[ $DIRECT_ONLY -eq 0 ]]; then
    [[ -x "$BIN/superx" ]] || die "$BIN/superx is missing (build it or use --direct-only)"
fi

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
if port_busy "$ECHO_ADDR"; then
    die "$ECHO_ADDR is already in use"
fi
if [[ $DIRECT_ONLY -eq 0 ]] && port_busy "$GW_ADDR"; then
    die "$GW_ADDR is already in use"
fi

WORK="$(mktemp -d)"
DATA_DIR="$(mktemp -d)"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK" "$DATA_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

taskset -c "$ECHO_CORE" "$BIN/superx-echo-agent" --listen "$ECHO_ADDR" --workers 1 \
    >"$WORK/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_ready "http://$ECHO_ADDR/.well-known/agent-card.json" 10 "$ECHO_PID" "echo agent" "$WORK/echo.log"

if [[ $DIRECT_ONLY -eq 0 ]]; then
    printf 'agents:\n  echo:\n    url: http://%s/\n    maxInFlight: 4096\n' "$ECHO_ADDR" >"$WORK/agents.yaml"
    taskset -c "$GW_CORE" "$BIN/superx" serve --listen "$GW_ADDR" --data-dir "$DATA_DIR" \
        --agents-file "$WORK/agents.yaml" >"$WORK/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_ready "http://$GW_ADDR/ready" 60 "$GW_PID" "gateway" "$WORK/gateway.log"
    # One request through the gateway, so that a broken route fails loudly here.
    smoke="$(curl -s --max-time 5 -H 'content-type: application/json' -H 'A2A-Version: 1.0' \
        -d '{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"smoke-1","role":"ROLE_USER","parts":[{"text":"smoke"}]}}}' \
        "$GW_URL" || true)"
    if ! jq -e '.result.task.artifacts[0].parts[0].text == "smoke"' <<<"$smoke" >/dev/null 2>&1; then
        echo "run.sh: warning: SendMessage through $GW_URL did not echo; got: ${smoke:0:400}" >&2
    fi
fi

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench-results/$STAMP"
mkdir -p "$OUT"
RUNS=()

# measure NAME URL METHOD [EXTRA ARGS...]
measure() {
    local name="$1" url="$2" method="$3"
    shift 3
    echo "run.sh: $name ($method -> $url $*) ..." >&2
    if ! taskset -c "$LOAD_CORE" "$BIN/superx-load" --url "$url" --method "$method" \
        --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --json "$@" \
        >"$OUT/$name.json"; then
        die "superx-load failed for $name"
    fi
    RUNS+=("$name")
}

METHODS=(send1)
if [[ $STREAMS -eq 1 ]]; then
    METHODS+=(stream1)
fi
for method in "${METHODS[@]}"; do
    if [[ $DIRECT_ONLY -eq 0 ]]; then
        measure "gateway-max-$method" "$GW_URL" "$method"
    fi
    measure "direct-max-$method" "$DIRECT_URL" "$method"
    if [[ $DIRECT_ONLY -eq 0 ]]; then
        measure "gateway-rate-$method" "$GW_URL" "$method" --rate "$RATE"
    fi
    measure "direct-rate-$method" "$DIRECT_URL" "$method" --rate "$RATE"
    if [[ $REST -eq 1 && $DIRECT_ONLY -eq 0 ]]; then
        # The same operation over the gateway's HTTP+JSON binding (`message:send`, `message:stream`).
        rest_path="message:send"
        [[ $method == stream1 ]] && rest_path="message:stream"
        measure "gateway-max-rest-$method" "$GW_URL/$rest_path" "rest-$method"
        measure "gateway-rate-rest-$method" "$GW_URL/$rest_path" "rest-$method" --rate "$RATE"
    fi
done

# summary.json: every run keyed by name, plus gateway-minus-direct figures.
files=()
for name in "${RUNS[@]}"; do files+=("$OUT/$name.json"); done
jq -n \
    --arg stamp "$STAMP" \
    --arg rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)" \
    --argjson names "$(printf '%s\n' "${RUNS[@]}" | jq -R . | jq -s .)" \
    --argjson duration "$DURATION" --argjson warmup "$WARMUP" \
    --argjson connections "$CONNECTIONS" --argjson rate "$RATE" \
    '[inputs] as $runs
     | ([$names, $runs] | transpose | map({key: .[0], value: .[1]}) | from_entries) as $by
     | {
         timestamp: $stamp, git_rev: $rev, cpu: $cpu,
         config: {duration_s: $duration, warmup_s: $warmup, connections: $connections, rate: $rate,
                  cores: {gateway: 0, echo_agent: 1, load: 1}},
         runs: $by,
         added: ([$by | keys[] | select(startswith("gateway-rate-")) | ltrimstr("gateway-rate-")]
                 | map(. as $m | ($m | ltrimstr("rest-")) as $d | {key: $m, value: {
                     p50_us: ($by["gateway-rate-" + $m].latency_us.p50 - $by["direct-rate-" + $d].latency_us.p50),
                     p99_us: ($by["gateway-rate-" + $m].latency_us.p99 - $by["direct-rate-" + $d].latency_us.p99),
                     max_throughput_ratio: (if $by["direct-max-" + $d].req_per_sec > 0
                         then $by["gateway-max-" + $m].req_per_sec / $by["direct-max-" + $d].req_per_sec
                         else null end)
                   }}) | from_entries)
       }' "${files[@]}" >"$OUT/summary.json"

echo
printf '%-22s %10s %8s %8s %8s %8s %8s %7s %11s %13s\n' \
    run 'req/s' 'p50µs' 'p90µs' 'p99µs' 'p999µs' 'maxµs' errors 'events/s' 'first p50/99'
jq -r '.runs | to_entries[] | [
        .key,
        (.value.req_per_sec | floor),
        .value.latency_us.p50, .value.latency_us.p90, .value.latency_us.p99,
        .value.latency_us.p999, .value.latency_us.max, .value.errors.total,
        (if .value.stream then (.value.stream.events_per_sec | floor) else "-" end),
        (if .value.stream then "\(.value.stream.first_event_us.p50)/\(.value.stream.first_event_us.p99)" else "-" end)
      ] | @tsv' "$OUT/summary.json" |
    while IFS=$'\t' read -r name rps p50 p90 p99 p999 max errors eps first; do
        printf '%-22s %10s %8s %8s %8s %8s %8s %7s %11s %13s\n' \
            "$name" "$rps" "$p50" "$p90" "$p99" "$p999" "$max" "$errors" "$eps" "$first"
    done
jq -r --argjson rate "$RATE" '.added | to_entries[] |
    "added by gateway (\(.key) at \($rate) req/s): p50 +\(.value.p50_us) µs, p99 +\(.value.p99_us) µs; max throughput \(((.value.max_throughput_ratio // 0) * 1000 | floor) / 10)% of direct"' \
    "$OUT/summary.json"
echo "results: $OUT"
