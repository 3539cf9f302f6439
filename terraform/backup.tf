# Daily snapshots of the database data volumes (data.tf) by the Data
# Lifecycle Manager: at backup_time (UTC), kept for backup_retention_days
# snapshots per volume. Snapshots copy the volume's tags (Project,
# sqlgate:deployment, Name), so `make destroy` finds this deployment's own.
# `make backup` takes an on-demand consistent snapshot besides these.

data "aws_iam_policy_document" "dlm_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["dlm.amazonaws.com"]
    }
  }
}

data "aws_partition" "current" {}

# What AWSDataLifecycleManagerServiceRole grants for EBS snapshot policies,
# narrowed to snapshots where the action allows it.
data "aws_iam_policy_document" "dlm" {
  statement {
    sid = "Describe"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeVolumes",
      "ec2:DescribeSnapshots",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "Snapshot"
    actions   = ["ec2:CreateSnapshot", "ec2:CreateSnapshots"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${var.region}::snapshot/*", "arn:${data.aws_partition.current.partition}:ec2:${var.region}:*:volume/*", "arn:${data.aws_partition.current.partition}:ec2:${var.region}:*:instance/*"]
  }

  statement {
    sid       = "TagAndExpire"
    actions   = ["ec2:CreateTags", "ec2:DeleteSnapshot"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${var.region}::snapshot/*"]
  }
}

resource "aws_iam_role" "dlm" {
  name_prefix        = "${var.name}-dlm-"
  assume_role_policy = data.aws_iam_policy_document.dlm_assume.json

  tags = { Name = "${var.name}-dlm" }
}

resource "aws_iam_role_policy" "dlm" {
  name_prefix = "${var.name}-dlm-"
  role        = aws_iam_role.dlm.id
  policy      = data.aws_iam_policy_document.dlm.json
}

resource "aws_dlm_lifecycle_policy" "data" {
  description        = "${var.name} ${var.deployment_id} daily database volume snapshots" # DLM allows letters, digits, spaces, - and _ only
  execution_role_arn = aws_iam_role.dlm.arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = { "sqlgate:backup-policy" = var.deployment_id }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = [var.backup_time]
      }

      retain_rule {
        count = var.backup_retention_days
      }

      tags_to_add = {
        "sqlgate:snapshot" = "daily"
      }
    }
  }

  tags = { Name = "${var.name}-data-snapshots" }
}
