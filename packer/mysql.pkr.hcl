# The mysql image: MySQL 8.0 with a GTID-ready base config, sysbench and the
# official sakila sample database. Every database node (manager or worker)
# runs this image; Ansible gives each its server_id and role. No user but
# root (auth_socket) exists, no password is set: Ansible creates the users.

source "amazon-ebs" "mysql" {
  region        = var.region
  instance_type = var.mysql_build_instance_type
  ssh_username  = "ubuntu"
  ami_name      = "sqlgate-mysql-${var.deployment_id}-${local.timestamp}"
  encrypt_boot  = true
  # Instances launched from the AMI default to IMDSv2 only.
  imds_support = "v2.0"

  # An explicit network (the deployment's public subnet, from Terraform), so
  # the build works in accounts without a default VPC; a public address for
  # SSH, which the temporary security group opens to the operator only.
  vpc_id                                = var.vpc_id
  subnet_id                             = var.subnet_id
  associate_public_ip_address           = true
  ssh_interface                         = "public_ip"
  temporary_security_group_source_cidrs = var.ssh_source_cidrs

  # The build instance itself: IMDSv2 only, tokens do not leave the host.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  source_ami_filter {
    owners      = [local.ubuntu_owner]
    most_recent = true
    filters = {
      name                = local.ubuntu_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
  }

  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = 16
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  tags = merge(local.tags, {
    Name                  = "sqlgate-mysql-${var.deployment_id}-${local.timestamp}"
    "sqlgate:role"        = "mysql"
    "sqlgate:source-hash" = var.mysql_source_hash
  })
  snapshot_tags = merge(local.tags, {
    Name           = "sqlgate-mysql-${var.deployment_id}-${local.timestamp}"
    "sqlgate:role" = "mysql"
  })
  run_tags = merge(local.tags, { Name = "sqlgate-mysql-packer-build" })
}

build {
  sources = ["source.amazon-ebs.mysql"]

  provisioner "shell" {
    script          = "${path.root}/scripts/base.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
  }

  provisioner "file" {
    source      = "${path.root}/files/sqlgate-mysql"
    destination = "/tmp"
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/mysql.sh"
    execute_command  = "sudo -E bash '{{ .Path }}'"
    environment_vars = ["SAKILA_URL=${var.sakila_url}"]
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/cleanup.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
  }

  post-processor "manifest" {
    output     = "${path.root}/../.local/aws/packer-manifest.json"
    strip_path = true
  }
}
