# Database data on dedicated volumes, one per database node, apart from the
# root volumes (which hold the AMI only). Ansible formats a new volume, moves
# the AMI's MySQL data directory onto it and mounts it at /var/lib/mysql; a
# volume that already holds a file system (a re-attached or restored one) is
# mounted as it is, never formatted.
#
# Nothing a routine deploy changes (AMIs, service code, Packer, toolchains)
# replaces these volumes or the instances they are attached to (instances.tf
# ignores AMI changes), and `make deploy` refuses a plan that would
# (terraform/tools/deploy_util.py plan-guard). The Data Lifecycle Manager
# policy of backup.tf snapshots them every day.

locals {
  # Tags of every data volume: the DLM policy selects on sqlgate:backup-policy.
  data_volume_tags = {
    "sqlgate:data-volume"   = "mysql"
    "sqlgate:backup-policy" = var.deployment_id
  }
}

resource "aws_ebs_volume" "manager_data" {
  availability_zone = local.az
  type              = "gp3"
  size              = var.db_data_volume_size
  encrypted         = true # checkov:skip=CKV_AWS_189:Encrypted with the account's AWS-managed EBS key; a customer key would add a monthly charge and a key whose loss loses the data, for no control this deployment uses.
  final_snapshot    = false

  tags = merge(local.data_volume_tags, { Name = "${var.name}-manager-data", Role = "manager" }) # checkov:skip=CKV2_AWS_9:Backed up by the Data Lifecycle Manager policy of backup.tf (daily snapshots), not AWS Backup.
}

resource "aws_ebs_volume" "worker_data" {
  count = var.worker_count

  availability_zone = local.az
  type              = "gp3"
  size              = var.db_data_volume_size
  encrypted         = true # checkov:skip=CKV_AWS_189:Encrypted with the account's AWS-managed EBS key; a customer key would add a monthly charge and a key whose loss loses the data, for no control this deployment uses.
  final_snapshot    = false

  tags = merge(local.data_volume_tags, { Name = "${var.name}-worker-${count.index + 1}-data", Role = "worker" }) # checkov:skip=CKV2_AWS_9:Backed up by the Data Lifecycle Manager policy of backup.tf (daily snapshots), not AWS Backup.
}

# /dev/sdf: on Nitro instances the volume appears as an NVMe device whose
# serial is the volume id; Ansible finds it by id, not by this name.
resource "aws_volume_attachment" "manager_data" {
  device_name = var.db_data_device_name
  volume_id   = aws_ebs_volume.manager_data.id
  instance_id = aws_instance.manager.id
  # Detach only from a stopped instance (destroy): MySQL has shut down cleanly.
  stop_instance_before_detaching = true
}

resource "aws_volume_attachment" "worker_data" {
  count = var.worker_count

  device_name                    = var.db_data_device_name
  volume_id                      = aws_ebs_volume.worker_data[count.index].id
  instance_id                    = aws_instance.worker[count.index].id
  stop_instance_before_detaching = true
}
