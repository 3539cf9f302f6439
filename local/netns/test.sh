#!/usr/bin/env bash
# The deployed network, run as real hosts (make netns-test): six network namespaces on one
# private bridge (10.77.0.0/24), the real gatekeeper, proxy and MariaDB servers in them on the
# AWS ports (443, 5000, 3306), and on every host but `internet` an nftables ruleset generated
# from terraform/security.tf (local/netns/sg_to_nft.py). Then checks what the security groups
# promise, and that the system serves queries end to end from `internet`.
#
#   internet 10.77.0.10   gatekeeper 10.77.0.2   proxy 10.77.0.3
#   manager  10.77.0.4    worker-1   10.77.0.5   worker-2 10.77.0.6
#
# Needs root and `ip netns` (prints SKIP and exits 0 otherwise: make test stays honest by
# saying so, loudly). Everything it creates (namespaces, the bridge, veths, processes, its
# state directory) is removed on every exit path; the last check asserts that.
# Binaries: SQLGATE_BIN_DIR (target/debug). Time limit: SQLGATE_NETNS_TIMEOUT seconds (240).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${SQLGATE_BIN_DIR:-$ROOT/target/debug}
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
P=sqlg-                       # namespace prefix: sqlg-internet, sqlg-proxy, ...
NET=10.77.0
declare -A ADDR=([internet]=$NET.10 [gatekeeper]=$NET.2 [proxy]=$NET.3 [manager]=$NET.4 [worker-1]=$NET.5 [worker-2]=$NET.6)
declare -A GROUP=([gatekeeper]=gatekeeper [proxy]=proxy [manager]=db [worker-1]=db [worker-2]=db)
HOSTS=(internet gatekeeper proxy manager worker-1 worker-2)
DBS=(manager worker-1 worker-2)
ADMIN_CIDR=$NET.250/32          # the admin network: no host here has it, so SSH is closed to all

skip() { printf '\n!!!!! SKIP: make netns-test: %s\n\n' "$*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces and nftables)"
command -v ip >/dev/null && ip netns list >/dev/null 2>&1 || skip "no 'ip netns' here"
if ! ip netns add "${P}probe" 2>/dev/null; then skip "cannot create network namespaces here"; fi
ip netns del "${P}probe"
"$ROOT/scripts/os-packages.sh" --for "make netns-test" nftables iproute2 mariadb-server mariadb-client curl jq iputils-ping
[[ -x $BIN/proxy && -x $BIN/gatekeeper ]] || { echo "netns: no binaries in $BIN (cargo build -p proxy -p gatekeeper)" >&2; exit 1; }

STATE=$(mktemp -d /tmp/sqlgate-netns.XXXXXX)
export SQLGATE_LOCAL_DIR=$STATE
PIDS=()
WATCHDOG=""
pass=0 fail=0
log() { printf 'netns: %s\n' "$*" >&2; }
check() { # check DESCRIPTION COMMAND...
  local d=$1; shift
  if "$@"; then pass=$((pass + 1)); printf 'PASS  %s\n' "$d"; else fail=$((fail + 1)); printf 'FAIL  %s\n' "$d"; fi
}

cleanup() {
  local rc=$? pid h
  trap - EXIT INT TERM
  [[ -e $STATE/timed-out ]] && echo "FAIL  timed out after ${SQLGATE_NETNS_TIMEOUT:-240} s"
  pkill -P "$WATCHDOG" 2>/dev/null || true; kill "$WATCHDOG" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  SQLGATE_MANAGER_PORT=3306 SQLGATE_WORKER_PORTS="3306 3306" "$ROOT/local/cluster.sh" stop >/dev/null 2>&1 || true
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for h in "${HOSTS[@]}" sw; do ip netns del "$P$h" 2>/dev/null || true; done
  rm -rf "$STATE"
  left=$(ip netns list | grep -c "^$P" || true)
  links=$(ip -o link show | grep -c "sqlg" || true)
  if [[ $left != 0 || $links != 0 ]]; then echo "FAIL  teardown: $left namespaces, $links links left"; rc=1
  else echo "PASS  teardown: no sqlg-* namespace, bridge or veth left"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole run is bounded: a hang anywhere ends in the same cleanup.
# Its output goes to /dev/null: an orphaned sleep must not hold the caller's pipe open.
( sleep "${SQLGATE_NETNS_TIMEOUT:-240}"; touch "$STATE/timed-out"; kill -TERM $$ ) >/dev/null 2>&1 &
WATCHDOG=$!

in_ns() { local h=$1; shift; ip netns exec "$P$h" "$@"; }

# --- the network: a bridge in a namespace of its own, one veth per host -----------------
for h in "${HOSTS[@]}" sw; do
  ip netns list | grep -q "^$P$h\b" && { log "stale namespace $P$h (removing)"; ip netns del "$P$h"; }
done
ip netns add "${P}sw"
ip -n "${P}sw" link add br0 type bridge
ip -n "${P}sw" link set br0 up
i=0
for h in "${HOSTS[@]}"; do
  ip netns add "$P$h"
  ip link add "sqlg$i" netns "$P$h" type veth peer name "p$i" netns "${P}sw"
  ip -n "${P}sw" link set "p$i" master br0 up
  ip -n "$P$h" link set "sqlg$i" name eth0
  ip -n "$P$h" addr add "${ADDR[$h]}/24" dev eth0
  ip -n "$P$h" link set eth0 up
  ip -n "$P$h" link set lo up
  i=$((i + 1))
done
# ICMP echo sockets for root in the proxy's namespace (the ping prober tries those first).
in_ns proxy sysctl -qw net.ipv4.ping_group_range="0 2147483647"

# --- the firewall: one nft ruleset per host, from the Terraform security groups ---------
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import hcl2' 2>/dev/null || "$VENV/bin/pip" install -q -r "$ROOT/local/netns/requirements.txt"
hosts_arg=""
for h in gatekeeper proxy "${DBS[@]}"; do hosts_arg+="${hosts_arg:+,}$h=${GROUP[$h]}:${ADDR[$h]}"; done
"$VENV/bin/python" "$ROOT/local/netns/sg_to_nft.py" --hosts "$hosts_arg" \
  --list-var allowed_cidrs=0.0.0.0/0 --var "admin_cidr=$ADMIN_CIDR" "$STATE/nft"
for h in gatekeeper proxy "${DBS[@]}"; do in_ns "$h" nft -f "$STATE/nft/$h.nft"; done

# --- the databases, one per namespace, from local/cluster.sh ----------------------------
addrs=""
for h in gatekeeper proxy "${DBS[@]}"; do addrs+=" $h=${ADDR[$h]}"; done
export SQLGATE_HOST_ADDRS=$addrs SQLGATE_ACCOUNT_HOST="$NET.%" SQLGATE_NETNS_PREFIX=$P
export SQLGATE_MANAGER_PORT=3306 SQLGATE_WORKER_PORTS="3306 3306" SQLGATE_SEMI_SYNC_TIMEOUT_MS=10000
"$ROOT/local/cluster.sh" start 2>&1 | sed 's/^/  /'
# shellcheck disable=SC1091
. "$STATE/secrets.env"
TLS=$STATE/tls

# --- the services ------------------------------------------------------------------------
mkdir -p "$STATE/keys" && chmod 700 "$STATE/keys"
for role in read write; do
  out=$("$BIN/gatekeeper" keygen --role "$role" | grep -v '^#')
  ( umask 077; sed -n 1p <<<"$out" >"$STATE/keys/$role"; sed -n 2p <<<"$out" >>"$STATE/keys/keys.txt" )
done
( export PROXY_LISTEN=${ADDR[proxy]}:5000 PROXY_TOKEN=$PROXY_TOKEN PROXY_MANAGER=${ADDR[manager]}:3306 \
    PROXY_WORKERS=${ADDR[worker-1]}:3306,${ADDR[worker-2]}:3306 \
    PROXY_READ_USER=sqlgate_read PROXY_READ_PASSWORD=$READ_PASSWORD PROXY_WRITE_USER=sqlgate_write \
    PROXY_WRITE_PASSWORD=$WRITE_PASSWORD PROXY_ADMIN_USER=sqlgate_admin PROXY_ADMIN_PASSWORD=$ADMIN_PASSWORD \
    PROXY_APP_SCHEMAS=sakila,app PROXY_TLS_CERT=$TLS/proxy.pem PROXY_TLS_KEY=$TLS/proxy-key.pem \
    PROXY_DB_CA=$TLS/ca.pem PROXY_MONITOR_USER=sqlgate_monitor PROXY_MONITOR_PASSWORD=$MONITOR_PASSWORD \
    PROXY_DEFAULT_MODE=ping PROXY_HTTP_WORKERS=1 RUST_LOG=info
  exec ip netns exec "${P}proxy" "$BIN/proxy" </dev/null >"$STATE/proxy.log" 2>&1 ) & PIDS+=($!)
( export GATEKEEPER_LISTEN=${ADDR[gatekeeper]}:443 GATEKEEPER_ADMIN_LISTEN=127.0.0.1:9090 \
    GATEKEEPER_PROXY_URL=https://${ADDR[proxy]}:5000 GATEKEEPER_PROXY_CA=$TLS/ca.pem \
    GATEKEEPER_TLS_CERT=$TLS/gatekeeper.pem GATEKEEPER_TLS_KEY=$TLS/gatekeeper-key.pem \
    GATEKEEPER_PROXY_TOKEN=$PROXY_TOKEN GATEKEEPER_KEYS_FILE=$STATE/keys/keys.txt \
    GATEKEEPER_HTTP_WORKERS=1 RUST_LOG=info
  exec ip netns exec "${P}gatekeeper" "$BIN/gatekeeper" </dev/null >"$STATE/gatekeeper.log" 2>&1 ) & PIDS+=($!)

GK=https://${ADDR[gatekeeper]}
ready=0
for _ in $(seq 1 60); do
  if in_ns internet curl -fsS --max-time 2 --cacert "$TLS/ca.pem" "$GK/ready" >/dev/null 2>&1; then ready=1; break; fi
  sleep 1
done
if [[ $ready != 1 ]]; then
  tail -n 20 "$STATE/proxy.log" "$STATE/gatekeeper.log" >&2
  echo "FAIL  the gatekeeper did not become ready from internet in 60 s"; exit 1
fi
log "up: gatekeeper $GK ready from internet"

# --- the checks --------------------------------------------------------------------------
# tcp FROM TO PORT: open (connected), refused (RST: the firewall let it through, nothing
# listens) or filtered (no answer in 2 s: dropped, as a security group does).
tcp() {
  local rc=0
  in_ns "$1" timeout 2 bash -c "exec 3<>/dev/tcp/${ADDR[$2]}/$3" 2>/dev/null || rc=$?
  case $rc in 0) echo open ;; 124) echo filtered ;; *) echo refused ;; esac
}
expect() { # expect FROM TO PORT STATE
  local got; got=$(tcp "$1" "$2" "$3")
  check "$1 -> $2:$3 is $4 (got $got)" test "$got" = "$4"
}

expect internet gatekeeper 443 open
for h in gatekeeper proxy "${DBS[@]}"; do expect internet "$h" 22 filtered; done
expect internet proxy 5000 filtered
for d in "${DBS[@]}"; do expect internet "$d" 3306 filtered; done
expect gatekeeper proxy 5000 open
expect gatekeeper proxy 22 refused          # the SSH jump is allowed (no sshd runs here)
expect gatekeeper manager 22 refused
expect gatekeeper manager 3306 filtered     # gatekeeper egress: 5000 and 22 only
for d in "${DBS[@]}"; do expect proxy "$d" 3306 open; done
expect proxy gatekeeper 443 filtered        # proxy egress: 3306 and ICMP echo to the db group only
expect worker-1 manager 3306 open
expect worker-2 worker-1 3306 open
expect manager proxy 5000 filtered
expect worker-1 gatekeeper 443 filtered     # db egress: 3306 to the db group only
check "internet cannot ping the manager" bash -c "! ip netns exec ${P}internet ping -c1 -W1 ${ADDR[manager]} >/dev/null"
check "gatekeeper cannot ping worker-1 (egress)" bash -c "! ip netns exec ${P}gatekeeper ping -c1 -W1 ${ADDR[worker-1]} >/dev/null"
for d in "${DBS[@]}"; do
  check "proxy pings $d (ICMP echo allowed)" bash -c "ip netns exec ${P}proxy ping -c1 -W2 ${ADDR[$d]} >/dev/null"
done

# The proxy's own view: ping mode with ICMP RTTs measured across the bridge.
rtt_ok() {
  local j i
  for i in $(seq 1 10); do
    j=$(in_ns proxy curl -fsS --max-time 2 --cacert "$TLS/ca.pem" "https://${ADDR[proxy]}:5000/ready" 2>/dev/null) || true
    if jq -e '[.nodes[] | select(.rtt_method == "icmp" and (.rtt_ms | type) == "number")] | length == 3' <<<"$j" >/dev/null 2>&1; then
      printf '      proxy /ready: %s\n' "$(jq -c '[.nodes[] | {name, rtt_method, rtt_ms}]' <<<"$j")"
      return 0
    fi
    sleep 1
  done
  printf '      proxy /ready: %s\n' "$j"
  return 1
}
check "proxy /ready: rtt_method icmp with an RTT for all 3 nodes" rtt_ok

query() { # query ROLE JSON
  in_ns internet curl -sS --max-time 10 --cacert "$TLS/ca.pem" -X POST "$GK/query" \
    -H 'Content-Type: application/json' -H "X-API-Key: $(cat "$STATE/keys/$1")" -d "$2"
}
read_rows() {
  local r; r=$(query read '{"sql": "SELECT first_name FROM sakila.actor WHERE actor_id = ?", "params": [7], "mode": "ping"}')
  printf '      read: %s\n' "$(jq -c '{node, rows}' <<<"$r" 2>/dev/null || echo "$r")"
  jq -e '.rows | length == 1' <<<"$r" >/dev/null
}
check "internet -> gatekeeper: a read returns rows" read_rows
marker="netns-$$"
write_replicates() {
  local r d i n
  r=$(query write "{\"sql\": \"INSERT INTO sakila.actor (first_name, last_name) VALUES (?, ?)\", \"params\": [\"NETNS\", \"$marker\"]}")
  printf '      write: %s\n' "$(jq -c '{node, rows_affected}' <<<"$r" 2>/dev/null || echo "$r")"
  jq -e '.rows_affected == 1 and .node == "manager"' <<<"$r" >/dev/null || return 1
  for d in worker-1 worker-2; do
    for i in $(seq 1 20); do
      n=$(mariadb --no-defaults --protocol=socket --socket="$STATE/db/$d/mysqld.sock" -uroot -N -B \
        -e "SELECT COUNT(*) FROM sakila.actor WHERE last_name = '$marker'" 2>/dev/null || echo 0)
      [[ $n == 1 ]] && continue 2
      sleep 0.5
    done
    echo "      $d does not have the write"; return 1
  done
}
check "internet -> gatekeeper: a write replicates to worker-1 and worker-2" write_replicates

echo "netns-test: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
