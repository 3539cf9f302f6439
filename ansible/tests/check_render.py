"""Checks the configuration tests/render.yml rendered against the services' contract.

  python3 check_render.py RENDER_DIR KEYS_ENV
"""

import hashlib
import re
import sys
from pathlib import Path


def env(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def main(render: Path, keys_env: Path) -> None:
    proxy = env(render / "proxy.env")
    required = ["PROXY_LISTEN", "PROXY_TOKEN", "PROXY_MANAGER", "PROXY_WORKERS", "PROXY_DB_USER",
                "PROXY_DB_PASSWORD", "PROXY_MONITOR_USER", "PROXY_MONITOR_PASSWORD", "PROXY_DEFAULT_MODE", "RUST_LOG"]
    missing = [k for k in required if not proxy.get(k)]
    assert not missing, f"proxy.env lacks {missing}"
    assert proxy["PROXY_LISTEN"] == "0.0.0.0:5000", proxy["PROXY_LISTEN"]
    assert proxy["PROXY_MANAGER"] == "127.0.0.1:3417", f"PROXY_MANAGER={proxy['PROXY_MANAGER']}"
    assert proxy["PROXY_WORKERS"] == "127.0.0.1:3418,127.0.0.1:3419", f"PROXY_WORKERS={proxy['PROXY_WORKERS']}"

    gk = env(render / "gatekeeper.env")
    for k in ["GATEKEEPER_LISTEN", "GATEKEEPER_PROXY_URL", "GATEKEEPER_PROXY_TOKEN", "GATEKEEPER_KEYS_FILE",
              "GATEKEEPER_ADMIN_LISTEN", "RUST_LOG"]:
        assert gk.get(k), f"gatekeeper.env lacks {k}"
    assert gk["GATEKEEPER_LISTEN"] == "0.0.0.0:80", gk["GATEKEEPER_LISTEN"]
    assert gk["GATEKEEPER_PROXY_URL"] == "http://10.42.1.4:5000", "the gatekeeper must use the proxy's private URL"
    assert gk["GATEKEEPER_PROXY_TOKEN"] == proxy["PROXY_TOKEN"], "gatekeeper and proxy tokens differ"
    assert re.fullmatch(r"[0-9a-f]{64}", proxy["PROXY_TOKEN"]), "the internal token is not 256 random bits of hex"
    assert gk["GATEKEEPER_ADMIN_LISTEN"].startswith("127.0.0.1:"), "metrics must stay on loopback"

    lines = [l for l in (render / "gatekeeper.keys").read_text().splitlines() if l and not l.startswith("#")]
    table = {}
    for line in lines:
        m = re.fullmatch(r"([0-9a-f]{8}) (read|write|admin) ([0-9a-f]{64})", line)
        assert m, f"keys file line not '<id> <role> <sha256 hex>': {line!r}"
        table[m.group(1)] = (m.group(2), m.group(3))
    assert sorted(r for r, _ in table.values()) == ["admin", "read", "write"], f"roles: {table}"

    keys = env(keys_env)
    assert sorted(keys) == ["SQLGATE_API_KEY_ADMIN", "SQLGATE_API_KEY_READ", "SQLGATE_API_KEY_WRITE"], sorted(keys)
    for name, key in keys.items():
        m = re.fullmatch(r"sk_([0-9a-f]{8})_([0-9a-f]{64})", key)
        assert m, f"{name} is not sk_<8 hex>_<64 hex>"
        role, digest = table[m.group(1)]
        assert role == name.rsplit("_", 1)[1].lower(), f"{name} has role {role} in the keys file"
        assert hashlib.sha256(m.group(2).encode()).hexdigest() == digest, f"{name}: keys file hash is not sha256(secret)"
        assert m.group(2) not in (render / "gatekeeper.keys").read_text(), "a secret leaked into the keys file"
    assert keys_env.stat().st_mode & 0o077 == 0, "api-keys.env must be private (0600)"
    print("ok: proxy.env, gatekeeper.env and the keys file match the services' contract")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
