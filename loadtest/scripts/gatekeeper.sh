#!/usr/bin/env bash
# Restarts the local stack's gatekeeper with extra settings for a measurement, and back.
#
#   loadtest/scripts/gatekeeper.sh restart [VAR=VALUE ...]
#
# `restart GATEKEEPER_RATE_LIMIT_RPS=0` lifts the per-key rate limit (the benchmarks offer more
# than its default 1000 requests/s); `restart` alone brings back the settings of
# .local/gatekeeper.env. Follows local/stack.sh's conventions (pid file, log, setsid, secrets
# only through the environment), so `make down` and `make status` still manage the process.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${SQLGATE_LOCAL_DIR:-$ROOT/.local}
BIN=${SQLGATE_BIN_DIR:-$ROOT/target/release}
RUN=$DIR/run
GK_PORT=${SQLGATE_GATEKEEPER_PORT:-8080}

log() { printf 'gatekeeper.sh: %s\n' "$*" >&2; }
die() { printf 'gatekeeper.sh: error: %s\n' "$*" >&2; exit 1; }

# The running gatekeeper's pid, if its pid file names a gatekeeper (even one whose binary was
# rebuilt since it started).
running_pid() {
  local f=$RUN/gatekeeper.pid pid exe
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  case "$(basename "${exe% (deleted)}")" in gatekeeper) echo "$pid" ;; *) return 1 ;; esac
}

cmd_restart() {
  [ -s "$DIR/gatekeeper.env" ] || die "no $DIR/gatekeeper.env: run make up first"
  [ -x "$BIN/gatekeeper" ] || die "no $BIN/gatekeeper: run make up first"
  local pid i
  for a in "$@"; do
    [[ $a =~ ^GATEKEEPER_[A-Z_]+=[0-9A-Za-z_.:/-]*$ ]] || die "not a GATEKEEPER_ setting: $a"
  done
  if pid=$(running_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  mkdir -p "$RUN"
  ( set -a; . "$DIR/gatekeeper.env"; set +a
    for a in "$@"; do export "${a?}"; done
    exec setsid "$BIN/gatekeeper" </dev/null >>"$RUN/gatekeeper.log" 2>&1 ) &
  echo $! >"$RUN/gatekeeper.pid"
  for i in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$GK_PORT/ready" >/dev/null 2>&1; then
      log "gatekeeper restarted (pid $(cat "$RUN/gatekeeper.pid"))${*:+ with $*}"
      return 0
    fi
    kill -0 "$(cat "$RUN/gatekeeper.pid")" 2>/dev/null || { tail -n 5 "$RUN/gatekeeper.log" >&2; die "the gatekeeper exited"; }
    sleep 0.1
  done
  die "the gatekeeper did not become ready in 10 s; see $RUN/gatekeeper.log"
}

case "${1:-}" in
  restart) shift; cmd_restart "$@" ;;
  running) running_pid >/dev/null ;;
  *) echo "usage: $0 restart [GATEKEEPER_VAR=VALUE ...] | running" >&2; exit 64 ;;
esac
