#!/usr/bin/env python3
"""Control-side AWS helper of `make deploy` / `make destroy` (boto3, deploy venv).

  aws_amis.py whoami                      account and identity, or one line saying what to do
  aws_amis.py find ROLE SOURCE_HASH       id of this account's sqlgate ROLE AMI built from SOURCE_HASH
  aws_amis.py purge                       deregister every sqlgate AMI of this account, delete its snapshots

The region comes from AWS_REGION (the Makefile sets it).
"""

from __future__ import annotations

import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError


def _ec2():
    return boto3.client("ec2")


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


def find(role: str, source_hash: str) -> int:
    images = _ec2().describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "tag:sqlgate:role", "Values": [role]},
            {"Name": "tag:sqlgate:source-hash", "Values": [source_hash]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if images:
        newest = max(images, key=lambda i: i["CreationDate"])
        print(newest["ImageId"])
    return 0


def purge() -> int:
    ec2 = _ec2()
    images = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:Project", "Values": ["sqlgate"]}, {"Name": "tag:ManagedBy", "Values": ["packer"]}]
    )["Images"]
    for image in images:
        snapshots = [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if "Ebs" in m and "SnapshotId" in m["Ebs"]]
        print(f"destroy: deregistering {image['ImageId']} ({image.get('Name', '')})")
        ec2.deregister_image(ImageId=image["ImageId"])
        for snap in snapshots:
            print(f"destroy: deleting snapshot {snap}")
            ec2.delete_snapshot(SnapshotId=snap)
    if not images:
        print("destroy: no sqlgate AMI left in this account and region")
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["whoami"]:
            return whoami()
        case ["find", role, source_hash]:
            return find(role, source_hash)
        case ["purge"]:
            return purge()
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
