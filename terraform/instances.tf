# Five instances by default: gatekeeper (public subnet, an Elastic IP),
# proxy, manager and worker_count workers. With gatekeeper_count or
# proxy_count above one, the gatekeepers and proxies are Auto Scaling groups
# behind load balancers instead (scale.tf) and the two instances here are
# not created; the databases stay these plain instances in every case (private subnet, no public address:
# the subnet maps none and they ask for none). No user data: every secret and
# per-host setting is delivered by Ansible over SSH through the gatekeeper,
# never through instance metadata. Root volumes hold the AMI only: database
# data lives on the dedicated volumes of data.tf, so gatekeeper and proxy are
# replaced freely by a new app AMI and the database instances ignore AMIs.

locals {
  # AMI and instance type of each role.
  instance_roles = {
    gatekeeper = { ami = local.app_ami_id, type = var.gatekeeper_instance_type }
    proxy      = { ami = local.app_ami_id, type = var.proxy_instance_type }
    manager    = { ami = local.mysql_ami_id, type = var.db_instance_type }
    worker     = { ami = local.mysql_ami_id, type = var.db_instance_type }
  }
}

resource "aws_instance" "gatekeeper" {
  count = local.scaled ? 0 : 1

  ami                    = local.instance_roles.gatekeeper.ami
  instance_type          = local.instance_roles.gatekeeper.type
  subnet_id              = aws_subnet.public.id
  vpc_security_group_ids = [aws_security_group.gatekeeper.id]
  key_name               = aws_key_pair.admin.key_name # checkov:skip=CKV2_AWS_41:No instance calls an AWS API; an instance profile would only put credentials in IMDS for an intruder to take.
  ebs_optimized          = true
  monitoring             = false # checkov:skip=CKV_AWS_126:Basic 5-minute metrics suffice; 1-minute detailed monitoring is billed per instance and nothing here consumes it.

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-gatekeeper" })
  }

  # No associate_public_ip_address: the subnet maps no public address, and the
  # gatekeeper's is the Elastic IP (aws_eip.gatekeeper), which outlives it.
  # (Setting it to false would make every plan replace the instance once the
  # Elastic IP is associated.)

  tags = { Name = "${var.name}-gatekeeper", Role = "gatekeeper" }
}

resource "aws_instance" "proxy" {
  count = local.scaled ? 0 : 1

  ami                    = local.instance_roles.proxy.ami
  instance_type          = local.instance_roles.proxy.type
  subnet_id              = aws_subnet.private.id
  vpc_security_group_ids = [aws_security_group.proxy.id]
  key_name               = aws_key_pair.admin.key_name # checkov:skip=CKV2_AWS_41:No instance calls an AWS API; an instance profile would only put credentials in IMDS for an intruder to take.
  ebs_optimized          = true
  monitoring             = false # checkov:skip=CKV_AWS_126:Basic 5-minute metrics suffice; 1-minute detailed monitoring is billed per instance and nothing here consumes it.

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-proxy" })
  }

  tags = { Name = "${var.name}-proxy", Role = "proxy" }
}

resource "aws_instance" "manager" {
  ami                    = local.instance_roles.manager.ami
  instance_type          = local.instance_roles.manager.type
  subnet_id              = aws_subnet.private.id
  vpc_security_group_ids = [aws_security_group.db.id]
  key_name               = aws_key_pair.admin.key_name # checkov:skip=CKV2_AWS_41:No instance calls an AWS API; an instance profile would only put credentials in IMDS for an intruder to take.
  ebs_optimized          = true
  monitoring             = false # checkov:skip=CKV_AWS_126:Basic 5-minute metrics suffice; 1-minute detailed monitoring is billed per instance and nothing here consumes it.

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-manager" })
  }

  tags = { Name = "${var.name}-manager", Role = "manager" }

  # The database instances are never replaced by a routine deploy: a new
  # mysql AMI applies to new nodes only, existing ones are updated in place
  # by Ansible (workers first, one at a time); a new SSH key pair does not
  # recreate them either. Their data lives on aws_ebs_volume.*_data.
  lifecycle {
    ignore_changes = [ami, key_name]
  }
}

resource "aws_instance" "worker" {
  count = var.worker_count

  ami                    = local.instance_roles.worker.ami
  instance_type          = local.instance_roles.worker.type
  subnet_id              = aws_subnet.private.id
  vpc_security_group_ids = [aws_security_group.db.id]
  key_name               = aws_key_pair.admin.key_name # checkov:skip=CKV2_AWS_41:No instance calls an AWS API; an instance profile would only put credentials in IMDS for an intruder to take.
  ebs_optimized          = true
  monitoring             = false # checkov:skip=CKV_AWS_126:Basic 5-minute metrics suffice; 1-minute detailed monitoring is billed per instance and nothing here consumes it.

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-worker-${count.index + 1}" })
  }

  tags = { Name = "${var.name}-worker-${count.index + 1}", Role = "worker" }

  # The database instances are never replaced by a routine deploy: a new
  # mysql AMI applies to new nodes only, existing ones are updated in place
  # by Ansible (workers first, one at a time); a new SSH key pair does not
  # recreate them either. Their data lives on aws_ebs_volume.*_data.
  lifecycle {
    ignore_changes = [ami, key_name]
  }
}

# Earlier deployments had these two without count: same instances, no replacement.
moved {
  from = aws_instance.gatekeeper
  to   = aws_instance.gatekeeper[0]
}

moved {
  from = aws_instance.proxy
  to   = aws_instance.proxy[0]
}
