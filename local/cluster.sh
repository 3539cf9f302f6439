#!/usr/bin/env bash
# The local cluster: one manager and N workers on loopback, GTID replication, from the OS's
# mariadbd or mysqld (MariaDB is installed from the OS packages when neither is present).
#
#   local/cluster.sh start|stop|status|wait|stop-node NAME|switchover [NAME]|failover|primary
#
# Environment (defaults suit `make up`):
#   SQLGATE_LOCAL_DIR     state directory                  (<repo>/.local)
#   SQLGATE_MANAGER_PORT  manager port                     (3307)
#   SQLGATE_WORKER_PORTS  worker ports, space-separated    ("3308 3309"; set and empty: none)
#   SQLGATE_REPLICATION   1: users, schema, replication; 0: bare GTID-ready instances only
#   SQLGATE_APP_SCHEMAS   application schemas the sqlgate accounts are granted on
#                         ("sakila app sbtest": the sample, yours (empty), the benchmarks')
#   SQLGATE_SEMI_SYNC_TIMEOUT_MS  how long the primary waits for a worker to acknowledge a
#                         commit (semi-synchronous, AFTER_SYNC) before it carries on without
#                         one; the default, 4294967295, never does: a commit no worker has is
#                         never acknowledged (docs/reliability.md). 0 turns semi-sync off.
#   SQLGATE_HOST_ADDRS    "name=IPv4 ..." for nodes (and services) on hosts of their own
#                         (local/netns/): a node binds to its address, replicates from the
#                         primary's, and every certificate names its address too; unset:
#                         everything on 127.0.0.1
#   SQLGATE_ACCOUNT_HOST  the host part of every account ('127.0.0.1'; local/netns/: its subnet)
#   SQLGATE_NETNS_PREFIX  start node N inside network namespace <prefix>N (local/netns/)
#   SQLGATE_WATCH_PID     stop the cluster when this process exits (tests)
#   SQLGATE_WATCH_CLEANUP 1: and then delete the state directory
#
# TLS: a private CA and a certificate for each node and service live in $SQLGATE_LOCAL_DIR/tls/
# (keys mode 0600, made once with openssl); every node requires TLS on TCP
# (require_secure_transport) and replication verifies the manager's certificate.
#
# Roles: the node named `manager` is the first primary; `switchover` and `failover` promote a
# worker and record the primary's name in $SQLGATE_LOCAL_DIR/primary, which `start` follows.
# Every node starts read_only (fenced); only the recorded primary is made writable, so an old
# primary that comes back never takes writes.
#
# Each node lives in $SQLGATE_LOCAL_DIR/db/<node>/ (my.cnf, data/, mysqld.sock, mysqld.pid,
# error.log); root connects over the socket without a password. Generated passwords are kept in
# $SQLGATE_LOCAL_DIR/secrets.env (mode 0600) and never passed on a command line.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SQLGATE_LOCAL_DIR:-$ROOT/.local}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
MANAGER_PORT=${SQLGATE_MANAGER_PORT:-3307}
read -r -a WORKER_PORTS <<<"${SQLGATE_WORKER_PORTS-3308 3309}"
REPLICATION=${SQLGATE_REPLICATION:-1}
SEMI_SYNC_TIMEOUT_MS=${SQLGATE_SEMI_SYNC_TIMEOUT_MS:-4294967295}
[[ $SEMI_SYNC_TIMEOUT_MS =~ ^[0-9]+$ ]] || { printf 'cluster: error: SQLGATE_SEMI_SYNC_TIMEOUT_MS must be a number of milliseconds\n' >&2; exit 64; }
read -r -a APP_SCHEMAS <<<"${SQLGATE_APP_SCHEMAS:-sakila app sbtest}"
for s in "${APP_SCHEMAS[@]}"; do
  # Letters and digits only: `_` and `%` are wildcards in a schema-level GRANT.
  [[ $s =~ ^[A-Za-z0-9]+$ ]] || { printf 'cluster: error: bad schema name in SQLGATE_APP_SCHEMAS (letters and digits only): %s\n' "$s" >&2; exit 64; }
done
SECRETS=$DIR/secrets.env
HOST_ADDRS=${SQLGATE_HOST_ADDRS:-}
ACCOUNT_HOST=${SQLGATE_ACCOUNT_HOST:-127.0.0.1}
[[ $ACCOUNT_HOST =~ ^[0-9.%]+$ ]] || { printf 'cluster: error: SQLGATE_ACCOUNT_HOST must be an IPv4 address or pattern\n' >&2; exit 64; }
NETNS_PREFIX=${SQLGATE_NETNS_PREFIX:-}

# The address of node or service `$1`: its entry in SQLGATE_HOST_ADDRS, else 127.0.0.1.
addr_of() {
  local entry
  for entry in $HOST_ADDRS; do
    [ "${entry%%=*}" = "$1" ] && { echo "${entry#*=}"; return 0; }
  done
  echo 127.0.0.1
}

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }

nodes() {
  echo "manager $MANAGER_PORT 1"
  local i=1
  for p in "${WORKER_PORTS[@]}"; do
    echo "worker-$i $p $((i + 1))"
    i=$((i + 1))
  done
}

find_bin() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    for d in /usr/sbin /usr/local/sbin /usr/local/mysql/bin; do
      [ -x "$d/$name" ] && { echo "$d/$name"; return 0; }
    done
  done
  return 1
}

ensure_server() {
  if ! SERVER=$(find_bin mariadbd mysqld); then
    log "no mariadbd or mysqld found: installing MariaDB from the OS packages"
    "$ROOT/scripts/os-packages.sh" --for cluster.sh mariadb-server mariadb-client ||
      die "install mariadb-server (or mysql-server) first"
    SERVER=$(find_bin mariadbd mysqld) || die "MariaDB installation failed"
  fi
  if "$SERVER" --version | grep -qi mariadb; then
    FLAVOR=mariadb
    CLIENT=$(find_bin mariadb mysql) || die "no mariadb client found"
    ADMIN=$(find_bin mariadb-admin mysqladmin) || die "no mariadb-admin found"
    INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db) || die "no mariadb-install-db found"
  else
    FLAVOR=mysql
    CLIENT=$(find_bin mysql) || die "no mysql client found"
    ADMIN=$(find_bin mysqladmin) || die "no mysqladmin found"
  fi
}

NODES=()
node_dir() { echo "$DIR/db/$1"; }

# Runs SQL from stdin on a node as root over its socket.
sql() {
  local node=$1; shift
  "$CLIENT" --no-defaults --protocol=socket --socket="$(node_dir "$node")/mysqld.sock" -uroot \
    --batch --skip-column-names "$@"
}

write_cnf() {
  local node=$1 port=$2 id=$3 d; d=$(node_dir "$node")
  mkdir -p "$d/data"
  chmod 700 "$d"
  {
    echo "[mysqld]"
    echo "user=$(id -un)"
    echo "datadir=$d/data"
    echo "socket=$d/mysqld.sock"
    echo "pid-file=$d/mysqld.pid"
    echo "log-error=$d/error.log"
    echo "port=$port"
    echo "bind-address=$(addr_of "$node")"
    echo "skip-name-resolve"
    echo "server-id=$id"
    echo "log-bin=binlog"
    echo "relay-log=relay"
    echo "binlog_format=ROW"
    echo "sync_binlog=1"
    echo "innodb_flush_log_at_trx_commit=1"
    echo "innodb_buffer_pool_size=64M"
    echo "innodb_log_file_size=16M"
    echo "max_connections=300"
    echo "performance_schema=OFF"
    echo "local_infile=OFF"
    if [ "$FLAVOR" = mariadb ]; then
      echo "gtid_strict_mode=ON"
      echo "log_slave_updates=ON"
      echo "max_statement_time=0"
    else
      echo "gtid_mode=ON"
      echo "enforce_gtid_consistency=ON"
      echo "log_replica_updates=ON"
      echo "mysqlx=OFF"
    fi
    if [ "$REPLICATION" = 1 ]; then
      echo "ssl_ca=$TLS/ca.pem"
      echo "ssl_cert=$TLS/$node.pem"
      echo "ssl_key=$TLS/$node-key.pem"
      echo "require_secure_transport=ON"
    fi
    if [ "$REPLICATION" = 1 ]; then
      # Fenced at boot, the primary included: `start`, `switchover` and `failover` make the
      # one primary writable (`promote`).
      echo "read_only=ON"
      if [ "$FLAVOR" = mysql ]; then echo "super_read_only=ON"; fi
      semi_sync_cnf
    fi
  } >"$d/my.cnf"
}

# Semi-synchronous replication in the lossless mode: every node can acknowledge as a replica
# and, once promoted, wait as a primary (`promote` turns the primary side on; at boot it is off,
# since a primary with no replica yet would wait on its own bootstrap).
semi_sync_cnf() {
  [ "$SEMI_SYNC_TIMEOUT_MS" != 0 ] || return 0
  if [ "$FLAVOR" = mariadb ]; then
    echo "rpl_semi_sync_slave_enabled=ON"
    echo "rpl_semi_sync_master_wait_point=AFTER_SYNC"
    echo "rpl_semi_sync_master_timeout=$SEMI_SYNC_TIMEOUT_MS"
  else
    echo "plugin_load_add=semisync_source.so"
    echo "plugin_load_add=semisync_replica.so"
    echo "rpl_semi_sync_replica_enabled=ON"
    echo "rpl_semi_sync_source_wait_point=AFTER_SYNC"
    echo "rpl_semi_sync_source_timeout=$SEMI_SYNC_TIMEOUT_MS"
  fi
}

running_pid() {
  local pidfile; pidfile="$(node_dir "$1")/mysqld.pid"
  [ -s "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$(node_dir "$1")/my.cnf" || return 1
  echo "$pid"
}

# Creates the system tables in `$1/data` with the node's own my.cnf.
init_datadir() {
  local d=$1
  if [ "$FLAVOR" = mariadb ]; then
    "$INSTALL_DB" --defaults-file="$d/my.cnf" --auth-root-authentication-method=socket --skip-test-db
  else
    "$SERVER" --defaults-file="$d/my.cnf" --initialize-insecure
  fi
}

start_node() {
  local node=$1 port=$2 id=$3 d; d=$(node_dir "$node")
  write_cnf "$node" "$port" "$id"
  if running_pid "$node" >/dev/null; then
    log "$node already running on port $port"
    return 0
  fi
  rm -f "$d/mysqld.pid" "$d/mysqld.sock" "$d/mysqld.sock.lock"
  if [ ! -d "$d/data/mysql" ]; then
    log "initialising $node ($FLAVOR)"
    # A busy machine can fail a bootstrap transiently (for example when the kernel's
    # asynchronous I/O contexts are briefly exhausted by other servers starting); try three
    # times, and show the server's own error log, not only the installer's advice, if all fail.
    local attempt ok=0
    for attempt in 1 2 3; do
      rm -rf "$d/data" && mkdir -p "$d/data" && rm -f "$d/error.log"
      if init_datadir "$d" >"$d/install.log" 2>&1; then ok=1; break; fi
      log "init of $node failed (attempt $attempt of 3)"
      sleep 1
    done
    if [ "$ok" != 1 ]; then
      cat "$d/install.log" >&2
      [ -f "$d/error.log" ] && { echo "--- $d/error.log (last 30 lines)" >&2; tail -n 30 "$d/error.log" >&2; }
      df -h "$d" >&2 || true
      die "init of $node failed"
    fi
  fi
  local netns=()
  [ -z "$NETNS_PREFIX" ] || netns=(ip netns exec "$NETNS_PREFIX$node")
  log "starting $node on $(addr_of "$node"):$port"
  # Only transactional tables can be created: a `/transaction` is all or nothing only if every
  # table it writes is (an attacker review rolled back a transaction that had written a MyISAM
  # row, which stayed). On the command line, not in my.cnf, because the bootstrap that creates
  # the system tables needs the other engines.
  local engines
  if [ "$FLAVOR" = mariadb ]; then engines=("--enforce-storage-engine=InnoDB")
  else engines=("--disabled-storage-engines=MyISAM,MEMORY,MERGE,CSV,ARCHIVE,BLACKHOLE,FEDERATED")
  fi
  setsid nohup ${netns[@]+"${netns[@]}"} "$SERVER" --defaults-file="$d/my.cnf" "${engines[@]}" </dev/null >>"$d/server.out" 2>&1 &
  local i
  for i in $(seq 1 120); do
    if "$ADMIN" --no-defaults --protocol=socket --socket="$d/mysqld.sock" -uroot ping >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 30 "$d/error.log" >&2 || true
  die "$node did not start (see $d/error.log)"
}

TLS=$DIR/tls

# Issues `name`'s certificate from the local CA, for 127.0.0.1, localhost and its own address
# (once).
issue_cert() {
  local name=$1
  [ -s "$TLS/$name.pem" ] && [ -s "$TLS/$name-key.pem" ] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sqlgate $name" \
    -keyout "$TLS/$name-key.pem" -out "$TLS/$name.csr" 2>/dev/null
  openssl x509 -req -in "$TLS/$name.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca-key.pem" \
    -CAcreateserial -days 825 -sha256 -out "$TLS/$name.pem" \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\n' "$(addr=$(addr_of "$name"); [ "$addr" = 127.0.0.1 ] || echo ",IP:$addr")"; printf 'extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n') 2>/dev/null
  rm -f "$TLS/$name.csr"
}

# The local deployment's own CA and a certificate for every node and both services.
ensure_tls() {
  command -v openssl >/dev/null || die "openssl is needed for the local TLS certificates"
  ( umask 077
    mkdir -p "$TLS"
    if [ ! -s "$TLS/ca.pem" ] || [ ! -s "$TLS/ca-key.pem" ]; then
      log "creating the local CA in $TLS"
      openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=sqlgate local CA" -keyout "$TLS/ca-key.pem" -out "$TLS/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    local entry node
    for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"; issue_cert "$node"; done
    issue_cert proxy
    issue_cert gatekeeper
    issue_cert client
    # sysbench 1.0 (--mysql-ssl=on) reads these names from its working directory.
    mkdir -p "$TLS/sysbench"
    ln -sf ../ca.pem "$TLS/sysbench/cacert.pem"
    ln -sf ../client.pem "$TLS/sysbench/client-cert.pem"
    ln -sf ../client-key.pem "$TLS/sysbench/client-key.pem" )
  # Certificates are public; the keys stay 0600.
  chmod 644 "$TLS"/*.pem
  chmod 600 "$TLS"/*-key.pem
  chmod 755 "$TLS" "$TLS/sysbench"
}

random_secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

SECRET_NAMES="REPL_PASSWORD READ_PASSWORD WRITE_PASSWORD ADMIN_PASSWORD MONITOR_PASSWORD SBTEST_PASSWORD PROXY_TOKEN"

# Creates the secrets file, or adds the secrets a newer version needs to an existing one.
ensure_secrets() {
  local name
  ( umask 077
    touch "$SECRETS"
    for name in $SECRET_NAMES; do
      grep -q "^$name=" "$SECRETS" || echo "$name=$(random_secret)" >>"$SECRETS"
    done )
}

load_secrets() {
  ensure_secrets
  # shellcheck disable=SC1090
  . "$SECRETS"
}

# The three accounts the proxy runs statements as, one per key role, each with exactly these
# privileges on the application schemas and nothing anywhere else (docs/security.md).
READ_PRIVILEGES="SELECT, SHOW VIEW"
WRITE_PRIVILEGES="$READ_PRIVILEGES, INSERT, UPDATE, DELETE"
ADMIN_PRIVILEGES="$WRITE_PRIVILEGES, CREATE, DROP, ALTER, INDEX, CREATE VIEW, REFERENCES"

# SQL that (re)creates one account with exactly `privileges` on every application schema:
# everything it had before is revoked first, so a re-run also removes stray grants.
account_sql() {
  local user=$1 password=$2 privileges=$3 s
  echo "CREATE USER IF NOT EXISTS '$user'@'$ACCOUNT_HOST' IDENTIFIED BY '$password';"
  echo "ALTER USER '$user'@'$ACCOUNT_HOST' IDENTIFIED BY '$password';"
  echo "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '$user'@'$ACCOUNT_HOST';"
  for s in "${APP_SCHEMAS[@]}"; do
    echo "GRANT $privileges ON \`$s\`.* TO '$user'@'$ACCOUNT_HOST';"
  done
}

# What the bootstrap sets depends on: its own SQL, the schemas, the secrets, the flavour.
bootstrap_stamp() {
  { declare -f bootstrap_manager account_sql; echo "${APP_SCHEMAS[*]} $FLAVOR ${SQLGATE_ACCOUNT_HOST:-}"; cat "$SECRETS"; } |
    sha256sum | cut -d' ' -f1
}

bootstrap_manager() {
  local monitor_grant="REPLICATION CLIENT"
  if [ "$FLAVOR" = mariadb ]; then monitor_grant="SLAVE MONITOR"; fi
  local names="'PENELOPE','NICK','ED','JENNIFER','JOHNNY','BETTE','GRACE','MATTHEW','JOE','CHRISTIAN','ZERO','KARL','UMA','VIVIEN','CUBA','FRED','HELEN','DAN','BOB','LUCILLE'"
  local surnames="'GUINESS','WAHLBERG','CHASE','DAVIS','LOLLOBRIGIDA','NICHOLSON','MOSTEL','JOHANSSON','SWANK','GABLE','CAGE','BERRY','WOOD','BERGEN','OLIVIER','COSTNER','VOIGHT','TORN','FAWCETT','TRACY'"
  sql "$PRIMARY" <<SQL
$(for s in "${APP_SCHEMAS[@]}"; do echo "CREATE DATABASE IF NOT EXISTS \`$s\`;"; done)
CREATE DATABASE IF NOT EXISTS sbtest;
CREATE USER IF NOT EXISTS 'repl'@'$ACCOUNT_HOST' IDENTIFIED BY '$REPL_PASSWORD';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'$ACCOUNT_HOST';
DROP USER IF EXISTS 'sqlgate_app'@'$ACCOUNT_HOST';
$(account_sql sqlgate_read "$READ_PASSWORD" "$READ_PRIVILEGES")
$(account_sql sqlgate_write "$WRITE_PASSWORD" "$WRITE_PRIVILEGES")
$(account_sql sqlgate_admin "$ADMIN_PASSWORD" "$ADMIN_PRIVILEGES")
CREATE USER IF NOT EXISTS 'sqlgate_monitor'@'$ACCOUNT_HOST' IDENTIFIED BY '$MONITOR_PASSWORD';
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'sqlgate_monitor'@'$ACCOUNT_HOST';
GRANT $monitor_grant ON *.* TO 'sqlgate_monitor'@'$ACCOUNT_HOST';
CREATE USER IF NOT EXISTS 'sbtest'@'$ACCOUNT_HOST' IDENTIFIED BY '$SBTEST_PASSWORD';
GRANT ALL ON sbtest.* TO 'sbtest'@'$ACCOUNT_HOST';
CREATE TABLE IF NOT EXISTS sakila.actor (
  actor_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
  first_name VARCHAR(45) NOT NULL,
  last_name VARCHAR(45) NOT NULL,
  last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (actor_id),
  KEY idx_actor_last_name (last_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT IGNORE INTO sakila.actor (actor_id, first_name, last_name, last_update)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
  SELECT i, ELT(1 + (i - 1) % 20, $names), ELT(1 + (i * 7) % 20, $surnames), '2006-02-15 04:34:33' FROM n;
SQL
}

# The port of node `$1`.
port_of() {
  local node port
  for entry in "${NODES[@]}"; do read -r node port _ <<<"$entry"
    [ "$node" = "$1" ] && { echo "$port"; return 0; }
  done
  die "no node named $1"
}

# The node that takes writes: the last one promoted, else `manager`.
current_primary() {
  if [ -s "$DIR/primary" ]; then cat "$DIR/primary"; else echo manager; fi
}

# Points node `$1` at the primary `$2`, over TLS with its certificate verified, from the
# node's own GTID position (MASTER_USE_GTID=current_pos: what it has applied or, for a former
# primary, written). Re-applied on every start: GTID positions make it idempotent.
configure_worker() {
  local node=$1 primary=${2:-$PRIMARY} port
  port=$(port_of "$primary")
  if [ "$FLAVOR" = mariadb ]; then
    log "wiring $node to $primary over TLS (MASTER_USE_GTID=current_pos)"
    sql "$node" <<SQL
SET GLOBAL rpl_semi_sync_master_enabled = OFF;
STOP SLAVE;
-- A former primary's own writes are in its binlog, not in gtid_slave_pos (which
-- MASTER_GTID_WAIT waits on); on a node that never wrote the two are the same.
SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_current_pos;
CHANGE MASTER TO MASTER_HOST='$(addr_of "$primary")', MASTER_PORT=$port, MASTER_USER='repl',
  MASTER_PASSWORD='$REPL_PASSWORD', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1,
  MASTER_SSL=1, MASTER_SSL_CA='$TLS/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1;
START SLAVE;
SQL
  else
    log "wiring $node to $primary over TLS (SOURCE_AUTO_POSITION=1)"
    sql "$node" <<SQL
$( [ "$SEMI_SYNC_TIMEOUT_MS" = 0 ] || echo "SET GLOBAL rpl_semi_sync_source_enabled = OFF;" )
STOP REPLICA;
CHANGE REPLICATION SOURCE TO SOURCE_HOST='$(addr_of "$primary")', SOURCE_PORT=$port, SOURCE_USER='repl',
  SOURCE_PASSWORD='$REPL_PASSWORD', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1,
  SOURCE_SSL=1, SOURCE_SSL_CA='$TLS/ca.pem', SOURCE_SSL_VERIFY_SERVER_CERT=1;
START REPLICA;
SQL
  fi
}

# Makes node `$1` the primary: no replication of its own, writable, and (with workers to
# acknowledge) waiting for one of them on every commit; records it.
promote() {
  local node=$1
  log "promoting $node to primary"
  if [ "$FLAVOR" = mariadb ]; then
    sql "$node" <<SQL
STOP SLAVE;
RESET SLAVE ALL;
$( [ "$SEMI_SYNC_TIMEOUT_MS" = 0 ] || [ "${#WORKER_PORTS[@]}" = 0 ] || echo "SET GLOBAL rpl_semi_sync_master_enabled = ON;" )
SET GLOBAL read_only = OFF;
SQL
  else
    sql "$node" <<SQL
STOP REPLICA;
RESET REPLICA ALL;
$( [ "$SEMI_SYNC_TIMEOUT_MS" = 0 ] || [ "${#WORKER_PORTS[@]}" = 0 ] || echo "SET GLOBAL rpl_semi_sync_source_enabled = ON;" )
SET GLOBAL super_read_only = OFF;
SET GLOBAL read_only = OFF;
SQL
  fi
  echo "$node" >"$DIR/primary.tmp" && mv "$DIR/primary.tmp" "$DIR/primary"
  PRIMARY=$node
}

# Fences node `$1`: read_only, so no account the proxy uses can write there.
fence() {
  local node=$1
  log "fencing $node (read_only)"
  if [ "$FLAVOR" = mariadb ]; then
    sql "$node" -e "SET GLOBAL read_only = ON"
  else
    sql "$node" -e "SET GLOBAL super_read_only = ON"
  fi
}

# The GTID position node `$1` has: written or applied (`applied`), or received from its
# primary (`received`, a replica's IO position, which is what a semi-sync acknowledgement
# promised).
gtid_of() {
  local node=$1 what=$2
  if [ "$FLAVOR" = mariadb ]; then
    if [ "$what" = received ]; then
      sql "$node" -e "SHOW SLAVE STATUS\G" | awk -F': ' '/^ *Gtid_IO_Pos:/ { print $2 }'
    else
      sql "$node" -e "SELECT @@gtid_current_pos"
    fi
  else
    if [ "$what" = received ]; then
      sql "$node" -e "SELECT RECEIVED_TRANSACTION_SET FROM performance_schema.replication_connection_status" | tr -d '\n'
    else
      sql "$node" -e "SELECT @@gtid_executed" | tr -d '\n'
    fi
  fi
}

# Waits until node `$1` has applied GTID position `$2` (at most `$3` seconds).
wait_applied() {
  local node=$1 pos=$2 secs=${3:-60} ok
  [ -n "$pos" ] || return 0
  if [ "$FLAVOR" = mariadb ]; then
    ok=$(sql "$node" -e "SELECT MASTER_GTID_WAIT('$pos', $secs)")
  else
    ok=$(sql "$node" -e "SELECT WAIT_FOR_EXECUTED_GTID_SET('$pos', $secs)")
  fi
  [ "$ok" = 0 ]
}

# Fails (and says why) when node `$1` has written a transaction that the primary `$2` does not
# have: a former primary that committed something no worker received before it died. It can
# never replicate from `$2` (the GTID histories have diverged) and must be rebuilt from it.
check_history() {
  local node=$1 primary=$2 mine theirs entry d s n m
  if [ "$FLAVOR" = mariadb ]; then
    mine=$(sql "$node" -e "SELECT @@gtid_binlog_pos")
    theirs=$(sql "$primary" -e "SELECT @@gtid_binlog_state")
    for entry in ${mine//,/ }; do
      IFS=- read -r d s n <<<"$entry"
      m=$(tr ',' '\n' <<<"$theirs" | awk -F- -v d="$d" -v s="$s" '$1 == d && $2 == s { print $3 }')
      if [ -z "$m" ] || [ "$m" -lt "$n" ]; then
        log "$node wrote $entry, which $primary never received: its GTID history has diverged; it needs a rebuild (stop it, delete $(node_dir "$node"), start)"
        return 1
      fi
    done
  else
    mine=$(sql "$node" -e "SELECT @@gtid_executed" | tr -d '\n')
    theirs=$(sql "$primary" -e "SELECT @@gtid_executed" | tr -d '\n')
    [ "$(sql "$primary" -e "SELECT GTID_SUBSET('$mine', '$theirs')")" = 1 ] || {
      log "$node has transactions $primary never received: its GTID history has diverged; it needs a rebuild (stop it, delete $(node_dir "$node"), start)"
      return 1
    }
  fi
}

# Node `$1`'s replication state in one line (threads, positions, errors).
replica_state() {
  sql "$1" -e "SHOW SLAVE STATUS\G" 2>/dev/null | awk -F': ' '
    /^ *(Slave_IO_Running|Slave_SQL_Running|Slave_SQL_Running_State|Gtid_IO_Pos|Master_Port|Last_IO_Error|Last_SQL_Error):/ {
      sub(/^ +/, "", $1); printf "%s=%s; ", $1, $2 }'
  sql "$1" -e "SELECT CONCAT('gtid_current_pos=', @@gtid_current_pos, '; gtid_slave_pos=', @@gtid_slave_pos)" 2>/dev/null || true
}

# Waits until every running worker has applied everything the primary has committed. A node
# whose replication stops with an error (a former primary whose GTID history diverged: it
# wrote something no worker received before it died) is reported for a rebuild.
wait_caught_up() {
  local pos node i errors
  PRIMARY=$(current_primary)
  pos=$(gtid_of "$PRIMARY" applied)
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry";
    [ "$node" = "$PRIMARY" ] && continue
    running_pid "$node" >/dev/null || { log "$node is not running: not waited for"; continue; }
    [[ " ${SKIP_NODES:-} " == *" $node "* ]] && continue
    for i in $(seq 1 60); do
      wait_applied "$node" "$pos" 1 && continue 2
      errors=$(sql "$node" -e "SHOW SLAVE STATUS\G" 2>/dev/null | awk -F': ' '/Last_(IO|SQL)_Error: ./ { sub(/^ +/, "", $1); printf "%s: %s; ", $1, $2 }')
      if [ -n "$errors" ]; then
        die "$node cannot replicate from $PRIMARY ($errors): its GTID history has diverged; it needs a rebuild (stop it, delete $(node_dir "$node"), start)"
      fi
    done
    die "$node did not catch up with $PRIMARY ($pos) in 60 s: $(replica_state "$node"); see: local/cluster.sh status"
  done
}

start_watcher() {
  [ -n "${SQLGATE_WATCH_PID:-}" ] || return 0
  local self; self=$(readlink -f "${BASH_SOURCE[0]}")
  # The watcher's own output goes to /dev/null: with cleanup on, it deletes $DIR.
  setsid nohup bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    SQLGATE_WATCHER=1 "$2" stop
    if [ "$3" = 1 ]; then rm -rf "$4"; fi' _ "$SQLGATE_WATCH_PID" "$self" "${SQLGATE_WATCH_CLEANUP:-0}" "$DIR" </dev/null >/dev/null 2>&1 &
  echo $! >"$DIR/watcher.pid"
}

cmd_start() {
  ensure_server
  if [ "$REPLICATION" = 1 ]; then load_secrets; ensure_tls; fi
  for entry in "${NODES[@]}"; do read -r node port id <<<"$entry"; start_node "$node" "$port" "$id"; done
  if [ "$REPLICATION" = 1 ]; then
    PRIMARY=$(current_primary)
    # Writable first (root's bootstrap writes), waiting for workers once they are wired.
    SEMI_SYNC_TIMEOUT_MS=0 promote "$PRIMARY"
    # Only when something it sets changed: on a live cluster its REVOKE-then-GRANT would leave
    # the accounts without privileges for a moment (a fault test saw requests refused).
    local stamp; stamp=$(bootstrap_stamp)
    if [ "$(cat "$(node_dir "$PRIMARY")/bootstrap.sha256" 2>/dev/null)" = "$stamp" ]; then
      log "accounts, grants and schemas unchanged on $PRIMARY: not set again"
    else
      bootstrap_manager
      echo "$stamp" >"$(node_dir "$PRIMARY")/bootstrap.sha256"
    fi
    local diverged=()
    for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry";
      [ "$node" = "$PRIMARY" ] && continue
      # A diverged node stays fenced (read_only) and out of replication.
      if check_history "$node" "$PRIMARY"; then configure_worker "$node"; else diverged+=("$node"); fi
    done
    SKIP_NODES="${diverged[*]}" wait_caught_up
    promote "$PRIMARY"
    [ "${#diverged[@]}" = 0 ] || die "rebuild needed for: ${diverged[*]} (see above); the rest of the cluster is up"
  fi
  echo "$FLAVOR" >"$DIR/flavor"
  start_watcher
  log "cluster up ($FLAVOR): manager 127.0.0.1:$MANAGER_PORT, workers ${WORKER_PORTS[*]}"
}

# Stops one node: TERM, then KILL if it has not exited within 60 s.
stop_node() {
  local node=$1 pid i
  pid=$(running_pid "$node") || return 0
  log "stopping $node (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "$node did not stop in 60 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
  if [ -z "${SQLGATE_WATCHER:-}" ] && [ -s "$DIR/watcher.pid" ]; then
    kill "$(cat "$DIR/watcher.pid")" 2>/dev/null || true
    rm -f "$DIR/watcher.pid"
  fi
  local node
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"; stop_node "$node"; done
}

cmd_stop_node() {
  local want=$1 node
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"
    if [ "$node" = "$want" ]; then
      running_pid "$node" >/dev/null || log "$node is not running"
      stop_node "$node"
      return 0
    fi
  done
  die "no node named $want"
}

# Planned switchover to `$1` (default: the first running worker): the primary is fenced (writes
# stop: the proxies answer them 503 or hold them), the target applies everything the primary
# wrote, is promoted, and every other node, the old primary included, replicates from it. Reads
# never stop: workers keep serving while they are re-pointed.
cmd_switchover() {
  ensure_server; load_secrets
  local old target=${1:-} node pos
  old=$(current_primary)
  running_pid "$old" >/dev/null || die "the primary $old is not running: use failover"
  if [ -z "$target" ]; then
    for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"
      [ "$node" != "$old" ] && running_pid "$node" >/dev/null && { target=$node; break; }
    done
  fi
  [ -n "$target" ] || die "no running worker to switch over to"
  [ "$target" != "$old" ] || die "$target is already the primary"
  running_pid "$target" >/dev/null || die "$target is not running"
  fence "$old"
  pos=$(gtid_of "$old" applied)
  log "waiting for $target to apply $old's position $pos"
  if ! wait_applied "$target" "$pos" 30; then
    log "$target did not catch up in 30 s: $old stays the primary"
    promote "$old"
    die "switchover aborted"
  fi
  promote "$target"
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"
    [ "$node" = "$target" ] && continue
    running_pid "$node" >/dev/null && configure_worker "$node" "$target"
  done
  log "switchover done: $target is the primary; $old replicates from it"
}

# Failover after the primary is lost: the running worker that has received the most of its
# writes (with semi-sync, every acknowledged one is on at least one worker) applies all it
# received, is promoted, and the others replicate from it. A primary that is still running is
# fenced first. When the old primary comes back (`start`), it is read_only and rejoins as a
# replica if its GTID history allows, else `status` says it needs a rebuild.
cmd_failover() {
  ensure_server; load_secrets
  local old best="" best_seq=-1 node received seq
  old=$(current_primary)
  if running_pid "$old" >/dev/null; then
    log "$old is still running: fencing it before anything is promoted"
    fence "$old"
  fi
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"
    [ "$node" = "$old" ] && continue
    running_pid "$node" >/dev/null || continue
    received=$(gtid_of "$node" received)
    seq=$(max_seq "$received" "$(gtid_of "$node" applied)")
    log "$node has received up to $received"
    if [ "$seq" -gt "$best_seq" ]; then best=$node; best_seq=$seq; fi
  done
  [ -n "$best" ] || die "no running worker to promote"
  received=$(gtid_of "$best" received)
  log "waiting for $best to apply what it received ($received)"
  wait_applied "$best" "$received" 60 || die "$best did not apply its relay log in 60 s"
  promote "$best"
  for entry in "${NODES[@]}"; do read -r node _ _ <<<"$entry"
    [ "$node" = "$best" ] || [ "$node" = "$old" ] && continue
    running_pid "$node" >/dev/null && configure_worker "$node" "$best"
  done
  log "failover done: $best is the primary"
}

# The highest sequence number in GTID lists (MariaDB `domain-server-seq`, MySQL `uuid:1-N`).
max_seq() {
  printf '%s\n' "$@" | tr ',' '\n' | sed -E 's/.*[-:]([0-9]+)[[:space:]]*$/\1/;t;d' | sort -n | tail -n 1 | grep . || echo 0
}

cmd_status() {
  ensure_server
  local node port pid rc=0
  for entry in "${NODES[@]}"; do read -r node port _ <<<"$entry";
    if pid=$(running_pid "$node"); then
      printf '%-10s running  pid=%-8s 127.0.0.1:%s' "$node" "$pid" "$port"
      if [ "$node" = "$(current_primary)" ]; then
        printf ' primary'
      else
        local st
        st=$("$CLIENT" --no-defaults --protocol=socket --socket="$(node_dir "$node")/mysqld.sock" -uroot \
          -e "SHOW SLAVE STATUS\G" 2>/dev/null | awk -F': ' '
            /^ *(Slave|Replica)_(IO|SQL)_Running:|Seconds_Behind_(Master|Source):|Gtid_IO_Pos:/ {
              gsub(/^ +/, "", $1); printf " %s=%s", $1, $2 }
            /Last_(IO|SQL)_Error: ./ { gsub(/^ +/, "", $1); printf " %s=\"%s\"", $1, $2 }')
        printf '%s' "${st:- replication=not configured}"
      fi
      printf '\n'
    else
      printf '%-10s stopped  127.0.0.1:%s\n' "$node" "$port"
      rc=3
    fi
  done
  return $rc
}

mapfile -t NODES < <(nodes)

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-node) cmd_stop_node "${2:?usage: $0 stop-node NAME}" ;;
  status) cmd_status ;;
  wait) ensure_server; load_secrets; wait_caught_up ;;
  switchover) cmd_switchover "${2:-}" ;;
  failover) cmd_failover ;;
  primary) current_primary ;;
  *) echo "usage: $0 start|stop|status|wait|stop-node NAME|switchover [NAME]|failover|primary" >&2; exit 64 ;;
esac
