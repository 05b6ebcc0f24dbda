#!/usr/bin/env bash
# The test command of the project:  bash tests/run.sh [extra pytest args]
#
# Works on a fresh machine, non-interactively: makes the Python venv for the end-to-end
# tests (.venv, pinned packages) if it is missing or stale, installs the system packages the
# tests need (dnsmasq, nftables, PostgreSQL) when missing, starts a throwaway PostgreSQL
# server for the tests (tests/postgres.sh; stopped on exit) unless DATABASE_URL is given, in
# which case that server is used instead, builds the workspace (debug), runs the Rust tests
# (cargo nextest, or cargo test when nextest is absent), then runs the end-to-end tests in
# tests/e2e against target/debug/superx with real A2A SDK agents.
# The deployment files are validated first (tests/deploy/validate.sh), and the container
# tests (tests/deploy/containers.py: the image from the debug binaries, 3 nodes on a Docker
# network under kills, a partition, a full restart and scaling) run in the background beside
# the Rust and end-to-end tests; their log is printed at the end. They need a Docker engine
# (no registry, no base image). Exits non-zero if any step fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

# Python packages of the end-to-end tests. Changing a pin here re-installs on the next run.
PY_PINS=(
  "a2a-sdk[http-server]==1.3.0"
  "uvicorn==0.54.0"
  "pytest==9.2.0"
  "httpx==0.28.1"
  "prometheus-client==0.26.0"
)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n==> %s\n' "$*"; }

# ensure_postgres_packages, start_test_postgres
source "$ROOT/tests/postgres.sh"

venv_is_current() {
  [ -x "$PY" ] || return 1
  "$PY" - "${PY_PINS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, want = pin.split('==')
    name = name.split('[')[0]
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if have != want:
        sys.exit(1)
EOF
}

ensure_venv() {
  if venv_is_current; then
    echo "reusing $VENV"
    return
  fi
  if [ ! -x "$PY" ]; then
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || { echo "error: $python not found (need Python >= 3.10)" >&2; exit 1; }
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
      || { echo "error: $python is older than 3.10 (a2a-sdk needs >= 3.10)" >&2; exit 1; }
    echo "creating $VENV"
    "$python" -m venv "$VENV" || {
      echo "error: '$python -m venv' failed; install the venv module (e.g. apt-get install python3-venv)" >&2
      exit 1
    }
  fi
  echo "installing ${PY_PINS[*]}"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet "${PY_PINS[@]}"
  venv_is_current || { echo "error: $VENV does not have the pinned packages after install" >&2; exit 1; }
}

# System tools the tests start: dnsmasq (a real DNS server for the dns strategy tests), nft
# (network partitions on loopback) and chromium (the dashboard test drives it headless over
# its DevTools pipe). Installed only when missing.
SYSTEM_PACKAGES=(
  "dnsmasq:dnsmasq-base"
  "nft:nftables"
  "chromium:chromium"
)

ensure_system_packages() {
  local missing=() entry cmd pkg
  for entry in "${SYSTEM_PACKAGES[@]}"; do
    cmd="${entry%%:*}"
    pkg="${entry#*:}"
    if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ]; then
      echo "found $cmd"
    else
      missing+=("$pkg")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return
  echo "installing ${missing[*]} (apt-get) for the cluster integration tests"
  command -v apt-get >/dev/null || { echo "error: apt-get not found; install ${missing[*]} by hand" >&2; exit 1; }
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

step "python venv"
ensure_venv

step "system packages"
ensure_system_packages

step "postgres"
ensure_postgres_packages
start_test_postgres

step "deployment files (tests/deploy/validate.sh)"
PY="$PY" bash tests/deploy/validate.sh

step "cargo build --workspace"
cargo build --workspace

# The container tests take a few minutes, mostly waiting on the cluster: they run beside the
# Rust tests. Stopped (and their containers removed) if this script exits first.
step "container tests (tests/deploy/containers.py) started in the background"
command -v docker >/dev/null && docker info >/dev/null 2>&1 \
  || { echo "error: the container tests need a running Docker engine (docker info failed)" >&2; exit 1; }
CONTAINERS_LOG="$(mktemp -t superx-containers.XXXXXX.log)"
"$PY" -u tests/deploy/containers.py \
  --superx-bin "${CARGO_TARGET_DIR:-target}/debug/superx" \
  --echo-bin "${CARGO_TARGET_DIR:-target}/debug/superx-echo-agent" >"$CONTAINERS_LOG" 2>&1 &
CONTAINERS_PID=$!
echo "pid $CONTAINERS_PID, log $CONTAINERS_LOG"
stop_container_tests() {
  if [ -n "${CONTAINERS_PID:-}" ] && kill -0 "$CONTAINERS_PID" 2>/dev/null; then
    kill -TERM "$CONTAINERS_PID" 2>/dev/null || true
    wait "$CONTAINERS_PID" 2>/dev/null || true
    cat "$CONTAINERS_LOG"
  fi
}
# Composed with the EXIT trap already set (the test Postgres's); in a function so `set --`
# does not touch this script's arguments.
add_exit_trap() {
  local command="$1" previous
  previous="$(trap -p EXIT)"
  if [ -n "$previous" ]; then
    eval "set -- $previous"  # -> trap -- 'command' EXIT
    # shellcheck disable=SC2064
    trap "$command; $3" EXIT
  else
    trap "$command" EXIT
  fi
}
add_exit_trap stop_container_tests

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-tests=warn
else
  echo "(cargo-nextest not installed; using cargo test)"
  cargo test --workspace
fi

step "end-to-end tests (tests/e2e)"
export SUPERX_BIN="${SUPERX_BIN:-${CARGO_TARGET_DIR:-target}/debug/superx}"
# Files the tests leave for people to look at (the dashboard's screenshot, ui.png).
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export SUPERX_TEST_ARTIFACTS="${SUPERX_TEST_ARTIFACTS:-$TARGET_DIR/test-artifacts}"
unset SUPERX_E2E_DIRECT
"$PY" -m pytest tests/e2e -p no:cacheprovider -q "$@"
echo "test artifacts: $SUPERX_TEST_ARTIFACTS"

step "container tests (tests/deploy/containers.py)"
containers_status=0
wait "$CONTAINERS_PID" || containers_status=$?
CONTAINERS_PID=""
cat "$CONTAINERS_LOG"
[ "$containers_status" -eq 0 ] || { echo "error: the container tests failed ($containers_status)" >&2; exit 1; }
