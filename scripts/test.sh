#!/usr/bin/env bash
# The one command that runs Vigil's whole test suite:
#   bash scripts/test.sh [extra args for the test runner]
# It prepares the machine (scripts/setup-test.sh), removes test containers that earlier aborted
# runs left behind, then runs every test of the workspace with cargo-nextest when it is installed
# (plus the doctests, which nextest does not run), or with `cargo test` otherwise. Extra
# arguments replace that selection and go to the runner, e.g.
#   bash scripts/test.sh -p vigil-tests --test infra
# Exits non-zero if anything fails.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { echo "test.sh: $*" >&2; }

# Test containers carry vigil.test=1 and vigil.test.pid=<pid of the test process>. In CI nothing
# else runs on the machine, so every test container is a leftover; on a developer's machine only
# those whose test process is gone (or, lacking a pid label, older than 15 minutes) are, so a
# run never pulls containers out from under another test run in progress.
remove_leftover_test_containers() {
  local now id pid created created_s stale removed=0
  now="$(date +%s)"
  while read -r id pid created; do
    [[ -n "$id" ]] || continue
    stale=0
    if [[ "${CI:-}" == "true" ]]; then
      stale=1
    elif [[ "$pid" =~ ^[0-9]+$ ]]; then
      [[ -d "/proc/$pid" ]] || stale=1
    else
      created_s="$(date -d "$created" +%s 2>/dev/null || echo "$now")"
      if (( now - created_s > 900 )); then stale=1; fi
    fi
    if [[ $stale -eq 1 ]]; then
      docker rm -f -v "$id" >/dev/null 2>&1 || true
      removed=$((removed + 1))
    fi
  done < <(docker ps -aq --filter label=vigil.test=1 \
      | xargs -r docker inspect --format '{{.Id}} {{index .Config.Labels "vigil.test.pid"}} {{.Created}}' 2>/dev/null || true)
  log "removed $removed leftover test container(s)"
}

bash "$REPO_ROOT/scripts/setup-test.sh"
remove_leftover_test_containers
trap remove_leftover_test_containers EXIT

NEXTEST=(cargo nextest run --tool-config-file "vigil:$REPO_ROOT/scripts/nextest.toml" --no-fail-fast)

status=0
if [[ $# -gt 0 ]]; then
  # Extra arguments choose what to run; both runners take `-p <crate> --test <name>`.
  runner=(cargo test --no-fail-fast)
  cargo nextest --version >/dev/null 2>&1 && runner=("${NEXTEST[@]}")
  log "running: ${runner[*]} $*"
  "${runner[@]}" "$@" || status=$?
elif cargo nextest --version >/dev/null 2>&1; then
  # Doctests first: nextest does not run them, and its summary should be the closing line.
  log "running: cargo test --doc --workspace"
  cargo test --doc --workspace || status=$?
  log "running: cargo nextest run --workspace --all-targets --no-fail-fast"
  "${NEXTEST[@]}" --workspace --all-targets || status=$?
else
  log "cargo-nextest not found; running: cargo test --workspace --no-fail-fast"
  cargo test --workspace --no-fail-fast || status=$?
fi

if [[ $status -ne 0 ]]; then
  log "FAILED (exit $status)"
else
  log "all tests passed"
fi
exit "$status"
