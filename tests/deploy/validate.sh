#!/usr/bin/env bash
# Validates the deployment files without a cluster:
#   - every manifest in k8s/ and what `kubectl kustomize k8s` renders pass kubernetes-validate
#     in strict mode (unknown fields rejected) against KUBERNETES_VERSION;
#   - `kubectl kustomize k8s` renders (Debian's kubectl, installed with apt-get if missing);
#   - deploy/compose.yaml passes `docker-compose config` (Compose v1, Debian's), or
#     `docker compose config` where only the plugin exists.
# Usage: bash tests/deploy/validate.sh   (PY: the Python with kubernetes-validate installed
# into it here if missing; tests/run.sh passes its venv's). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PY="${PY:-.venv/bin/python}"
KUBERNETES_VALIDATE_PIN="kubernetes-validate==1.37.0"
# The newest Kubernetes release the pinned kubernetes-validate carries schemas for.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.37.0}"

step() { printf '\n==> %s\n' "$*"; }

apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

step "kubernetes-validate ($KUBERNETES_VALIDATE_PIN)"
if ! "$PY" -c 'import sys; from importlib.metadata import version; sys.exit(version("kubernetes-validate") != sys.argv[1])' \
    "${KUBERNETES_VALIDATE_PIN#*==}" 2>/dev/null; then
  "$PY" -m pip install --quiet "$KUBERNETES_VALIDATE_PIN"
fi
validate() { "$PY" -m kubernetes_validate --strict --kubernetes-version "$KUBERNETES_VERSION" --quiet "$@"; }

manifests=()
for f in k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
validate "${manifests[@]}"
echo "ok: ${#manifests[@]} manifests pass strict validation for Kubernetes $KUBERNETES_VERSION"

step "kubectl kustomize k8s"
command -v kubectl >/dev/null || { echo "installing kubectl (apt-get)"; apt_install kubectl; }
rendered="$(mktemp --suffix=.yaml)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize k8s >"$rendered"
validate "$rendered"
kinds="$(grep -c '^kind:' "$rendered")"
echo "ok: kustomize renders $kinds objects, all pass strict validation"
# What the kustomization computes must be there: bootstrap_expect and voters_max from replicas.
replicas="$(awk '/^kind: StatefulSet/{s=1} s && /^  replicas:/{print $2; exit}' "$rendered")"
for var in SUPERX_CLUSTER__BOOTSTRAP_EXPECT SUPERX_RAFT__VOTERS_MAX; do
  got="$(grep -A1 "name: $var\$" "$rendered" | awk '/value:/{gsub(/"/, "", $2); print $2}')"
  [ "$got" = "$replicas" ] || { echo "error: $var is '$got', not the replica count $replicas" >&2; exit 1; }
done
echo "ok: bootstrap_expect and voters_max follow replicas ($replicas)"

step "compose config (deploy/compose.yaml)"
if command -v docker-compose >/dev/null; then
  compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "installing docker-compose (apt-get)"
  apt_install docker-compose
  compose=(docker-compose)
fi
# The file insists on a cluster secret; any value of the right length does for `config`.
SUPERX_CLUSTER_SECRET=validate-only-secret-of-at-least-32-bytes \
  "${compose[@]}" -f deploy/compose.yaml config --quiet
if "${compose[@]}" -f deploy/compose.yaml config --quiet 2>/dev/null; then
  echo "deploy/compose.yaml starts without SUPERX_CLUSTER_SECRET" >&2
  exit 1
fi
echo "ok: ${compose[*]} config accepts deploy/compose.yaml"
