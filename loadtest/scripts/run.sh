#!/usr/bin/env bash
# make loadtest: runs `loadtest` (default command `seed`) against the local stack, with the
# gatekeeper's per-key rate limit lifted for the run and restored after, or against a remote
# gatekeeper when GATEKEEPER_URL is set (with API_KEY; its limits are left as they are).
#
#   loadtest/scripts/run.sh [loadtest arguments]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOADTEST=${LOADTEST:-$ROOT/target/release/loadtest}
STACK=$ROOT/local/stack.sh

[ $# -gt 0 ] || set -- seed
if [ -z "${GATEKEEPER_URL:-}" ] && curl -fsS --cacert "${SQLGATE_LOCAL_DIR:-$ROOT/.local}/tls/ca.pem" "https://127.0.0.1:${SQLGATE_GATEKEEPER_PORT:-8080}/health" >/dev/null 2>&1; then
  GATEKEEPER_RATE_LIMIT_RPS=0 "$STACK" restart >/dev/null
  trap '"$STACK" restart >/dev/null || true' EXIT
fi
"$LOADTEST" "$@"
