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
GK=$ROOT/loadtest/scripts/gatekeeper.sh
BENCH_TIME=${BENCH_TIME:-15}

[ -z "${GATEKEEPER_URL:-}" ] || { echo "bench.sh: make bench measures the local stack; unset GATEKEEPER_URL" >&2; exit 64; }
local/stack.sh up >/dev/null
"$GK" restart GATEKEEPER_RATE_LIMIT_RPS=0
trap '"$GK" restart || true' EXIT
"$LOADTEST" bench --time "$BENCH_TIME" \
  --setting GATEKEEPER_RATE_LIMIT_RPS=0 \
  --setting "RUST_LOG=${RUST_LOG:-info} (both services, one line per request)" \
  --invocation "make bench BENCH_TIME=$BENCH_TIME" "$@"
