"""Scaling out: gatekeeper_count and proxy_count against the moto mock.

The same harness as test_moto.py (its moto server, DLM fake, Terraform runner
and AMI registration, imported here), a fresh moto server for this module and
its own scratch directory:

- with the default counts (1 and 1) the plan is the seed's: exactly the five
  instances gatekeeper, proxy, manager, worker-1, worker-2, and no balancer,
  Auto Scaling group, launch template, key or endpoint;
- with gatekeeper_count=2 and proxy_count=3 a real apply creates the two
  Network Load Balancers, their TCP listeners and target groups, the launch
  templates and Auto Scaling groups (moto launches their instances), the
  tiers' roles, the KMS key and the SSM endpoint, and the security groups
  are compared rule by rule with the designed set;
- a plan to 3 gatekeepers and 2 proxies resizes the groups in place and
  touches no database instance, data volume or address.

Where moto cannot answer (target health, the ASG's instance refresh
settings), the test reads Terraform's state instead and says so on stderr.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys

import boto3
import pytest
import yaml

from test_moto import (  # noqa: F401  (fixtures are used by name)
    ADMIN_CIDR,
    ALLOWED_CIDRS,
    DEPLOYMENT_ID,
    PLUGIN_DIR,
    TF_SRC,
    WORK,
    WORLD,
    Terraform,
    _changes,
    _instance_groups,
    _instances,
    _register_ami,
    _resources,
    _rules,
    _tags,
    amis,
    deploy_util,
    dlm,
    ec2,
    env,
    mock,
)

WORKERS = 2
GATEKEEPERS = 2
PROXIES = 3

# The scaled topology, rule by rule (group, protocol, from, to, peer).
EXPECTED_INGRESS = {
    *{("lb", "tcp", 443, 443, c) for c in ALLOWED_CIDRS},
    ("gatekeeper", "tcp", 443, 443, "lb"),
    ("gatekeeper", "tcp", 22, 22, ADMIN_CIDR),
    ("proxylb", "tcp", 5000, 5000, "gatekeeper"),
    ("proxy", "tcp", 5000, 5000, "proxylb"),
    ("proxy", "tcp", 22, 22, "gatekeeper"),
    ("endpoint", "tcp", 443, 443, "gatekeeper"),
    ("endpoint", "tcp", 443, 443, "proxy"),
    ("db", "tcp", 3306, 3306, "proxy"),
    ("db", "tcp", 3306, 3306, "db"),
    ("db", "icmp", 8, 0, "proxy"),
    ("db", "tcp", 22, 22, "gatekeeper"),
}
EXPECTED_EGRESS = {
    ("lb", "tcp", 443, 443, "gatekeeper"),
    ("gatekeeper", "tcp", 5000, 5000, "proxylb"),
    ("gatekeeper", "tcp", 22, 22, "proxy"),
    ("gatekeeper", "tcp", 22, 22, "db"),
    ("gatekeeper", "tcp", 443, 443, "endpoint"),
    ("proxylb", "tcp", 5000, 5000, "proxy"),
    ("proxy", "tcp", 3306, 3306, "db"),
    ("proxy", "icmp", 8, 0, "db"),
    ("proxy", "tcp", 443, 443, "endpoint"),
    ("db", "tcp", 3306, 3306, "db"),
}


def _loud(msg: str) -> None:
    print(f"\n!!!!! moto cannot show this; asserted on Terraform's state instead: {msg}", file=sys.stderr)


def _client(env: dict, service: str):
    return boto3.client(
        service, region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def tf(env, amis):
    workdir = WORK / "work-scale"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for f in TF_SRC.glob("*.tf"):
        shutil.copy(f, workdir / f.name)
    t = Terraform(workdir, env)
    t.run("init", "-input=false", "-no-color", f"-plugin-dir={PLUGIN_DIR}")
    return t


def _vars(tf: Terraform, **kw) -> list[str]:
    return tf.vars(worker_count=WORKERS, **kw)


def test_count_one_plans_the_seeds_five_instances(tf):
    """Default counts: exactly the seed's five instances, and nothing of the scaled tiers."""
    plan = tf.plan_json(*_vars(tf))
    creates = {rc["address"]: rc for rc in plan["resource_changes"] if rc["change"]["actions"] == ["create"]}
    instances = {a: rc["change"]["after"]["tags"] for a, rc in creates.items() if rc["type"] == "aws_instance"}
    assert set(instances) == {
        "aws_instance.gatekeeper[0]", "aws_instance.proxy[0]", "aws_instance.manager",
        "aws_instance.worker[0]", "aws_instance.worker[1]",
    }, sorted(instances)
    names = sorted((t["Name"], t["Role"]) for t in instances.values())
    assert names == [
        ("sqlgate-gatekeeper", "gatekeeper"), ("sqlgate-manager", "manager"), ("sqlgate-proxy", "proxy"),
        ("sqlgate-worker-1", "worker"), ("sqlgate-worker-2", "worker"),
    ], names
    scaled_types = {"aws_lb", "aws_lb_listener", "aws_lb_target_group", "aws_launch_template",
                    "aws_autoscaling_group", "aws_kms_key", "aws_vpc_endpoint", "aws_iam_instance_profile"}
    extra = sorted(a for a, rc in creates.items() if rc["type"] in scaled_types)
    assert extra == [], f"count 1 must not create the scaled tiers: {extra}"
    assert "aws_eip_association.gatekeeper[0]" in creates, "the single gatekeeper keeps its Elastic IP"
    https = sorted(rc["change"]["after"]["cidr_ipv4"] for a, rc in creates.items()
                   if a.startswith("aws_vpc_security_group_ingress_rule.gatekeeper_https"))
    assert https == sorted(ALLOWED_CIDRS), f"the single gatekeeper takes the API from the allowed networks: {https}"


@pytest.fixture(scope="module")
def scaled(tf):
    tf.run("apply", "-auto-approve", "-input=false", "-no-color",
           *_vars(tf, gatekeeper_count=GATEKEEPERS, proxy_count=PROXIES))
    state = json.loads(tf.run("show", "-json", "-no-color").stdout)
    outputs = {k: v["value"] for k, v in json.loads(tf.run("output", "-json", "-no-color").stdout).items()}
    info = {"state": state, "outputs": outputs, "destroyed": False}
    yield info
    if not info["destroyed"]:
        tf.run("destroy", "-auto-approve", "-input=false", "-no-color",
               *_vars(tf, gatekeeper_count=GATEKEEPERS, proxy_count=PROXIES), check=False)


def _state(scaled, rtype: str) -> dict[str, dict]:
    return {r["address"]: r["values"] for r in _resources(scaled["state"]) if r["type"] == rtype}


def _vpc_id(scaled) -> str:
    (vpc,) = _state(scaled, "aws_vpc").values()
    return vpc["id"]


def _subnets(ec2, vpc_id: str) -> dict[str, dict]:
    return {_tags(s)["Name"]: s for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]}


def test_two_public_subnets_in_two_zones(scaled, ec2):
    subnets = _subnets(ec2, _vpc_id(scaled))
    public = [subnets["sqlgate-public"], subnets["sqlgate-public-second"]]
    assert len({s["AvailabilityZone"] for s in public}) == 2, [s["AvailabilityZone"] for s in public]
    assert not any(s["MapPublicIpOnLaunch"] for s in subnets.values())


def test_load_balancers_listeners_and_target_groups(scaled, env, ec2):
    elb = _client(env, "elbv2")
    # moto reports no Scheme: the balancers are told apart by name, and the
    # scheme is read from Terraform's state.
    lbs = {}
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        lbs["internal" if lb["LoadBalancerName"].startswith("sg-px-") else "internet-facing"] = lb
    assert len(lbs) == 2 and len(elb.describe_load_balancers()["LoadBalancers"]) == 2, f"load balancers: {list(lbs)}"
    state = _state(scaled, "aws_lb")
    assert (state["aws_lb.gatekeeper[0]"]["internal"], state["aws_lb.proxy[0]"]["internal"]) == (False, True), "schemes"
    _loud("the balancers' scheme (moto does not report it)")
    subnets = _subnets(ec2, _vpc_id(scaled))
    groups = {sg["GroupId"]: sg["GroupName"].split("-")[1] for sg in ec2.describe_security_groups()["SecurityGroups"] if sg["GroupName"] != "default"}
    for scheme, port, tier, lb_group, lb_subnets in (
        ("internet-facing", 443, "gatekeeper", "lb", {"sqlgate-public", "sqlgate-public-second"}),
        ("internal", 5000, "proxy", "proxylb", {"sqlgate-private"}),
    ):
        lb = lbs[scheme]
        assert lb.get("Type", "network") == "network", lb
        got_subnets = {n for n, s in subnets.items() if s["SubnetId"] in {z["SubnetId"] for z in lb["AvailabilityZones"]}}
        assert got_subnets == lb_subnets, f"{scheme} balancer in {got_subnets}, expected {lb_subnets}"
        assert [groups.get(g) for g in lb.get("SecurityGroups", [])] == [lb_group], f"{scheme} balancer groups {lb.get('SecurityGroups')}"
        (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        assert (listener["Protocol"], listener["Port"]) == ("TCP", port), f"{tier}: TLS passthrough on TCP {port}: {listener}"
        (action,) = listener["DefaultActions"]
        (tg,) = elb.describe_target_groups(TargetGroupArns=[action["TargetGroupArn"]])["TargetGroups"]
        assert (tg["Protocol"], tg["Port"], tg["TargetType"]) == ("TCP", port, "instance"), tg
        assert (tg["HealthCheckProtocol"], tg.get("HealthCheckPath")) == ("HTTPS", "/health"), f"{tier} health check: {tg}"
        assert dns_in(scaled["outputs"], lb["DNSName"], tier)
    _loud("target health (moto registers no ASG instance as a target); the groups' target_group_arns are checked instead")


def dns_in(outputs: dict, dns: str, tier: str) -> bool:
    if tier == "gatekeeper":
        assert outputs["gatekeeper_url"] == f"https://{dns}", outputs["gatekeeper_url"]
    else:
        assert outputs["proxy_url"] == f"https://{dns}:5000", outputs["proxy_url"]
        inventory = yaml.safe_load(outputs["ansible_inventory"])
        assert inventory["all"]["vars"]["sqlgate_proxy_url"] == f"https://{dns}:5000", "the gatekeepers must name the proxies' balancer"
    return True


def test_auto_scaling_groups(scaled, env):
    asg = _client(env, "autoscaling")
    elb = _client(env, "elbv2")
    groups = {_tags_asg(g)["Role"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert set(groups) == {"gatekeeper", "proxy"}, list(groups)
    tgs = {tg["Port"]: tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]}
    for tier, count, port in (("gatekeeper", GATEKEEPERS, 443), ("proxy", PROXIES, 5000)):
        g = groups[tier]
        assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (count, count, count), f"{tier}: {g}"
        assert g["TargetGroupARNs"] == [tgs[port]], f"{tier} group not attached to its target group"
        assert g["HealthCheckType"] == "ELB", f"{tier}: the balancer's health check must replace instances"
        assert g.get("LaunchTemplate", {}).get("LaunchTemplateId"), f"{tier}: no launch template: {g}"
        assert len(g["Instances"]) == count, f"{tier}: {len(g['Instances'])} instances"
    refresh = {a: v["instance_refresh"] for a, v in _state(scaled, "aws_autoscaling_group").items()}
    for a, r in refresh.items():
        assert r and r[0]["strategy"] == "Rolling", f"{a}: new AMIs must roll through the group: {r}"
    _loud("instance refresh preferences (moto does not report them)")


def _tags_asg(g: dict) -> dict:
    return {t["Key"]: t["Value"] for t in g.get("Tags", [])}


def test_instances_of_each_tier(scaled, ec2):
    instances = list(_all_instances(ec2))
    by_role: dict[str, list] = {}
    for i in instances:
        by_role.setdefault(_tags(i).get("Role"), []).append(i)
    counts = {r: len(v) for r, v in by_role.items()}
    assert counts == {"gatekeeper": GATEKEEPERS, "proxy": PROXIES, "manager": 1, "worker": WORKERS}, counts
    subnets = _subnets(ec2, _vpc_id(scaled))
    public = {subnets["sqlgate-public"]["SubnetId"], subnets["sqlgate-public-second"]["SubnetId"]}
    groups = {sg["GroupId"]: sg["GroupName"].split("-")[1] if sg["GroupName"] != "default" else "default"
              for sg in ec2.describe_security_groups()["SecurityGroups"]}
    lt_groups = {("gatekeeper" if "gatekeeper" in a else "proxy"): lt["network_interfaces"][0]["security_groups"]
                 for a, lt in _state(scaled, "aws_launch_template").items()}
    _loud("IMDSv2 of the groups' instances (moto launches them without the template's metadata options); test_launch_templates checks the template")
    for role, members in by_role.items():
        for i in members:
            tags = _tags(i)
            assert tags.get("sqlgate:deployment") == DEPLOYMENT_ID and tags.get("Project") == "sqlgate", tags
            if role in ("manager", "worker"):
                assert i["MetadataOptions"]["HttpTokens"] == "required", f"{role}: IMDSv1 allowed"
            want = {"gatekeeper": "gatekeeper", "proxy": "proxy"}.get(role, "db")
            got = sorted(groups.get(g, g) for g in _instance_groups(i))
            if got != [want] and role in lt_groups:
                # moto 5.2 launches some group members in a group other than the
                # template's network interface names; the template decides on AWS.
                _loud(f"a {role} instance's groups (moto launched it in {got}); its launch template's are checked")
                assert [groups.get(g, g) for g in lt_groups[role]] == [want], f"{role} template groups {lt_groups[role]}"
            else:
                assert got == [want], f"{role} in {got}"
            if role == "gatekeeper":
                assert i["SubnetId"] in public, "a gatekeeper outside the public subnets"
            else:
                assert i["SubnetId"] == subnets["sqlgate-private"]["SubnetId"], f"{role} outside the private subnet"
                assert not i.get("PublicIpAddress"), f"{role} has a public address"
    assert _state(scaled, "aws_instance").keys() == {"aws_instance.manager"} | {f"aws_instance.worker[{i}]" for i in range(WORKERS)}


def _all_instances(ec2):
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] != "terminated":
                yield i


def test_launch_templates(scaled):
    for address, lt in _state(scaled, "aws_launch_template").items():
        tier = "gatekeeper" if "gatekeeper" in address else "proxy"
        md = lt["metadata_options"][0]
        assert md["http_tokens"] == "required" and md["http_put_response_hop_limit"] == 1, f"{tier}: {md}"
        ebs = lt["block_device_mappings"][0]["ebs"][0]
        assert ebs["encrypted"] == "true" and ebs["volume_type"] == "gp3", f"{tier}: {ebs}"
        nic = lt["network_interfaces"][0]
        assert nic["associate_public_ip_address"] == ("true" if tier == "gatekeeper" else "false"), f"{tier}: {nic}"
        assert lt["iam_instance_profile"][0]["arn"], f"{tier}: no instance profile"
        data = base64.b64decode(lt["user_data"]).decode()
        assert f"SQLGATE_SSM_PATH=/sqlgate/{DEPLOYMENT_ID}/{tier}" in data, data
        assert not re.search(r"(?i)password|token|PRIVATE KEY|sk_", data), f"{tier}: user data holds a secret?\n{data}"


def test_ingress_rules_exactly_as_designed(scaled, ec2):
    got = _rules(ec2, _vpc_id(scaled), egress=False)
    assert got == EXPECTED_INGRESS, f"unexpected ingress: {sorted(got - EXPECTED_INGRESS)}; missing: {sorted(EXPECTED_INGRESS - got)}"


def test_egress_rules_exactly_as_designed(scaled, ec2):
    got = _rules(ec2, _vpc_id(scaled), egress=True)
    assert got == EXPECTED_EGRESS, f"unexpected egress: {sorted(got - EXPECTED_EGRESS)}; missing: {sorted(EXPECTED_EGRESS - got)}"


def test_only_the_balancer_reaches_the_gatekeepers(scaled, ec2):
    rules = _rules(ec2, _vpc_id(scaled), egress=False)
    to_443 = {r[4] for r in rules if r[0] == "gatekeeper" and r[2] <= 443 <= r[3]}
    assert to_443 == {"lb"}, f"a gatekeeper's 443 is open to {to_443}"
    cidr = {r for r in rules | _rules(ec2, _vpc_id(scaled), egress=True) if "/" in r[4]}
    assert cidr == {("lb", "tcp", 443, 443, c) for c in ALLOWED_CIDRS} | {("gatekeeper", "tcp", 22, 22, ADMIN_CIDR)}, sorted(cidr)
    assert not any(r[4] in (WORLD, "::/0") for r in cidr)
    rule_resources = [r for r in _resources(scaled["state"]) if r["type"].startswith("aws_vpc_security_group_")]
    assert len(rule_resources) == len(EXPECTED_INGRESS) + len(EXPECTED_EGRESS), len(rule_resources)
    for r in rule_resources:
        assert len(r["values"].get("description") or "") >= 10, f"{r['address']} has no real description"


def test_each_tier_reads_only_its_own_parameters(scaled):
    policies = _state(scaled, "aws_iam_role_policy")
    (key,) = _state(scaled, "aws_kms_key").values()
    assert key["enable_key_rotation"], "the parameters' key must rotate"
    for tier in ("gatekeeper", "proxy"):
        (doc,) = [json.loads(p["policy"]) for a, p in policies.items() if a == f'aws_iam_role_policy.tier["{tier}"]']
        stmts = {s["Sid"]: s for s in doc["Statement"]}
        path = f"arn:aws:ssm:us-east-1:123456789012:parameter/sqlgate/{DEPLOYMENT_ID}/{tier}"
        res = stmts["ReadOwnParameters"]["Resource"]
        assert sorted([res] if isinstance(res, str) else res) == sorted([path, f"{path}/*"]), f"{tier}: {res}"
        assert sorted(stmts["ReadOwnParameters"]["Action"]) == ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"]
        dec = stmts["DecryptOwnParameters"]
        assert dec["Action"] == "kms:Decrypt" and dec["Resource"] == key["arn"], dec
        assert dec["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"] == f"{path}/*", dec
        assert len(doc["Statement"]) == 2, f"{tier}: more than reading its parameters: {doc}"
    (endpoint,) = _state(scaled, "aws_vpc_endpoint").values()
    assert endpoint["service_name"] == "com.amazonaws.us-east-1.ssm" and endpoint["private_dns_enabled"], endpoint


def test_outputs_and_inventory(scaled):
    out = scaled["outputs"]
    # A null output is left out of terraform output -json.
    assert out["scaled"] is True and out.get("gatekeeper_public_ip") is None and out.get("proxy_private_ip") is None
    assert out["ssm_parameter_prefix"] == f"/sqlgate/{DEPLOYMENT_ID}"
    inventory = yaml.safe_load(out["ansible_inventory"])
    children = inventory["all"]["children"]
    assert children["gatekeepers"]["hosts"] == {} and children["private"]["children"]["proxies"]["hosts"] == {}, (
        "Ansible configures no gatekeeper or proxy instance when scaled out"
    )
    assert set(children["tiers"]["hosts"]) == {"gatekeeper", "proxy"}
    jump = children["private"]["vars"]["ansible_ssh_common_args"]
    assert "ubuntu@{{ sqlgate_jump_host }}" in jump and "HostKeyAlias={{ sqlgate_jump_instance_id }}" in jump, jump
    text = json.dumps(out)
    assert not re.search(r"(?i)password|BEGIN .*PRIVATE", text), "an output holds a secret"


def test_resize_in_place_keeps_the_data(tf, scaled):
    """3 gatekeepers and 2 proxies: the groups change in place; no database, volume or address moves."""
    plan = tf.plan_json(*_vars(tf, gatekeeper_count=3, proxy_count=2))
    changes = _changes(plan)
    for tier, n in (("gatekeeper", 3), ("proxy", 2)):
        address = f'aws_autoscaling_group.tier["{tier}"]'
        assert changes[address] == ["update"], f"{address}: {changes[address]}"
        after = [rc for rc in plan["resource_changes"] if rc["address"] == address][0]["change"]["after"]
        assert (after["min_size"], after["max_size"], after["desired_capacity"]) == (n, n, n), after
    moved = {a: c for a, c in changes.items() if c not in (["no-op"], ["update"])}
    assert moved == {}, f"resizing replaces or deletes: {moved}"
    assert deploy_util.plan_violations(plan) == []


def test_scale_back_to_one_is_the_seed(tf, scaled):
    """Back to one of each: the seed's instances return, the Elastic IP (kept) is associated again."""
    changes = _changes(tf.plan_json(*_vars(tf)))
    for a in ("aws_instance.gatekeeper[0]", "aws_instance.proxy[0]", "aws_eip_association.gatekeeper[0]"):
        assert changes.get(a) == ["create"], f"{a}: {changes.get(a)}"
    assert changes.get("aws_eip.gatekeeper") == ["no-op"], "the Elastic IP must have been kept while scaled out"
    assert all(c == ["delete"] for a, c in changes.items() if a.startswith(("aws_lb.", "aws_autoscaling_group.")))


def test_destroy_removes_everything(tf, scaled, ec2, env):
    tf.run("destroy", "-auto-approve", "-input=false", "-no-color", *_vars(tf, gatekeeper_count=GATEKEEPERS, proxy_count=PROXIES))
    scaled["destroyed"] = True
    assert list(_all_instances(ec2)) == [], "instances left"
    assert _client(env, "elbv2").describe_load_balancers()["LoadBalancers"] == [], "load balancers left"
    assert _client(env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == [], "groups left"
