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

  az = coalesce(var.availability_zone, data.aws_availability_zones.available.names[0])

  app_ami_id   = coalesce(var.app_ami_id, one(data.aws_ami.app[*].id))
  mysql_ami_id = coalesce(var.mysql_ami_id, one(data.aws_ami.mysql[*].id))

  # MySQL account host pattern for the users the proxy and the workers log
  # in as: the private subnet only, in MySQL's address/netmask form.
  mysql_client_host = format("%s/%s", cidrhost(aws_subnet.private.cidr_block, 0), cidrnetmask(aws_subnet.private.cidr_block))
}

resource "aws_key_pair" "admin" {
  key_name_prefix = "${var.name}-admin-"
  public_key      = var.ssh_public_key

  tags = { Name = "${var.name}-admin" }
}
