#!/usr/bin/env bash
# Architecture checks anyone can run (CI runs them from .ci/run):
#   bash scripts/check-arch.sh
# 1. crate graph (`cargo tree`): the crates follow the trust boundaries. vigil-watchdog links
#    neither vigil-executor nor vigil-gate; vigil-gate links neither vigil-executor nor
#    vigil-protocol (it never sees a signed request); vigil-executor links neither
#    vigil-watchdog nor vigil-gate; of the crates under shared/, vigil-shared links no other
#    vigil-* crate and vigil-docker and vigil-protocol link only vigil-shared (no sibling);
# 2. unused dependencies: every dependency a member crate declares is named in its sources;
# 3. pure modules: the watchdog's decision modules import no I/O crate;
# 4. file size: no source file over 800 lines before its `#[cfg(test)]` module;
# 5. the repository explains itself: no file cites a design document it does not contain;
# 6. label names: every `vigil.*` label name is spelled out as a string in one file only;
# 7. module layers: no two source files of a crate import each other, directly or round a
#    circle (scripts/module-cycles.pl, over `use crate::`/`super::` paths).
# Needs only cargo, grep, awk and perl. Exits non-zero on the first failing check group.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
status=0
fail() { echo "check-arch: FAIL: $*" >&2; status=1; }
ok() { echo "check-arch: ok: $*"; }

# --- 1. crate graph ----------------------------------------------------------------------------
deps_of() { cargo tree --locked -e normal -p "$1" --prefix none --format '{p}' | awk '{print $1}' | sort -u; }
# forbid CRATE DEP...: CRATE links none of DEP (directly or through another crate).
forbid() {
  local crate="$1" deps dep; shift
  deps="$(deps_of "$crate")"
  for dep in "$@"; do
    if grep -qx "$dep" <<<"$deps"; then
      fail "$crate depends on $dep"
    fi
  done
  graph+="${graph:+, }$crate -> {$(grep '^vigil-' <<<"$deps" | grep -vx "$crate" | paste -sd' ' || true)}"
}
graph=""
forbid vigil-shared vigil-docker vigil-protocol vigil-watchdog vigil-executor vigil-gate
forbid vigil-docker vigil-protocol vigil-watchdog vigil-executor vigil-gate
forbid vigil-protocol vigil-docker vigil-watchdog vigil-executor vigil-gate
forbid vigil-gate vigil-protocol vigil-watchdog vigil-executor
forbid vigil-watchdog vigil-executor vigil-gate
forbid vigil-executor vigil-watchdog vigil-gate
[[ $status -eq 0 ]] && ok "crate graph: $graph"

# --- 2. unused dependencies --------------------------------------------------------------------
# A dependency is used when its crate name (dashes as underscores) appears as a path or `use`
# in the package's sources (src/, tests/, benches/, build.rs).
for manifest in shared/core/Cargo.toml shared/docker/Cargo.toml shared/protocol/Cargo.toml \
  watchdog/Cargo.toml executor/Cargo.toml gate/Cargo.toml tests/Cargo.toml bench/Cargo.toml; do
  dir="$(dirname "$manifest")"
  deps="$(awk '
    /^\[/ { section = $0; next }
    section ~ /^\[(dev-|build-)?dependencies\]$/ && /^[A-Za-z0-9_-]+[ .=]/ {
      name = $1; sub(/[.=].*/, "", name); print name
    }' "$manifest" | sort -u)"
  for dep in $deps; do
    ident="${dep//-/_}"
    if ! grep -rqE "(^|[^:A-Za-z0-9_])${ident}::|use ${ident}( |;|::)|extern crate ${ident}" \
      "$dir" --include='*.rs'; then
      fail "$manifest declares $dep but its sources never use it"
    fi
  done
done
[[ $status -eq 0 ]] && ok "unused dependencies: none"

# --- 3. pure modules ---------------------------------------------------------------------------
pure=(watchdog/src/decide.rs watchdog/src/plan.rs watchdog/src/signals.rs
  watchdog/src/change.rs watchdog/src/evaluate watchdog/src/engine/core.rs
  watchdog/src/incident/mod.rs executor/src/policy.rs
  executor/src/verify.rs)
io='(^|[^A-Za-z0-9_])(tokio|redis|hyper|hyper_util|hyperlocal|ureq|teloxide|reqwest)::|std::(fs|net|process)\b|use (tokio|redis|hyper|ureq|teloxide)\b'
for path in "${pure[@]}"; do
  [[ -e "$path" ]] || { fail "pure module $path does not exist (update this list)"; continue; }
  if hits="$(grep -rnE "$io" "$path" --include='*.rs')"; then
    fail "pure module $path imports I/O:"$'\n'"$hits"
  fi
done
ok "pure modules: ${#pure[@]} checked"

# --- 4. file size ------------------------------------------------------------------------------
# Test code (tests/, tests.rs, `#[cfg(test)]` modules) does not count. No exceptions.
while read -r file; do
  lines="$(awk '/^#\[cfg\(test\)\]/ { exit } { n++ } END { print n + 0 }' "$file")"
  if (( lines > 800 )); then
    fail "$file has $lines lines outside its tests (limit 800)"
  fi
done < <(git ls-files '*.rs' | grep -vE '^(tests|fuzz)/|/tests\.rs$|/tests/')
ok "file size: checked"

# --- 5. no citation of a document the repository does not hold ---------------------------------
# The name is assembled so that this script does not cite it itself.
outside_doc="DESIGN"'[.]md'
if hits="$(git grep -n "$outside_doc" -- .)"; then
  fail "files cite a design document the repository does not hold (use docs/architecture.md or docs/protocol.md):"$'\n'"$hits"
fi

# --- 6. label names are defined once -----------------------------------------------------------
# Every container label Vigil reads (`vigil.remediate`, `vigil.protected`, ...) is a constant in
# shared/docker/src/labels.rs; the test-marker labels (`vigil.test*`, `vigil.run`,
# `vigil.bench*`) are constants in tests/src/docker.rs. Every other Rust file uses the
# constants. Fails on a code line (comments do not count) of any other file that
#  a. holds a string literal starting with `vigil.` and a name, or
#  b. spells out, anywhere, a label name labels.rs defines (in a message, a format string, ...).
# Two strings that look alike but are not labels are allowed by exact value: the webhook's
# schema name `vigil.notification` and the status page's `vigil.status/v1`.
label_homes=(shared/docker/src/labels.rs tests/src/docker.rs)
not_labels='"vigil[.](notification|status/v1)"'
product_labels="$(grep -oE '^pub const [A-Z_]+: &str = "vigil[.][^"]+"' shared/docker/src/labels.rs |
  sed -E 's/.*"(vigil[.][^"]+)"/\1/; s/[.]/[.]/g' | paste -sd'|')"
[[ -n "$product_labels" ]] || fail "found no label constants in shared/docker/src/labels.rs"
code_lines() {
  git ls-files '*.rs' | grep -vxF -f <(printf '%s\n' "${label_homes[@]}") |
    xargs grep -nE "$1" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true
}
hits="$(code_lines '"vigil[.][A-Za-z_]' | grep -vE "$not_labels" || true)"
hits+="${hits:+$'\n'}$(code_lines "(^|[^A-Za-z0-9_.])($product_labels)([^A-Za-z0-9_]|$)")"
if [[ -n "$hits" ]]; then
  fail "label names spelled out outside ${label_homes[*]} (use the constants):"$'\n'"$hits"
else
  ok "label names: defined in ${label_homes[*]} only"
fi

# --- 7. no module cycles ----------------------------------------------------------------------
# The files of each crate form layers: a file never imports, directly or through others, a file
# that imports it. Importing an item through a `mod.rs` re-export counts as importing the
# `mod.rs`. Declaring a child module is not an import; test modules do not count.
for crate_src in watchdog/src executor/src shared/core/src shared/docker/src shared/protocol/src \
  gate/src; do
  if ! cycles="$(perl scripts/module-cycles.pl "$crate_src")"; then
    fail "module cycle (move the shared item to a lower file, or import it from its owner):"$'\n'"$cycles"
  fi
done
[[ $status -eq 0 ]] && ok "module layers: no cycle in watchdog, executor, shared/*, gate"

exit "$status"
