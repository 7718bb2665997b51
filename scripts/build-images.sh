#!/usr/bin/env bash
# Builds Vigil's container images without any registry: no base image is pulled. Each image is a
# root filesystem assembled here (the binaries, exactly the shared libraries `ldd` says they load,
# the dynamic loader, /etc/passwd and /etc/group with the non-root users, CA certificates) and
# turned into an image with `docker import`, so it is "FROM scratch" plus what is listed below.
#
#   bash scripts/build-images.sh [--profile release|dev] [--tag TAG] [--test-images] [--no-cargo]
#
# Images (TAG defaults to `local`):
#   vigil/executor:TAG   vigil-executor only (its healthcheck is `vigil-executor healthcheck`)
#   vigil/gate:TAG       vigil-gate only (its healthcheck is `vigil-gate probe` on its socket)
#   vigil/watchdog:TAG   vigil-watchdog only (its healthcheck is `vigil-watchdog healthcheck`;
#                        `vigil-watchdog docker-get PATH` shows what it sees through the gate)
#   vigil/redis:TAG      redis-server and redis-cli from Debian's redis-server package
#   vigil/test-app:TAG   (--test-images) static busybox with a fake Telegram Bot API CGI script,
#                        for the deployment test only
#
# --profile dev builds with the debug profile and reuses the binaries the test suite already
# built in target/debug (a release build takes minutes on 2 cores); CI uses it. Release is the
# default for real deployments. --no-cargo packages the binaries already in the target dir.
#
# Idempotent: each image carries vigil.image.hash=<sha256 of its root filesystem>; an image whose
# hash did not change is not re-imported. Users: watchdog 10001, executor 10002, gate 10003 (group
# vigil 10000), redis 10004 (group redis 10004). A user with a registry can instead build
# compose/images/Dockerfile.registry (see docs/deploy.md).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE=release
TAG=local
TEST_IMAGES=0
RUN_CARGO=1

die() { echo "build-images: $*" >&2; exit 1; }
log() { echo "build-images: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --tag=*) TAG="${1#*=}"; shift ;;
    --test-images) TEST_IMAGES=1; shift ;;
    --no-cargo) RUN_CARGO=0; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "$PROFILE" in
  release) PROFILE_DIR=release ;;
  dev|debug) PROFILE=dev; PROFILE_DIR=debug ;;
  *) die "--profile must be release or dev" ;;
esac
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag: $TAG"

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
command -v ldd >/dev/null 2>&1 || die "ldd is not installed"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$REPO_ROOT/$TARGET_DIR"
BIN_DIR="$TARGET_DIR/$PROFILE_DIR"

# One concurrent build per machine: parallel test processes wait for each other.
exec 9>"${TMPDIR:-/tmp}/vigil-build-images.lock"
flock 9

if [[ $RUN_CARGO -eq 1 ]]; then
  # One package per invocation, as the test helpers build them, so features unify the same way
  # and nothing already built is rebuilt.
  (cd "$REPO_ROOT" && cargo build --locked --profile "$PROFILE" -p vigil-watchdog --bin vigil-watchdog)
  (cd "$REPO_ROOT" && cargo build --locked --profile "$PROFILE" -p vigil-executor --bin vigil-executor)
  (cd "$REPO_ROOT" && cargo build --locked --profile "$PROFILE" -p vigil-gate --bin vigil-gate)
fi
for bin in vigil-watchdog vigil-executor vigil-gate; do
  [[ -x "$BIN_DIR/$bin" ]] || die "$BIN_DIR/$bin is missing (build it, or drop --no-cargo)"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The shared libraries and loader a dynamic binary needs, one absolute path per line.
needed_libs() {
  local out
  if ! out="$(ldd "$1" 2>&1)"; then
    # "not a dynamic executable": a static binary needs nothing.
    return 0
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
}

# add_binary ROOT SOURCE DEST: the binary at DEST, its libraries at their own paths.
add_binary() {
  local root="$1" src="$2" dest="$3" lib
  install -D -m 0755 "$src" "$root$dest"
  while read -r lib; do
    [[ -n "$lib" ]] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    chmod 0755 "$root$lib"
  done < <(needed_libs "$src")
}

# new_root ROOT: the directories and files every image has.
new_root() {
  local root="$1"
  mkdir -p "$root"/{etc,tmp,usr/local/bin,run,var/lib,data}
  chmod 1777 "$root/tmp"
  cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/nonexistent:/sbin/nologin
vigil-watchdog:x:10001:10000:Vigil watchdog:/nonexistent:/sbin/nologin
vigil-executor:x:10002:10000:Vigil executor:/nonexistent:/sbin/nologin
vigil-gate:x:10003:10000:Vigil read-only gate:/nonexistent:/sbin/nologin
redis:x:10004:10004:Redis:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
  cat >"$root/etc/group" <<'GROUP'
root:x:0:
vigil:x:10000:
redis:x:10004:
nogroup:x:65534:
GROUP
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
  # The Telegram and Slack clients use built-in web PKI roots; the system bundle is there for
  # anything that looks for it (an LLM endpoint behind a private CA can replace it by a mount).
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
}

# import_image ROOT IMAGE OWNED... -- CHANGES...: tar ROOT (root-owned, except the OWNED entries
# given as path:uid:gid:mode) and import it with the Dockerfile CHANGES, unless an image with the
# same content hash exists.
import_image() {
  local root="$1" image="$2"; shift 2
  local owned=() changes=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do owned+=("$1"); shift; done
  [[ "${1:-}" == "--" ]] && shift
  changes=("$@")
  local tarball="$work/$(echo "$image" | tr '/:' '__').tar" excludes=() entry path uid gid mode
  for entry in "${owned[@]}"; do
    IFS=: read -r path uid gid mode <<<"$entry"
    excludes+=("--exclude=./${path#/}")
  done
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 "${excludes[@]}" \
    -C "$root" -cf "$tarball" .
  for entry in "${owned[@]}"; do
    IFS=: read -r path uid gid mode <<<"$entry"
    chmod "$mode" "$root$path"
    tar --numeric-owner --owner="$uid" --group="$gid" --mtime=@0 --no-recursion \
      -C "$root" -rf "$tarball" "./${path#/}"
  done
  local hash
  hash="$( (sha256sum <"$tarball"; printf '%s\n' "${changes[@]}") | sha256sum | cut -d' ' -f1)"
  local current
  current="$(docker image inspect --format '{{ index .Config.Labels "vigil.image.hash" }}' "$image" 2>/dev/null || true)"
  if [[ "$current" == "$hash" ]]; then
    log "$image is up to date (${hash:0:12})"
    return 0
  fi
  local args=()
  for c in "${changes[@]}"; do args+=(-c "$c"); done
  docker import "${args[@]}" -c "LABEL vigil.image.hash=$hash" -m "vigil offline image" \
    "$tarball" "$image" >/dev/null
  log "built $image (${hash:0:12}, $(du -h "$tarball" | cut -f1) uncompressed)"
}

VERSION="$(grep -m1 '^version' "$REPO_ROOT/Cargo.toml" | cut -d'"' -f2)"
COMMON_CHANGES=(
  "ENV PATH=/usr/local/bin:/usr/bin"
  "LABEL org.opencontainers.image.title=vigil org.opencontainers.image.version=$VERSION vigil.protected=true"
)

# --- executor --------------------------------------------------------------------------------
root="$work/executor"
new_root "$root"
add_binary "$root" "$BIN_DIR/vigil-executor" /usr/local/bin/vigil-executor
mkdir -p "$root/var/lib/vigil"
import_image "$root" "vigil/executor:$TAG" /var/lib/vigil:10002:10000:0750 -- \
  "${COMMON_CHANGES[@]}" "USER 10002:10000" 'ENTRYPOINT ["/usr/local/bin/vigil-executor"]'

# --- gate ------------------------------------------------------------------------------------
# /run/vigil-gate is where the gate-socket volume is mounted: a new volume takes its owner from
# the image of the first container that mounts it, so the gate and the watchdog images agree.
root="$work/gate"
new_root "$root"
add_binary "$root" "$BIN_DIR/vigil-gate" /usr/local/bin/vigil-gate
mkdir -p "$root/run/vigil-gate"
import_image "$root" "vigil/gate:$TAG" /run/vigil-gate:10003:10000:0750 -- \
  "${COMMON_CHANGES[@]}" "USER 10003:10000" 'ENTRYPOINT ["/usr/local/bin/vigil-gate"]'

# --- watchdog --------------------------------------------------------------------------------
root="$work/watchdog"
new_root "$root"
add_binary "$root" "$BIN_DIR/vigil-watchdog" /usr/local/bin/vigil-watchdog
mkdir -p "$root/run/vigil-gate"
import_image "$root" "vigil/watchdog:$TAG" /run/vigil-gate:10003:10000:0750 -- \
  "${COMMON_CHANGES[@]}" "USER 10001:10000" 'ENTRYPOINT ["/usr/local/bin/vigil-watchdog"]'

# --- redis (Debian's package) ----------------------------------------------------------------
REDIS_SERVER="$(command -v redis-server || true)"
REDIS_CLI="$(command -v redis-cli || true)"
[[ -n "$REDIS_SERVER" && -n "$REDIS_CLI" ]] \
  || die "redis-server/redis-cli not found: apt-get install -y redis-server (scripts/setup-test.sh does)"
root="$work/redis"
new_root "$root"
# Debian ships redis-server as a symlink to redis-check-rdb; the program picks its mode from
# the name it runs under, so the copy is named redis-server.
add_binary "$root" "$(readlink -f "$REDIS_SERVER")" /usr/bin/redis-server
add_binary "$root" "$REDIS_CLI" /usr/bin/redis-cli
import_image "$root" "vigil/redis:$TAG" /data:10004:10004:0700 -- \
  "ENV PATH=/usr/bin" "LABEL vigil.protected=true" "USER 10004:10004" "WORKDIR /data" \
  'ENTRYPOINT ["/usr/bin/redis-server"]'

# --- test app + fake Telegram (tests only) ---------------------------------------------------
if [[ $TEST_IMAGES -eq 1 ]]; then
  BUSYBOX=""
  for candidate in /bin/busybox /usr/bin/busybox; do
    if [[ -x "$candidate" ]] && ! ldd "$candidate" >/dev/null 2>&1; then
      BUSYBOX="$candidate"
      break
    fi
  done
  [[ -n "$BUSYBOX" ]] || die "no static busybox found (apt-get install -y busybox-static)"
  root="$work/test-app"
  new_root "$root"
  mkdir -p "$root/bin" "$root/www/cgi-bin"
  install -m 0755 "$BUSYBOX" "$root/bin/busybox"
  for applet in sh sleep echo cat wget nc ls false true head httpd id touch date printf test \
      mkdir rm tr wc grep sed dd; do
    ln -s busybox "$root/bin/$applet"
  done
  install -m 0755 "$REPO_ROOT/compose/images/test/telegram.cgi" "$root/www/cgi-bin/telegram"
  import_image "$root" "vigil/test-app:$TAG" -- \
    "ENV PATH=/bin" "LABEL vigil.test=1" "USER 65534:65534" 'CMD ["sleep", "1000000"]'
fi

log "done (profile $PROFILE, tag $TAG)"
