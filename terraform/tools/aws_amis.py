#!/usr/bin/env python3
"""Control-side AWS helper of `make deploy` / `make destroy` / `make backup` (boto3, deploy venv).

  aws_amis.py whoami                          account and identity, or one line saying what to do
  aws_amis.py find ROLE SOURCE_HASH DEPLOYMENT
                                              id of DEPLOYMENT's ROLE AMI built from SOURCE_HASH
  aws_amis.py purge DEPLOYMENT                deregister DEPLOYMENT's AMIs (never another
                                              deployment's), delete their snapshots
  aws_amis.py snapshot-data DEPLOYMENT KIND   snapshot every data volume of DEPLOYMENT now, tagged
                                              sqlgate:snapshot=KIND (final, manual); waits until done
  aws_amis.py purge-snapshots DEPLOYMENT      delete DEPLOYMENT's daily (Data Lifecycle Manager)
                                              snapshots; final and manual ones are kept
  aws_amis.py jump-host DEPLOYMENT            scaled out: "<public ip> <instance id>" of a running
                                              gatekeeper of DEPLOYMENT (Ansible's SSH jump host),
                                              waiting up to 10 minutes for one

The region comes from AWS_REGION (the Makefile sets it).
"""

from __future__ import annotations

import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError


def _ec2():
    return boto3.client("ec2")


def _tags(obj: dict) -> dict:
    return {t["Key"]: t["Value"] for t in obj.get("Tags", [])}


def whoami() -> int:
    try:
        ident = boto3.client("sts").get_caller_identity()
    except NoCredentialsError:
        print(
            "deploy: no AWS credentials found: run `aws configure` (or `aws sso login`), "
            "or export AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then retry",
            file=sys.stderr,
        )
        return 1
    except NoRegionError:
        print("deploy: no AWS region: set AWS_REGION (e.g. make deploy AWS_REGION=us-east-1)", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as err:
        print(f"deploy: AWS rejected the credentials ({err}): refresh them (aws sso login / aws configure), then retry", file=sys.stderr)
        return 1
    print(f"{ident['Account']} {ident['Arn']}")
    return 0


def find(role: str, source_hash: str, deployment: str) -> int:
    images = _ec2().describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "tag:sqlgate:role", "Values": [role]},
            {"Name": "tag:sqlgate:source-hash", "Values": [source_hash]},
            {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if images:
        newest = max(images, key=lambda i: i["CreationDate"])
        print(newest["ImageId"])
    return 0


def purge(deployment: str) -> int:
    ec2 = _ec2()
    images = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "tag:Project", "Values": ["sqlgate"]},
            {"Name": "tag:ManagedBy", "Values": ["packer"]},
            {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
        ],
    )["Images"]
    for image in images:
        assert _tags(image).get("sqlgate:deployment") == deployment, image["ImageId"]
        snapshots = [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if "Ebs" in m and "SnapshotId" in m["Ebs"]]
        print(f"destroy: deregistering {image['ImageId']} ({image.get('Name', '')})")
        ec2.deregister_image(ImageId=image["ImageId"])
        for snap in snapshots:
            print(f"destroy: deleting snapshot {snap}")
            ec2.delete_snapshot(SnapshotId=snap)
    if not images:
        print(f"destroy: no AMI of deployment {deployment} left in this account and region")
    return 0


def _data_volumes(ec2, deployment: str) -> list[dict]:
    return ec2.describe_volumes(
        Filters=[
            {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
            {"Name": "tag:sqlgate:data-volume", "Values": ["mysql"]},
        ]
    )["Volumes"]


def snapshot_data(deployment: str, kind: str, volume_ids: list[str] | None = None) -> int:
    """Snapshot the data volumes (all of the deployment's, or the given ones) and wait for completion."""
    ec2 = _ec2()
    volumes = [v for v in _data_volumes(ec2, deployment) if not volume_ids or v["VolumeId"] in volume_ids]
    if not volumes:
        print(f"snapshot: no data volume of deployment {deployment} found", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    snaps = []
    for v in volumes:
        name = _tags(v).get("Name", v["VolumeId"])
        tags = {k: val for k, val in _tags(v).items() if not k.startswith("aws:")}
        # Not selected by the daily policy's retention: kept until deleted by hand.
        tags.pop("sqlgate:backup-policy", None)
        tags.update({"Name": f"{name}-{kind}-{stamp}", "sqlgate:snapshot": kind})
        snap = ec2.create_snapshot(
            VolumeId=v["VolumeId"],
            Description=f"sqlgate {deployment} {kind} snapshot of {name}",
            TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": val} for k, val in tags.items()]}],
        )
        print(f"snapshot: {snap['SnapshotId']} of {v['VolumeId']} ({name})")
        snaps.append(snap["SnapshotId"])
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=snaps, WaiterConfig={"Delay": 15, "MaxAttempts": 240})
    print(f"snapshot: {len(snaps)} {kind} snapshot(s) completed: {' '.join(snaps)}")
    return 0


def purge_snapshots(deployment: str) -> int:
    ec2 = _ec2()
    snaps = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
            {"Name": "tag:sqlgate:snapshot", "Values": ["daily"]},
        ],
    )["Snapshots"]
    for s in snaps:
        print(f"destroy: deleting daily snapshot {s['SnapshotId']}")
        ec2.delete_snapshot(SnapshotId=s["SnapshotId"])
    kept = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
            {"Name": "tag:sqlgate:snapshot", "Values": ["final", "manual"]},
        ],
    )["Snapshots"]
    for s in kept:
        print(f"destroy: kept {_tags(s).get('sqlgate:snapshot')} snapshot {s['SnapshotId']} ({_tags(s).get('Name', '')}); "
              f"delete it by hand when no longer needed (about $0.05 per GB-month)")
    return 0


def jump_host(deployment: str) -> int:
    """A running gatekeeper of the deployment's Auto Scaling group, oldest first (stable across runs)."""
    ec2 = _ec2()
    filters = [
        {"Name": "tag:Role", "Values": ["gatekeeper"]},
        {"Name": "tag:sqlgate:deployment", "Values": [deployment]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    deadline = time.monotonic() + 600
    while True:
        found = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]
                 if i.get("PublicIpAddress")]
        if found:
            first = min(found, key=lambda i: (i["LaunchTime"], i["InstanceId"]))
            print(first["PublicIpAddress"], first["InstanceId"])
            return 0
        if time.monotonic() > deadline:
            print(f"no running gatekeeper with a public address in deployment {deployment}", file=sys.stderr)
            return 1
        time.sleep(10)


def main(argv: list[str]) -> int:
    match argv:
        case ["whoami"]:
            return whoami()
        case ["find", role, source_hash, deployment]:
            return find(role, source_hash, deployment)
        case ["purge", deployment]:
            return purge(deployment)
        case ["snapshot-data", deployment, kind]:
            return snapshot_data(deployment, kind)
        case ["snapshot-data", deployment, kind, *volumes]:
            return snapshot_data(deployment, kind, volumes)
        case ["purge-snapshots", deployment]:
            return purge_snapshots(deployment)
        case ["jump-host", deployment]:
            return jump_host(deployment)
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
