#!/usr/bin/env bash
# make bench: sqlgate against the database it fronts and against the seed design, in one run,
# on this machine. Starts whatever of the local stack is not running, lifts the gatekeeper's
# rate limit for the run, starts the seed design's peers (loadtest/seed-peer/) when the seed
# group runs, and runs `loadtest bench`, which writes docs/benchmarks.md. On exit the seed's
# peers are stopped and the stack is left as it was found: restarted with its own settings if
# it was running, stopped if this script started it.
#
#   BENCH_TIME=15 BENCH_GROUPS=reads,writes,mixed,seed loadtest/scripts/bench.sh [loadtest bench arguments]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
LOADTEST=${LOADTEST:-$ROOT/target/release/loadtest}
STACK=$ROOT/local/stack.sh
SEED_PEER=$ROOT/loadtest/seed-peer/seed-peer.sh
BENCH_TIME=${BENCH_TIME:-15}
BENCH_GROUPS=${BENCH_GROUPS:-reads,writes,mixed,seed}
LOCAL=${SQLGATE_LOCAL_DIR:-$ROOT/.local}

[ -z "${GATEKEEPER_URL:-}" ] || { echo "bench.sh: make bench measures the local stack; unset GATEKEEPER_URL" >&2; exit 64; }
[[ $BENCH_GROUPS =~ ^[a-z]+(,[a-z]+)*$ ]] || { echo "bench.sh: BENCH_GROUPS is a comma-separated list: reads,writes,mixed,seed" >&2; exit 64; }

# What was running before: all of it (restart it as it was), or nothing (stop it after).
if status=$("$STACK" status 2>/dev/null); then was=up
elif grep -q ' running ' <<<"$status"; then was=partial
else was=down
fi
seed_started=0
finish() {
  local rc=$?
  [ "$seed_started" = 0 ] || "$SEED_PEER" stop || true
  if [ "$was" = down ]; then
    echo "bench.sh: stopping the local stack this run started" >&2
    "$STACK" down >/dev/null 2>&1 || true
  else
    "$STACK" restart >/dev/null || true
  fi
  exit "$rc"
}
trap finish EXIT

"$STACK" up >/dev/null
GATEKEEPER_RATE_LIMIT_RPS=0 "$STACK" restart >/dev/null
groups_note=""
[ "$BENCH_GROUPS" = reads,writes,mixed,seed ] || groups_note=" BENCH_GROUPS=$BENCH_GROUPS"
seed_args=()
if [[ ,$BENCH_GROUPS, == *,seed,* ]]; then
  "$SEED_PEER" install
  # A key for this run only; it reaches the seed's gatekeeper and loadtest through their
  # environments, never a command line.
  SEED_API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  export SEED_API_KEY
  seed_started=1
  "$SEED_PEER" start
  seed_args=(--seed-url "$(cat "$LOCAL/run/seed-gatekeeper.url")")
fi
"$LOADTEST" bench --time "$BENCH_TIME" --groups "$BENCH_GROUPS" "${seed_args[@]}" \
  --setting GATEKEEPER_RATE_LIMIT_RPS=0 \
  --setting "$(grep '^PROXY_HTTP_WORKERS=' "$LOCAL/proxy.env")" \
  --setting "$(grep '^GATEKEEPER_HTTP_WORKERS=' "$LOCAL/gatekeeper.env")" \
  --setting "RUST_LOG=${RUST_LOG:-info} (both services, one line per request)" \
  --invocation "make bench BENCH_TIME=$BENCH_TIME$groups_note" "$@"
