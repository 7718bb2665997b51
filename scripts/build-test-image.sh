#!/usr/bin/env bash
# Builds the offline test image `vigil-test/busybox:latest` with `docker import`: no registry is
# reachable on the project's machines, so no base image can be pulled. The image holds Debian's
# static busybox at /bin/busybox, one symlink per applet the tests use, and an /etc/passwd with
# root and nobody (65534).
#
# Idempotent: the image carries the label vigil.test.image.hash=<sha256 of this script>; it is
# rebuilt only when it is missing or this script changed. `--force` rebuilds regardless.
set -euo pipefail

IMAGE="${VIGIL_TEST_IMAGE:-vigil-test/busybox:latest}"
HASH_LABEL="vigil.test.image.hash"
SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
SCRIPT_HASH="$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)"
APPLETS=(
  sh ash sleep echo cat wget nc ls false true head tail dd kill ps printf test '[' mkdir rm date
  httpd env grep sed awk tr wc id touch yes seq timeout hostname stat uname
)

die() { echo "build-test-image: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"

force=0
[[ "${1:-}" == "--force" ]] && force=1

# Concurrent callers (parallel test processes) build once: the others wait, then see the image.
exec 9>"${TMPDIR:-/tmp}/vigil-test-image.lock"
flock 9

current_hash() {
  docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

if [[ $force -eq 0 && "$(current_hash)" == "$SCRIPT_HASH" ]]; then
  echo "build-test-image: $IMAGE is up to date ($HASH_LABEL=${SCRIPT_HASH:0:12})" >&2
  exit 0
fi

BUSYBOX=""
for candidate in /bin/busybox /usr/bin/busybox; do
  if [[ -x "$candidate" ]] && ! ldd "$candidate" >/dev/null 2>&1; then
    BUSYBOX="$candidate"
    break
  fi
done
[[ -n "$BUSYBOX" ]] || die "no static busybox found (install Debian's busybox-static; scripts/setup-test.sh does)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root,www,var/run}
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for applet in "${APPLETS[@]}"; do
  ln -s busybox "$root/bin/$applet"
done
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP

tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
docker import \
  -c 'ENV PATH=/bin' \
  -c "LABEL $HASH_LABEL=$SCRIPT_HASH" \
  -m "vigil offline test image" \
  "$work/rootfs.tar" "$IMAGE" >/dev/null

[[ "$(current_hash)" == "$SCRIPT_HASH" ]] || die "docker import did not produce $IMAGE with the expected label"
echo "build-test-image: built $IMAGE ($HASH_LABEL=${SCRIPT_HASH:0:12})" >&2
