"""The operator's side of the deploy path, offline (part of `make deploy-check`).

- The deploy tools' pins (ansible/requirements.txt + constraints.txt) resolve for Python 3.10
  (Ubuntu 22.04's) and 3.11, on Linux and on macOS (arm64), from wheels: `pip install --dry-run
  --only-binary=:all: --python-version`. Only 3.11 is installed here, so pip resolves for the
  other versions from the index (PyPI must be reachable, as for `make deploy-tools` itself).
- `make deploy`'s scripts never run a system package manager: deploy-tools (a fresh venv,
  from nothing) and the preflight run with apt-get, apt, dpkg, sudo, brew, snap, yum, dnf and
  port replaced by stubs that record any call; none may be called. A static check covers the
  scripts' text and the Makefile recipes of deploy, destroy and backup.
- The preflight names each missing or too old tool with what to install on Debian/Ubuntu and
  on macOS, and creates nothing.
- Packer: explicit VPC/subnet, IMDSv2 on the build instances, SSH only from the operator,
  deployment tags, no toolchain left in the app image; the AMI input hashes: a service change
  rebuilds the app AMI only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "terraform" / "tools"
VENV = Path(os.environ.get("DEPLOY_VENV", ROOT / ".local" / "venv-deploy"))
if not VENV.is_absolute():
    VENV = ROOT / VENV
WORK = Path(os.environ.get("SQLGATE_TOOLS_TEST_DIR", ROOT / ".local" / "tools-test"))
sys.path.insert(0, str(TOOLS))
import deploy_util  # noqa: E402

PACKAGE_MANAGERS = ["apt-get", "apt", "aptitude", "dpkg", "sudo", "brew", "snap", "yum", "dnf", "port", "pkg"]
CI_ONLY = {"ansible-lint", "checkov", "moto", "pymysql", "pytest"}
PLATFORMS = {
    # Wheels Ubuntu 22.04 (glibc 2.35) installs; pip 23 does not widen a newer manylinux tag to older ones.
    "linux": ["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "macos-arm64": ["macosx_14_0_arm64"],
}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return pins


def test_deploy_requirements_are_pinned_and_ci_tools_apart():
    deploy = _pins(ROOT / "ansible/requirements.txt")
    check = _pins(ROOT / "ansible/requirements-check.txt")
    constraints = _pins(ROOT / "ansible/constraints.txt")
    assert {"ansible", "ansible-core", "boto3"} <= set(deploy), deploy
    assert not CI_ONLY & set(deploy), f"the operator's venv must not carry CI tools: {sorted(CI_ONLY & set(deploy))}"
    assert CI_ONLY <= set(check), check
    for name, version in {**deploy, **check}.items():
        assert version, f"{name} is not pinned"
        assert constraints.get(name) == version, f"{name}=={version} but constraints.txt has {constraints.get(name)}"
    # ansible-core 2.18+ needs Python >= 3.11; 2.17 is the last for 3.10.
    assert deploy["ansible-core"].startswith("2.17."), deploy["ansible-core"]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", ["3.10", "3.11"])
def test_deploy_tools_resolve_for_python(python, platform, tmp_path):
    report = tmp_path / "report.json"
    cmd = [
        str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--dry-run", "--ignore-installed", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
        *[arg for p in PLATFORMS[platform] for arg in ("--platform", p)],
        "--target", str(tmp_path / "target"), "--report", str(report),
        "-r", str(ROOT / "ansible/requirements.txt"), "-c", str(ROOT / "ansible/constraints.txt"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"the deploy tools do not resolve for Python {python} on {platform}:\n{proc.stderr[-3000:]}"
    installed = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    constraints = _pins(ROOT / "ansible/constraints.txt")
    for name, version in installed.items():
        assert constraints.get(name.replace("_", "-")) == version, f"{name} {version} resolved outside constraints.txt"
    assert installed.get("ansible-core", "").startswith("2.17."), installed
    assert "boto3" in installed and "ansible" in installed, installed


def _stub_bin(path: Path, log: Path, packer_version: str | None = "1.11.2") -> Path:
    """Stubs for every package manager (they log and fail), and a packer that only reports a version."""
    path.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_MANAGERS:
        stub = path / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"{log}"\nexit 97\n')
        stub.chmod(0o755)
    if packer_version:
        (path / "packer").write_text(f'#!/bin/sh\necho "Packer v{packer_version}"\n')
        (path / "packer").chmod(0o755)
    return path


def _run(cmd: list[str], env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _offline_aws(env: dict) -> dict:
    """No AWS account: dummy credentials and an endpoint that refuses connections."""
    for k in list(env):
        if k.startswith("AWS_"):
            del env[k]
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
    return env


def test_deploy_path_runs_no_package_manager():
    """deploy-tools from nothing (a fresh venv) and the preflight, with every package manager stubbed out."""
    work = WORK / "no-package-manager"
    shutil.rmtree(work, ignore_errors=True)
    log = work / "calls.log"
    stubs = _stub_bin(work / "bin", log)
    venv = work / "venv"
    env = _offline_aws(dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", DEPLOY_VENV=str(venv)))
    env.pop("VIRTUAL_ENV", None)

    proc = _run(["make", "--no-print-directory", "-f", "mk/deploy.mk", "deploy-tools", f"DEPLOY_VENV={venv}"], env, timeout=900)
    assert proc.returncode == 0, f"make deploy-tools failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert (venv / "bin" / "ansible-playbook").exists(), "deploy-tools made no venv with Ansible"
    again = _run(["make", "--no-print-directory", "-f", "mk/deploy.mk", "deploy-tools", f"DEPLOY_VENV={venv}"], env)
    assert again.returncode == 0 and again.stdout.strip() == "", f"a second deploy-tools is not a no-op: {again.stdout}"

    pre = _run([str(TOOLS / "aws.sh"), "preflight", "deploy"], env, timeout=120)
    assert pre.returncode == 1, f"preflight without an AWS account should stop at the credentials:\n{pre.stdout}\n{pre.stderr}"
    assert "AWS rejected the credentials" in pre.stderr, pre.stderr
    assert not log.exists(), f"the deploy path ran a package manager:\n{log.read_text()}"
    for ci_tool in ("checkov", "moto_server", "ansible-lint", "pytest"):
        assert not (venv / "bin" / ci_tool).exists(), f"the operator's venv got CI's {ci_tool}"


def test_deploy_scripts_never_call_a_package_manager():
    """Static: the operator's scripts and the recipes of make deploy/destroy/backup mention package
    managers only in the install hints they print (deploy-tools.sh's hint and HASHICORP_APT)."""
    words = re.compile(r"(^|[\s;&|(`$])(apt-get|apt|aptitude|dpkg|sudo|brew|snap|yum|dnf|port)(\s|$)")
    text = (TOOLS / "deploy-tools.sh").read_text()
    text = re.sub(r"(?ms)^HASHICORP_APT='.*?'\n", "", text)
    text = re.sub(r"(?ms)^hint\(\) \{.*?^\}\n", "", text)
    scripts = {"deploy-tools.sh": text, "aws.sh": (TOOLS / "aws.sh").read_text()}
    for name, body in scripts.items():
        code = [l for l in body.splitlines() if not l.lstrip().startswith("#")]
        hits = [l for l in code if words.search(l)]
        assert hits == [], f"{name} calls a package manager: {hits}"
    for py in ("deploy_util.py", "aws_amis.py"):
        assert not re.search(r"apt-get|dpkg|brew|sudo", (TOOLS / py).read_text()), f"{py} mentions a package manager"
    recipes = _run(["make", "-n", "--no-print-directory", "-f", "mk/deploy.mk", "deploy", "destroy", "backup", "deploy-tools"],
                   dict(os.environ))
    assert recipes.returncode == 0, recipes.stderr
    assert "check-tools" not in recipes.stdout and not words.search(recipes.stdout), recipes.stdout
    check_tools = (TOOLS / "check-tools.sh").read_text()
    assert "scripts/os-packages.sh" in check_tools, "CI's apt installs belong in check-tools.sh, through scripts/os-packages.sh"
    assert "apt-get" in (ROOT / "scripts" / "os-packages.sh").read_text()
    for name, body in scripts.items():
        assert "os-packages" not in body, f"{name} installs OS packages"


def _minimal_path(work: Path, drop: set[str]) -> str:
    """A PATH of the system's tools without `drop` (and without /usr/local/bin's terraform)."""
    sysbin = work / "sysbin"
    sysbin.mkdir(parents=True, exist_ok=True)
    for d in ("/usr/bin", "/bin"):
        for tool in Path(d).iterdir():
            if tool.name not in drop and tool.name not in PACKAGE_MANAGERS and not (sysbin / tool.name).exists():
                (sysbin / tool.name).symlink_to(tool)
    return str(sysbin)


def test_preflight_says_what_to_install(tmp_path):
    """No terraform, no packer: one message each, with the Debian/Ubuntu and macOS commands; nothing created."""
    log = tmp_path / "calls.log"
    stubs = _stub_bin(tmp_path / "stubs", log, packer_version=None)
    path = f"{stubs}:{_minimal_path(tmp_path, {'terraform', 'packer'})}"
    venv = tmp_path / "venv"
    env = dict(os.environ, PATH=path, DEPLOY_VENV=str(venv))
    proc = _run(["bash", str(TOOLS / "deploy-tools.sh")], env)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "terraform not found: Terraform >= 1.5 is needed" in err, err
    assert "packer not found: Packer >= 1.9 is needed" in err, err
    assert "brew tap hashicorp/tap && brew install hashicorp/tap/terraform" in err, err
    assert "brew tap hashicorp/tap && brew install hashicorp/tap/packer" in err, err
    assert err.count("Debian/Ubuntu:") == 2 and err.count("macOS:") == 2, err
    assert "sudo apt install terraform" in err and "sudo apt install packer" in err, err
    assert "nothing was created" in err and not venv.exists(), "the preflight created something"
    assert not log.exists(), log.read_text()

    # Too old: Terraform 1.3 and Packer 1.6 (Debian's) are refused by name; destroy needs no packer.
    for name, out in (("terraform", "Terraform v1.3.9"), ("packer", "Packer v1.6.6")):
        (stubs / name).write_text(f'#!/bin/sh\necho "{out}"\n')
        (stubs / name).chmod(0o755)
    proc = _run(["bash", str(TOOLS / "deploy-tools.sh"), "check", "deploy"], env)
    assert proc.returncode == 1
    assert "terraform 1.3.9 is too old" in proc.stderr and "packer 1.6.6 is too old" in proc.stderr, proc.stderr
    (stubs / "terraform").write_text('#!/bin/sh\necho "Terraform v1.5.7"\n')
    proc = _run(["bash", str(TOOLS / "deploy-tools.sh"), "check", "destroy"], env)
    assert proc.returncode == 0, f"destroy needs no packer:\n{proc.stderr}"


def test_preflight_wants_python_310(tmp_path):
    """A python3 older than 3.10 (Apple's 3.9) is refused with the install hints."""
    stubs = _stub_bin(tmp_path / "stubs", tmp_path / "calls.log")
    for name in ("python3", "python3.10", "python3.11", "python3.12", "python3.13"):
        (stubs / name).write_text('#!/bin/sh\necho 3.9\n')
        (stubs / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{_minimal_path(tmp_path, {'python3', 'python3.11', 'python3.12'})}:/usr/local/bin")
    env.pop("PYTHON", None)
    proc = _run(["bash", str(TOOLS / "deploy-tools.sh"), "check", "deploy"], env)
    assert proc.returncode == 1
    assert "Python >= 3.10 not found (python3 is 3.9)" in proc.stderr, proc.stderr
    assert "brew install python@3.12" in proc.stderr and "sudo apt install python3 python3-venv" in proc.stderr


# --- Packer -----------------------------------------------------------------------------------

def _read(rel: str) -> str:
    return (ROOT / rel).read_text()


@pytest.mark.parametrize("role", ["app", "mysql"])
def test_packer_build_instance_is_locked_down(role):
    src = _read(f"packer/{role}.pkr.hcl")
    for needle in (
        "vpc_id                                = var.vpc_id",
        "subnet_id                             = var.subnet_id",
        "temporary_security_group_source_cidrs = var.ssh_source_cidrs",
        'imds_support = "v2.0"',
        'http_tokens                 = "required"',
        "http_put_response_hop_limit = 1",
        'ami_name      = "sqlgate-%s-${var.deployment_id}-${local.timestamp}"' % role,
    ):
        assert needle in src, f"packer/{role}.pkr.hcl lacks {needle!r}"
    variables = _read("packer/variables.pkr.hcl")
    for var in ("deployment_id", "vpc_id", "subnet_id", "ssh_source_cidrs"):
        block = re.search(r'variable "%s" \{(.*?)\n\}' % var, variables, re.S)
        assert block and not re.search(r"^\s*default\s*=", block.group(1), re.M), f"{var} must be required (no default: no implicit default VPC)"
    assert '"sqlgate:deployment" = var.deployment_id' in variables, "AMIs and snapshots must carry the deployment id"


def test_app_image_keeps_no_toolchain():
    src = _read("packer/app.pkr.hcl")
    steps = re.findall(r'scripts/([\w-]+\.sh)', src)
    assert steps.index("build-services.sh") < steps.index("remove-toolchain.sh") < steps.index("install-services.sh"), steps
    script = _read("packer/scripts/remove-toolchain.sh")
    assert "set -euo pipefail" in script
    assert re.search(r"apt-get .*purge .*build-essential", script), "the C toolchain must be purged"
    for tool in ("gcc", "cargo", "rustc", "rustup"):
        assert tool in script.split("for tool in", 1)[1].split(";", 1)[0], f"remove-toolchain.sh does not check {tool}"
    assert "exit 1" in script


@pytest.mark.parametrize("settings, error", [
    ({"GATEKEEPER_TLS_CERT_FILE": "CERT"}, "give both GATEKEEPER_TLS_CERT_FILE and GATEKEEPER_TLS_KEY_FILE"),
    ({"GATEKEEPER_TLS_KEY_FILE": "KEY"}, "give both GATEKEEPER_TLS_CERT_FILE and GATEKEEPER_TLS_KEY_FILE"),
    ({"GATEKEEPER_TLS_CERT_FILE": "CERT", "GATEKEEPER_TLS_KEY_FILE": "MISSING"}, "is not a readable file"),
    ({"GATEKEEPER_DNS_NAME": "api.example.com;x"}, "is not a hostname"),
    ({"GATEKEEPER_DNS_NAME": "-api.example.com"}, "is not a hostname"),
    ({"GATEKEEPER_DNS_NAME": "10.0.0.1"}, "is not a hostname"),
])
def test_gatekeeper_tls_settings_refused_before_anything(settings, error, tmp_path):
    """make deploy refuses a bad GATEKEEPER_DNS_NAME or half a certificate pair before the preflight: no tool,
    no AWS call, nothing written."""
    (tmp_path / "CERT").write_text("cert")
    (tmp_path / "KEY").write_text("key")
    log = tmp_path / "calls.log"
    stub = _stub_bin(tmp_path / "bin", log)
    for tool in ("terraform", "packer", "ssh-keygen", "ansible-playbook", "aws"):
        (stub / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"{log}"\nexit 97\n')
        (stub / tool).chmod(0o755)
    env = {"PATH": f"{stub}:{os.environ['PATH']}", "HOME": str(tmp_path), "DEPLOY_VENV": str(tmp_path / "no-venv")}
    env.update({k: str(tmp_path / v) if k.endswith("_FILE") else v for k, v in settings.items()})
    res = _run([str(TOOLS / "aws.sh"), "deploy"], env, timeout=60)
    assert res.returncode != 0 and error in res.stderr and "Nothing was created" in res.stderr, res.stdout + res.stderr
    assert "==>" not in res.stdout, f"deploy went on: {res.stdout}"
    assert not log.exists(), f"a tool ran: {log.read_text()}"


def test_gatekeeper_tls_settings_become_extra_vars():
    """The settings reach the Ansible run as extra vars; the Makefile passes them."""
    script = _read("terraform/tools/aws.sh")
    assert 'ansible-playbook" -i "$INVENTORY" -e "$GATEKEEPER_TLS_VARS" ${JUMP[@]+"${JUMP[@]}"} "$ROOT/ansible/site.yml"' in script
    for var in ("sqlgate_tls_gatekeeper_dns", "sqlgate_tls_gatekeeper_cert_file", "sqlgate_tls_gatekeeper_key_file"):
        assert f'"{var}"' in script
    assert script.index("  gatekeeper_tls_settings\n  preflight deploy") > 0, "checked before the preflight"
    mk = _read("mk/deploy.mk")
    for var in ("GATEKEEPER_DNS_NAME", "GATEKEEPER_TLS_CERT_FILE", "GATEKEEPER_TLS_KEY_FILE"):
        assert f"{var}='$({var})'" in mk, f"make deploy does not pass {var}"


MYSQL_KEY_FILES = ("ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "client-cert.pem",
                   "client-key.pem", "private_key.pem", "public_key.pem")


def test_mysql_image_keeps_no_generated_keys(tmp_path):
    """mysql.sh removes, with mysqld stopped and not started again, the TLS and RSA files mysqld made at its first
    start: no two nodes or deployments may share a key. The script's own rm lines run here on a fake datadir."""
    script = _read("packer/scripts/mysql.sh")
    assert "\nset -euo pipefail\n" in script
    after_stop = script.rsplit("systemctl stop mysql", 1)
    assert len(after_stop) == 2, "mysql.sh never stops mysqld"
    tail = after_stop[1]
    assert not re.search(r"^\s*(systemctl (re)?start mysql|service mysql|mysqld\b)", tail, re.M), "mysqld must stay stopped after the cleanup"
    rm_lines = [l for l in tail.splitlines() if re.match(r"\s*rm -f /var/lib/mysql/", l)]
    assert rm_lines, "mysql.sh removes nothing from /var/lib/mysql after stopping mysqld"
    datadir = tmp_path / "mysql"
    datadir.mkdir()
    for name in MYSQL_KEY_FILES + ("auto.cnf", "ibdata1", "mysql.ibd"):
        (datadir / name).write_text("x")
    cmds = "\n".join(l.replace("/var/lib/mysql/", f"{datadir}/") for l in rm_lines)
    subprocess.run(["bash", "-euo", "pipefail", "-c", cmds], check=True)
    left = sorted(p.name for p in datadir.iterdir())
    assert left == ["ibdata1", "mysql.ibd"], f"after mysql.sh's cleanup the datadir holds {left}"


def _git_tree(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "packer", repo / "packer")
    (repo / "services").mkdir(parents=True)
    (repo / "services" / "main.rs").write_text("fn main() {}\n")
    (repo / "Cargo.toml").write_text("[workspace]\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "x.md").write_text("doc\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def test_ami_hashes_follow_their_inputs(tmp_path):
    repo = _git_tree(tmp_path)
    first = deploy_util.bundle(repo, tmp_path / "a.tar.gz")
    assert deploy_util.bundle(repo, tmp_path / "b.tar.gz") == first, "the source bundle is not deterministic"
    base = deploy_util.ami_hashes(repo, first)
    import tarfile
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
    assert names == ["Cargo.toml", "services/main.rs"], f"the bundle holds {names}"

    (repo / "services" / "main.rs").write_text("fn main() { println!(); }\n")
    code = deploy_util.ami_hashes(repo, deploy_util.bundle(repo, tmp_path / "c.tar.gz"))
    assert code["app"] != base["app"] and code["mysql"] == base["mysql"], "a service change must rebuild the app AMI only"

    (repo / "packer/scripts/mysql.sh").write_text((repo / "packer/scripts/mysql.sh").read_text() + "\n# change\n")
    mysql = deploy_util.ami_hashes(repo, deploy_util.bundle(repo, tmp_path / "d.tar.gz"))
    assert mysql["mysql"] != code["mysql"] and mysql["app"] == code["app"], "a mysql.sh change must rebuild the mysql AMI only"
