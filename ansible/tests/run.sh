#!/usr/bin/env bash
# The replication play run for real (make deploy-check): three fresh MariaDB
# instances on loopback, started by local/cluster.sh without users, read_only
# or replication, given on the manager what an upgraded cluster has (the old
# broad sqlgate_app account, stray privileges); then replication.yml with
# db_flavor=mariadb must wire both workers to the manager, give the proxy's
# read, write and admin accounts exactly their grants on every node and drop
# sqlgate_app everywhere; a write on the manager must reach both workers, each
# account may do what its role needs and no more, a second run must report
# changed=0, the sysbench play must run and find no divergence, and the
# services' env and keys files, the node config and the grants must render to
# the contract for both flavours (mysql, mariadb), with the deployment's CA
# and a host certificate made for real. The instances are stopped on every
# exit, failure included.
#
# TLS as on AWS: sqlgate_tls makes the CA and a certificate per node (for
# 127.0.0.1), mysql_config's tasks and template install them and render the
# node settings (require_secure_transport=ON), and each instance is restarted
# with them before the play; the workers must then replicate over TLS with
# the manager's certificate verified, a plain TCP login must be refused, a
# worker given another CA must stop replicating with a certificate error, and
# workers wired without verification (an upgraded cluster) must be rewired.
#
#   ansible/tests/run.sh            (needs the deploy venv on PATH: make deploy-tools)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ANSIBLE_DIR=$ROOT/ansible
TEST_DIR=${SQLGATE_ANSIBLE_TEST_DIR:-$ROOT/.local/ansible-test}
INVENTORY=$ANSIBLE_DIR/tests/inventory.yml
CLUSTER=$ROOT/local/cluster.sh

say() { printf '\n=== ansible test: %s\n' "$*"; }
die() { printf 'ansible test: FAIL: %b\n' "$*" >&2; exit 1; }

[[ -x $CLUSTER ]] || die "$CLUSTER is missing: it starts the local MariaDB instances"
command -v ansible-playbook >/dev/null || die "ansible-playbook not on PATH (run: make deploy-tools)"

# Ports come from the inventory, so the play and the instances agree.
ports=$(ansible-inventory -i "$INVENTORY" --list | python3 -c '
import json, sys
inv = json.load(sys.stdin)
hv = inv["_meta"]["hostvars"]
print(hv["manager"]["sqlgate_mysql_port"], *(hv[h]["sqlgate_mysql_port"] for h in inv["workers"]["hosts"]))')
read -r MANAGER_PORT WORKER_PORTS <<<"$ports"

# sqlgate_app_schemas of group_vars/all.yml: the proxy's accounts must hold
# exactly these privileges on exactly these schemas.
APP_SCHEMAS=(sakila app sbtest)
READ_PRIVS="SELECT,SHOW VIEW"
WRITE_PRIVS="$READ_PRIVS,INSERT,UPDATE,DELETE"
ADMIN_PRIVS="$WRITE_PRIVS,CREATE,DROP,ALTER,INDEX,CREATE VIEW,REFERENCES"

cluster() {
  SQLGATE_LOCAL_DIR=$TEST_DIR SQLGATE_MANAGER_PORT=$MANAGER_PORT SQLGATE_WORKER_PORTS=$WORKER_PORTS \
    SQLGATE_REPLICATION=0 "$CLUSTER" "$@"
}

cleanup() {
  local rc=$?
  cluster stop >/dev/null 2>&1 || true
  if [[ $rc -ne 0 ]]; then
    echo "ansible test: instance logs kept under $TEST_DIR/db/*/error.log" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "fresh instances: manager :$MANAGER_PORT, workers :${WORKER_PORTS// /, :}"
cluster stop >/dev/null 2>&1 || true
rm -rf "$TEST_DIR"
mkdir -p "$TEST_DIR"
# The watcher stops the instances even if this script is killed outright.
SQLGATE_WATCH_PID=$$ cluster start

sql() { # node, SQL -> tab-separated rows
  mariadb --no-defaults --protocol=socket --socket="$TEST_DIR/db/$1/mysqld.sock" -uroot -N -B -e "$2"
}

# port NODE: the node's TCP port (from the inventory).
port() {
  local wports
  read -r -a wports <<<"$WORKER_PORTS"
  if [[ $1 == manager ]]; then echo "$MANAGER_PORT"; else echo "${wports[${1#worker-} - 1]}"; fi
}

workers=(worker-1 worker-2)
nodes=(manager "${workers[@]}")
for w in "${workers[@]}"; do
  [[ -z $(sql "$w" "SHOW SLAVE STATUS") ]] || die "$w already replicates: the instances are not fresh"
done

play() { # playbook, log file[, db_flavor (mariadb)]
  ansible-playbook -i "$INVENTORY" -e @"$ANSIBLE_DIR/tests/local.yml" -e "sqlgate_test_dir=$TEST_DIR" \
    -e "db_flavor=${3:-mariadb}" "$ANSIBLE_DIR/$1" 2>&1 | tee "$TEST_DIR/$2"
}

# as_user NODE ROLE SQL [CLIENT TLS OPTIONS...]: runs SQL over TCP as
# sqlgate_ROLE, password from the generated secret (in the environment, never
# on the command line); over TLS with the node's certificate verified against
# the deployment's CA unless other options are given.
as_user() {
  local node=$1 role=$2 query=$3; shift 3
  [[ $# -gt 0 ]] || set -- --ssl --ssl-ca="$TLS_CA" --ssl-verify-server-cert
  MYSQL_PWD=$(cat "$TEST_DIR/state/secrets/${role}_password") \
    mariadb --no-defaults -h127.0.0.1 -P"$(port "$node")" -u"sqlgate_$role" "$@" -N -B -e "$query"
}

# slave_status WORKER: SHOW SLAVE STATUS\G
slave_status() {
  mariadb --no-defaults --protocol=socket --socket="$TEST_DIR/db/$1/mysqld.sock" -uroot -e "SHOW SLAVE STATUS\G"
}

# check_replication WORKER: both threads run, from the manager, with GTID,
# over TLS with the manager's certificate verified against the worker's CA.
check_replication() {
  local w=$1 status
  status=$(slave_status "$w")
  grep -q "Slave_IO_Running: Yes" <<<"$status" || die "$w: IO thread not running:\n$status"
  grep -q "Slave_SQL_Running: Yes" <<<"$status" || die "$w: SQL thread not running:\n$status"
  grep -q "Master_Port: $MANAGER_PORT" <<<"$status" || die "$w does not replicate from the manager"
  grep -q "Using_Gtid: Current_Pos" <<<"$status" || die "$w does not use GTID auto-positioning"
  grep -qx " *Master_SSL_Allowed: Yes" <<<"$status" || die "$w: replication is not TLS:\n$status"
  grep -qx " *Master_SSL_CA_File: $TEST_DIR/db/$w/tls/ca.pem" <<<"$status" ||
    die "$w: replication does not verify against the node's installed CA:\n$status"
  grep -qx " *Master_SSL_Verify_Server_Cert: Yes" <<<"$status" ||
    die "$w: replication does not verify the manager's certificate:\n$status"
  echo "ok: $w replicates from :$MANAGER_PORT with GTID over TLS (CA $TEST_DIR/db/$w/tls/ca.pem, certificate verified)"
}

# arrives TOKEN WORKER [SECONDS]: the canary row TOKEN reaches WORKER in time.
arrives() {
  for _ in $(seq 1 $((${3:-10} * 5))); do
    [[ $(sql "$2" "SELECT COUNT(*) FROM app.canary WHERE token = '$1'" 2>/dev/null || echo 0) == 1 ]] && return 0
    sleep 0.2
  done
  return 1
}

# canary: a write on the manager must reach both workers.
canary() {
  local token w
  token="canary-$(date +%s)-$RANDOM"
  sql manager "CREATE TABLE IF NOT EXISTS app.canary (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64) NOT NULL);
               INSERT INTO app.canary (token) VALUES ('$token')"
  for w in "${workers[@]}"; do
    arrives "$token" "$w" || die "the write on the manager did not reach $w within 10 s"
    echo "ok: a write on the manager reached $w"
  done
  CANARY=$token
}

# check_account NODE USER PRIVILEGES: SHOW GRANTS must list exactly USAGE on
# *.* and PRIVILEGES on each application schema.
check_account() {
  local node=$1 user=$2 expected=('*.*=USAGE') s
  for s in "${APP_SCHEMAS[@]}"; do expected+=("\`$s\`.*=$3"); done
  sql "$node" "SHOW GRANTS FOR '$user'@'127.0.0.1'" |
    python3 "$ANSIBLE_DIR/tests/check_grants.py" "$node $user" "${expected[@]}" || die "$node: wrong grants for $user"
}

export ANSIBLE_CONFIG=$ANSIBLE_DIR/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

say "TLS: the deployment's CA and a certificate per node (sqlgate_tls), installed and rendered by mysql_config"
play tests/tls.yml tls.log
TLS_CA=$TEST_DIR/db-tls/ca.pem
SERVER=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -n 1) ||
  die "no mariadbd or mysqld found"
# local/cluster.sh wrote each instance's my.cnf (REPLICATION=0: no TLS of its
# own); restart each with the rendered settings included, as a deploy's
# config change restarts the server.
for n in "${nodes[@]}"; do
  d=$TEST_DIR/db/$n
  grep -q "^require_secure_transport = ON$" "$d/zzz-sqlgate-node.cnf" || die "$n: the rendered config lacks require_secure_transport"
  cluster stop-node "$n"
  echo "!include $d/zzz-sqlgate-node.cnf" >>"$d/my.cnf"
  rm -f "$d/mysqld.pid"
  setsid nohup "$SERVER" --defaults-file="$d/my.cnf" </dev/null >>"$d/server.out" 2>&1 &
  for _ in $(seq 1 120); do
    mariadb-admin --no-defaults --protocol=socket --socket="$d/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  [[ $(sql "$n" "SELECT @@require_secure_transport, @@have_ssl, @@ssl_ca") == "1	YES	$d/tls/ca.pem" ]] ||
    die "$n did not come back with TLS required: $(sql "$n" "SELECT @@require_secure_transport, @@have_ssl, @@ssl_ca" 2>&1; tail -n 20 "$d/error.log")"
  echo "ok: $n restarted with its rendered config: TLS with the deployment's certificate, require_secure_transport=ON"
done

say "an upgraded cluster: the old broad sqlgate_app, stray privileges of sqlgate_read and sqlgate_monitor"
# Created on the manager before replication starts: the workers receive them
# (and their removal) through the binlog, as an upgraded cluster's workers would.
sql manager "CREATE DATABASE sqlgate;
             CREATE USER 'sqlgate_app'@'127.0.0.1' ACCOUNT LOCK;
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW, REFERENCES
               ON sqlgate.* TO 'sqlgate_app'@'127.0.0.1';
             CREATE USER 'sqlgate_app'@'%' ACCOUNT LOCK;
             GRANT SELECT ON sakila.* TO 'sqlgate_app'@'%';
             CREATE USER 'sqlgate_read'@'127.0.0.1';
             GRANT FILE, PROCESS, SUPER, RELOAD ON *.* TO 'sqlgate_read'@'127.0.0.1';
             GRANT SELECT ON mysql.* TO 'sqlgate_read'@'127.0.0.1';
             GRANT SELECT ON sqlgate.* TO 'sqlgate_read'@'127.0.0.1';
             GRANT INSERT ON sakila.* TO 'sqlgate_read'@'127.0.0.1' WITH GRANT OPTION;
             CREATE USER 'sqlgate_monitor'@'127.0.0.1';
             GRANT SLAVE MONITOR, PROCESS ON *.* TO 'sqlgate_monitor'@'127.0.0.1'"

say "first run of replication.yml (db_flavor=mariadb)"
play replication.yml run1.log

say "checking the result independently of the play"
for w in "${workers[@]}"; do
  check_replication "$w"
  [[ $(sql "$w" "SELECT @@read_only") == 1 ]] || die "$w is not read_only"
  [[ $(sql "$w" "SELECT COUNT(*) FROM mysql.user WHERE user IN
        ('repl','sqlgate_read','sqlgate_write','sqlgate_admin','sqlgate_monitor','sbtest')") == 6 ]] ||
    die "$w lacks the accounts created on the manager"
  echo "ok: $w read_only, accounts replicated"
done
[[ $(sql manager "SELECT @@read_only") == 0 ]] || die "the manager is read_only"
# Lossless semi-sync: the manager waits for a worker on every commit, both workers acknowledge.
semi=$(sql manager "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS') ORDER BY VARIABLE_NAME")
[[ ${semi//$'\n'/ } == "2 ON" ]] || die "semi-sync is not on with both workers acknowledging (clients, status: $semi)"
[[ $(sql manager "SELECT @@rpl_semi_sync_master_wait_point") == AFTER_SYNC ]] || die "semi-sync is not lossless (AFTER_SYNC)"
echo "ok: semi-sync on the manager (AFTER_SYNC), both workers acknowledging"

say "the proxy's accounts: exact grants on every node, sqlgate_app gone"
for n in "${nodes[@]}"; do
  check_account "$n" sqlgate_read "$READ_PRIVS"
  check_account "$n" sqlgate_write "$WRITE_PRIVS"
  check_account "$n" sqlgate_admin "$ADMIN_PRIVS"
  sql "$n" "SHOW GRANTS FOR 'sqlgate_monitor'@'127.0.0.1'" |
    python3 "$ANSIBLE_DIR/tests/check_grants.py" "$n sqlgate_monitor" '*.*=SLAVE MONITOR' || die "$n: wrong grants for sqlgate_monitor"
  [[ $(sql "$n" "SELECT COUNT(*) FROM mysql.user WHERE user = 'sqlgate_app'") == 0 ]] ||
    die "$n still has the old sqlgate_app account: $(sql "$n" "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE user = 'sqlgate_app'")"
  echo "ok: $n has no sqlgate_app account"
done
for s in "${APP_SCHEMAS[@]}"; do
  [[ $(sql manager "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '$s'") == 1 ]] ||
    die "the manager did not create the schema $s"
done
echo "ok: the manager created ${APP_SCHEMAS[*]}"

canary
token=$CANARY

say "TLS on every node: plain TCP refused, verified TLS accepted"
for n in "${nodes[@]}"; do
  if as_user "$n" read "SELECT 1" --skip-ssl >/dev/null 2>"$TEST_DIR/plain.err"; then
    die "$n accepted a plain (non-TLS) TCP login"
  fi
  # MariaDB reports the refusal as "Access denied" (MySQL: "insecure
  # transport"); the same account and password over TLS must then work.
  grep -Eqi "insecure transport|Access denied" "$TEST_DIR/plain.err" ||
    die "$n: the plain login failed for another reason: $(cat "$TEST_DIR/plain.err")"
  cipher=$(as_user "$n" read "SHOW SESSION STATUS LIKE 'Ssl_cipher'") || die "$n refused a TLS login verified against the CA"
  [[ $(cut -f2 <<<"$cipher") != "" ]] || die "$n: the TLS login has no cipher"
  echo "ok: $n refuses plain TCP, accepts TLS with its certificate verified ($(cut -f2 <<<"$cipher"))"
done

# denied ROLE SQL WHAT: the manager must refuse SQL from sqlgate_ROLE.
denied() {
  if as_user manager "$1" "$2" 2>"$TEST_DIR/denied.err"; then
    die "the manager let sqlgate_$1 $3"
  fi
  grep -Eq "denied" "$TEST_DIR/denied.err" || die "sqlgate_$1 ($3) failed for another reason: $(cat "$TEST_DIR/denied.err")"
  echo "ok: sqlgate_$1 may not $3"
}
[[ $(as_user manager read "SELECT COUNT(*) FROM app.canary WHERE token = '$token'") == 1 ]] ||
  die "sqlgate_read cannot read app.canary"
denied read "INSERT INTO app.canary (token) VALUES ('read')" "insert"
as_user manager write "INSERT INTO app.canary (token) VALUES ('write'); DELETE FROM app.canary WHERE token = 'write'" ||
  die "sqlgate_write cannot insert and delete in app"
denied write "CREATE TABLE app.by_write (a INT)" "create a table"
as_user manager admin "CREATE TABLE app.by_admin (a INT); CREATE INDEX a ON app.by_admin (a); DROP TABLE app.by_admin" ||
  die "sqlgate_admin cannot create, index and drop a table in app"
denied admin "SELECT COUNT(*) FROM mysql.user" "read mysql.user"
denied admin "CREATE TABLE test_other.t (a INT)" "create a table outside the application schemas"
denied admin "SELECT * FROM sqlgate.t" "touch the old sqlgate schema"
echo "ok: read, write and admin may do what their role needs on the manager"

# read_only must bind the accounts the proxy uses (root is exempt by design).
for role in write admin; do
  if as_user worker-1 "$role" "INSERT INTO app.canary (token) VALUES ('direct')" 2>"$TEST_DIR/ro.err"; then
    die "worker-1 accepted a write from sqlgate_$role: read_only is not enforced"
  fi
  grep -q "read-only" "$TEST_DIR/ro.err" || die "the write on worker-1 failed for another reason: $(cat "$TEST_DIR/ro.err")"
  echo "ok: worker-1 refuses writes from sqlgate_$role (read_only)"
done

say "a worker given another CA than the manager's must not replicate"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=not the deployment CA" \
  -keyout "$TEST_DIR/other-ca-key.pem" -out "$TEST_DIR/other-ca.pem" 2>/dev/null || die "openssl could not make a second CA"
sql worker-1 "STOP SLAVE; CHANGE MASTER TO MASTER_SSL_CA='$TEST_DIR/other-ca.pem', MASTER_CONNECT_RETRY=1; START SLAVE"
sql manager "INSERT INTO app.canary (token) VALUES ('$token-other-ca')"
for _ in $(seq 1 30); do
  status=$(slave_status worker-1)
  if ! grep -q "Slave_IO_Running: Yes" <<<"$status" && grep -qiE "Last_IO_Error: .*(SSL|certificate|TLS)" <<<"$status"; then
    break
  fi
  sleep 0.5
done
grep -q "Slave_IO_Running: Yes" <<<"$status" && die "worker-1 replicates with another CA:\n$status"
grep -qiE "Last_IO_Error: .*(SSL|certificate|TLS)" <<<"$status" || die "worker-1 stopped, but not for the certificate:\n$status"
arrives "$token-other-ca" worker-1 2 && die "a write reached worker-1 through a connection with another CA"
echo "ok: worker-1 with another CA: IO thread $(sed -n 's/^ *Slave_IO_Running: //p' <<<"$status"), $(sed -n 's/^ *Last_IO_Error: //p' <<<"$status")"

say "an upgraded cluster's wiring: TLS without the manager's certificate verified"
# Restored as the previous deploy wired it (the stream encrypted, nothing
# verified): it replicates, so the rolling checks pass, and the play must
# rewire both workers to the verified CA.
sql worker-1 "STOP SLAVE; CHANGE MASTER TO MASTER_SSL_CA='', MASTER_SSL_VERIFY_SERVER_CERT=0, MASTER_CONNECT_RETRY=10; START SLAVE"
sql worker-2 "STOP SLAVE; CHANGE MASTER TO MASTER_SSL_VERIFY_SERVER_CERT=0; START SLAVE"
arrives "$token-other-ca" worker-1 20 || die "worker-1 did not replicate again after the manager's CA was taken off"
for w in "${workers[@]}"; do
  grep -qx " *Master_SSL_Verify_Server_Cert: No" <<<"$(slave_status "$w")" || die "$w: could not unset the verification"
done
echo "ok: worker-1 restored and replicating; both workers replicate without verifying the manager's certificate"

say "second run of replication.yml: must rewire both workers to verified TLS"
play replication.yml run2.log
recap=$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/run2.log")
grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$recap" && die "the second run failed:\n$recap"
for w in "${workers[@]}"; do
  grep -Eq "^$w +: .*changed=[1-9]" <<<"$recap" || die "the second run did not rewire $w:\n$recap"
  check_replication "$w"
done
canary

say "third run of replication.yml: must change nothing"
play replication.yml run3.log
recap=$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/run3.log")
grep -Eq 'changed=[1-9]' <<<"$recap" && die "the third run changed something:\n$recap"
grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$recap" && die "the third run failed:\n$recap"
echo "ok: third run reported changed=0 on every host"
# Rolling updates: the first play (serial 1) verified each replicating worker
# before touching the next one.
order=$(sed -n 's/^included: .*verify\.yml for \(worker-[0-9]*\)$/\1/p' "$TEST_DIR/run3.log" | head -n 2 | tr '\n' ' ')
[[ $order == "worker-1 worker-2 " ]] || die "the third run did not verify the workers one at a time, in order (got: $order)"
echo "ok: third run updated and verified the workers one at a time (worker-1, then worker-2)"

say "sysbench.yml (CI-sized): prepare on the manager, run everywhere, compare data"
play sysbench.yml sysbench.log
for f in manager-oltp_read_write worker-1-oltp_read_only worker-2-oltp_read_only; do
  grep -q "transactions:" "$TEST_DIR/results/sysbench/sysbench-$f.txt" || die "no sysbench result in results/sysbench/sysbench-$f.txt"
done
echo "ok: sysbench results fetched; workers' sbtest data identical to the manager's"

say "configuration and grants: render with the roles' templates and variables for both flavours, check, twice"
play tests/render.yml render1-mysql.log mysql
cp "$TEST_DIR/state/keys/api-keys.env" "$TEST_DIR/api-keys.first"
play tests/render.yml render1-mariadb.log mariadb
python3 "$ANSIBLE_DIR/tests/check_render.py" "$TEST_DIR/render" "$TEST_DIR/state/keys/api-keys.env" \
  "$(IFS=,; echo "${APP_SCHEMAS[*]}")" || die "the rendered configuration breaks the contract"
for flavor in mysql mariadb; do
  play tests/render.yml "render2-$flavor.log" "$flavor"
  grep -Eq 'changed=[1-9]' <<<"$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/render2-$flavor.log")" &&
    die "a second render ($flavor) changed something"
done
cmp -s "$TEST_DIR/api-keys.first" "$TEST_DIR/state/keys/api-keys.env" || die "a second run generated new API keys"
echo "ok: keys generated once, second render changed nothing"

say "the gatekeeper's certificate: a DNS name (gatekeeper only, re-issued on change), or the operator's own pair"
play tests/tls_gatekeeper.yml tls-gatekeeper.log
echo "ok: DNS SAN on the gatekeeper's certificate only, re-issued on change, bad names refused; own pair installed untouched (key 0600), half a pair refused"

say "switchover.yml: worker-1 becomes the primary, the others (the old manager included) replicate from it; replication.yml keeps it"
ansible-playbook -i "$INVENTORY" -e @"$ANSIBLE_DIR/tests/local.yml" -e "sqlgate_test_dir=$TEST_DIR" \
  -e db_flavor=mariadb -e sqlgate_switchover_to=worker-1 "$ANSIBLE_DIR/switchover.yml" 2>&1 | tee "$TEST_DIR/switchover.log"
grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/switchover.log")" && die "switchover.yml failed"
[[ $(cat "$TEST_DIR/state/primary") == worker-1 ]] || die "switchover.yml did not record worker-1 as the primary"
check_switched() { # what every run after the switchover must leave
  [[ $(sql worker-1 "SELECT @@read_only") == 0 ]] || die "worker-1 is not writable"
  [[ $(sql worker-1 "SHOW SLAVE STATUS") == "" ]] || die "worker-1 still replicates"
  local n status
  for n in manager worker-2; do
    [[ $(sql "$n" "SELECT @@read_only") == 1 ]] || die "$n is writable after the switchover"
    status=$(slave_status "$n")
    grep -q "Master_Port: $(port worker-1)" <<<"$status" || die "$n does not replicate from worker-1:\n$status"
    grep -q "Slave_IO_Running: Yes" <<<"$status" && grep -q "Slave_SQL_Running: Yes" <<<"$status" ||
      die "$n does not replicate:\n$status"
  done
  semi=$(sql worker-1 "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_MASTER_CLIENTS') ORDER BY VARIABLE_NAME")
  [[ ${semi//$'\n'/ } == "2 ON" ]] || die "semi-sync is not on at worker-1 with both others acknowledging ($semi)"
}
check_switched
sql worker-1 "CREATE TABLE IF NOT EXISTS app.switched (id INT PRIMARY KEY); REPLACE INTO app.switched VALUES (1)"
for n in manager worker-2; do
  [[ $(sql "$n" "SELECT MASTER_GTID_WAIT('$(sql worker-1 "SELECT @@gtid_binlog_pos")', 30)") == 0 ]] || die "$n did not receive worker-1's write"
  [[ $(sql "$n" "SELECT COUNT(*) FROM app.switched") == 1 ]] || die "$n lacks worker-1's write"
done
echo "ok: worker-1 is the primary (writable, semi-sync with both acknowledging); the old manager and worker-2 are read_only and replicate its writes"
play replication.yml run4.log
grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/run4.log")" && die "replication.yml failed after the switchover"
check_switched
echo "ok: replication.yml after the switchover keeps worker-1 as the primary"

say "passed"
