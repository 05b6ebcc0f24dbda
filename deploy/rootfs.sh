#!/usr/bin/env bash
# Lays out the root filesystem of the superx image from binaries built on this machine:
#   deploy/rootfs.sh [--out DIR] SUPERX_BINARY [MORE_BINARIES...]
# DIR/root is the image's tree: each binary in /usr/local/bin/ with every shared library `ldd`
# names (and the dynamic loader) at its own path, /etc/passwd and /etc/group with the
# `superx` user (uid/gid 10001), /etc/nsswitch.conf and the CA bundle (for https agents).
# DIR/data is the initial /data, copied apart so that the directory itself belongs to 10001.
# No shell, no package manager: `FROM scratch` + this directory is the whole image.
# deploy/Dockerfile's `prebuilt` target copies DIR (default deploy/.rootfs); its source build
# runs this same script inside the Rust build stage.
set -euo pipefail

out="$(dirname "${BASH_SOURCE[0]}")/.rootfs"
if [ "${1:-}" = "--out" ]; then
  out="$2"
  shift 2
fi
[ "$#" -ge 1 ] || { echo "usage: $0 [--out DIR] SUPERX_BINARY [MORE_BINARIES...]" >&2; exit 2; }

rm -rf "$out"
data="$out/data"
out="$out/root"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$data"

copy_with_parents() {
  local src="$1"
  mkdir -p "$out$(dirname "$src")"
  cp -L "$src" "$out$src"
}

for bin in "$@"; do
  [ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }
  # Debug info is for debuggers, not for the image (a debug build's binary is mostly that).
  if command -v strip >/dev/null; then
    strip --strip-debug -o "$out/usr/local/bin/$(basename "$bin")" "$bin"
  else
    cp -L "$bin" "$out/usr/local/bin/$(basename "$bin")"
  fi
  # Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or, for the
  # loader, "/lib64/ld-linux-x86-64.so.2 (0x...)". A static binary has none.
  while read -r lib; do
    if [ -n "$lib" ] && [ ! -e "$out$lib" ]; then copy_with_parents "$lib"; fi
  done < <(ldd "$bin" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}')
done

cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
superx:x:10001:10001:superx:/data:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
superx:x:10001:
GROUP
# /etc/hosts first (the container's own name), then DNS (compose services, Services).
echo "hosts: files dns" >"$out/etc/nsswitch.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
fi
# A named volume mounted on /data starts as a copy of it, owner included.
touch "$data/.superx-image"
echo "rootfs in $(dirname "$out"): $(du -sh "$out" | cut -f1)"
