#!/usr/bin/env bash
# What a new user does, checked: `local/stack.sh up` on spare ports prints a curl that returns
# rows from a worker; a second `up` changes nothing; `down` stops every process and frees every
# port. Uses the debug binaries (`cargo build`), an isolated state directory, and cleans up.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "smoke-test: FAIL: $*" >&2; exit 1; }

STATE=$(mktemp -d /tmp/sqlgate-smoke.XXXXXX)
export SQLGATE_LOCAL_DIR=$STATE SQLGATE_BIN_DIR=$ROOT/target/debug
export SQLGATE_GATEKEEPER_PORT=$(free_port) SQLGATE_ADMIN_PORT=$(free_port) SQLGATE_PROXY_PORT=$(free_port)
export SQLGATE_MANAGER_PORT=$(free_port) SQLGATE_WORKER_PORTS="$(free_port) $(free_port)"
PORTS="$SQLGATE_GATEKEEPER_PORT $SQLGATE_ADMIN_PORT $SQLGATE_PROXY_PORT $SQLGATE_MANAGER_PORT $SQLGATE_WORKER_PORTS"
cleanup() { local/stack.sh down >/dev/null 2>&1 || true; rm -rf "$STATE"; }
trap cleanup EXIT

cargo build --quiet --locked -p proxy -p gatekeeper
out=$(local/stack.sh up 2>&1) || { echo "$out"; fail "stack.sh up failed"; }
cmd=$(grep '^curl ' <<<"$out") || { echo "$out"; fail "up printed no curl"; }
grep -q -- "--cacert .* https://" <<<"$cmd" || fail "the printed curl is not HTTPS with the local CA: $cmd"
! curl -fsS "http://127.0.0.1:$SQLGATE_GATEKEEPER_PORT/health" >/dev/null 2>&1 || fail "the gatekeeper answers plain HTTP"
workers=""
for _ in $(seq 1 20); do
  resp=$(eval "$cmd")
  [ "$(jq -r .role <<<"$resp")" = worker ] || fail "the printed curl did not read from a worker: $resp"
  [ "$(jq -c .rows <<<"$resp")" = '[["GRACE","GABLE"]]' ] || fail "unexpected rows: $resp"
  workers="$workers $(jq -r .node <<<"$resp")"
done
for w in worker-1 worker-2; do grep -q "$w" <<<"$workers" || fail "$w never served the curl:$workers"; done
echo "smoke-test: the printed HTTPS curl returns rows from both workers; plain HTTP is refused"

pids_before=$(cat "$STATE"/run/*.pid "$STATE"/db/*/mysqld.pid | sort)
out=$(local/stack.sh up 2>&1) || fail "second up failed: $out"
grep -q "proxy already running" <<<"$out" || fail "second up restarted the proxy: $out"
[ "$pids_before" = "$(cat "$STATE"/run/*.pid "$STATE"/db/*/mysqld.pid | sort)" ] || fail "second up changed processes"
[ "$(cut -d: -f1 "$STATE/keys/ids" | sort | tr '\n' ' ')" = "admin read write " ] || fail "keys duplicated"
for f in "$STATE"/keys/read "$STATE"/keys/write "$STATE"/keys/admin "$STATE"/secrets.env "$STATE"/proxy.env \
  "$STATE"/tls/ca-key.pem "$STATE"/tls/proxy-key.pem "$STATE"/tls/gatekeeper-key.pem "$STATE"/tls/manager-key.pem; do
  [ "$(stat -c %a "$f")" = 600 ] || fail "$f is not mode 0600"
done
echo "smoke-test: a second up changes nothing; keys, secrets and TLS keys are 0600"

# A rebuild replaces the binary: `up` restarts the service that runs the old one.
old_proxy=$(cat "$STATE/run/proxy.pid")
cp "$SQLGATE_BIN_DIR/proxy" "$SQLGATE_BIN_DIR/proxy.new" && mv "$SQLGATE_BIN_DIR/proxy.new" "$SQLGATE_BIN_DIR/proxy"
out=$(local/stack.sh up 2>&1) || fail "up after a rebuild failed: $out"
grep -q "proxy was rebuilt: restarting it" <<<"$out" || fail "up did not restart the rebuilt proxy: $out"
! kill -0 "$old_proxy" 2>/dev/null || fail "the old proxy still runs"
resp=$(eval "$cmd")
[ "$(jq -r .role <<<"$resp")" = worker ] || fail "no answer after the restart: $resp"
pids_before=$(cat "$STATE"/run/*.pid "$STATE"/db/*/mysqld.pid | sort)
echo "smoke-test: up restarts a service whose binary was rebuilt"

local/stack.sh status >/dev/null || fail "status reports a problem while up"
local/stack.sh down >/dev/null 2>&1
for p in $pids_before; do ! kill -0 "$p" 2>/dev/null || fail "pid $p still running after down"; done
for port in $PORTS; do
  ! ss -ltn "sport = :$port" | grep -q LISTEN || fail "port $port still in use after down"
done
if local/stack.sh status >/dev/null 2>&1; then fail "status says up after down"; fi
echo "smoke-test: down stopped every process and freed every port"
echo "smoke-test: 4 passed, 0 failed"
