# The app image: gatekeeper and proxy binaries, built here on Ubuntu 22.04 so
# they link the glibc (2.35) they run on, with hardened systemd units. Units
# stay disabled until Ansible delivers their env files and secrets: the
# image holds no secret.

source "amazon-ebs" "app" {
  region        = var.region
  instance_type = var.app_build_instance_type
  ssh_username  = "ubuntu"
  ami_name      = "sqlgate-app-${var.deployment_id}-${local.timestamp}"
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
    Name                  = "sqlgate-app-${var.deployment_id}-${local.timestamp}"
    "sqlgate:role"        = "app"
    "sqlgate:source-hash" = var.app_source_hash
  })
  snapshot_tags = merge(local.tags, {
    Name           = "sqlgate-app-${var.deployment_id}-${local.timestamp}"
    "sqlgate:role" = "app"
  })
  run_tags = merge(local.tags, { Name = "sqlgate-app-packer-build" })
}

build {
  sources = ["source.amazon-ebs.app"]

  provisioner "shell" {
    script          = "${path.root}/scripts/base.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
  }

  provisioner "file" {
    source      = var.source_tarball
    destination = "/tmp/sqlgate-src.tar.gz"
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/build-services.sh"
    environment_vars = ["RUST_TOOLCHAIN=${var.rust_toolchain}"]
  }

  # No compiler, rustup or cargo is left in the image (the script fails if one is).
  provisioner "shell" {
    script          = "${path.root}/scripts/remove-toolchain.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
  }

  provisioner "file" {
    source      = "${path.root}/files/sqlgate-app"
    destination = "/tmp"
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/install-services.sh"
    execute_command = "sudo -E bash '{{ .Path }}'"
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
