#!/usr/bin/env bash
# MySQL 8.0 with the GTID-ready base config, sysbench, and the official sakila
# sample database. The image leaves with no user but root@localhost
# (auth_socket), an empty GTID history and no server UUID, so that every
# instance launched from it is a distinct, clean node.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

: "${SAKILA_URL:?SAKILA_URL must point at sakila-db.tar.gz}"

apt-get -q -y install --no-install-recommends mysql-server-8.0 mysql-client-8.0 sysbench python3-pymysql

install -o root -g root -m 0644 /tmp/sqlgate-mysql/zz-sqlgate.cnf /etc/mysql/mysql.conf.d/zz-sqlgate.cnf
systemctl restart mysql

mysql_q() { mysql --protocol=socket -uroot -N -B -e "$1"; }

# Refuse an image whose replication settings did not take.
[[ "$(mysql_q 'SELECT @@gtid_mode')" == "ON" ]] || { echo "ERROR: gtid_mode is not ON" >&2; exit 1; }
[[ "$(mysql_q 'SELECT @@binlog_format')" == "ROW" ]] || { echo "ERROR: binlog_format is not ROW" >&2; exit 1; }

workdir="$(mktemp -d)"
curl --proto '=https' --tlsv1.2 -fsSL "$SAKILA_URL" -o "$workdir/sakila-db.tar.gz"
tar -xzf "$workdir/sakila-db.tar.gz" -C "$workdir"
mysql --protocol=socket -uroot < "$workdir/sakila-db/sakila-schema.sql"
mysql --protocol=socket -uroot < "$workdir/sakila-db/sakila-data.sql"
rm -rf "$workdir"

actors="$(mysql_q 'SELECT COUNT(*) FROM sakila.actor')"
[[ "$actors" -eq 200 ]] || { echo "ERROR: sakila.actor has $actors rows, expected 200" >&2; exit 1; }

# Every node starts from the same data with an empty GTID history: the
# sakila load must not appear as transactions a worker lacks.
mysql_q 'RESET MASTER'

systemctl stop mysql
# A fresh UUID per instance: nodes sharing one cannot replicate.
rm -f /var/lib/mysql/auto.cnf
# No private key leaves in the image: the TLS and RSA files mysqld generated
# at its first start would be shared by every node of every deployment.
# MySQL makes a new RSA pair per node at its first start; the TLS pair comes
# from the deployment's CA (Ansible, mysql_config).
rm -f /var/lib/mysql/{ca,ca-key,server-cert,server-key,client-cert,client-key,private_key,public_key}.pem
# MySQL starts at boot, without users or role until Ansible configures it.
systemctl enable mysql
