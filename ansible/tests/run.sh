#!/usr/bin/env bash
# The replication play run for real (make deploy-check): three fresh MariaDB
# instances on loopback, started by local/cluster.sh without users, read_only
# or replication; then replication.yml with db_flavor=mariadb must wire both
# workers to the manager, a write on the manager must reach both, a second
# run must report changed=0, and the sysbench play must run and find no
# divergence, and the services' env and keys files must render to the
# services' contract. The instances are stopped on every exit, failure included.
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

workers=(worker-1 worker-2)
for w in "${workers[@]}"; do
  [[ -z $(sql "$w" "SHOW SLAVE STATUS") ]] || die "$w already replicates: the instances are not fresh"
done

play() { # playbook, log file
  ansible-playbook -i "$INVENTORY" -e @"$ANSIBLE_DIR/tests/local.yml" -e "sqlgate_test_dir=$TEST_DIR" \
    -e db_flavor=mariadb "$ANSIBLE_DIR/$1" 2>&1 | tee "$TEST_DIR/$2"
}

export ANSIBLE_CONFIG=$ANSIBLE_DIR/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

say "first run of replication.yml (db_flavor=mariadb)"
play replication.yml run1.log

say "checking the result independently of the play"
for w in "${workers[@]}"; do
  status=$(mariadb --no-defaults --protocol=socket --socket="$TEST_DIR/db/$w/mysqld.sock" -uroot -e "SHOW SLAVE STATUS\G")
  grep -q "Slave_IO_Running: Yes" <<<"$status" || die "$w: IO thread not running:\n$status"
  grep -q "Slave_SQL_Running: Yes" <<<"$status" || die "$w: SQL thread not running:\n$status"
  grep -q "Master_Port: $MANAGER_PORT" <<<"$status" || die "$w does not replicate from the manager"
  grep -q "Using_Gtid: Slave_Pos" <<<"$status" || die "$w does not use GTID auto-positioning"
  [[ $(sql "$w" "SELECT @@read_only") == 1 ]] || die "$w is not read_only"
  [[ $(sql "$w" "SELECT COUNT(*) FROM mysql.user WHERE user IN ('repl','sqlgate_app','sqlgate_monitor','sbtest')") == 4 ]] ||
    die "$w lacks the accounts created on the manager"
  echo "ok: $w replicates from :$MANAGER_PORT with GTID, read_only, accounts replicated"
done
[[ $(sql manager "SELECT @@read_only") == 0 ]] || die "the manager is read_only"

token="canary-$(date +%s)-$RANDOM"
sql manager "CREATE TABLE IF NOT EXISTS sqlgate.canary (id INT AUTO_INCREMENT PRIMARY KEY, token VARCHAR(64) NOT NULL);
             INSERT INTO sqlgate.canary (token) VALUES ('$token')"
for w in "${workers[@]}"; do
  for _ in $(seq 1 50); do
    [[ $(sql "$w" "SELECT COUNT(*) FROM sqlgate.canary WHERE token = '$token'" 2>/dev/null || echo 0) == 1 ]] && break
    sleep 0.2
  done
  [[ $(sql "$w" "SELECT COUNT(*) FROM sqlgate.canary WHERE token = '$token'") == 1 ]] ||
    die "the write on the manager did not reach $w within 10 s"
  echo "ok: a write on the manager reached $w"
done
# read_only must bind the accounts the proxy uses (root is exempt by design).
app_password=$(cat "$TEST_DIR/state/secrets/app_password")
if MYSQL_PWD=$app_password mariadb --no-defaults -h127.0.0.1 -P"${WORKER_PORTS%% *}" -usqlgate_app \
    -e "INSERT INTO sqlgate.canary (token) VALUES ('direct')" 2>"$TEST_DIR/ro.err"; then
  die "worker-1 accepted a write from sqlgate_app: read_only is not enforced"
fi
grep -q "read-only" "$TEST_DIR/ro.err" || die "the write on worker-1 failed for another reason: $(cat "$TEST_DIR/ro.err")"
echo "ok: worker-1 refuses writes from sqlgate_app (read_only)"

say "second run of replication.yml: must change nothing"
play replication.yml run2.log
recap=$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/run2.log")
grep -Eq 'changed=[1-9]' <<<"$recap" && die "the second run changed something:\n$recap"
grep -Eq 'failed=[1-9]|unreachable=[1-9]' <<<"$recap" && die "the second run failed:\n$recap"
echo "ok: second run reported changed=0 on every host"

say "sysbench.yml (CI-sized): prepare on the manager, run everywhere, compare data"
play sysbench.yml sysbench.log
for f in manager-oltp_read_write worker-1-oltp_read_only worker-2-oltp_read_only; do
  grep -q "transactions:" "$TEST_DIR/results/sysbench/sysbench-$f.txt" || die "no sysbench result in results/sysbench/sysbench-$f.txt"
done
echo "ok: sysbench results fetched; workers' sbtest data identical to the manager's"

say "services configuration: render with the role's templates, check the contract, twice"
play tests/render.yml render1.log
cp "$TEST_DIR/state/keys/api-keys.env" "$TEST_DIR/api-keys.first"
python3 "$ANSIBLE_DIR/tests/check_render.py" "$TEST_DIR/render" "$TEST_DIR/state/keys/api-keys.env"
play tests/render.yml render2.log
cmp -s "$TEST_DIR/api-keys.first" "$TEST_DIR/state/keys/api-keys.env" || die "a second run generated new API keys"
grep -Eq 'changed=[1-9]' <<<"$(sed -n '/PLAY RECAP/,$p' "$TEST_DIR/render2.log")" && die "a second render changed something"
echo "ok: keys generated once, second render changed nothing"

say "passed"
