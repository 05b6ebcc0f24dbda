#!/usr/bin/env bash
# bench/cluster.sh: SendMessage throughput of a three-node superx cluster on
# loopback, compared with one node alone and with the echo agent itself.
#
# Phase 1 starts the bench echo agent and three nodes (127.0.0.1:4001,
# 127.0.0.2:4002, 127.0.0.3:4003; raft on 410N), waits for 3 voters, then runs
# three superx-load processes at once (method send1), one per node, for
# --duration seconds. Phase 2 stops the cluster, starts one node alone
# (127.0.0.1:4000) and runs the same three processes against it. Phase 3 runs
# them directly against the echo agent. Each process's req/s, p50 and p99 are
# printed with the sums (req/s) and the worst of the three (p50, p99); JSON goes
# to bench-results/cluster-<timestamp>/.
#
# Placement: nothing is pinned (no taskset): the nodes, the echo agent and the
# load generators share every core. Every process this script starts is killed
# on exit. Only loopback addresses are contacted.
#
# Usage: bench/cluster.sh [--duration S] [--warmup S] [--connections C]
#                         [--echo-workers W] [--build]
#   --duration      measured seconds per phase (default 10)
#   --warmup        unmeasured seconds before each measurement (default 2)
#   --connections   connections per load process (default 16)
#   --echo-workers  echo agent worker threads (default 1)
#   --build         cargo build --release -p superx -p superx-bench first
# Environment: BIN_DIR (default target/release) is where the binaries are.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT=cluster.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=10
WARMUP=2
CONNECTIONS=16
ECHO_WORKERS=1
BUILD=0
ECHO_ADDR=127.0.0.1:9999
SINGLE_API=127.0.0.1:4000
SINGLE_RAFT=127.0.0.1:4100

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?--duration needs a value}"; shift ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift ;;
        --echo-workers) ECHO_WORKERS="${2:?--echo-workers needs a value}"; shift ;;
        --build) BUILD=1 ;;
        -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

cd "$ROOT"
if [[ $BUILD -eq 1 ]]; then
    cargo build --release -p superx -p superx-bench
fi
BIN="${BIN_DIR:-$ROOT/target/release}"
need_bins superx superx-echo-agent superx-load
bench_init

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench-results/cluster-$STAMP"
mkdir -p "$OUT"
PLACEMENT="no CPU pinning: the gateway node(s), the echo agent ($ECHO_WORKERS worker) and the 3 load generators share all $(nproc) cores"
echo "placement: $PLACEMENT"

# load_phase NAME URL URL URL: three superx-load processes at once, one per URL.
load_phase() {
    local name="$1" i pids=() failed=0
    shift
    note "$name: 3 x superx-load send1, $CONNECTIONS connections each, ${WARMUP}s warmup + ${DURATION}s ..."
    for i in 1 2 3; do
        "$BIN/superx-load" --url "${!i}" --method send1 --connections "$CONNECTIONS" \
            --duration "$DURATION" --warmup "$WARMUP" --json >"$OUT/$name-$i.json" 2>"$WORK/$name-$i.err" &
        pids+=($!)
        PIDS+=($!)
    done
    for i in 0 1 2; do
        wait "${pids[i]}" || failed=1
    done
    if ((failed)); then
        cat "$WORK/$name"-*.err >&2
        die "a superx-load process failed in $name"
    fi
}

start_echo "$ECHO_ADDR" "$ECHO_WORKERS"

# Phase 1: the cluster.
start_cluster 4000
LEADER="$(cluster_status "${NODE_API[0]}" | jq -r '.leaderApi // .leader // "unknown"')"
note "cluster up: ${NODE_API[*]} (leader $LEADER)"
load_phase cluster "http://${NODE_API[0]}/agents/echo" "http://${NODE_API[1]}/agents/echo" \
    "http://${NODE_API[2]}/agents/echo"
for pid in "${NODE_PIDS[@]}"; do
    stop_pid "$pid"
done

# Phase 2: one node alone.
start_node 1 "$SINGLE_API" "$SINGLE_RAFT" "" single
SINGLE_PID=$NODE_PID
wait_ready "http://$SINGLE_API/ready" 60 "$SINGLE_PID" "single node" "$WORK/single.log"
smoke "http://$SINGLE_API/agents/echo"
load_phase single "http://$SINGLE_API/agents/echo" "http://$SINGLE_API/agents/echo" \
    "http://$SINGLE_API/agents/echo"
stop_pid "$SINGLE_PID"

# Phase 3: the echo agent itself.
load_phase direct "http://$ECHO_ADDR/" "http://$ECHO_ADDR/" "http://$ECHO_ADDR/"

jq -n \
    --arg stamp "$STAMP" \
    --arg rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)" \
    --arg placement "$PLACEMENT" --arg leader "$LEADER" \
    --argjson cores "$(nproc)" --argjson duration "$DURATION" --argjson warmup "$WARMUP" \
    --argjson connections "$CONNECTIONS" --argjson echo_workers "$ECHO_WORKERS" \
    --slurpfile c1 "$OUT/cluster-1.json" --slurpfile c2 "$OUT/cluster-2.json" --slurpfile c3 "$OUT/cluster-3.json" \
    --slurpfile s1 "$OUT/single-1.json" --slurpfile s2 "$OUT/single-2.json" --slurpfile s3 "$OUT/single-3.json" \
    --slurpfile d1 "$OUT/direct-1.json" --slurpfile d2 "$OUT/direct-2.json" --slurpfile d3 "$OUT/direct-3.json" \
    'def phase($runs): {
        processes: $runs,
        req_per_sec: ($runs | map(.req_per_sec) | add),
        ok_per_sec: ($runs | map(.ok_per_sec) | add),
        errors: ($runs | map(.errors.total) | add),
        worst_p50_us: ($runs | map(.latency_us.p50) | max),
        worst_p99_us: ($runs | map(.latency_us.p99) | max)
      };
     {
       timestamp: $stamp, git_rev: $rev, cpu: $cpu, cores: $cores, placement: $placement,
       config: {duration_s: $duration, warmup_s: $warmup, connections_per_process: $connections,
                processes: 3, method: "send1", echo_workers: $echo_workers},
       cluster_leader: $leader,
       phases: {
         cluster: phase([$c1[0], $c2[0], $c3[0]]),
         single: phase([$s1[0], $s2[0], $s3[0]]),
         direct: phase([$d1[0], $d2[0], $d3[0]])
       }
     }' >"$OUT/summary.json"

echo
echo "placement: $PLACEMENT"
echo "3 x superx-load send1, $CONNECTIONS connections each, ${DURATION}s (+${WARMUP}s warmup); cluster leader $LEADER"
printf '%-9s %-34s %10s %8s %8s %7s\n' phase target 'req/s' 'p50µs' 'p99µs' errors
jq -r '.phases | to_entries[] | .key as $phase | .value as $p |
    ($p.processes[] | [$phase, .url, (.req_per_sec | floor), .latency_us.p50, .latency_us.p99, .errors.total]),
    [$phase, "sum / worst of 3", ($p.req_per_sec | floor), $p.worst_p50_us, $p.worst_p99_us, $p.errors]
    | @tsv' "$OUT/summary.json" |
    while IFS=$'\t' read -r phase url rps p50 p99 errors; do
        printf '%-9s %-34s %10s %8s %8s %7s\n' "$phase" "$url" "$rps" "$p50" "$p99" "$errors"
    done
echo "results: $OUT"
