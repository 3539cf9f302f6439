"""Apply the real Terraform code to a moto EC2 mock on loopback and check the result.

Nothing in terraform/ knows it is being tested: the AWS provider is pointed at
moto through AWS_ENDPOINT_URL, and the AMI lookups find images registered in
moto with the tags Packer would put on them. The tests read what the mock
holds through boto3 (what AWS would report) and Terraform's state and outputs.

Run by terraform/tests/run.sh (part of `make deploy-check`), which checks that
terraform and the provider mirror exist first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TF_SRC = Path(os.environ.get("SQLGATE_TF_SRC", ROOT / "terraform"))
WORK = Path(os.environ.get("SQLGATE_TF_TEST_DIR", ROOT / ".local" / "tf-test"))
PLUGIN_DIR = os.environ.get("SQLGATE_TF_PLUGIN_DIR", "/opt/tf-plugins")
TF_TIMEOUT = 300

WORKERS = 3
ADMIN_CIDR = "203.0.113.7/32"
# A public key only: the mock needs a well-formed one to import.
SSH_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFupftsZqG4xhSuo6HzFNLZhp6bYekt39F61sFL0lA88 sqlgate-test"
)
WORLD = "0.0.0.0/0"

# The designed topology, rule by rule: (group, protocol, from, to, source or
# destination). A source is a group name or a CIDR. Any rule added, removed
# or widened makes the exact comparison below fail.
EXPECTED_INGRESS = {
    ("gatekeeper", "tcp", 80, 80, WORLD),
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
        values = {"admin_cidr": ADMIN_CIDR, "ssh_public_key": SSH_PUBLIC_KEY, "worker_count": WORKERS}
        values.update(overrides)
        return [f"-var={k}={v}" for k, v in values.items()]


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
def env(mock):
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


@pytest.fixture(scope="module")
def amis(ec2):
    """The images Packer would register: one per role, tagged as Packer tags them."""
    ids = {}
    # An untagged image of ours that the lookups must not pick.
    ec2.register_image(
        Name="unrelated-image",
        RootDeviceName="/dev/sda1",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16}}],
    )
    for role in ("app", "mysql"):
        image = ec2.register_image(
            Name=f"sqlgate-{role}-20260101000000",
            RootDeviceName="/dev/sda1",
            Architecture="x86_64",
            VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 16, "VolumeType": "gp3"}}],
        )
        ec2.create_tags(
            Resources=[image["ImageId"]],
            Tags=[{"Key": "sqlgate:role", "Value": role}, {"Key": "Project", "Value": "sqlgate"}],
        )
        ids[role] = image["ImageId"]
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
    subnets = {
        _tags(s).get("Tier"): s["SubnetId"]
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


def test_only_gatekeeper_http_open_to_world(deployed, ec2):
    vpc_id = _vpc_id(deployed)
    open_rules = {r for r in _rules(ec2, vpc_id, egress=False) | _rules(ec2, vpc_id, egress=True) if r[4] in (WORLD, "::/0")}
    assert open_rules == {("gatekeeper", "tcp", 80, 80, WORLD)}, f"rules open to the world: {sorted(open_rules)}"


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


def test_root_volumes_encrypted(deployed, ec2):
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
        assert inst["ImageId"] == amis[role], f"{name} runs {inst['ImageId']}, not the {role} AMI {amis[role]}"


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
    assert out["gatekeeper_url"] == f"http://{gk['PublicIpAddress']}", out["gatekeeper_url"]
    inventory = yaml.safe_load(out["ansible_inventory"])
    assert inventory["all"]["vars"]["sqlgate_proxy_url"] == f"http://{proxy['PrivateIpAddress']}:5000", (
        "the gatekeeper must reach the proxy on its private address"
    )
    assert out["proxy_private_ip"] == proxy["PrivateIpAddress"]
    assert inventory["all"]["children"]["gatekeepers"]["hosts"]["gatekeeper"]["ansible_host"] == gk["PublicIpAddress"]
    jump = inventory["all"]["children"]["private"]["vars"]["ansible_ssh_common_args"]
    assert f"ubuntu@{gk['PublicIpAddress']}" in jump, "private hosts must be reached through the gatekeeper"


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
    hosts = set(listed["_meta"]["hostvars"])
    assert hosts == {"gatekeeper", "proxy", "manager"} | {f"worker-{i}" for i in range(1, WORKERS + 1)}, hosts
    assert not groups & hosts, f"a group shares its name with a host: {groups & hosts}"
    for playbook in sorted((ROOT / "ansible").glob("*.yml")):
        for play in yaml.safe_load(playbook.read_text()) or []:
            if "hosts" not in play:
                continue
            for pattern in play["hosts"].split(":"):
                assert pattern == "all" or pattern in groups, f"{playbook.name} targets '{pattern}', not in the inventory"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"admin_cidr": WORLD}, "never 0.0.0.0/0"),
        ({"worker_count": 0}, "worker_count must be a whole number"),
        ({"allowed_cidrs": '["not-a-cidr"]'}, "allowed_cidrs must be"),
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
    assert proc.returncode == 0, f"a second apply would change something:\n{proc.stdout[-3000:]}"


def test_destroy_removes_everything(tf, deployed, ec2):
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
    state = json.loads(tf.run("show", "-json", "-no-color").stdout)
    assert not state.get("values"), "state still holds resources after destroy"
