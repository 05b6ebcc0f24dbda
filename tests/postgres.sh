# A throwaway PostgreSQL server for the tests. Sourced by tests/run.sh (bash, with
# `set -euo pipefail` active in the caller); defines functions only.
#
#   ensure_postgres_packages   installs Debian's `postgresql` when no initdb is found under
#                              /usr/lib/postgresql/*/bin; exports SUPERX_PG_BIN (the newest
#                              version's bin dir).
#   start_test_postgres        exports SUPERX_TEST_DATABASE_URL, the admin URL of a server the
#                              tests create their own databases on: DATABASE_URL when given
#                              (nothing is started), else a private server in a temp dir on a
#                              free loopback port, stopped and removed when the shell exits.
#                              Unsets DATABASE_URL: the tests decide which nodes get a database.
#
# Postgres refuses to run as root: as root the server runs as the `postgres` user, or as a
# system user `superx-pg` created for it when `postgres` does not exist.

# The newest /usr/lib/postgresql/<version>/bin holding initdb, or nothing.
_superx_pg_find_bin() {
  local dir newest=""
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
    [ -x "$dir/initdb" ] && newest="$dir"
  done
  printf '%s' "$newest"
}

ensure_postgres_packages() {
  local bin
  bin="$(_superx_pg_find_bin)"
  if [ -z "$bin" ]; then
    echo "installing postgresql (apt-get) for the database tests"
    command -v apt-get >/dev/null || { echo "error: apt-get not found; install PostgreSQL by hand" >&2; exit 1; }
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
    bin="$(_superx_pg_find_bin)"
    [ -n "$bin" ] || { echo "error: no initdb under /usr/lib/postgresql/*/bin after installing postgresql" >&2; exit 1; }
  fi
  export SUPERX_PG_BIN="$bin"
  echo "found PostgreSQL binaries in $SUPERX_PG_BIN"
}

# State of the server start_test_postgres started, for the cleanup.
_SUPERX_PG_DIR=""
_SUPERX_PG_RUN=()

# The user the server runs as when we are root: `postgres`, else `superx-pg` (created).
_superx_pg_user() {
  if id -u postgres >/dev/null 2>&1; then
    printf 'postgres'
    return
  fi
  if ! id -u superx-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin superx-pg >&2 \
      || id -u superx-pg >/dev/null 2>&1 \
      || { echo "error: could not create the system user superx-pg for PostgreSQL" >&2; return 1; }
  fi
  printf 'superx-pg'
}

_superx_pg_free_port() {
  "${PYTHON:-python3}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

_superx_pg_cleanup() {
  [ -n "$_SUPERX_PG_DIR" ] || return 0
  if [ -f "$_SUPERX_PG_DIR/data/postmaster.pid" ]; then
    (cd "$_SUPERX_PG_DIR" && "${_SUPERX_PG_RUN[@]}" "$SUPERX_PG_BIN/pg_ctl" stop -D "$_SUPERX_PG_DIR/data" -m fast -w) \
      >/dev/null 2>&1 || true
  fi
  rm -rf "$_SUPERX_PG_DIR" || true
  _SUPERX_PG_DIR=""
}

start_test_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    export SUPERX_TEST_DATABASE_URL="$DATABASE_URL"
    unset DATABASE_URL
    echo "PostgreSQL: using DATABASE_URL (nothing started)"
    return
  fi
  if [ -z "${SUPERX_PG_BIN:-}" ]; then
    SUPERX_PG_BIN="$(_superx_pg_find_bin)"
    [ -n "$SUPERX_PG_BIN" ] || { echo "error: PostgreSQL not found (run ensure_postgres_packages)" >&2; exit 1; }
    export SUPERX_PG_BIN
  fi

  local dir user port attempt started=""
  dir="$(mktemp -d "${TMPDIR:-/tmp}/superx-pg.XXXXXX")"
  _SUPERX_PG_RUN=()
  if [ "$(id -u)" -eq 0 ]; then
    user="$(_superx_pg_user)" || exit 1
    _SUPERX_PG_RUN=(runuser -u "$user" --)
    chown "$user:" "$dir"
  fi
  # Registered before anything starts, composed with an existing EXIT trap.
  _SUPERX_PG_DIR="$dir"
  local previous=""
  previous="$(trap -p EXIT)"
  if [ -n "$previous" ]; then
    eval "set -- $previous"  # -> trap -- 'command' EXIT
    # shellcheck disable=SC2064
    trap "_superx_pg_cleanup; $3" EXIT
  else
    trap _superx_pg_cleanup EXIT
  fi

  (cd "$dir" && "${_SUPERX_PG_RUN[@]}" "$SUPERX_PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust \
    --no-sync --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1) || {
    echo "error: initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    exit 1
  }
  cat >>"$dir/data/postgresql.conf" <<EOF

# tests/postgres.sh: a throwaway server for the tests
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF

  # The port was free a moment ago; another process may take it first, so retry.
  for attempt in 1 2 3; do
    port="$(_superx_pg_free_port)"
    if (cd "$dir" && "${_SUPERX_PG_RUN[@]}" "$SUPERX_PG_BIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" \
      -o "-p $port" -w -t 60) >/dev/null 2>&1; then
      started=1
      break
    fi
  done
  [ -n "$started" ] || {
    echo "error: PostgreSQL did not start; its log:" >&2
    tail -n 40 "$dir/postgres.log" >&2 || true
    exit 1
  }

  export SUPERX_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  unset DATABASE_URL
  echo "PostgreSQL runs at $SUPERX_TEST_DATABASE_URL (binaries $SUPERX_PG_BIN, data $dir${user:+, user $user}; stopped on exit)"
}
