#!/usr/bin/env bash
# Lays out a Postgres image's root filesystem from this machine's Debian PostgreSQL packages,
# for machines without a registry (where `postgres:16` cannot be pulled):
#   deploy/postgres/rootfs.sh [--out DIR]      (default deploy/postgres/.rootfs)
# The data directory is initialized here (initdb, as a non-root user), so the image needs no
# shell: it only runs `postgres`. Database `superx`, owner `superx`, password `superx`
# (an example for compose and the container tests; not for production), password login from
# any address. Installs Debian's `postgresql` with apt-get when no initdb is found.
# Then: docker build -f deploy/postgres/Dockerfile -t superx-postgres deploy/postgres
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/.rootfs"
if [ "${1:-}" = "--out" ]; then
  out="$2"
  shift 2
fi
PASSWORD="${SUPERX_POSTGRES_PASSWORD:-superx}"

source "$here/../../tests/postgres.sh"   # ensure_postgres_packages, SUPERX_PG_BIN
ensure_postgres_packages >/dev/null
bin="$SUPERX_PG_BIN"                      # /usr/lib/postgresql/N/bin
major="$(basename "$(dirname "$bin")")"

rm -rf "$out"
mkdir -p "$out/var/lib/postgresql" "$out/etc" "$out/tmp"
chmod 1777 "$out/tmp"

copy_with_parents() {
  mkdir -p "$out$(dirname "$1")"
  cp -L "$1" "$out$1"
}
copy_libs_of() {
  local lib
  while read -r lib; do
    if [ -n "$lib" ] && [ ! -e "$out$lib" ]; then copy_with_parents "$lib"; fi
  done < <(ldd "$1" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}')
}

# The server, the health check and a client for inspection (docker exec ... psql), on the
# default PATH through symlinks (postgres finds its share dir from its real path), so the
# Dockerfile does not depend on the major version.
mkdir -p "$out/usr/local/bin"
for tool in postgres pg_isready psql; do
  copy_with_parents "$bin/$tool"
  copy_libs_of "$bin/$tool"
  ln -s "$bin/$tool" "$out/usr/local/bin/$tool"
done
# Loadable modules (plpgsql, text search dictionaries...), without the JIT and its bitcode.
mkdir -p "$out/usr/lib/postgresql/$major/lib"
for so in /usr/lib/postgresql/"$major"/lib/*.so; do
  case "$(basename "$so")" in llvmjit*) continue ;; esac
  cp -L "$so" "$out$so"
  copy_libs_of "$so"
done
mkdir -p "$out/usr/share/postgresql"
cp -a "/usr/share/postgresql/$major" "$out/usr/share/postgresql/"
mkdir -p "$out/usr/share/zoneinfo/Etc"
cp -L /usr/share/zoneinfo/Etc/UTC "$out/usr/share/zoneinfo/Etc/UTC"
cp -L /usr/share/zoneinfo/Etc/UTC "$out/usr/share/zoneinfo/UTC"

cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
GROUP
echo "hosts: files dns" >"$out/etc/nsswitch.conf"

# initdb refuses root: run it as an unprivileged user in a scratch directory.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
run=()
if [ "$(id -u)" -eq 0 ]; then
  user="$(_superx_pg_user)"
  chown "$user" "$work"
  run=(runuser -u "$user" --)
fi
printf '%s\n' "$PASSWORD" >"$work/pw"
chmod 644 "$work/pw"
(cd "$work" && "${run[@]}" env TZ=UTC "$bin/initdb" -D "$work/data" -U superx --pwfile="$work/pw" \
  --auth-local=scram-sha-256 --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1) \
  || { cat "$work/initdb.log" >&2; exit 1; }
echo "CREATE DATABASE superx OWNER superx;" \
  | (cd "$work" && "${run[@]}" "$bin/postgres" --single -D "$work/data" -j postgres >"$work/single.log" 2>&1) \
  || { cat "$work/single.log" >&2; exit 1; }
cat >>"$work/data/postgresql.conf" <<'CONF'

# superx-postgres (deploy/postgres/rootfs.sh)
listen_addresses = '*'
unix_socket_directories = '/tmp'
jit = off
shared_buffers = 64MB
max_connections = 100
log_destination = 'stderr'
logging_collector = off
CONF
echo "host all all all scram-sha-256" >>"$work/data/pg_hba.conf"
cp -a "$work/data" "$out/var/lib/postgresql/data"
chmod 700 "$out/var/lib/postgresql/data"
echo "postgres $major rootfs in $out: $(du -sh "$out" | cut -f1)"
