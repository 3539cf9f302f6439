#!/usr/bin/env bash
# The whole local system: cluster (local/cluster.sh), proxy and gatekeeper in the background.
#
#   local/stack.sh up|down|restart|status
#
# `restart` restarts the proxy and gatekeeper only (the cluster keeps running), picking up
# PROXY_* and GATEKEEPER_* tuning from the environment, e.g.
#   GATEKEEPER_RATE_LIMIT_RPS=0 local/stack.sh restart
#
# Expects release binaries in target/release (`make up` builds them). State under .local/:
# keys/ (API keys, mode 0600), run/ (pids, logs), proxy.env and gatekeeper.env (mode 0600).
# Ports: SQLGATE_GATEKEEPER_PORT (8080), SQLGATE_ADMIN_PORT (9090), SQLGATE_PROXY_PORT (5000),
# and the cluster's (see local/cluster.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SQLGATE_LOCAL_DIR=${SQLGATE_LOCAL_DIR:-$ROOT/.local}
DIR=$SQLGATE_LOCAL_DIR
BIN=${SQLGATE_BIN_DIR:-$ROOT/target/release}
GK_PORT=${SQLGATE_GATEKEEPER_PORT:-8080}
ADMIN_PORT=${SQLGATE_ADMIN_PORT:-9090}
PROXY_PORT=${SQLGATE_PROXY_PORT:-5000}
MANAGER_PORT=${SQLGATE_MANAGER_PORT:-3307}
read -r -a WORKER_PORTS <<<"${SQLGATE_WORKER_PORTS:-3308 3309}"
RUN=$DIR/run
KEYS=$DIR/keys

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

pid_of() {
  local f=$RUN/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  # argv[0], not /proc/<pid>/exe: a rebuilt binary leaves the running one "(deleted)".
  [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" = "$BIN/$1" ] || return 1
  echo "$pid"
}

# True when the running process's binary has since been replaced (a rebuild).
stale() {
  local pid; pid=$(pid_of "$1") || return 1
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *" (deleted)") return 0 ;; esac
  return 1
}

# Tuning passed through from the caller's environment (e.g. GATEKEEPER_RATE_LIMIT_RPS=0).
passthrough() {
  local prefix=$1 v
  for v in $(compgen -e | grep "^${prefix}_" || true); do
    case $v in
      *_LISTEN|*_TOKEN|*_PASSWORD|*_MANAGER|*_WORKERS|*_KEYS_FILE|*_PROXY_URL|*_READ_USER|*_WRITE_USER|*_ADMIN_USER|*_APP_SCHEMAS|*_MONITOR_USER) ;;
      *) printf '%s=%s\n' "$v" "${!v}" ;;
    esac
  done
}

write_env_files() {
  # shellcheck disable=SC1091
  . "$DIR/secrets.env"
  local workers="" p
  for p in "${WORKER_PORTS[@]}"; do workers="${workers:+$workers,}127.0.0.1:$p"; done
  # On a small machine the databases need the cores more than a second HTTP worker does
  # (measured in docs/benchmarks.md); elsewhere each service uses one worker per core.
  local http_workers; http_workers=$(nproc)
  if [ "$http_workers" -le 2 ]; then http_workers=1; fi
  ( umask 077
    cat >"$DIR/proxy.env" <<EOF
PROXY_LISTEN=127.0.0.1:$PROXY_PORT
PROXY_TOKEN=$PROXY_TOKEN
PROXY_MANAGER=127.0.0.1:$MANAGER_PORT
PROXY_WORKERS=$workers
PROXY_READ_USER=sqlgate_read
PROXY_READ_PASSWORD=$READ_PASSWORD
PROXY_WRITE_USER=sqlgate_write
PROXY_WRITE_PASSWORD=$WRITE_PASSWORD
PROXY_ADMIN_USER=sqlgate_admin
PROXY_ADMIN_PASSWORD=$ADMIN_PASSWORD
PROXY_APP_SCHEMAS=$(tr ' ' ',' <<<"${SQLGATE_APP_SCHEMAS:-sakila app sbtest}")
PROXY_TLS_CERT=$DIR/tls/proxy.pem
PROXY_TLS_KEY=$DIR/tls/proxy-key.pem
PROXY_DB_CA=$DIR/tls/ca.pem
PROXY_MONITOR_USER=sqlgate_monitor
PROXY_MONITOR_PASSWORD=$MONITOR_PASSWORD
PROXY_DEFAULT_MODE=${PROXY_DEFAULT_MODE:-random}
PROXY_HTTP_WORKERS=${PROXY_HTTP_WORKERS:-$http_workers}
RUST_LOG=${RUST_LOG:-info}
$(passthrough PROXY | grep -vE '^PROXY_(DEFAULT_MODE|HTTP_WORKERS)=')
EOF
    cat >"$DIR/gatekeeper.env" <<EOF
GATEKEEPER_LISTEN=127.0.0.1:$GK_PORT
GATEKEEPER_ADMIN_LISTEN=127.0.0.1:$ADMIN_PORT
GATEKEEPER_PROXY_URL=https://127.0.0.1:$PROXY_PORT
GATEKEEPER_PROXY_CA=$DIR/tls/ca.pem
GATEKEEPER_TLS_CERT=$DIR/tls/gatekeeper.pem
GATEKEEPER_TLS_KEY=$DIR/tls/gatekeeper-key.pem
GATEKEEPER_PROXY_TOKEN=$PROXY_TOKEN
GATEKEEPER_KEYS_FILE=$KEYS/keys.txt
GATEKEEPER_HTTP_WORKERS=${GATEKEEPER_HTTP_WORKERS:-$http_workers}
RUST_LOG=${RUST_LOG:-info}
$(passthrough GATEKEEPER | grep -vE '^GATEKEEPER_HTTP_WORKERS=')
EOF
  )
}

# One API key per role, generated once; the keys file holds only their hashes.
ensure_keys() {
  mkdir -p "$KEYS"
  chmod 700 "$KEYS"
  local role out
  for role in read write admin; do
    [ -s "$KEYS/$role" ] && grep -q "^${role}:" "$KEYS/ids" 2>/dev/null && continue
    out=$("$BIN/gatekeeper" keygen --role "$role" | grep -v '^#')
    ( umask 077
      sed -n 1p <<<"$out" >"$KEYS/$role"
      sed -i "/^${role}:/d" "$KEYS/ids" 2>/dev/null || true
      echo "$role:$(sed -n 2p <<<"$out")" >>"$KEYS/ids" )
    log "created the $role API key in $KEYS/$role"
  done
  ( umask 077; cut -d: -f2- "$KEYS/ids" >"$KEYS/keys.txt" )
}

start_service() {
  local name=$1 envfile=$2
  if stale "$name"; then
    log "$name was rebuilt: restarting it"
    stop_service "$name"
  fi
  if pid_of "$name" >/dev/null; then
    log "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  mkdir -p "$RUN"
  # Secrets reach the process through its environment, never its command line.
  ( set -a; . "$envfile"; set +a
    exec "$BIN/$name" </dev/null >>"$RUN/$name.log" 2>&1 ) &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!), log $RUN/$name.log"
}

wait_ready() {
  local i
  for i in $(seq 1 120); do
    sleep 0.5
    for s in proxy gatekeeper; do
      pid_of "$s" >/dev/null || { tail -n 20 "$RUN/$s.log" >&2; die "$s exited; see $RUN/$s.log"; }
    done
    if curl -fsS --cacert "$DIR/tls/ca.pem" "https://127.0.0.1:$GK_PORT/ready" >/dev/null 2>&1; then return 0; fi
  done
  die "the gatekeeper did not become ready in 60 s; see $RUN/*.log and local/stack.sh status"
}

cmd_up() {
  [ -x "$BIN/proxy" ] && [ -x "$BIN/gatekeeper" ] || die "no binaries in $BIN: run 'make up'"
  command -v curl >/dev/null || die "curl is required"
  "$ROOT/local/cluster.sh" start
  write_env_files
  ensure_keys
  start_service proxy "$DIR/proxy.env"
  start_service gatekeeper "$DIR/gatekeeper.env"
  wait_ready
  local rel_keys=$KEYS rel_ca=$DIR/tls/ca.pem
  [ "$DIR" = "$ROOT/.local" ] && rel_keys=.local/keys && rel_ca=.local/tls/ca.pem
  cat <<EOF

sqlgate is up: gatekeeper https://127.0.0.1:$GK_PORT (metrics on 127.0.0.1:$ADMIN_PORT),
proxy 127.0.0.1:$PROXY_PORT, manager 127.0.0.1:$MANAGER_PORT, workers ${WORKER_PORTS[*]}.
API keys (one per role) are in $rel_keys/{read,write,admin}; every hop uses TLS from the local
CA $rel_ca. Try:

curl -s --cacert $rel_ca -X POST https://127.0.0.1:$GK_PORT/query -H 'Content-Type: application/json' -H "X-API-Key: \$(cat $rel_keys/read)" -d '{"sql": "SELECT first_name, last_name FROM sakila.actor WHERE actor_id = ?", "params": [7], "mode": "random"}'

EOF
}

stop_service() {
  local name=$1 pid i
  pid=$(pid_of "$name") || { rm -f "$RUN/$name.pid"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
}

cmd_down() {
  stop_service gatekeeper
  stop_service proxy
  "$ROOT/local/cluster.sh" stop
}

cmd_status() {
  local s pid rc=0
  for s in gatekeeper proxy; do
    if pid=$(pid_of "$s"); then printf '%-10s running  pid=%s\n' "$s" "$pid"; else printf '%-10s stopped\n' "$s"; rc=3; fi
  done
  "$ROOT/local/cluster.sh" status || rc=3
  if curl -fsS --cacert "$DIR/tls/ca.pem" "https://127.0.0.1:$PROXY_PORT/ready" -o "$RUN/ready.json" 2>/dev/null; then
    printf 'proxy /ready: '
    if command -v jq >/dev/null; then
      jq -c '[.nodes[] | {name, eligible, reason, lag_seconds, rtt_ms}]' "$RUN/ready.json"
    else
      cat "$RUN/ready.json"; echo
    fi
  fi
  return $rc
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  restart) stop_service gatekeeper; stop_service proxy; cmd_up ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|restart|status" >&2; exit 64 ;;
esac
