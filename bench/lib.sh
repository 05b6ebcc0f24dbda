# bench/lib.sh: helpers shared by the cluster benchmark scripts (bench/cluster.sh,
# bench/fanout.sh); sourced, not run. It starts the bench echo agent and superx
# nodes on loopback addresses, remembers every process it starts in PIDS, and
# installs an EXIT trap that stops them all (TERM, then KILL after 5 s) and
# removes the scratch directory WORK. Callers set BIN (where the binaries are)
# and SCRIPT (a name for messages) before sourcing, then call bench_init.

die() {
    echo "${SCRIPT:-bench}: $*" >&2
    exit 1
}

note() {
    echo "${SCRIPT:-bench}: $*" >&2
}

PIDS=()

# stop_pid PID: TERM, wait up to 5 s, then KILL; forgets the pid.
stop_pid() {
    local pid="$1" p keep=()
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

bench_cleanup() {
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
    PIDS=()
    if [[ -n "${WORK:-}" ]]; then
        rm -rf "$WORK"
    fi
}

# bench_init: checks the tools, makes WORK, installs the traps.
bench_init() {
    local tool
    for tool in curl jq; do
        command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
    done
    WORK="$(mktemp -d)"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# need_bins NAME...: every binary must be in BIN.
need_bins() {
    local bin
    for bin in "$@"; do
        [[ -x "$BIN/$bin" ]] || die "$BIN/$bin is missing (build with: cargo build --release -p superx -p superx-bench)"
    done
}

# port_free HOST:PORT: fails if something listens there.
port_free() {
    ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# wait_ready URL SECONDS PID NAME LOG: polls URL until it answers 200, failing
# early if PID dies or the deadline passes.
wait_ready() {
    local url="$1" limit="$2" pid="$3" name="$4" log="$5"
    local deadline=$((SECONDS + limit))
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" == 200 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            die "$name exited before $url answered 200"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$log" >&2 || true
            die "$name: $url did not answer 200 within ${limit}s"
        fi
        sleep 0.05
    done
}

# start_echo ADDR WORKERS: starts the bench echo agent; sets ECHO_PID.
start_echo() {
    local addr="$1" workers="$2"
    port_free "$addr" || die "$addr is already in use"
    "$BIN/superx-echo-agent" --listen "$addr" --workers "$workers" >"$WORK/echo.log" 2>&1 &
    ECHO_PID=$!
    PIDS+=("$ECHO_PID")
    wait_ready "http://$addr/.well-known/agent-card.json" 10 "$ECHO_PID" "echo agent" "$WORK/echo.log"
    printf 'agents:\n  echo:\n    url: http://%s/\n    maxInFlight: 4096\n' "$addr" >"$WORK/agents.yaml"
}

# start_node ID API RAFT PEERS NAME: starts one superx node with its data in
# $WORK/NAME and its log in $WORK/NAME.log; sets NODE_PID. PEERS empty starts a
# single-node cluster.
start_node() {
    local id="$1" api="$2" raft="$3" peers="$4" name="$5"
    local args=(serve --node-id "$id" --listen "$api" --raft-listen "$raft"
        --data-dir "$WORK/$name" --agents-file "$WORK/agents.yaml")
    if [[ -n "$peers" ]]; then
        args+=(--peers "$peers")
    fi
    port_free "$api" || die "$api is already in use"
    port_free "$raft" || die "$raft is already in use"
    mkdir -p "$WORK/$name"
    "$BIN/superx" "${args[@]}" >>"$WORK/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
}

# cluster_status API: the node's cluster/status result (JSON), or nothing.
cluster_status() {
    curl -s --max-time 2 -H 'Content-Type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"cluster/status"}' "http://$1/rpc" 2>/dev/null |
        jq -c '.result // empty' 2>/dev/null || true
}

# wait_voters API COUNT SECONDS: until the node reports COUNT voters and a leader.
wait_voters() {
    local api="$1" count="$2" limit="$3" status=""
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        status="$(cluster_status "$api")"
        if [[ -n "$status" ]] &&
            jq -e --argjson n "$count" '(.voters | length) == $n and .leader != null' <<<"$status" >/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$api did not report $count voters within ${limit}s (last status: ${status:-none})"
}

# smoke URL: one SendMessage that must echo.
smoke() {
    local url="$1" answer
    answer="$(curl -s --max-time 10 -H 'content-type: application/json' -H 'A2A-Version: 1.0' \
        -d '{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"smoke-'"$RANDOM$RANDOM"'","role":"ROLE_USER","parts":[{"text":"smoke"}]}}}' \
        "$url" || true)"
    jq -e '.result.task.artifacts[0].parts[0].text == "smoke"' <<<"$answer" >/dev/null 2>&1 ||
        die "SendMessage through $url did not echo; got: ${answer:0:400}"
}

# start_cluster PORT_BASE: three nodes, node i on 127.0.0.i with API port
# PORT_BASE+i and raft port PORT_BASE+100+i (data and log: $WORK/ni); waits for
# 3 voters and a working write on every node. Sets NODE_API and NODE_PIDS (arrays).
start_cluster() {
    local base="$1" i peers="" api raft
    local hosts=(127.0.0.1 127.0.0.2 127.0.0.3)
    NODE_API=()
    NODE_PIDS=()
    for i in 1 2 3; do
        peers+="${peers:+,}$i=${hosts[i - 1]}:$((base + 100 + i))@${hosts[i - 1]}:$((base + i))"
    done
    for i in 1 2 3; do
        api="${hosts[i - 1]}:$((base + i))"
        raft="${hosts[i - 1]}:$((base + 100 + i))"
        start_node "$i" "$api" "$raft" "$peers" "n$i"
        NODE_API+=("$api")
        NODE_PIDS+=("$NODE_PID")
    done
    for i in 1 2 3; do
        wait_ready "http://${NODE_API[i - 1]}/ready" 60 "${NODE_PIDS[i - 1]}" "node $i" "$WORK/n$i.log"
    done
    wait_voters "${NODE_API[0]}" 3 60
    for i in 1 2 3; do
        smoke "http://${NODE_API[i - 1]}/agents/echo"
    done
}

# raise_nofile N: raises the open-files limit to N (or the hard limit).
raise_nofile() {
    local want="$1" hard
    hard="$(ulimit -Hn)"
    if [[ "$hard" != unlimited ]] && ((hard < want)); then
        want="$hard"
    fi
    ulimit -n "$want" 2>/dev/null || true
}
