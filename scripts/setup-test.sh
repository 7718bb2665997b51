#!/usr/bin/env bash
# Prepares this machine for Vigil's test suite. Idempotent and non-interactive: it installs only
# what is missing (Debian packages: redis-server, busybox-static, procps, chromium for the status
# page tests, prometheus for promtool), runs `apt-get update`
# only when something must be installed, builds the offline test image when it is missing or
# stale, and fails loudly when the Docker engine does not answer. Runs as root, or through sudo.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(redis-server busybox-static procps chromium prometheus)

log() { echo "setup-test: $*" >&2; }
die() { echo "setup-test: ERROR: $*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
  else
    die "not root and sudo is not installed: cannot run '$*'"
  fi
}

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

command -v dpkg-query >/dev/null 2>&1 || die "this script expects a Debian-based machine (dpkg-query not found)"

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
else
  log "packages present: ${PACKAGES[*]}"
fi

command -v redis-server >/dev/null 2>&1 || die "redis-server is not on PATH after installing redis-server"
command -v chromium >/dev/null 2>&1 || die "chromium is not on PATH after installing chromium (the status page tests need it)"
command -v promtool >/dev/null 2>&1 || die "promtool is not on PATH after installing prometheus (the rules tests need it)"
# The package starts a system-wide redis on 6379; tests start their own on free ports, so a
# running system instance is harmless and left alone.

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed; the tests need the Docker engine"
if ! docker_out="$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>&1)"; then
  die "the Docker engine does not answer (is dockerd running, is /var/run/docker.sock reachable?): $docker_out"
fi
log "docker engine: $docker_out"

bash "$REPO_ROOT/scripts/build-test-image.sh"
log "ready"
