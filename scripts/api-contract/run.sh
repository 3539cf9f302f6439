#!/usr/bin/env bash
# The API contract (make api-contract): docs/openapi.yaml against a running gatekeeper.
#
#   scripts/api-contract/run.sh
#
# 1. The venv: $API_CONTRACT_VENV (.local/venv-api-contract), made with Debian's python3 from
#    requirements.txt beside this script; again only when that file changes.
# 2. docs/openapi.yaml is valid OpenAPI 3.1 (openapi-spec-validator).
# 3. A throwaway stack (local/stack.sh, as local/smoke-test.sh starts one) on spare ports in a
#    temporary directory, with the debug binaries (`cargo build`; SQLGATE_BIN_DIR to use others).
# 4. test_contract.py (pytest): every documented operation answers as documented, every example
#    request succeeds with a body of its schema, undocumented paths and methods are 404/405,
#    the error codes are those of services/sqlgate/src/error.rs, the ndjson stream's lines.
# 5. Schemathesis, once per key role (read, write, admin, in that order: admin's fuzzing may
#    change data the others read), API_CONTRACT_MAX_EXAMPLES (50) per operation, seed
#    API_CONTRACT_SEED (random, printed) with the checks below; then the gatekeeper's /health
#    and /ready and the proxy's /ready must still be 200.
# Anything missing fails the run; nothing is skipped.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

VENV=${API_CONTRACT_VENV:-$ROOT/.local/venv-api-contract}
MAX_EXAMPLES=${API_CONTRACT_MAX_EXAMPLES:-50}
SEED=${API_CONTRACT_SEED:-$(python3 -c 'import random; print(random.randrange(2**31))')}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection
SPEC=$ROOT/docs/openapi.yaml

log() { printf 'api-contract: %s\n' "$*" >&2; }
die() { printf 'api-contract: FAIL: %s\n' "$*" >&2; exit 1; }

install_venv() {
  local py=/usr/bin/python3 want
  [ -x "$py" ] || py=$(command -v python3) || die "python3 is needed (make deps installs it)"
  want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
  if [ -x "$VENV/bin/schemathesis" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  "$py" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$py cannot create a venv: install python3-venv (make api-contract does, with scripts/os-packages.sh)"
  log "creating $VENV ($("$py" --version 2>&1)) with schemathesis and openapi-spec-validator (once)"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check --no-input -q -r "$HERE/requirements.txt"
  echo "$want" >"$VENV/.requirements.sha256"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

install_venv
log "tools: $("$VENV/bin/schemathesis" --version 2>&1 | head -n1), openapi-spec-validator $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("openapi-spec-validator"))')"

"$VENV/bin/openapi-spec-validator" "$SPEC" >/dev/null || die "docs/openapi.yaml is not valid OpenAPI"
log "docs/openapi.yaml is valid OpenAPI $(sed -n 's/^openapi: //p' "$SPEC")"

STATE=$(mktemp -d /tmp/sqlgate-api-contract.XXXXXX)
if [ -z "${SQLGATE_BIN_DIR:-}" ]; then
  cargo build --quiet --locked -p proxy -p gatekeeper
  SQLGATE_BIN_DIR=$ROOT/target/debug
fi
SQLGATE_GATEKEEPER_PORT=$(free_port) SQLGATE_ADMIN_PORT=$(free_port) SQLGATE_PROXY_PORT=$(free_port)
SQLGATE_MANAGER_PORT=$(free_port) SQLGATE_WORKER_PORTS="$(free_port) $(free_port)"
export SQLGATE_LOCAL_DIR=$STATE SQLGATE_BIN_DIR SQLGATE_GATEKEEPER_PORT SQLGATE_ADMIN_PORT \
  SQLGATE_PROXY_PORT SQLGATE_MANAGER_PORT SQLGATE_WORKER_PORTS
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -d "$STATE/run" ]; then
    log "the services' last log lines:"
    tail -n 15 "$STATE"/run/gatekeeper.log "$STATE"/run/proxy.log >&2 2>/dev/null || true
  fi
  local/stack.sh down >/dev/null 2>&1 || true
  rm -rf "$STATE"
}
trap cleanup EXIT

log "starting a throwaway stack in $STATE (gatekeeper port $SQLGATE_GATEKEEPER_PORT)"
out=$(local/stack.sh up 2>&1) || { echo "$out" >&2; die "local/stack.sh up failed"; }

export API_CONTRACT_SPEC=$SPEC API_CONTRACT_CA=$STATE/tls/ca.pem API_CONTRACT_KEYS=$STATE/keys
export API_CONTRACT_URL=https://127.0.0.1:$SQLGATE_GATEKEEPER_PORT
export API_CONTRACT_ADMIN_URL=http://127.0.0.1:$SQLGATE_ADMIN_PORT
export API_CONTRACT_PROXY_URL=https://127.0.0.1:$SQLGATE_PROXY_PORT
export API_CONTRACT_ERROR_RS=$ROOT/services/sqlgate/src/error.rs

# Every service answers as it should after the run: nothing the fuzzing sent took one down.
still_up() {
  local what=$1 url code
  for url in "$API_CONTRACT_URL/health" "$API_CONTRACT_URL/ready" "$API_CONTRACT_PROXY_URL/ready"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$API_CONTRACT_CA" "$url" || true)
    [ "$code" = 200 ] || die "after $what: $url answered ${code:-nothing}, not 200"
  done
  log "after $what: the gatekeeper's /health and /ready and the proxy's /ready answer 200"
}

log "contract tests (pytest)"
(cd "$HERE" && PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider test_contract.py) ||
  die "the running gatekeeper and docs/openapi.yaml disagree (above)"
still_up "the contract tests"

passed=0
for role in read write admin; do
  log "schemathesis as the $role key: --max-examples $MAX_EXAMPLES --seed $SEED"
  log "  (to replay: API_CONTRACT_SEED=$SEED make api-contract)"
  start=$(date +%s)
  # From the state directory: whatever the tools leave behind goes with it.
  (cd "$STATE" && "$VENV/bin/schemathesis" --no-color run "$SPEC" \
    --url "$API_CONTRACT_URL" --tls-verify "$API_CONTRACT_CA" \
    -H "X-API-Key: $(cat "$API_CONTRACT_KEYS/$role")" \
    --exclude-path /metrics \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
    --workers 1 --request-timeout 40 --generation-database none) ||
    die "schemathesis as the $role key found the failures above (seed $SEED)"
  log "schemathesis as the $role key passed in $(($(date +%s) - start)) s (seed $SEED)"
  still_up "schemathesis as the $role key"
  passed=$((passed + 1))
done
echo "api-contract: docs/openapi.yaml holds against the gatekeeper; schemathesis seed $SEED"
echo "api-contract: $((passed + 1)) passed, 0 failed"
