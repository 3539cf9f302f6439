"""The seed design's gatekeeper, rebuilt as `make bench`'s peer for the project's starting point.

As the seed had it: ``POST /query`` checks the ``X-API-Key`` header against the one key,
then forwards the JSON body with ``requests`` to the proxy's ``/query`` and answers whatever
the proxy answered; Flask's built-in server, threaded, plain HTTP. It listens on loopback only.

Configuration comes only from the environment; there is no default key:
  SEED_GATEKEEPER_LISTEN  host:port to listen on (loopback)
  SEED_API_KEY            the key clients must send (generated per run by seed-peer.sh's caller)
  SEED_PROXY_URL          the proxy, http://host:port
"""

import hmac
import os
import sys

import requests
from flask import Flask, Response, jsonify, request


def required(name):
    value = os.environ.get(name, "").strip()
    if not value:
        sys.exit(f"gatekeeper.py: {name} is not set (loadtest/seed-peer/seed-peer.sh sets it)")
    return value


HOST, _, PORT = required("SEED_GATEKEEPER_LISTEN").rpartition(":")
API_KEY = required("SEED_API_KEY")
PROXY_URL = required("SEED_PROXY_URL").rstrip("/")

app = Flask(__name__)


@app.route("/query", methods=["POST"])
def query():
    key = request.headers.get("X-API-Key", "")
    if not hmac.compare_digest(key.encode(), API_KEY.encode()):
        return jsonify({"error": "unauthorized"}), 401
    r = requests.post(f"{PROXY_URL}/query", json=request.get_json(force=True, silent=True), timeout=30)
    return Response(r.content, status=r.status_code, content_type="application/json")


if __name__ == "__main__":
    app.run(host=HOST, port=int(PORT), threaded=True)
