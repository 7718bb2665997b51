#!/usr/bin/env bash
# Vigil's benchmark, the documented command (README "Performance"):
#   bash scripts/bench.sh [--quick] [--incidents N]
# It prepares the machine (scripts/setup-test.sh: redis-server, the offline test image), builds
# the release binaries it measures (vigil-watchdog, vigil-executor) and the benchmark driver,
# then runs the driver, which drives the real Docker engine and a real redis-server and prints
# one markdown table (measurement, value, target, met or not) on stdout.
# Progress goes to stderr. Everything it starts (containers labelled vigil.bench=<run id>, the
# daemons, redis-server) is removed when it ends, also on Ctrl-C.
# The full run takes about 20 minutes on a 2-core machine (it starts 1,000 containers); --quick
# is a short smoke run (about 3 minutes once built).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

log() { echo "bench.sh: $*" >&2; }

bash scripts/setup-test.sh

log "building release binaries (vigil-watchdog, vigil-executor, vigil-bench)"
cargo build --release --locked -p vigil-watchdog -p vigil-executor -p vigil-bench

target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
log "running the benchmark"
exec "$target_dir/release/vigil-bench" --bin-dir "$target_dir/release" "$@"
