#!/usr/bin/env bash
# Generates everything secret the compose stack needs, once, into compose/secrets/ (git-ignored):
#
#   watchdog_signing_key        Ed25519 private key (PKCS#8 PEM) the watchdog signs requests with
#   verify_keys/<KEY_ID>.pub    its public key (SPKI PEM); the executor's EXECUTOR_VERIFY_KEYS
#   watchdog_redis_url          redis://watchdog:<random>@redis:6379/0
#   executor_redis_url          redis://executor:<random>@redis:6379/0
#   redis_users.acl             compose/redis/users.acl.template with the passwords' SHA-256
#   telegram_bot_token          the bot token given with --telegram-token-file (else empty)
#
# and compose/.env (non-secret settings docker-compose reads: the docker group id of the host,
# the key id, where the secrets are).
#
#   bash scripts/setup-deploy.sh [--out DIR] [--env-file FILE] [--key-id ID]
#                                [--telegram-token-file FILE] [--telegram-chat-id ID] [--force]
#
# Existing secrets are kept (re-running is harmless); --force regenerates all of them (then
# restart the whole stack). Keys come from `openssl genpkey -algorithm ed25519`, which writes the
# same PEM formats as `vigil-executor keygen`. Run as root so each file can be owned by the one
# container user that reads it (mode 0400); otherwise files are world-readable inside a 0700
# directory, and the script says so.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO_ROOT/compose/secrets"
ENV_FILE=""
KEY_ID="vigil-1"
TELEGRAM_TOKEN_FILE=""
TELEGRAM_CHAT_ID=""
FORCE=0

# Container users (scripts/build-images.sh creates them).
WATCHDOG_UID=10001
EXECUTOR_UID=10002
VIGIL_GID=10000
REDIS_UID=10004

die() { echo "setup-deploy: $*" >&2; exit 1; }
log() { echo "setup-deploy: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="${2:?}"; shift 2 ;;
    --env-file) ENV_FILE="${2:?}"; shift 2 ;;
    --key-id) KEY_ID="${2:?}"; shift 2 ;;
    --telegram-token-file) TELEGRAM_TOKEN_FILE="${2:?}"; shift 2 ;;
    --telegram-chat-id) TELEGRAM_CHAT_ID="${2:?}"; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ "$KEY_ID" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "invalid key id: $KEY_ID"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not installed"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
[[ -n "$ENV_FILE" ]] || {
  if [[ "$OUT" == "$REPO_ROOT/compose/secrets" ]]; then ENV_FILE="$REPO_ROOT/compose/.env"; else ENV_FILE="$OUT/compose.env"; fi
}
chmod 0700 "$OUT"
umask 077

IS_ROOT=0
[[ "$(id -u)" -eq 0 ]] && IS_ROOT=1

# own FILE UID MODE: the one container user that reads FILE owns it (as root), else readable.
own() {
  local file="$1" uid="$2" mode="$3"
  if [[ $IS_ROOT -eq 1 ]]; then
    chown "$uid:$VIGIL_GID" "$file"
    chmod "$mode" "$file"
  else
    chmod 0444 "$file"
  fi
}

have_all() {
  [[ -s "$OUT/watchdog_signing_key" && -s "$OUT/verify_keys/$KEY_ID.pub" \
    && -s "$OUT/watchdog_redis_url" && -s "$OUT/executor_redis_url" \
    && -s "$OUT/redis_users.acl" && -e "$OUT/telegram_bot_token" ]]
}

if [[ $FORCE -eq 1 ]] || ! have_all; then
  log "generating secrets in $OUT"
  rm -rf "$OUT/verify_keys"
  rm -f "$OUT/watchdog_signing_key" "$OUT/watchdog_redis_url" "$OUT/executor_redis_url" \
    "$OUT/redis_users.acl"
  mkdir -p "$OUT/verify_keys"

  openssl genpkey -algorithm ed25519 -out "$OUT/watchdog_signing_key" 2>/dev/null
  openssl pkey -in "$OUT/watchdog_signing_key" -pubout -out "$OUT/verify_keys/$KEY_ID.pub"

  watchdog_pw="$(openssl rand -hex 32)"
  executor_pw="$(openssl rand -hex 32)"
  printf 'redis://watchdog:%s@redis:6379/0\n' "$watchdog_pw" >"$OUT/watchdog_redis_url"
  printf 'redis://executor:%s@redis:6379/0\n' "$executor_pw" >"$OUT/executor_redis_url"
  watchdog_sha="$(printf '%s' "$watchdog_pw" | sha256sum | cut -d' ' -f1)"
  executor_sha="$(printf '%s' "$executor_pw" | sha256sum | cut -d' ' -f1)"
  # Redis's ACL file has no comment syntax: the template's comments are dropped.
  grep -v -e '^#' -e '^[[:space:]]*$' "$REPO_ROOT/compose/redis/users.acl.template" \
    | sed -e "s/@WATCHDOG_SHA256@/$watchdog_sha/" -e "s/@EXECUTOR_SHA256@/$executor_sha/" \
    >"$OUT/redis_users.acl"
  unset watchdog_pw executor_pw

  if [[ -n "$TELEGRAM_TOKEN_FILE" ]]; then
    install -m 0600 "$TELEGRAM_TOKEN_FILE" "$OUT/telegram_bot_token"
  elif [[ ! -e "$OUT/telegram_bot_token" ]]; then
    : >"$OUT/telegram_bot_token"
  fi
else
  log "secrets already present in $OUT (use --force to regenerate)"
  if [[ -n "$TELEGRAM_TOKEN_FILE" ]]; then
    install -m 0600 "$TELEGRAM_TOKEN_FILE" "$OUT/telegram_bot_token"
  fi
fi

own "$OUT/watchdog_signing_key" "$WATCHDOG_UID" 0400
own "$OUT/watchdog_redis_url" "$WATCHDOG_UID" 0400
own "$OUT/telegram_bot_token" "$WATCHDOG_UID" 0400
own "$OUT/executor_redis_url" "$EXECUTOR_UID" 0400
own "$OUT/redis_users.acl" "$REDIS_UID" 0400
for pub in "$OUT"/verify_keys/*.pub; do own "$pub" "$EXECUTOR_UID" 0444; done
if [[ $IS_ROOT -eq 1 ]]; then
  chown "$EXECUTOR_UID:$VIGIL_GID" "$OUT/verify_keys"
  chmod 0500 "$OUT/verify_keys"
else
  chmod 0755 "$OUT/verify_keys"
  log "WARNING: not root: the secret files are world-readable (0444) inside the 0700 directory" \
    "$OUT; run as root to give each file to the one container user that reads it"
fi

DOCKER_SOCKET="${VIGIL_DOCKER_SOCKET:-/var/run/docker.sock}"
[[ -S "$DOCKER_SOCKET" ]] || die "$DOCKER_SOCKET is not a socket (set VIGIL_DOCKER_SOCKET)"
DOCKER_GID="$(stat -c %g "$DOCKER_SOCKET")"

# Messages name the real host, not the watchdog container's id (its hostname inside compose).
HOST_NAME="${VIGIL_HOSTNAME:-$(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null || true)}"
HOST_NAME="$(printf '%s' "$HOST_NAME" | tr -cd 'A-Za-z0-9._-')"

telegram_file=""
[[ -s "$OUT/telegram_bot_token" ]] && telegram_file="/run/secrets/telegram_bot_token"
umask 022
cat >"$ENV_FILE" <<ENV
# Written by scripts/setup-deploy.sh; read by docker-compose. Nothing secret lives here.
VIGIL_SECRETS_DIR=$OUT
VIGIL_DOCKER_SOCKET=$DOCKER_SOCKET
VIGIL_DOCKER_GID=$DOCKER_GID
VIGIL_KEY_ID=$KEY_ID
VIGIL_TELEGRAM_BOT_TOKEN_FILE=$telegram_file
VIGIL_TELEGRAM_CHAT_ID=$TELEGRAM_CHAT_ID
VIGIL_HOSTNAME=$HOST_NAME
ENV
log "wrote $ENV_FILE (docker group id $DOCKER_GID, key id $KEY_ID, host name $HOST_NAME)"
log "next: bash scripts/build-images.sh && docker-compose -f compose/docker-compose.yml up -d"
