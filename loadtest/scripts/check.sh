#!/usr/bin/env bash
# make loadtest-check: what `cargo test` does not cover — the built binary's own behaviour on
# bad arguments, an unreachable gatekeeper and a directory of sysbench reports. Seconds, no
# stack needed.
#
#   loadtest/scripts/check.sh [path to loadtest]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${1:-$ROOT/target/debug/loadtest}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0

# expect CODE DESCRIPTION -- COMMAND...: exit code CODE and exactly one line on stderr.
expect() {
  local want=$1 what=$2 rc=0 lines; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  lines=$(wc -l <"$TMP/err")
  if [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] || ! grep -q '^loadtest: ' "$TMP/err"; then
    printf 'FAIL %s: exit %s (want %s), stderr:\n' "$what" "$rc" "$want"; cat "$TMP/err"; fail=1
  else
    printf 'ok   %s: %s\n' "$what" "$(cat "$TMP/err")"
  fi
}

expect 64 "unknown option" -- "$BIN" seed --bogus
expect 64 "zero concurrency" -- "$BIN" seed --concurrency 0
expect 64 "open and closed loop at once" -- "$BIN" seed --rate 10 --concurrency 2
expect 64 "unknown mode" -- "$BIN" seed --modes fastest
expect 64 "no command" -- "$BIN"
expect 64 "remote gatekeeper without a key" -- env -u API_KEY GATEKEEPER_URL=http://gatekeeper.invalid "$BIN" seed
expect 64 "unknown workload" -- "$BIN" select --workload delete
expect 64 "zero minimum of requests" -- "$BIN" select --min-requests 0
expect 64 "unknown bench group" -- "$BIN" bench --groups everything
expect 64 "mix without writes" -- "$BIN" bench --mix-write-percent 0
expect 64 "seed group without its peers" -- env -u SEED_GATEKEEPER_URL -u SEED_API_KEY "$BIN" bench --groups seed
expect 64 "seed peer not on this machine" -- env SEED_API_KEY=x "$BIN" bench --groups seed --seed-url http://seed.invalid:8080
expect 64 "seed peer without its key" -- env -u SEED_API_KEY "$BIN" bench --groups seed --seed-url http://127.0.0.1:9
expect 64 "mixed group without its script" -- "$BIN" bench --groups mixed --lua-dir "$TMP/none"
# Port 9 on loopback: nothing listens there, so the connection is refused at once.
expect 69 "unreachable gatekeeper" -- env GATEKEEPER_URL=http://127.0.0.1:9 API_KEY=sk_x_y "$BIN" select --no-progress
expect 69 "unreachable seed peer" -- env GATEKEEPER_URL=http://127.0.0.1:9 API_KEY=sk_x_y "$BIN" select --seed-api --no-progress
"$BIN" --help >/dev/null || { echo "FAIL --help"; fail=1; }
cp "$ROOT"/loadtest/tests/fixtures/sysbench-*.txt "$TMP/"
if "$BIN" sysbench-report "$TMP" >"$TMP/table" 2>/dev/null && [ -s "$TMP/sysbench.json" ] && [ -s "$TMP/sysbench.csv" ] \
  && grep -q oltp_read_write "$TMP/table"; then
  echo "ok   sysbench-report turns saved reports into JSON, CSV and a table"
else
  echo "FAIL sysbench-report"; fail=1
fi
[ "$fail" -eq 0 ] && echo "loadtest-check: all passed"
exit "$fail"
