"""Checks what tests/render.yml rendered, for both flavours, against the services' contract
and the least-privilege grants.

  python3 check_render.py RENDER_DIR KEYS_ENV SCHEMAS

RENDER_DIR holds one directory per flavour (mysql/, mariadb/); SCHEMAS is the expected
application schema list, comma-separated (sqlgate_app_schemas).
"""

import hashlib
import json
import re
import sys
from pathlib import Path

FLAVORS = ("mysql", "mariadb")

# Exactly these privileges on each application schema, and nothing anywhere else.
READ = {"SELECT", "SHOW VIEW"}
WRITE = READ | {"INSERT", "UPDATE", "DELETE"}
ADMIN = WRITE | {"CREATE", "DROP", "ALTER", "INDEX", "CREATE VIEW", "REFERENCES"}
PROXY_ACCOUNTS = {"read": READ, "write": WRITE, "admin": ADMIN}
MONITOR = {"mysql": {"REPLICATION CLIENT"}, "mariadb": {"SLAVE MONITOR"}}
# No account may hold these; REPLICATION and *.* only the repl and monitor accounts.
FORBIDDEN = ("FILE", "PROCESS", "SUPER", "SHUTDOWN", "RELOAD", "GRANT", "CREATE USER", "ALL")
GLOBAL_OK = ("repl", "monitor")


def env(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in out, f"{path}: {key} set twice"
            out[key] = value
    return out


def parse_priv(priv: str) -> dict:
    """community.mysql's priv syntax: 'db.table:PRIV,PRIV/db.table:PRIV' -> {object: {privs}}."""
    out = {}
    for part in priv.split("/"):
        obj, sep, privs = part.rpartition(":")
        assert sep and obj and privs, f"priv part {part!r} is not <object>:<privileges>"
        assert obj not in out, f"priv {priv!r} names {obj} twice"
        names = [p.strip().upper() for p in privs.split(",")]
        assert len(names) == len(set(names)), f"priv {priv!r} repeats a privilege"
        out[obj] = set(names)
    return out


def check_proxy_env(flavor: str, proxy: dict, schemas: list) -> None:
    required = ["PROXY_LISTEN", "PROXY_TOKEN", "PROXY_MANAGER", "PROXY_WORKERS",
                "PROXY_READ_USER", "PROXY_READ_PASSWORD", "PROXY_WRITE_USER", "PROXY_WRITE_PASSWORD",
                "PROXY_ADMIN_USER", "PROXY_ADMIN_PASSWORD", "PROXY_APP_SCHEMAS",
                "PROXY_MONITOR_USER", "PROXY_MONITOR_PASSWORD", "PROXY_DEFAULT_MODE", "RUST_LOG"]
    missing = [k for k in required if not proxy.get(k)]
    assert not missing, f"{flavor}: proxy.env lacks {missing}"
    stale = sorted(k for k in proxy if k.startswith("PROXY_DB_"))
    assert not stale, f"{flavor}: proxy.env still sets {stale} (the single broad account is gone)"
    assert set(proxy) == set(required), f"{flavor}: proxy.env sets unexpected {sorted(set(proxy) - set(required))}"
    assert proxy["PROXY_LISTEN"] == "0.0.0.0:5000", proxy["PROXY_LISTEN"]
    assert proxy["PROXY_MANAGER"] == "127.0.0.1:3417", f"PROXY_MANAGER={proxy['PROXY_MANAGER']}"
    assert proxy["PROXY_WORKERS"] == "127.0.0.1:3418,127.0.0.1:3419", f"PROXY_WORKERS={proxy['PROXY_WORKERS']}"
    for role in PROXY_ACCOUNTS:
        user = proxy[f"PROXY_{role.upper()}_USER"]
        assert user == f"sqlgate_{role}", f"{flavor}: PROXY_{role.upper()}_USER={user}"
    assert proxy["PROXY_MONITOR_USER"] == "sqlgate_monitor", proxy["PROXY_MONITOR_USER"]
    passwords = [proxy[f"PROXY_{r}_PASSWORD"] for r in ("READ", "WRITE", "ADMIN", "MONITOR")]
    for p in passwords:
        assert re.fullmatch(r"[A-Za-z0-9]{32}", p), f"{flavor}: a database password is not 32 letters and digits"
    assert len(set(passwords)) == len(passwords), f"{flavor}: two database accounts share a password"
    assert proxy["PROXY_APP_SCHEMAS"] == ",".join(schemas), (
        f"{flavor}: PROXY_APP_SCHEMAS={proxy['PROXY_APP_SCHEMAS']}, expected {','.join(schemas)}")


def check_grants(flavor: str, g: dict, schemas: list) -> None:
    assert g["flavor"] == flavor, f"rendered {g['flavor']} into {flavor}/"
    assert g["app_schemas"] == schemas, f"{flavor}: mysql_manager_app_schemas={g['app_schemas']}, expected {schemas}"
    assert set(schemas) <= set(g["databases"]) and "sbtest" in g["databases"], (
        f"{flavor}: the manager does not create every schema: {g['databases']}")
    assert g["users"] == ["sqlgate_read", "sqlgate_write", "sqlgate_admin"], g["users"]
    assert "sqlgate_app" in g["retired_users"], f"{flavor}: the old sqlgate_app account is not dropped"
    grants = g["grants"]
    assert set(grants) == {"repl", "monitor", "read", "write", "admin", "sbtest"}, sorted(grants)

    for account, priv in grants.items():
        parsed = parse_priv(priv)
        for obj, privs in parsed.items():
            db = obj.split(".", 1)[0].strip("`").lower()
            assert db != "mysql", f"{flavor}: {account} holds {privs} on {obj}"
            if account in GLOBAL_OK:
                continue
            assert obj != "*.*", f"{flavor}: {account} holds the global privileges {privs}"
            for word in FORBIDDEN + ("REPLICATION",):
                if account == "sbtest" and word == "ALL":
                    continue  # sysbench's own local-socket account, ALL on sbtest.* only (checked below)
                assert not any(p == word or p.startswith(word + " ") for p in privs), (
                    f"{flavor}: {account} holds {word} on {obj}")
        if account not in GLOBAL_OK:
            assert "*.*" not in priv, f"{flavor}: {account}'s priv mentions *.*: {priv}"
        for word in ("FILE", "PROCESS", "SUPER", "SHUTDOWN", "RELOAD", "GRANT", "CREATE USER"):
            assert word not in priv.upper(), f"{flavor}: {account}'s priv contains {word}: {priv}"

    for role, expected in PROXY_ACCOUNTS.items():
        parsed = parse_priv(grants[role])
        assert list(parsed) == [f"{s}.*" for s in schemas], (
            f"{flavor}: {role} holds privileges on {list(parsed)}, expected exactly {[f'{s}.*' for s in schemas]}")
        for obj, privs in parsed.items():
            assert privs == expected, (
                f"{flavor}: {role} on {obj}: {sorted(privs)}, expected exactly {sorted(expected)}")
    assert parse_priv(grants["repl"]) == {"*.*": {"REPLICATION SLAVE"}}, f"{flavor}: repl: {grants['repl']}"
    assert parse_priv(grants["monitor"]) == {"*.*": MONITOR[flavor]}, (
        f"{flavor}: monitor: {grants['monitor']}, expected *.*:{','.join(MONITOR[flavor])} only")
    assert parse_priv(grants["sbtest"]) == {"sbtest.*": {"ALL"}}, f"{flavor}: sbtest: {grants['sbtest']}"

    if flavor == "mysql":
        assert g["auth_plugin"] == "caching_sha2_password", f"mysql: auth plugin {g['auth_plugin']!r}"
        assert g["salt_lengths"] == [20, 20, 20], f"mysql: salts of {g['salt_lengths']} characters, need 20"
    else:
        assert g["auth_plugin"] == "", f"mariadb has no {g['auth_plugin']}"


def check_node_cnf(flavor: str, render: Path) -> None:
    for node in ("manager", "worker"):
        text = (render / f"zzz-sqlgate-node-{node}.cnf").read_text()
        lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
        assert lines[0] == "[mysqld]", f"{flavor} {node}: {lines[0]}"
        settings = dict(re.split(r"\s*=\s*", l, maxsplit=1) for l in lines[1:])
        assert settings.get("local_infile") == "OFF", f"{flavor} {node}: local_infile is not OFF"
        assert settings.get("read_only") == ("ON" if node == "worker" else None), f"{flavor} {node}: read_only"
        want_super = "ON" if node == "worker" and flavor == "mysql" else None
        assert settings.get("super_read_only") == want_super, f"{flavor} {node}: super_read_only"


def check_gatekeeper(render: Path, proxy: dict, keys_env: Path) -> None:
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


def main(root: Path, keys_env: Path, schemas: list) -> None:
    assert schemas and "sqlgate" not in schemas, f"expected schemas {schemas}"
    envs = {}
    for flavor in FLAVORS:
        render = root / flavor
        proxy = envs[flavor] = env(render / "proxy.env")
        check_proxy_env(flavor, proxy, schemas)
        check_grants(flavor, json.loads((render / "grants.json").read_text()), schemas)
        check_node_cnf(flavor, render)
        check_gatekeeper(render, proxy, keys_env)
        secrets = [proxy[f"PROXY_{r}_PASSWORD"] for r in ("READ", "WRITE", "ADMIN", "MONITOR")]
        assert not any(s in (render / "grants.json").read_text() for s in secrets), f"{flavor}: a password leaked into grants.json"
    assert envs["mysql"] == envs["mariadb"], "proxy.env differs between flavours"
    print(f"ok: proxy.env ({len(envs['mysql'])} variables), gatekeeper.env, the keys file, the node config "
          f"(local_infile=OFF) and the grants of repl, monitor, read, write, admin and sbtest on "
          f"{','.join(schemas)} match the contract, for {' and '.join(FLAVORS)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [s for s in sys.argv[3].split(",") if s])
