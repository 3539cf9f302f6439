provider "aws" {
  region = var.region

  # Every resource the provider creates carries the project tags, so the
  # whole deployment can be found (and billed) by them.
  default_tags {
    tags = local.tags
  }
}

# A closed set of zones (a, b, c exist in every region), so the chosen zone
# cannot move when AWS adds one; the first available of them is used.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for s in ["a", "b", "c"] : "${var.region}${s}"]
  }
}

data "aws_ami" "app" {
  count = var.app_ami_id == null ? 1 : 0

  owners      = ["self"]
  most_recent = true

  filter {
    name   = "tag:sqlgate:role"
    values = ["app"]
  }

  filter {
    name   = "tag:sqlgate:deployment"
    values = [var.deployment_id]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}

data "aws_ami" "mysql" {
  count = var.mysql_ami_id == null ? 1 : 0

  owners      = ["self"]
  most_recent = true

  filter {
    name   = "tag:sqlgate:role"
    values = ["mysql"]
  }

  filter {
    name   = "tag:sqlgate:deployment"
    values = [var.deployment_id]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}

locals {
  tags = merge(var.tags, {
    Project     = var.name
    Environment = var.environment
    ManagedBy   = "terraform"
    # Selects this deployment's AMIs, volumes and snapshots (make destroy).
    "sqlgate:deployment" = var.deployment_id
  })

  az        = coalesce(var.availability_zone, data.aws_availability_zones.available.names[0])
  az_second = coalesce(var.second_availability_zone, [for z in data.aws_availability_zones.available.names : z if z != local.az][0])

  # One gatekeeper and one proxy: the seed's plain instances (instances.tf),
  # configured by Ansible. More of either: both tiers become Auto Scaling
  # groups behind Network Load Balancers, configured from SSM (scale.tf).
  scaled = var.gatekeeper_count > 1 || var.proxy_count > 1

  # Where each tier's secrets live in SSM Parameter Store (SecureString,
  # written by Ansible from the operator's machine, read by the instances).
  ssm_prefix = "/${var.name}/${var.deployment_id}"

  app_ami_id   = coalesce(var.app_ami_id, one(data.aws_ami.app[*].id))
  mysql_ami_id = coalesce(var.mysql_ami_id, one(data.aws_ami.mysql[*].id))

  # MySQL account host pattern for the users the proxy and the workers log
  # in as: the private subnet only, in MySQL's address/netmask form.
  # The gatekeepers' GATEKEEPER_PROXY_URL: the proxy, or its balancer.
  proxy_url = local.scaled ? "https://${aws_lb.proxy[0].dns_name}:5000" : "https://${one(aws_instance.proxy[*].private_ip)}:5000"

  # Ansible's SSH jump host to the private hosts: the single gatekeeper on its
  # Elastic IP, or scaled out any running gatekeeper, which make deploy finds
  # by tag and passes to Ansible (aws_amis.py jump-host).
  jump_host        = local.scaled ? "{{ sqlgate_jump_host }}" : aws_eip.gatekeeper.public_ip
  jump_instance_id = local.scaled ? "{{ sqlgate_jump_instance_id }}" : one(aws_instance.gatekeeper[*].id)

  mysql_client_host = format("%s/%s", cidrhost(aws_subnet.private.cidr_block, 0), cidrnetmask(aws_subnet.private.cidr_block))
}

resource "aws_key_pair" "admin" {
  key_name_prefix = "${var.name}-admin-"
  public_key      = var.ssh_public_key

  tags = { Name = "${var.name}-admin" }
}
