#!/usr/bin/env python3
"""The AWS security groups of terraform/security.tf as one nftables ruleset per local host.

    sg_to_nft.py --hosts manager=db:10.77.0.4,... --var admin_cidr=... --list-var allowed_cidrs=... OUTDIR

The Terraform files are the one source of truth: every `aws_vpc_security_group_ingress_rule`
and `..._egress_rule` of the single-instance topology (local.scaled = false) becomes one nft
rule on every host in its group, with the rule's Terraform address and description as a
comment. A group reference becomes the set of the addresses of that group's hosts. Each
host's ruleset drops by default in both directions (security groups filter egress too) and,
like a security group, is stateful (replies pass). An expression this script cannot evaluate
stops it with an error: a rule is never silently left out.

Also writes OUTDIR/rules.json (the evaluated rules) for the tests.
"""
import argparse
import glob
import json
import os
import re
import sys

import hcl2

RULE_TYPES = {
    "aws_vpc_security_group_ingress_rule": "ingress",
    "aws_vpc_security_group_egress_rule": "egress",
}


class Unsupported(Exception):
    pass


def unquote(v):
    return v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"' else v


def evaluate(value, env):
    """Evaluates the few expression forms security.tf uses; anything else is an error."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"\$\{(.*)\}", value, re.S)
    if not m:
        text = unquote(value)
        if "${" in text:
            # Interpolation inside a string (descriptions): only each.value is substituted.
            text = text.replace("${each.value}", str(env.get("each.value", "")))
            text = text.replace("${each.key}", str(env.get("each.key", "")))
            text = re.sub(r"\$\{var\.(\w+)\}", lambda v: str(env["var"].get(v.group(1), "")), text)
        return text
    expr = m.group(1).strip()
    return evaluate_expr(expr, env)


def evaluate_expr(expr, env):
    cond = re.fullmatch(r"local\.scaled\s*\?\s*(.+?)\s*:\s*(.+)", expr, re.S)
    if cond:
        return evaluate_expr(cond.group(1) if env["scaled"] else cond.group(2), env)
    if expr.startswith('"') and expr.endswith('"'):
        return evaluate(expr, env)
    if re.fullmatch(r"\d+", expr):
        return int(expr)
    if expr in ("each.value", "each.key"):
        return env[expr]
    m = re.fullmatch(r"var\.(\w+)", expr)
    if m:
        return env["var"][m.group(1)]
    m = re.fullmatch(r"toset\((.*)\)", expr, re.S)
    if m:
        inner = m.group(1).strip()
        return [] if inner == "[]" else list(evaluate_expr(inner, env))
    if re.fullmatch(r"\{\s*\}", expr):
        return {}
    m = re.fullmatch(r"aws_security_group\.(\w+)(\[0\])?\.id", expr)
    if m:
        return {"group": m.group(1)}
    raise Unsupported(expr)


def rules(tf_dir, env):
    out = []
    for path in sorted(glob.glob(os.path.join(tf_dir, "*.tf"))):
        with open(path) as f:
            doc = hcl2.load(f)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                direction = RULE_TYPES.get(unquote(rtype))
                if not direction:
                    continue
                for name, body in named.items():
                    name = unquote(name)
                    address = f"{unquote(rtype)}.{name}"
                    try:
                        out.extend(expand(address, direction, body, env))
                    except Unsupported as e:
                        sys.exit(f"sg_to_nft: cannot evaluate `{e}` in {address} ({path})")
    return out


def expand(address, direction, body, env):
    if "count" in body:
        instances = [dict(env) for _ in range(evaluate(body["count"], env))]
    elif "for_each" in body:
        each = evaluate(body["for_each"], env)
        items = each.items() if isinstance(each, dict) else ((v, v) for v in each)
        instances = [dict(env, **{"each.key": k, "each.value": v}) for k, v in items]
    else:
        instances = [env]
    for e in instances:
        peer = evaluate(body.get("referenced_security_group_id"), e) if "referenced_security_group_id" in body \
            else {"cidr": evaluate(body["cidr_ipv4"], e)}
        yield {
            "address": address,
            "direction": direction,
            "group": evaluate(body["security_group_id"], e)["group"],
            "protocol": evaluate(body["ip_protocol"], e),
            "from_port": evaluate(body.get("from_port"), e),
            "to_port": evaluate(body.get("to_port"), e),
            "peer": peer,
            "description": evaluate(body.get("description", '""'), e),
        }


def match(rule):
    proto, lo, hi = rule["protocol"], rule["from_port"], rule["to_port"]
    if proto == "tcp" or proto == "udp":
        return f"{proto} dport {lo}" if lo == hi else f"{proto} dport {lo}-{hi}"
    if proto == "icmp":
        # AWS: from_port is the ICMP type, to_port the code (-1: any).
        if lo in (-1, None):
            return "meta l4proto icmp"
        return f"icmp type {lo}" + ("" if hi in (-1, None) else f" icmp code {hi}")
    if proto == "-1":
        return ""
    raise SystemExit(f"sg_to_nft: protocol {proto!r} in {rule['address']} is not mapped")


def peer_set(rule, groups):
    peer = rule["peer"]
    if "cidr" in peer:
        return peer["cidr"]
    addrs = groups.get(peer["group"], [])
    return "{ " + ", ".join(addrs) + " }" if addrs else None


def ruleset(host, group, addr, all_rules, groups):
    lines = [f"# {host} ({addr}), security group aws_security_group.{group}: generated by",
             "# local/netns/sg_to_nft.py from terraform/*.tf; do not edit.",
             "table inet sqlgate {"]
    for chain, hook, key, iface in (("input", "input", "saddr", "iif"), ("output", "output", "daddr", "oif")):
        direction = "ingress" if chain == "input" else "egress"
        lines += [f"  chain {chain} {{",
                  f"    type filter hook {hook} priority 0; policy drop;",
                  f"    {iface} lo accept",
                  "    ct state established,related accept",
                  "    ct state invalid drop"]
        for r in all_rules:
            if r["direction"] != direction or r["group"] != group:
                continue
            peers = peer_set(r, groups)
            comment = f'{r["address"]}: {r["description"]}'.replace('"', "'")
            if peers is None:
                lines.append(f"    # {comment} (no local host in that group)")
                continue
            body = " ".join(f"ip {key} {peers} {match(r)} accept".split())
            lines.append(f'    {body} comment "{comment[:120]}"')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tf-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "terraform"))
    ap.add_argument("--hosts", required=True, help="host=group:address,...")
    ap.add_argument("--var", action="append", default=[], help="name=value: a string variable")
    ap.add_argument("--list-var", action="append", default=[], help="name=a,b: a list(string) variable")
    ap.add_argument("outdir")
    a = ap.parse_args()
    variables = {}
    for v in a.var:
        k, _, val = v.partition("=")
        variables[k] = val
    for v in a.list_var:
        k, _, val = v.partition("=")
        variables[k] = val.split(",")
    env = {"scaled": False, "var": variables}
    all_rules = rules(a.tf_dir, env)
    hosts = {}
    for item in a.hosts.split(","):
        host, _, rest = item.partition("=")
        group, _, addr = rest.partition(":")
        hosts[host] = (group, addr)
    groups = {}
    for host, (group, addr) in hosts.items():
        groups.setdefault(group, []).append(addr)
    os.makedirs(a.outdir, exist_ok=True)
    for host, (group, addr) in hosts.items():
        with open(os.path.join(a.outdir, f"{host}.nft"), "w") as f:
            f.write(ruleset(host, group, addr, all_rules, groups))
    with open(os.path.join(a.outdir, "rules.json"), "w") as f:
        json.dump(all_rules, f, indent=1)
    print(f"sg_to_nft: {len(all_rules)} security group rules -> {len(hosts)} hosts in {a.outdir}")


if __name__ == "__main__":
    main()
