#!/usr/bin/env bash
# The seed design's peers for `make bench` (group `seed`): the Flask gatekeeper and proxy of
# the project's starting point (gatekeeper.py, proxy.py), in their own venv, on loopback, in
# front of the local cluster.
#
#   loadtest/seed-peer/seed-peer.sh install|start|stop|status
#
# install  creates the venv ($SEED_VENV, default .local/venv-seed) with Debian's python3 (or
#          $SEED_PYTHON) and installs requirements.txt from PyPI; again only when that file changes.
# start    starts both (Flask's built-in server, threaded, as the seed ran them) on free loopback
#          ports, unless SEED_GATEKEEPER_PORT / SEED_PROXY_PORT say which, and waits until a point
#          select goes through. The API key comes from SEED_API_KEY, which the caller generates
#          for the run (bench.sh does); the database account is the local cluster's sbtest, its
#          password read from secrets.env and given to the proxy's environment only. Writes
#          run/seed-{gatekeeper,proxy}.pid, .log and run/seed-gatekeeper.url.
# stop     stops the two processes this script started (by their pid files).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${SQLGATE_LOCAL_DIR:-$ROOT/.local}
VENV=${SEED_VENV:-$DIR/venv-seed}
RUN=$DIR/run
MANAGER_PORT=${SQLGATE_MANAGER_PORT:-3307}
read -r -a WORKER_PORTS <<<"${SQLGATE_WORKER_PORTS:-3308 3309}"

log() { printf 'seed-peer: %s\n' "$*" >&2; }
die() { printf 'seed-peer: error: %s\n' "$*" >&2; exit 1; }

python_for_venv() {
  if [ -n "${SEED_PYTHON:-}" ]; then echo "$SEED_PYTHON"
  elif [ -x /usr/bin/python3 ]; then echo /usr/bin/python3
  else command -v python3 || die "python3 is needed (make deps installs it)"
  fi
}

cmd_install() {
  local py want
  py=$(python_for_venv)
  want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  "$py" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$py cannot create a venv: install python3-venv (make bench-deps, or apt-get install python3-venv)"
  log "creating $VENV ($("$py" --version 2>&1)) with the seed design's packages"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check --no-input -q -r "$HERE/requirements.txt"
  echo "$want" >"$VENV/.requirements.sha256"
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The pid in run/seed-$1.pid when that process still runs $1.py.
pid_of() {
  local f=$RUN/seed-$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$HERE/$1.py" || return 1
  echo "$pid"
}

stop_one() {
  local name=$1 pid _
  pid=$(pid_of "$name") || { rm -f "$RUN/seed-$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/seed-$name.pid"
}

cmd_stop() {
  stop_one gatekeeper
  stop_one proxy
  rm -f "$RUN/seed-gatekeeper.url"
}

cmd_start() {
  [ -n "${SEED_API_KEY:-}" ] || die "SEED_API_KEY is not set: generate one for the run (bench.sh does)"
  [ -x "$VENV/bin/python" ] || die "no venv in $VENV: run $0 install"
  if [ ! -s "$DIR/secrets.env" ] || [ ! -s "$DIR/tls/ca.pem" ]; then die "no local cluster in $DIR: run make up"; fi
  local password
  password=$(sed -n 's/^SBTEST_PASSWORD=//p' "$DIR/secrets.env")
  [ -n "$password" ] || die "no SBTEST_PASSWORD in $DIR/secrets.env"
  cmd_stop
  mkdir -p "$RUN"
  local gk_port=${SEED_GATEKEEPER_PORT:-$(free_port)} px_port=${SEED_PROXY_PORT:-$(free_port)}
  [ "$gk_port" != "$px_port" ] || px_port=$(free_port)
  local workers="" p
  for p in "${WORKER_PORTS[@]}"; do workers="${workers:+$workers,}127.0.0.1:$p"; done
  # Each process gets only what it needs: the proxy the database account, the gatekeeper the key.
  # SSL_CERT_FILE: mysql-connector-python builds a new TLS context for every connection and
  # loads the default trust store into it; the system's whole bundle costs about 100 ms per
  # connection here, which the seed (no TLS to its databases) never paid. The cluster's CA
  # alone is what it needs to trust.
  env -i PATH="$PATH" LANG=C.UTF-8 SSL_CERT_FILE="$DIR/tls/ca.pem" \
    SEED_PROXY_LISTEN="127.0.0.1:$px_port" SEED_MANAGER="127.0.0.1:$MANAGER_PORT" \
    SEED_WORKERS="$workers" SEED_DB_USER=sbtest SEED_DB_PASSWORD="$password" SEED_DB_NAME=sbtest \
    SEED_DB_CA="$DIR/tls/ca.pem" \
    "$VENV/bin/python" "$HERE/proxy.py" </dev/null >"$RUN/seed-proxy.log" 2>&1 &
  echo $! >"$RUN/seed-proxy.pid"
  env -i PATH="$PATH" LANG=C.UTF-8 \
    SEED_GATEKEEPER_LISTEN="127.0.0.1:$gk_port" SEED_API_KEY="$SEED_API_KEY" \
    SEED_PROXY_URL="http://127.0.0.1:$px_port" \
    "$VENV/bin/python" "$HERE/gatekeeper.py" </dev/null >"$RUN/seed-gatekeeper.log" 2>&1 &
  echo $! >"$RUN/seed-gatekeeper.pid"
  local url="http://127.0.0.1:$gk_port" code="" _
  for _ in $(seq 1 100); do
    sleep 0.2
    for s in proxy gatekeeper; do
      kill -0 "$(cat "$RUN/seed-$s.pid")" 2>/dev/null ||
        { tail -n 20 "$RUN/seed-$s.log" >&2; cmd_stop; die "the seed's $s exited; see $RUN/seed-$s.log"; }
    done
    code=$(curl -s -o "$RUN/seed-check.json" -w '%{http_code}' -X POST "$url/query" \
      -H 'Content-Type: application/json' -H "X-API-Key: $SEED_API_KEY" \
      -d '{"sql": "SELECT c FROM sbtest.sbtest1 WHERE id = 1", "mode": "random"}' || true)
    [ "$code" = 200 ] && break
  done
  if [ "$code" != 200 ]; then
    cat "$RUN/seed-check.json" >&2 2>/dev/null || true
    tail -n 20 "$RUN/seed-proxy.log" >&2
    cmd_stop
    die "the seed's peers did not serve a point select in 20 s (last status ${code:-none})"
  fi
  echo "$url" >"$RUN/seed-gatekeeper.url"
  log "the seed design's gatekeeper on $url (proxy 127.0.0.1:$px_port), pids $(pid_of gatekeeper) and $(pid_of proxy)"
}

cmd_status() {
  local s rc=0
  for s in gatekeeper proxy; do
    if pid_of "$s" >/dev/null; then printf 'seed-%-10s running  pid=%s\n' "$s" "$(pid_of "$s")"
    else printf 'seed-%-10s stopped\n' "$s"; rc=3; fi
  done
  return $rc
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 64 ;;
esac
