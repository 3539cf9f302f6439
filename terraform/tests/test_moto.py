"""Apply the real Terraform code to a moto EC2 mock on loopback and check the result.

Nothing in terraform/ knows it is being tested: the AWS provider is pointed at
moto through AWS_ENDPOINT_URL, and the AMI lookups find images registered in
moto with the tags Packer would put on them. moto has no Data Lifecycle
Manager, so a small fake of its REST API (FakeDlm below) stands in for that
one service (AWS_ENDPOINT_URL_DLM) and records the policy Terraform creates.
The tests read what the mocks hold through boto3 (what AWS would report) and
Terraform's state, outputs and plans.

After the first apply, new AMIs are registered and Terraform plans (and then
applies) with them, as `make deploy` does after a code, Packer or toolchain
change: no database instance, data volume or Elastic IP may be replaced.

Run by terraform/tools/deploy-check.sh (part of `make deploy-check`), which
checks that terraform and the provider mirror exist first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "terraform" / "tools"))
import deploy_util  # noqa: E402  (the plan guard make deploy runs)
TF_SRC = Path(os.environ.get("SQLGATE_TF_SRC", ROOT / "terraform"))
WORK = Path(os.environ.get("SQLGATE_TF_TEST_DIR", ROOT / ".local" / "tf-test"))
PLUGIN_DIR = os.environ.get("SQLGATE_TF_PLUGIN_DIR", "/opt/tf-plugins")
TF_TIMEOUT = 300

WORKERS = 3
DEPLOYMENT_ID = "t3stdepl"
ADMIN_CIDR = "203.0.113.7/32"
# Two client networks, neither the world: the API must be open to exactly these.
ALLOWED_CIDRS = ["198.51.100.0/24", "192.0.2.0/25"]
DATA_VOLUME_SIZE = 24
BACKUP_RETENTION = 9
# A public key only: the mock needs a well-formed one to import.
SSH_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFupftsZqG4xhSuo6HzFNLZhp6bYekt39F61sFL0lA88 sqlgate-test"
)
WORLD = "0.0.0.0/0"

# The designed topology, rule by rule: (group, protocol, from, to, source or
# destination). A source is a group name or a CIDR. Any rule added, removed
# or widened makes the exact comparison below fail.
EXPECTED_INGRESS = {
    *{("gatekeeper", "tcp", 443, 443, c) for c in ALLOWED_CIDRS},
    ("gatekeeper", "tcp", 22, 22, ADMIN_CIDR),
    ("proxy", "tcp", 5000, 5000, "gatekeeper"),
    ("proxy", "tcp", 22, 22, "gatekeeper"),
    ("db", "tcp", 3306, 3306, "proxy"),
    ("db", "tcp", 3306, 3306, "db"),
    ("db", "icmp", 8, 0, "proxy"),
    ("db", "tcp", 22, 22, "gatekeeper"),
}
EXPECTED_EGRESS = {
    ("gatekeeper", "tcp", 5000, 5000, "proxy"),
    ("gatekeeper", "tcp", 22, 22, "proxy"),
    ("gatekeeper", "tcp", 22, 22, "db"),
    ("proxy", "tcp", 3306, 3306, "db"),
    ("proxy", "icmp", 8, 0, "db"),
    ("db", "tcp", 3306, 3306, "db"),
}


def _interrupt(signum, frame):
    # A SIGTERM (deploy-check's time limit) unwinds like Ctrl-C, so the
    # fixtures still destroy the deployment and stop the moto server.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tags(obj: dict) -> dict:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


class Terraform:
    """Runs terraform in a scratch copy of terraform/*.tf against the mock."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir = workdir
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["terraform", *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TF_TIMEOUT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def vars(self, **overrides) -> list[str]:
        values = {
            "admin_cidr": ADMIN_CIDR,
            "ssh_public_key": SSH_PUBLIC_KEY,
            "worker_count": WORKERS,
            "deployment_id": DEPLOYMENT_ID,
            "allowed_cidrs": json.dumps(ALLOWED_CIDRS),
            "db_data_volume_size": DATA_VOLUME_SIZE,
            "backup_retention_days": BACKUP_RETENTION,
        }
        values.update(overrides)
        return [f"-var={k}={v}" for k, v in values.items()]

    def plan_json(self, *args: str) -> dict:
        """terraform plan (with the given -var flags) -> terraform show -json of it."""
        self.run("plan", "-input=false", "-no-color", "-out=tfplan", *args)
        return json.loads(self.run("show", "-json", "-no-color", "tfplan").stdout)


class FakeDlm:
    """The Data Lifecycle Manager REST API, as far as Terraform's aws_dlm_lifecycle_policy uses it."""

    def __init__(self):
        self.policies: dict[str, dict] = {}
        self.tags: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: dict | None = None):
                data = json.dumps(body or {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

            def _parts(self):
                path = urllib.parse.urlparse(self.path).path
                return [urllib.parse.unquote(p) for p in path.strip("/").split("/")]

            def _missing(self):
                self._send(404, {"Message": "policy not found", "Code": "ResourceNotFoundException"})

            def do_POST(self):
                parts, body = self._parts(), self._body()
                if parts == ["policies"]:
                    pid = f"policy-{len(fake.policies) + 1:017x}"
                    arn = f"arn:aws:dlm:us-east-1:123456789012:policy/{pid}"
                    tags = body.pop("Tags", {}) or {}
                    fake.policies[pid] = dict(body, PolicyId=pid, PolicyArn=arn, DateCreated="2026-01-01T00:00:00Z", DateModified="2026-01-01T00:00:00Z")
                    fake.tags[arn] = tags
                    return self._send(200, {"PolicyId": pid})
                if parts[0] == "tags":
                    fake.tags.setdefault("/".join(parts[1:]), {}).update(body.get("Tags", {}))
                    return self._send(200)
                self._missing()

            def do_GET(self):
                parts = self._parts()
                if parts[0] == "policies" and len(parts) == 2 and parts[1] in fake.policies:
                    policy = fake.policies[parts[1]]
                    return self._send(200, {"Policy": dict(policy, Tags=fake.tags.get(policy["PolicyArn"], {}))})
                if parts[0] == "policies" and len(parts) == 1:
                    return self._send(200, {"Policies": [
                        {"PolicyId": p["PolicyId"], "Description": p.get("Description"), "State": p.get("State")}
                        for p in fake.policies.values()]})
                if parts[0] == "tags":
                    return self._send(200, {"Tags": fake.tags.get("/".join(parts[1:]), {})})
                self._missing()

            def do_PATCH(self):
                parts, body = self._parts(), self._body()
                if parts[0] == "policies" and len(parts) == 2 and parts[1] in fake.policies:
                    fake.policies[parts[1]].update(body)
                    return self._send(200)
                self._missing()

            def do_DELETE(self):
                parts = self._parts()
                if parts[0] == "policies" and len(parts) == 2 and parts[1] in fake.policies:
                    policy = fake.policies.pop(parts[1])
                    fake.tags.pop(policy["PolicyArn"], None)
                    return self._send(200)
                if parts[0] == "tags":
                    query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                    for k in query.get("tagKeys", []):
                        fake.tags.get("/".join(parts[1:]), {}).pop(k, None)
                    return self._send(200)
                self._missing()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def mock():
    """A moto server on a free loopback port, stopped at the end."""
    WORK.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = open(WORK / "moto.log", "w")
    proc = subprocess.Popen(
        [shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    (WORK / "moto.pid").write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {WORK / 'moto.log'}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def dlm():
    fake = FakeDlm()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def env(mock, dlm):
    rc = WORK / "terraformrc"
    rc.write_text("")
    e = dict(os.environ)
    # Never a real account: fixed dummy credentials and only the mock's endpoint.
    for k in list(e):
        if k.startswith("AWS_"):
            del e[k]
    e.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=mock,
        AWS_ENDPOINT_URL_DLM=dlm.url,
        TF_CLI_CONFIG_FILE=str(rc),
        CHECKPOINT_DISABLE="1",
        TF_IN_AUTOMATION="1",
    )
    return e


@pytest.fixture(scope="module")
def ec2(env):
    return boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _register_ami(ec2, role: str, stamp: str, deployment: str = DEPLOYMENT_ID) -> str:
    """An image as Packer registers it: named and tagged with its role and deployment."""
    image = ec2.register_image(
        Name=f"sqlgate-{role}-{deployment}-{stamp}",
        RootDeviceName="/dev/sda1",
        Architecture="x86_64",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16, "VolumeType": "gp3"}}],
    )
    ec2.create_tags(
        Resources=[image["ImageId"]],
        Tags=[
            {"Key": "sqlgate:role", "Value": role},
            {"Key": "sqlgate:deployment", "Value": deployment},
            {"Key": "Project", "Value": "sqlgate"},
            {"Key": "ManagedBy", "Value": "packer"},
        ],
    )
    return image["ImageId"]


@pytest.fixture(scope="module")
def amis(ec2):
    """The images Packer would register: one per role, tagged as Packer tags them."""
    # An untagged image of ours that the lookups must not pick.
    ec2.register_image(
        Name="unrelated-image",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16}}],
    )
    ids = {role: _register_ami(ec2, role, "20260101000000") for role in ("app", "mysql")}
    # Another deployment's images, registered later (so newer): never ours.
    for role in ("app", "mysql"):
        _register_ami(ec2, role, "20260102000000", deployment="otherdep")
    return ids


@pytest.fixture(scope="module")
def tf(env, amis):
    workdir = WORK / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for f in TF_SRC.glob("*.tf"):
        shutil.copy(f, workdir / f.name)
    t = Terraform(workdir, env)
    t.run("init", "-input=false", "-no-color", f"-plugin-dir={PLUGIN_DIR}")
    return t


@pytest.fixture(scope="module")
def deployed(tf):
    """terraform apply with worker_count=3; destroyed by test_destroy (or at teardown)."""
    tf.run("apply", "-auto-approve", "-input=false", "-no-color", *tf.vars())
    state = json.loads(tf.run("show", "-json", "-no-color").stdout)
    outputs = {k: v["value"] for k, v in json.loads(tf.run("output", "-json", "-no-color").stdout).items()}
    info = {"state": state, "outputs": outputs, "destroyed": False}
    yield info
    if not info["destroyed"]:
        tf.run("destroy", "-auto-approve", "-input=false", "-no-color", *tf.vars(), check=False)


def _resources(state: dict) -> list[dict]:
    return state["values"]["root_module"].get("resources", [])


def _instances(ec2) -> dict[str, dict]:
    """Live (not terminated) instances by Name tag."""
    out = {}
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] != "terminated":
                out[_tags(i).get("Name", i["InstanceId"])] = i
    return out


def _instance_groups(inst: dict) -> set[str]:
    """Security group ids of an instance (moto reports them on its interfaces only)."""
    groups = {g["GroupId"] for g in inst.get("SecurityGroups", [])}
    for eni in inst.get("NetworkInterfaces", []):
        groups |= {g["GroupId"] for g in eni.get("Groups", [])}
    return groups


def _group_names(ec2, vpc_id: str) -> dict[str, str]:
    """Security group id -> role name (gatekeeper, proxy, db, default)."""
    names = {}
    for sg in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]:
        name = sg["GroupName"]
        names[sg["GroupId"]] = "default" if name == "default" else name.split("-")[1]
    return names


def _rules(ec2, vpc_id: str, egress: bool) -> set[tuple]:
    names = _group_names(ec2, vpc_id)
    rules = set()
    for r in ec2.describe_security_group_rules()["SecurityGroupRules"]:
        if r["GroupId"] not in names or r["IsEgress"] != egress:
            continue
        peer = r.get("CidrIpv4") or r.get("CidrIpv6") or names.get(r.get("ReferencedGroupInfo", {}).get("GroupId"), "?")
        rules.add((names[r["GroupId"]], r["IpProtocol"], r["FromPort"], r["ToPort"], peer))
    return rules


def _vpc_id(deployed) -> str:
    (vpc,) = [r for r in _resources(deployed["state"]) if r["type"] == "aws_vpc"]
    return vpc["values"]["id"]


def test_dedicated_vpc_not_default(deployed, ec2):
    vpc_id = _vpc_id(deployed)
    (vpc,) = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert not vpc["IsDefault"], "the deployment must use its own VPC, not the default one"
    for name, inst in _instances(ec2).items():
        assert inst["VpcId"] == vpc_id, f"{name} runs outside the dedicated VPC"


def test_instances_and_placement(deployed, ec2):
    instances = _instances(ec2)
    expected = {"sqlgate-gatekeeper", "sqlgate-proxy", "sqlgate-manager"} | {
        f"sqlgate-worker-{i}" for i in range(1, WORKERS + 1)
    }
    assert set(instances) == expected, f"instances {sorted(instances)} differ from {sorted(expected)}"
    # By name: two subnets are public (the second zone's serves the scaled-out gatekeepers).
    subnets = {
        _tags(s).get("Name").removeprefix("sqlgate-"): s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [_vpc_id(deployed)]}])["Subnets"]
    }
    assert instances["sqlgate-gatekeeper"]["SubnetId"] == subnets["public"], "gatekeeper not in the public subnet"
    for name in expected - {"sqlgate-gatekeeper"}:
        assert instances[name]["SubnetId"] == subnets["private"], f"{name} not in the private subnet"


def test_each_instance_in_its_role_group(deployed, ec2):
    names = _group_names(ec2, _vpc_id(deployed))
    for name, inst in _instances(ec2).items():
        role = name.removeprefix("sqlgate-").split("-")[0]
        want = {"gatekeeper": "gatekeeper", "proxy": "proxy", "manager": "db", "worker": "db"}[role]
        got = sorted(names.get(g, g) for g in _instance_groups(inst))
        assert got == [want], f"{name} is in security groups {got}, expected only {want}"


def test_only_gatekeeper_has_public_ip(deployed, ec2):
    for name, inst in _instances(ec2).items():
        if name == "sqlgate-gatekeeper":
            assert inst.get("PublicIpAddress"), "the gatekeeper must have a public address"
        else:
            assert not inst.get("PublicIpAddress"), f"{name} has public address {inst.get('PublicIpAddress')}"
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [_vpc_id(deployed)]}])["Subnets"]:
        assert not s["MapPublicIpOnLaunch"], f"subnet {_tags(s).get('Name')} hands out public addresses"


def test_private_subnet_has_no_route_out(deployed, ec2):
    vpc_id = _vpc_id(deployed)
    for rt in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]:
        name = _tags(rt).get("Name", "main")
        outside = [r for r in rt["Routes"] if r.get("GatewayId") != "local"]
        if name == "sqlgate-public":
            assert [r.get("DestinationCidrBlock") for r in outside] == [WORLD], "public subnet needs its Internet route"
            assert outside[0]["GatewayId"].startswith("igw-"), "public default route must use the Internet gateway"
        else:
            assert outside == [], f"route table {name} routes outside the VPC: {outside}"


def test_ingress_rules_exactly_as_designed(deployed, ec2):
    got = _rules(ec2, _vpc_id(deployed), egress=False)
    assert got == EXPECTED_INGRESS, (
        f"unexpected ingress: {sorted(got - EXPECTED_INGRESS)}; missing: {sorted(EXPECTED_INGRESS - got)}"
    )


def test_egress_rules_exactly_as_designed(deployed, ec2):
    got = _rules(ec2, _vpc_id(deployed), egress=True)
    assert got == EXPECTED_EGRESS, (
        f"unexpected egress: {sorted(got - EXPECTED_EGRESS)}; missing: {sorted(EXPECTED_EGRESS - got)}"
    )


def test_api_on_443_only_from_allowed_cidrs(deployed, ec2):
    vpc_id = _vpc_id(deployed)
    rules = _rules(ec2, vpc_id, egress=False) | _rules(ec2, vpc_id, egress=True)
    on_80 = sorted(r for r in rules if r[2] <= 80 <= r[3] and r[1] in ("tcp", "-1"))
    assert on_80 == [], f"port 80 must be closed: {on_80}"
    api = {r[4] for r in _rules(ec2, vpc_id, egress=False) if r[0] == "gatekeeper" and r[2] <= 443 <= r[3]}
    assert api == set(ALLOWED_CIDRS), f"443 open to {sorted(api)}, expected exactly {ALLOWED_CIDRS}"
    # Outside the security groups' own references, only the API (from the allowed
    # networks) and SSH (from the admin network) are open, both on the gatekeeper.
    cidr_rules = {r for r in rules if "/" in r[4]}
    assert cidr_rules == {("gatekeeper", "tcp", 443, 443, c) for c in ALLOWED_CIDRS} | {
        ("gatekeeper", "tcp", 22, 22, ADMIN_CIDR)
    }, f"rules with a network source: {sorted(cidr_rules)}"
    assert not any(r[4] in (WORLD, "::/0") for r in rules), "nothing may be open to the world here"


def test_default_security_group_is_empty(deployed, ec2):
    vpc_id = _vpc_id(deployed)
    (sg,) = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert sg["IpPermissions"] == [] and sg["IpPermissionsEgress"] == [], "the VPC's default group must have no rule"


def test_every_rule_has_a_description(deployed, ec2):
    rules = [r for r in _resources(deployed["state"]) if r["type"].startswith("aws_vpc_security_group_")]
    assert len(rules) == len(EXPECTED_INGRESS) + len(EXPECTED_EGRESS), f"{len(rules)} rule resources in state"
    for r in rules:
        assert len(r["values"].get("description") or "") >= 10, f"{r['address']} has no real description"
    for sg in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [_vpc_id(deployed)]}])["SecurityGroups"]:
        for perm in sg["IpPermissions"]:
            for peer in perm["IpRanges"] + perm["UserIdGroupPairs"]:
                assert peer.get("Description"), f"{sg['GroupName']} rule {perm['IpProtocol']}/{perm.get('FromPort')} lacks a description in AWS"


def test_imdsv2_required(deployed, ec2):
    for name, inst in _instances(ec2).items():
        md = inst["MetadataOptions"]
        assert md["HttpTokens"] == "required", f"{name} accepts IMDSv1 ({md})"
        assert md["HttpPutResponseHopLimit"] == 1, f"{name} lets IMDS tokens cross a hop ({md})"


def test_all_volumes_encrypted(deployed, ec2):
    for name, inst in _instances(ec2).items():
        vol_ids = [m["Ebs"]["VolumeId"] for m in inst["BlockDeviceMappings"]]
        assert vol_ids, f"{name} has no volume"
        for v in ec2.describe_volumes(VolumeIds=vol_ids)["Volumes"]:
            assert v["Encrypted"], f"{name} volume {v['VolumeId']} is not encrypted"
            assert _tags(v).get("Project") == "sqlgate", f"{name} volume {v['VolumeId']} is untagged"


def test_everything_tagged(deployed):
    for r in _resources(deployed["state"]):
        if r["mode"] == "managed" and "tags_all" in r["values"]:
            tags = r["values"]["tags_all"] or {}
            assert tags.get("Project") == "sqlgate" and tags.get("ManagedBy") == "terraform", (
                f"{r['address']} lacks the project tags: {tags}"
            )


def test_instances_run_the_packer_amis(deployed, ec2, amis):
    for name, inst in _instances(ec2).items():
        role = "app" if name in ("sqlgate-gatekeeper", "sqlgate-proxy") else "mysql"
        assert inst["ImageId"] == amis[role], (
            f"{name} runs {inst['ImageId']}, not this deployment's {role} AMI {amis[role]} (another deployment's is newer)"
        )


def test_flow_logs_enabled(deployed, ec2):
    logs = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [_vpc_id(deployed)]}])["FlowLogs"]
    assert len(logs) == 1 and logs[0]["TrafficType"] == "ALL", f"VPC flow logs: {logs}"


def test_workers_wired_everywhere(deployed, ec2):
    instances = _instances(ec2)
    workers = [instances[f"sqlgate-worker-{i}"] for i in range(1, WORKERS + 1)]
    ips = [w["PrivateIpAddress"] for w in workers]
    assert deployed["outputs"]["worker_private_ips"] == ips, "worker_private_ips output out of order or incomplete"

    inventory = yaml.safe_load(deployed["outputs"]["ansible_inventory"])
    private = inventory["all"]["children"]["private"]["children"]
    inv_workers = private["workers"]["hosts"]
    assert list(inv_workers) == [f"worker-{i}" for i in range(1, WORKERS + 1)], f"inventory workers: {list(inv_workers)}"
    assert [h["ansible_host"] for h in inv_workers.values()] == ips, "inventory worker addresses differ"
    server_ids = [private["managers"]["hosts"]["manager"]["sqlgate_server_id"]] + [
        h["sqlgate_server_id"] for h in inv_workers.values()
    ]
    assert len(set(server_ids)) == WORKERS + 1, f"server ids are not unique: {server_ids}"


def test_gatekeeper_points_at_proxy_private_address(deployed, ec2):
    instances = _instances(ec2)
    out = deployed["outputs"]
    gk, proxy = instances["sqlgate-gatekeeper"], instances["sqlgate-proxy"]
    assert out["gatekeeper_url"] == f"https://{gk['PublicIpAddress']}", out["gatekeeper_url"]
    inventory = yaml.safe_load(out["ansible_inventory"])
    assert inventory["all"]["vars"]["sqlgate_proxy_url"] == f"https://{proxy['PrivateIpAddress']}:5000", (
        "the gatekeeper must reach the proxy on its private address"
    )
    assert out["proxy_private_ip"] == proxy["PrivateIpAddress"]
    assert inventory["all"]["children"]["gatekeepers"]["hosts"]["gatekeeper"]["ansible_host"] == gk["PublicIpAddress"]
    jump = inventory["all"]["children"]["private"]["vars"]["ansible_ssh_common_args"]
    assert f"ubuntu@{gk['PublicIpAddress']}" in jump, "private hosts must be reached through the gatekeeper"
    # Host keys are remembered per instance, so a replaced gatekeeper on the same
    # Elastic IP is accepted as a new host instead of failing as a changed key.
    assert f"HostKeyAlias={gk['InstanceId']}" in jump, "the jump must name the gatekeeper's instance as host key alias"
    assert "HostKeyAlias={{ sqlgate_instance_id }}" in jump
    assert "HostKeyAlias={{ sqlgate_instance_id }}" in inventory["all"]["children"]["gatekeepers"]["vars"]["ansible_ssh_common_args"]


def test_inventory_serves_the_playbooks(deployed):
    """The inventory Terraform writes parses, and has every group the playbooks target."""
    path = WORK / "inventory.yml"
    path.write_text(deployed["outputs"]["ansible_inventory"])
    listed = json.loads(
        subprocess.run(
            ["ansible-inventory", "-i", str(path), "--list"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    groups = {g for g in listed if g != "_meta"}
    # Groups the inventory declares empty on purpose (tiers with one gatekeeper
    # and one proxy; gatekeepers and proxies when scaled out) are not listed.
    def declared(node: dict) -> set[str]:
        return set((node or {}).get("children", {})) | {
            g for child in (node or {}).get("children", {}).values() for g in declared(child)}
    empty = declared(yaml.safe_load(deployed["outputs"]["ansible_inventory"])["all"]) - groups
    assert empty == {"tiers"}, f"groups declared but empty with one gatekeeper and one proxy: {empty}"
    groups |= empty
    hosts = set(listed["_meta"]["hostvars"])
    assert hosts == {"gatekeeper", "proxy", "manager"} | {f"worker-{i}" for i in range(1, WORKERS + 1)}, hosts
    assert not groups & hosts, f"a group shares its name with a host: {groups & hosts}"
    # Groups primary.yml makes at run time (add_host) from the recorded primary.
    runtime = {"db_primary", "db_replicas"}
    primary_play = (ROOT / "ansible" / "primary.yml").read_text()
    assert all(g in primary_play for g in runtime), "primary.yml no longer makes the groups plays target"
    for playbook in sorted((ROOT / "ansible").glob("*.yml")):
        for play in yaml.safe_load(playbook.read_text()) or []:
            if "hosts" not in play:
                continue
            for pattern in play["hosts"].split(":"):
                # A host given on the command line (the play itself checks it), and Ansible's
                # implicit local host.
                if "{{" in pattern or pattern == "localhost":
                    continue
                group = re.sub(r"\[-?\d+\]$", "", pattern.lstrip("!&"))  # workers[-1]: the group's last host
                assert group == "all" or group in groups | runtime, (
                    f"{playbook.name} targets '{pattern}', not in the inventory")


def _db_instances(ec2) -> dict[str, dict]:
    return {n: i for n, i in _instances(ec2).items() if n.startswith(("sqlgate-manager", "sqlgate-worker-"))}


def test_database_data_on_dedicated_volumes(deployed, ec2):
    """Each database node has one encrypted gp3 data volume besides its root volume, kept on termination."""
    outputs = deployed["outputs"]["data_volume_ids"]
    assert set(outputs) == {"manager"} | {f"worker-{i}" for i in range(1, WORKERS + 1)}, outputs
    for name, inst in _db_instances(ec2).items():
        host = name.removeprefix("sqlgate-")
        data = [m for m in inst["BlockDeviceMappings"] if m["DeviceName"] != inst["RootDeviceName"]]
        assert [m["Ebs"]["VolumeId"] for m in data] == [outputs[host]], f"{name}: data volumes {data}"
        assert not data[0]["Ebs"].get("DeleteOnTermination"), f"{name}: its data volume would die with the instance"
        (vol,) = ec2.describe_volumes(VolumeIds=[outputs[host]])["Volumes"]
        assert vol["Encrypted"] and vol["VolumeType"] == "gp3" and vol["Size"] == DATA_VOLUME_SIZE, vol
        assert vol["Attachments"][0]["InstanceId"] == inst["InstanceId"], f"{name}: volume attached elsewhere"
        tags = _tags(vol)
        assert tags.get("sqlgate:backup-policy") == DEPLOYMENT_ID, f"{name}: data volume not selected for snapshots: {tags}"
        assert tags.get("sqlgate:deployment") == DEPLOYMENT_ID and tags.get("Project") == "sqlgate", tags
    for name in ("sqlgate-gatekeeper", "sqlgate-proxy"):
        inst = _instances(ec2)[name]
        assert len(inst["BlockDeviceMappings"]) == 1, f"{name} has a volume besides its root: it holds no data"


def test_gatekeeper_has_an_elastic_ip(deployed, ec2):
    gk = _instances(ec2)["sqlgate-gatekeeper"]
    (addr,) = ec2.describe_addresses()["Addresses"]
    assert addr.get("InstanceId") == gk["InstanceId"], f"the Elastic IP is not on the gatekeeper: {addr}"
    assert gk.get("PublicIpAddress") == addr["PublicIp"], "the gatekeeper's public address must be its Elastic IP"
    assert deployed["outputs"]["gatekeeper_public_ip"] == addr["PublicIp"]
    assert deployed["outputs"]["gatekeeper_url"] == f"https://{addr['PublicIp']}"


def test_daily_snapshot_policy(deployed, dlm):
    """One DLM policy: daily snapshots of exactly this deployment's data volumes, kept backup_retention_days."""
    (policy,) = dlm.policies.values()
    assert policy["PolicyId"] == deployed["outputs"]["backup_policy_id"]
    assert policy["State"] == "ENABLED"
    details = policy["PolicyDetails"]
    assert details["ResourceTypes"] == ["VOLUME"]
    assert details["TargetTags"] == [{"Key": "sqlgate:backup-policy", "Value": DEPLOYMENT_ID}], details["TargetTags"]
    (schedule,) = details["Schedules"]
    assert schedule["CreateRule"]["Interval"] == 24 and schedule["CreateRule"]["IntervalUnit"] == "HOURS", schedule
    assert schedule["RetainRule"]["Count"] == BACKUP_RETENTION, schedule["RetainRule"]
    assert schedule["CopyTags"] is True, "snapshots must carry the volume's deployment tags (make destroy finds them)"
    role = [r for r in _resources(deployed["state"]) if r["address"] == "aws_iam_role.dlm"][0]["values"]
    assert policy["ExecutionRoleArn"] == role["arn"]
    assert "dlm.amazonaws.com" in role["assume_role_policy"]



@pytest.mark.parametrize(
    "override, message",
    [
        ({"admin_cidr": WORLD}, "never 0.0.0.0/0"),
        ({"worker_count": 0}, "worker_count must be a whole number"),
        ({"allowed_cidrs": '["not-a-cidr"]'}, "allowed_cidrs must be"),
        ({"deployment_id": "Bad_Id"}, "deployment_id must be"),
        ({"backup_retention_days": 0}, "backup_retention_days must be"),
        ({"backup_time": "3am"}, "backup_time must be"),
    ],
)
def test_variable_validation_rejects(tf, deployed, override, message):
    proc = tf.run("plan", "-input=false", "-no-color", "-refresh=false", *tf.vars(**override), check=False)
    assert proc.returncode != 0, f"plan with {override} should have been rejected"
    assert message in " ".join(proc.stderr.split()), f"plan with {override} failed for another reason:\n{proc.stderr}"


def test_configuration_converges(tf, deployed):
    # Without refresh: moto's read-back is not faithful (it drops the
    # descriptions of group-referencing rules and instances' groups), so this
    # checks that the configuration itself asks for nothing more after apply.
    proc = tf.run("plan", "-input=false", "-no-color", "-refresh=false", "-detailed-exitcode", *tf.vars(), check=False)
    assert proc.returncode == 0, "a second apply would change something:\n" + "\n".join(
        l for l in proc.stdout.splitlines() if "#" in l or "forces replacement" in l or l.startswith("Plan:")
    )


def _changes(plan: dict) -> dict[str, list[str]]:
    return {rc["address"]: rc["change"]["actions"] for rc in plan.get("resource_changes", [])}


PROTECTED = re.compile(r"^(aws_instance\.(manager|worker)|aws_ebs_volume\.|aws_volume_attachment\.|aws_eip\.gatekeeper$)")


def _assert_keeps_data(plan: dict, what: str) -> dict[str, list[str]]:
    changes = _changes(plan)
    touched = {a: c for a, c in changes.items() if PROTECTED.match(a) and c != ["no-op"]}
    assert touched == {}, f"{what}: the plan changes database instances, data volumes or the Elastic IP: {touched}"
    expected = {"aws_instance.manager", "aws_ebs_volume.manager_data", "aws_volume_attachment.manager_data", "aws_eip.gatekeeper"}
    expected |= {f"aws_instance.worker[{i}]" for i in range(WORKERS)} | {f"aws_ebs_volume.worker_data[{i}]" for i in range(WORKERS)}
    assert expected <= set(changes), f"{what}: the plan does not cover {sorted(expected - set(changes))}"
    assert deploy_util.plan_violations(plan) == [], f"{what}: make deploy's plan guard would refuse this plan"
    return changes


@pytest.fixture(scope="module")
def new_amis(ec2, deployed):
    """What a code, Packer or toolchain change produces: new AMIs of both roles."""
    return {role: _register_ami(ec2, role, "20260201000000") for role in ("app", "mysql")}


def test_new_service_build_replaces_no_database(tf, deployed, new_amis, amis):
    """A changed service build (a new app AMI only): gatekeeper and proxy are replaced, nothing else."""
    plan = tf.plan_json(*tf.vars(app_ami_id=new_amis["app"], mysql_ami_id=amis["mysql"]))
    changes = _assert_keeps_data(plan, "new app AMI")
    for host in ("aws_instance.gatekeeper[0]", "aws_instance.proxy[0]"):
        assert "delete" in changes[host] and "create" in changes[host], f"{host} should run the new app AMI: {changes[host]}"


def test_new_amis_of_both_roles_replace_no_database(tf, deployed, new_amis):
    """A Packer or toolchain change (new AMIs of both roles): no database instance, volume or address moves."""
    plan = tf.plan_json(*tf.vars(app_ami_id=new_amis["app"], mysql_ami_id=new_amis["mysql"]))
    _assert_keeps_data(plan, "new app and mysql AMIs")
    # Without explicit ids (make deploy's AMI lookup picks the newest of this deployment).
    _assert_keeps_data(tf.plan_json(*tf.vars()), "AMI lookup finding newer AMIs")


def test_plan_guard_refuses_losing_data(tf, deployed):
    """The guard make deploy runs before every apply refuses a plan that replaces the data volumes."""
    plan = tf.plan_json(*tf.vars(availability_zone="us-east-1b"))
    bad = deploy_util.plan_violations(plan)
    assert any("aws_ebs_volume.manager_data" in b for b in bad), bad
    assert any("aws_instance.manager" in b for b in bad), bad
    fewer = deploy_util.plan_violations(tf.plan_json(*tf.vars(worker_count=WORKERS - 1)))
    assert any(f"aws_ebs_volume.worker_data[{WORKERS - 1}]" in b for b in fewer), fewer


def test_apply_new_amis_keeps_databases_and_address(tf, deployed, new_amis, ec2):
    """Apply the new AMIs for real: same database instances and volumes, same Elastic IP, a new gatekeeper."""
    before = _instances(ec2)
    volumes_before = deployed["outputs"]["data_volume_ids"]
    (addr_before,) = ec2.describe_addresses()["Addresses"]
    tf.run("apply", "-auto-approve", "-input=false", "-no-color", *tf.vars())
    after = _instances(ec2)
    outputs = {k: v["value"] for k, v in json.loads(tf.run("output", "-json", "-no-color").stdout).items()}
    for name in _db_instances(ec2):
        assert after[name]["InstanceId"] == before[name]["InstanceId"], f"{name} was replaced"
        assert after[name]["ImageId"] == before[name]["ImageId"], f"{name} changed AMI in place"
    assert outputs["data_volume_ids"] == volumes_before, "a data volume was replaced"
    for host, vol in volumes_before.items():
        (v,) = ec2.describe_volumes(VolumeIds=[vol])["Volumes"]
        assert v["Attachments"][0]["InstanceId"] == after[f"sqlgate-{host}"]["InstanceId"], f"{host}: volume detached"
    gk = after["sqlgate-gatekeeper"]
    assert gk["InstanceId"] != before["sqlgate-gatekeeper"]["InstanceId"], "the gatekeeper should have been replaced"
    assert gk["ImageId"] == new_amis["app"], "the new gatekeeper does not run the new app AMI"
    (addr,) = ec2.describe_addresses()["Addresses"]
    assert addr["AllocationId"] == addr_before["AllocationId"] and addr["PublicIp"] == addr_before["PublicIp"]
    assert addr.get("InstanceId") == gk["InstanceId"], "the Elastic IP did not move to the new gatekeeper"
    assert outputs["gatekeeper_url"] == deployed["outputs"]["gatekeeper_url"], "the API's URL changed"


def _aws_amis(env: dict, *args: str) -> subprocess.CompletedProcess:
    """make destroy's AWS helper, against the mock."""
    return subprocess.run(
        [sys.executable, str(ROOT / "terraform/tools/aws_amis.py"), *args],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )


def test_final_snapshot_and_snapshot_purge(env, ec2, deployed):
    """make destroy's final snapshot covers every data volume and survives; only our daily snapshots go."""
    volumes = set(deployed["outputs"]["data_volume_ids"].values())
    _aws_amis(env, "snapshot-data", DEPLOYMENT_ID, "final")
    finals = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:sqlgate:snapshot", "Values": ["final"]}])["Snapshots"]
    assert {s["VolumeId"] for s in finals} == volumes, f"final snapshots of {[s['VolumeId'] for s in finals]}, volumes {volumes}"
    for snap in finals:
        tags = _tags(snap)
        assert tags.get("sqlgate:deployment") == DEPLOYMENT_ID and "sqlgate:backup-policy" not in tags, tags
    daily = {}
    for dep in (DEPLOYMENT_ID, "otherdep"):
        snap = ec2.create_snapshot(VolumeId=deployed["outputs"]["data_volume_ids"]["manager"], TagSpecifications=[{
            "ResourceType": "snapshot",
            "Tags": [{"Key": "sqlgate:deployment", "Value": dep}, {"Key": "sqlgate:snapshot", "Value": "daily"}],
        }])
        daily[dep] = snap["SnapshotId"]
    _aws_amis(env, "purge-snapshots", DEPLOYMENT_ID)
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert daily[DEPLOYMENT_ID] not in left, "this deployment's daily snapshot was not deleted"
    assert daily["otherdep"] in left, "another deployment's snapshot was deleted"
    assert {s["SnapshotId"] for s in finals} <= left, "a final snapshot was deleted"


def test_destroy_removes_everything(tf, deployed, ec2, dlm):
    vpc_id = _vpc_id(deployed)
    tf.run("destroy", "-auto-approve", "-input=false", "-no-color", *tf.vars())
    deployed["destroyed"] = True
    assert _instances(ec2) == {}, f"instances left: {sorted(_instances(ec2))}"
    assert ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Vpcs"] == [], "the VPC is left"
    left = [
        sg["GroupName"]
        for sg in ec2.describe_security_groups()["SecurityGroups"]
        if sg["GroupName"].startswith("sqlgate-")
    ]
    assert left == [], f"security groups left: {left}"
    volumes = [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"] if v["State"] != "deleted"]
    assert volumes == [], f"volumes left: {volumes}"
    assert ec2.describe_addresses()["Addresses"] == [], "the Elastic IP is left"
    assert dlm.policies == {}, f"snapshot policies left: {list(dlm.policies)}"
    state = json.loads(tf.run("show", "-json", "-no-color").stdout)
    assert not state.get("values"), "state still holds resources after destroy"


def test_ami_purge_removes_only_this_deployment(env, ec2, amis, new_amis):
    """make destroy deregisters this deployment's AMIs only: another deployment's and untagged ones stay."""
    _aws_amis(env, "purge", DEPLOYMENT_ID)
    left = {_tags(i).get("sqlgate:deployment", "untagged") for i in ec2.describe_images(Owners=["self"])["Images"]}
    assert left == {"otherdep", "untagged"}, f"AMIs left: {left}"
