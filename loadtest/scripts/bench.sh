#!/usr/bin/env bash
# make bench: sqlgate against the database it fronts, in one run, on this machine. Starts
# whatever of the local stack is not running, lifts the gatekeeper's rate limit for the run
# (restored after), and runs `loadtest bench`, which writes docs/benchmarks.md.
#
#   BENCH_TIME=15 loadtest/scripts/bench.sh [loadtest bench arguments]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
LOADTEST=${LOADTEST:-$ROOT/target/release/loadtest}
STACK=$ROOT/local/stack.sh
BENCH_TIME=${BENCH_TIME:-15}

[ -z "${GATEKEEPER_URL:-}" ] || { echo "bench.sh: make bench measures the local stack; unset GATEKEEPER_URL" >&2; exit 64; }
local/stack.sh up >/dev/null
GATEKEEPER_RATE_LIMIT_RPS=0 "$STACK" restart >/dev/null
trap '"$STACK" restart >/dev/null || true' EXIT
"$LOADTEST" bench --time "$BENCH_TIME" \
  --setting GATEKEEPER_RATE_LIMIT_RPS=0 \
  --setting "$(grep '^PROXY_HTTP_WORKERS=' .local/proxy.env)" \
  --setting "$(grep '^GATEKEEPER_HTTP_WORKERS=' .local/gatekeeper.env)" \
  --setting "RUST_LOG=${RUST_LOG:-info} (both services, one line per request)" \
  --invocation "make bench BENCH_TIME=$BENCH_TIME" "$@"
