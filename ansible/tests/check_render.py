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
    required = ["PROXY_LISTEN", "PROXY_TLS_CERT", "PROXY_TLS_KEY", "PROXY_DB_CA",
                "PROXY_TOKEN", "PROXY_MANAGER", "PROXY_WORKERS",
                "PROXY_READ_USER", "PROXY_READ_PASSWORD", "PROXY_WRITE_USER", "PROXY_WRITE_PASSWORD",
                "PROXY_ADMIN_USER", "PROXY_ADMIN_PASSWORD", "PROXY_APP_SCHEMAS",
                "PROXY_MONITOR_USER", "PROXY_MONITOR_PASSWORD", "PROXY_DEFAULT_MODE", "RUST_LOG"]
    missing = [k for k in required if not proxy.get(k)]
    assert not missing, f"{flavor}: proxy.env lacks {missing}"
    stale = sorted(k for k in proxy if k.startswith("PROXY_DB_") and k != "PROXY_DB_CA")
    assert not stale, f"{flavor}: proxy.env still sets {stale} (the single broad account is gone)"
    assert set(proxy) == set(required), f"{flavor}: proxy.env sets unexpected {sorted(set(proxy) - set(required))}"
    assert proxy["PROXY_LISTEN"] == "0.0.0.0:5000", proxy["PROXY_LISTEN"]
    assert proxy["PROXY_TLS_CERT"] == "/etc/sqlgate/tls/proxy.pem", proxy["PROXY_TLS_CERT"]
    assert proxy["PROXY_TLS_KEY"] == "/etc/sqlgate/tls/proxy-key.pem", proxy["PROXY_TLS_KEY"]
    assert proxy["PROXY_DB_CA"] == "/etc/sqlgate/tls/ca.pem", "the proxy must verify MySQL against the deployment's CA"
    assert "PROXY_PLAIN_HTTP" not in proxy and "PROXY_DB_PLAIN" not in proxy, "no plaintext on AWS"
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

    assert g["service_users"] == ["repl", "sqlgate_monitor", "sbtest"], g["service_users"]
    if flavor == "mysql":
        assert g["auth_plugin"] == "caching_sha2_password", f"mysql: auth plugin {g['auth_plugin']!r}"
        assert g["salt_lengths"] == [20] * 6, f"mysql: salts of {g['salt_lengths']} characters, need 20 for all six accounts"
    else:
        assert g["auth_plugin"] == "", f"mariadb has no {g['auth_plugin']}"


def check_account_tasks() -> None:
    """Every account mysql_manager creates names the plugin, its auth string and a salt (caching_sha2_password on
    MySQL), never the module's bare password argument alone (which means mysql_native_password there)."""
    import yaml

    tasks = yaml.safe_load((Path(__file__).resolve().parents[1] / "roles/mysql_manager/tasks/users.yml").read_text())
    created = 0
    for task in tasks:
        args = task.get("community.mysql.mysql_user")
        if args is None or args.get("state") == "absent":
            continue
        created += 1
        for key in ("plugin", "plugin_auth_string", "salt"):
            assert key in args, f"users.yml: task {task['name']!r} creates accounts without {key}"
        assert "omit if mysql_manager_auth_plugin" in args["password"], (
            f"users.yml: task {task['name']!r} passes a bare password on MySQL")
    assert created == 2, f"users.yml: expected the service accounts' and the proxy accounts' tasks, found {created}"


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
        tls = {k: settings.get(k) for k in ("ssl_ca", "ssl_cert", "ssl_key")}
        assert tls == {"ssl_ca": "/etc/mysql/sqlgate-tls/ca.pem", "ssl_cert": "/etc/mysql/sqlgate-tls/server.pem",
                       "ssl_key": "/etc/mysql/sqlgate-tls/server-key.pem"}, f"{flavor} {node}: TLS settings {tls}"
        assert settings.get("require_secure_transport") == "ON", f"{flavor} {node}: plain TCP logins are not refused"
        # Only transactional tables, so a /transaction is all or nothing whatever it writes.
        if flavor == "mysql":
            disabled = settings.get("disabled_storage_engines", "").strip('"').split(",")
            assert {"MyISAM", "MEMORY"} <= set(disabled), f"{flavor} {node}: non-transactional engines allowed"
        else:
            assert settings.get("enforce_storage_engine") == "InnoDB", f"{flavor} {node}: engines not enforced"
        # Lossless semi-sync on every node (each may be promoted); waiting never gives up by default.
        src, rep = ("source", "replica") if flavor == "mysql" else ("master", "slave")
        assert settings.get(f"rpl_semi_sync_{rep}_enabled") == "ON", f"{flavor} {node}: semi-sync replica side off"
        assert settings.get(f"rpl_semi_sync_{src}_wait_point") == "AFTER_SYNC", f"{flavor} {node}: not lossless"
        assert settings.get(f"rpl_semi_sync_{src}_timeout") == "4294967295", f"{flavor} {node}: semi-sync degrades"
        assert f"rpl_semi_sync_{src}_enabled" not in settings, f"{flavor} {node}: primary side on at boot"
        if flavor == "mysql":
            assert settings.get("plugin_load_add") == '"semisync_source.so;semisync_replica.so"', settings


def check_replication(flavor: str, rep: dict) -> None:
    """The worker's replication statement: over TLS, the source's certificate verified against the node's CA; and
    the status columns the role compares so that a worker wired otherwise is rewired."""
    change = " ".join(rep["change"].split())
    p = "SOURCE" if flavor == "mysql" else "MASTER"
    want = [f"{p}_SSL=1", f"{p}_SSL_CA='/etc/mysql/sqlgate-tls/ca.pem'", f"{p}_SSL_VERIFY_SERVER_CERT=1"]
    clauses = [c.strip() for c in change.split(",")]
    for clause in want:
        assert clause in clauses, f"{flavor}: the change statement lacks {clause}: {change}"
    start = "CHANGE REPLICATION SOURCE TO " if flavor == "mysql" else "CHANGE MASTER TO "
    assert change.startswith(start), f"{flavor}: {change}"
    cols = rep["columns"]
    p = "Source" if flavor == "mysql" else "Master"
    assert {k: cols.get(k) for k in ("ssl", "ssl_ca", "ssl_verify")} == {
        "ssl": f"{p}_SSL_Allowed", "ssl_ca": f"{p}_SSL_CA_File", "ssl_verify": f"{p}_SSL_Verify_Server_Cert"}, cols


def check_gatekeeper(render: Path, proxy: dict, keys_env: Path) -> None:
    gk = env(render / "gatekeeper.env")
    for k in ["GATEKEEPER_LISTEN", "GATEKEEPER_PROXY_URL", "GATEKEEPER_PROXY_TOKEN", "GATEKEEPER_KEYS_FILE",
              "GATEKEEPER_ADMIN_LISTEN", "GATEKEEPER_TLS_CERT", "GATEKEEPER_TLS_KEY", "GATEKEEPER_PROXY_CA", "RUST_LOG"]:
        assert gk.get(k), f"gatekeeper.env lacks {k}"
    assert gk["GATEKEEPER_LISTEN"] == "0.0.0.0:443", f"the API is HTTPS on 443 only: {gk['GATEKEEPER_LISTEN']}"
    assert "GATEKEEPER_PLAIN_HTTP" not in gk, "no plaintext API on AWS"
    assert gk["GATEKEEPER_TLS_CERT"] == "/etc/sqlgate/tls/gatekeeper.pem", gk["GATEKEEPER_TLS_CERT"]
    assert gk["GATEKEEPER_TLS_KEY"] == "/etc/sqlgate/tls/gatekeeper-key.pem", gk["GATEKEEPER_TLS_KEY"]
    assert gk["GATEKEEPER_PROXY_CA"] == "/etc/sqlgate/tls/ca.pem", gk["GATEKEEPER_PROXY_CA"]
    assert gk["GATEKEEPER_PROXY_URL"] == "https://10.42.1.4:5000", "the gatekeeper must use the proxy's private HTTPS URL"
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


def check_tls(tls_dir: Path) -> None:
    """sqlgate_tls's output: a CA (CA:TRUE, never a server) and the manager's certificate, signed by it, for its
    private address and loopback, keys private to the controller's user."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    ca = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    host = x509.load_pem_x509_certificate((tls_dir / "manager.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca, "ca.pem is not a CA"
    assert host.issuer == ca.subject, "manager.pem is not issued by the deployment's CA"
    ca.public_key().verify(host.signature, host.tbs_certificate_bytes, ec.ECDSA(host.signature_hash_algorithm))
    try:
        assert not host.extensions.get_extension_for_class(x509.BasicConstraints).value.ca, "a host certificate may not be a CA"
    except x509.ExtensionNotFound:
        pass
    ips = {str(i) for i in host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)}
    assert ips == {"10.42.1.4", "127.0.0.1"}, f"manager.pem names {sorted(ips)}"
    usages = host.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages, "manager.pem is not a server certificate"
    for key in ("ca-key.pem", "manager-key.pem"):
        assert (tls_dir / key).stat().st_mode & 0o077 == 0, f"{key} must be private (0600)"


def main(root: Path, keys_env: Path, schemas: list) -> None:
    assert schemas and "sqlgate" not in schemas, f"expected schemas {schemas}"
    envs = {}
    for flavor in FLAVORS:
        render = root / flavor
        proxy = envs[flavor] = env(render / "proxy.env")
        check_proxy_env(flavor, proxy, schemas)
        check_grants(flavor, json.loads((render / "grants.json").read_text()), schemas)
        check_node_cnf(flavor, render)
        check_replication(flavor, json.loads((render / "replication.json").read_text()))
        check_gatekeeper(render, proxy, keys_env)
        secrets = [proxy[f"PROXY_{r}_PASSWORD"] for r in ("READ", "WRITE", "ADMIN", "MONITOR")]
        assert not any(s in (render / "grants.json").read_text() for s in secrets), f"{flavor}: a password leaked into grants.json"
    assert envs["mysql"] == envs["mariadb"], "proxy.env differs between flavours"
    check_account_tasks()
    check_tls(keys_env.parent.parent / "tls")
    print(f"ok: proxy.env ({len(envs['mysql'])} variables), gatekeeper.env, the keys file, the node config "
          f"(local_infile=OFF, TLS, require_secure_transport=ON), the workers' replication over verified TLS "
          f"and the grants and caching_sha2_password hashes of repl, monitor, read, write, admin "
          f"and sbtest on {','.join(schemas)} and the TLS files (CA, CA-signed host certificate) match the contract, "
          f"for {' and '.join(FLAVORS)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [s for s in sys.argv[3].split(",") if s])
