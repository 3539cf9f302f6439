#!/usr/bin/env python3
"""Control-side helpers of `make deploy` (standard library only; any Python >= 3.10).

  deploy_util.py bundle OUT.tar.gz         the Rust workspace as Packer uploads it (deterministic);
                                           prints {"app": HASH, "mysql": HASH}, the AMIs' input hashes
  deploy_util.py plan-guard PLAN.json      refuse a plan (terraform show -json) that deletes or replaces
                                           a database instance, a data volume or its attachment, or the
                                           gatekeeper's Elastic IP (exit 3, one line per resource)
  deploy_util.py my-ip                     this machine's public IPv4 address
  deploy_util.py query URL KEY [CA_FILE]   the deploy's test query through the gatekeeper (TLS
                                           verified against CA_FILE when given)

Python rather than shell so that the operator's machine needs no curl, GNU tar or sha256sum
(macOS has neither of the last two).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import ssl
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Not part of the Rust workspace the app AMI compiles: the deploy path, docs, local tooling.
BUNDLE_EXCLUDE = re.compile(r"^(packer|terraform|ansible|docs|local|mk|\.ci|results)/|\.md$")

# The inputs of each AMI besides the workspace (app) or alone (mysql).
PACKER_SHARED = ["packer/plugins.pkr.hcl", "packer/variables.pkr.hcl", "packer/scripts/base.sh", "packer/scripts/cleanup.sh"]
PACKER_APP = PACKER_SHARED + [
    "packer/app.pkr.hcl",
    "packer/scripts/build-services.sh",
    "packer/scripts/remove-toolchain.sh",
    "packer/scripts/install-services.sh",
    "packer/files/sqlgate-app",
]
PACKER_MYSQL = PACKER_SHARED + ["packer/mysql.pkr.hcl", "packer/scripts/mysql.sh", "packer/files/sqlgate-mysql"]

# Resources a routine deploy must never delete or replace: the database nodes and their data.
PROTECTED = [
    (re.compile(r"^aws_instance\.(manager|worker)(\[\d+\])?$"), "database instance"),
    (re.compile(r"^aws_ebs_volume\.\w+_data(\[\d+\])?$"), "database data volume"),
    (re.compile(r"^aws_volume_attachment\.\w+_data(\[\d+\])?$"), "data volume attachment"),
    (re.compile(r"^aws_eip\.gatekeeper$"), "the gatekeeper's Elastic IP"),
    (re.compile(r"^aws_dlm_lifecycle_policy\.data$"), "the daily snapshot policy"),
]


def workspace_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout.decode()
    return sorted(f for f in out.split("\0") if f and not BUNDLE_EXCLUDE.search(f) and (root / f).is_file())


def bundle(root: Path, out: Path) -> bytes:
    """A tar.gz whose bytes depend on the files' paths, contents and modes only."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel in workspace_files(root):
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as f:
                tar.addfile(info, f)
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return data


def hash_inputs(root: Path, paths: list[str], extra: bytes = b"") -> str:
    h = hashlib.sha256(extra)
    for rel in paths:
        p = root / rel
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def ami_hashes(root: Path, tarball: bytes) -> dict:
    return {
        "app": hash_inputs(root, PACKER_APP, hashlib.sha256(tarball).digest()),
        "mysql": hash_inputs(root, PACKER_MYSQL),
    }


def plan_violations(plan: dict) -> list[str]:
    """Protected resources the plan deletes (a replacement deletes too)."""
    bad = []
    for rc in plan.get("resource_changes", []):
        actions = rc.get("change", {}).get("actions", [])
        if "delete" not in actions:
            continue
        for pattern, what in PROTECTED:
            if pattern.match(rc["address"]):
                verb = "replace" if "create" in actions else "delete"
                bad.append(f"{rc['address']} ({what}): the plan would {verb} it")
    return bad


def plan_guard(path: str) -> int:
    plan = json.load(sys.stdin if path == "-" else open(path))
    bad = plan_violations(plan)
    for line in bad:
        print(f"deploy: refusing: {line}", file=sys.stderr)
    return 3 if bad else 0


def my_ip() -> int:
    try:
        with urllib.request.urlopen("https://checkip.amazonaws.com", timeout=10) as r:
            ip = r.read().decode().strip()
    except OSError as err:
        print(f"deploy: could not detect your public address ({err}): set ADMIN_CIDR, e.g. ADMIN_CIDR=203.0.113.7/32", file=sys.stderr)
        return 1
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", ip):
        print(f"deploy: unexpected address {ip!r}: set ADMIN_CIDR", file=sys.stderr)
        return 1
    print(ip)
    return 0


def query(url: str, key: str, ca: str | None) -> int:
    body = json.dumps({"sql": "SELECT COUNT(*) AS actors FROM sakila.actor", "mode": "random"}).encode()
    req = urllib.request.Request(
        f"{url}/query", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
            print(r.read().decode())
    except OSError as err:
        print(f"deploy: the gatekeeper at {url} did not answer the test query: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["bundle", out]:
            print(json.dumps(ami_hashes(ROOT, bundle(ROOT, Path(out)))))
            return 0
        case ["plan-guard", path]:
            return plan_guard(path)
        case ["my-ip"]:
            return my_ip()
        case ["query", url, key]:
            return query(url, key, None)
        case ["query", url, key, ca]:
            return query(url, key, ca)
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
