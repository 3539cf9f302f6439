"""The seed design's proxy, rebuilt as `make bench`'s peer for the project's starting point.

As the seed had it:
- ``POST /query`` with a JSON body ``{"sql", "mode", "request_id"}``;
- ``is_read``: the statement starts with SELECT, SHOW or DESCRIBE; anything else is a write
  and goes to the manager;
- modes for reads: ``direct`` (the manager), ``random`` (a worker at random), ``ping`` (the
  worker that answers one ICMP echo fastest, pinged on every request);
- ``run_mysql`` opens a NEW mysql-connector-python connection for every query, with
  autocommit=True, runs it, closes it, and the rows are answered as JSON;
- Flask's built-in server, threaded.

Two departures, both forced by this machine rather than chosen: it listens on loopback only,
and the local cluster requires TLS, so the connection is TLS, verified against
``SEED_DB_CA`` (the seed's cluster spoke plain text).

Configuration comes only from the environment; there is no default for any secret:
  SEED_PROXY_LISTEN   host:port to listen on (loopback)
  SEED_MANAGER        host:port of the manager
  SEED_WORKERS        host:port of each worker, comma-separated
  SEED_DB_USER, SEED_DB_PASSWORD, SEED_DB_NAME
  SEED_DB_CA          the CA file that signed the servers' certificates
"""

import os
import random
import re
import subprocess
import sys
import time
import uuid

import mysql.connector
from flask import Flask, jsonify, request


def required(name):
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"proxy.py: {name} is not set (loadtest/seed-peer/seed-peer.sh sets it)")
    return value


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


LISTEN = host_port(required("SEED_PROXY_LISTEN"))
MANAGER = ("manager",) + host_port(required("SEED_MANAGER"))
WORKERS = [
    (f"worker-{i}",) + host_port(w.strip())
    for i, w in enumerate(required("SEED_WORKERS").split(","), start=1)
]
DB_USER = required("SEED_DB_USER")
DB_PASSWORD = required("SEED_DB_PASSWORD")
DB_NAME = required("SEED_DB_NAME")
DB_CA = required("SEED_DB_CA")

app = Flask(__name__)


def is_read(sql):
    return sql.strip().upper().startswith(("SELECT", "SHOW", "DESCRIBE"))


def ping_ms(host):
    """One ICMP echo; its round trip in ms, or infinity when there is no answer."""
    out = subprocess.run(
        ["ping", "-c", "1", "-W", "1", host], capture_output=True, text=True, check=False
    )
    m = re.search(r"time=([\d.]+)", out.stdout)
    return float(m.group(1)) if m else float("inf")


def choose(sql, mode):
    if not is_read(sql) or mode == "direct" or not WORKERS:
        return MANAGER
    if mode == "ping":
        return min(WORKERS, key=lambda w: ping_ms(w[1]))
    return random.choice(WORKERS)


def run_mysql(node, sql):
    """A new connection per query, autocommit, closed after; the rows and the row count."""
    _, host, port = node
    conn = mysql.connector.connect(
        host=host,
        port=port,
        user=DB_USER,
        password=DB_PASSWORD,
        database=DB_NAME,
        autocommit=True,
        ssl_ca=DB_CA,
        ssl_verify_cert=True,
    )
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall() if cur.with_rows else []
        return rows, cur.rowcount
    finally:
        conn.close()


@app.route("/query", methods=["POST"])
def query():
    body = request.get_json(force=True, silent=True) or {}
    sql = body.get("sql", "")
    mode = body.get("mode", "direct")
    request_id = body.get("request_id") or str(uuid.uuid4())
    if not sql:
        return jsonify({"error": "sql is required", "request_id": request_id}), 400
    node = choose(sql, mode)
    started = time.perf_counter()
    try:
        rows, rowcount = run_mysql(node, sql)
    except mysql.connector.Error as e:
        return jsonify({"error": str(e), "request_id": request_id, "node": node[0]}), 500
    return jsonify(
        {
            "request_id": request_id,
            "mode": mode,
            "node": node[0],
            "rows": [list(r) for r in rows],
            "rowcount": rowcount,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )


if __name__ == "__main__":
    app.run(host=LISTEN[0], port=LISTEN[1], threaded=True)
