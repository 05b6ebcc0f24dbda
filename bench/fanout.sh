#!/usr/bin/env bash
# bench/fanout.sh: fan-out of one task's events to many SubscribeToTask streams
# across a three-node superx cluster on loopback.
#
# Starts the bench echo agent and three nodes (127.0.0.1:4401, 127.0.0.2:4402,
# 127.0.0.3:4403; raft on 450N), waits for 3 voters, then runs superx-fanout:
# the paced stream is started on node 1 and the subscribers are spread
# round-robin over the three nodes. Prints the report and writes its JSON to
# bench-results/fanout-<timestamp>.json.
#
# Placement: nothing is pinned (no taskset): the nodes, the echo agent and
# superx-fanout share every core. The open-files limit is raised (ulimit -n)
# for every process started here. Every process this script starts is killed
# on exit. Only loopback addresses are contacted.
#
# Usage: bench/fanout.sh [--subscribers N] [--events N] [--interval-ms MS]
#                        [--delay-ms MS] [--threads T] [--build] [-- FANOUT ARGS...]
#   --subscribers   SubscribeToTask streams (default 1000)
#   --events        paced artifact updates (default 50)
#   --interval-ms   between two updates (default 20)
#   --delay-ms      before the first update, for subscribers to attach (default 3000)
#   --threads       superx-fanout worker threads (default 1)
#   --build         cargo build --release -p superx -p superx-bench first
# Environment: BIN_DIR (default target/release) is where the binaries are.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=fanout.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

SUBSCRIBERS=1000
EVENTS=50
INTERVAL_MS=20
DELAY_MS=3000
THREADS=1
BUILD=0
EXTRA=()
ECHO_ADDR=127.0.0.1:9996

while [[ $# -gt 0 ]]; do
    case "$1" in
        --subscribers) SUBSCRIBERS="${2:?--subscribers needs a value}"; shift ;;
        --events) EVENTS="${2:?--events needs a value}"; shift ;;
        --interval-ms) INTERVAL_MS="${2:?--interval-ms needs a value}"; shift ;;
        --delay-ms) DELAY_MS="${2:?--delay-ms needs a value}"; shift ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift ;;
        --build) BUILD=1 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

cd "$ROOT"
if [[ $BUILD -eq 1 ]]; then
    cargo build --release -p superx -p superx-bench
fi
BIN="${BIN_DIR:-$ROOT/target/release}"
need_bins superx superx-echo-agent superx-fanout
raise_nofile 65536
((SUBSCRIBERS + 200 <= $(ulimit -n))) ||
    die "open-files limit $(ulimit -n) is too low for $SUBSCRIBERS subscribers (raise the hard limit)"
bench_init

PLACEMENT="no CPU pinning: the 3 nodes, the echo agent and superx-fanout share all $(nproc) cores"
echo "placement: $PLACEMENT; open-files limit $(ulimit -n)"
start_echo "$ECHO_ADDR" 1
start_cluster 4400
note "cluster up: ${NODE_API[*]} (leader $(cluster_status "${NODE_API[0]}" | jq -r '.leaderApi // .leader'))"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$ROOT/bench-results"
OUT="$ROOT/bench-results/fanout-$STAMP.json"
SUBSCRIBE="http://${NODE_API[0]}/agents/echo,http://${NODE_API[1]}/agents/echo,http://${NODE_API[2]}/agents/echo"
note "superx-fanout: $SUBSCRIBERS subscribers, $EVENTS events every ${INTERVAL_MS} ms after ${DELAY_MS} ms ..."
"$BIN/superx-fanout" --origin "http://${NODE_API[0]}/agents/echo" --subscribe "$SUBSCRIBE" \
    --subscribers "$SUBSCRIBERS" --events "$EVENTS" --interval-ms "$INTERVAL_MS" --delay-ms "$DELAY_MS" \
    --threads "$THREADS" --json "${EXTRA[@]}" >"$WORK/fanout.json" &
FANOUT_PID=$!
PIDS+=("$FANOUT_PID")
wait "$FANOUT_PID" || die "superx-fanout failed"
jq --arg placement "$PLACEMENT" --arg rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    '. + {placement: $placement, git_rev: $rev}' "$WORK/fanout.json" >"$OUT"

jq -r '
    "subscribers \(.subscribers) (connected \(.connected); all snapshots \(.attach_ms // "-" | if type == "number" then floor else . end) ms after subscribing; late \(.late_subscribers); no snapshot \(.no_snapshot))",
    "events      expected \(.events.expected)  received \(.events.received)  missing \(.events.missing)  out of order \(.events.out_of_order)  streams completed \(.completed_streams)",
    (if .lag_ms then "lag ms      p50 \(.lag_ms.p50)  p90 \(.lag_ms.p90)  p99 \(.lag_ms.p99)  max \(.lag_ms.max)" else "lag ms      -" end),
    (if .origin_stream.lag_ms then "origin      \(.origin_stream.received) events  lag ms p50 \(.origin_stream.lag_ms.p50)  p99 \(.origin_stream.lag_ms.p99)  max \(.origin_stream.lag_ms.max)" else "origin      \(.origin_stream.received) events" end),
    "errors      \(.errors.total)  \(.errors | del(.total) | to_entries | map("\(.key) \(.value)") | join("  "))",
    (.error_samples | to_entries[] | "  e.g. \(.key): \(.value)")
' "$OUT"
echo "results: $OUT"
