# A dedicated VPC with a public subnet in each of two availability zones (the
# gatekeepers, the only hosts with a public address; the second zone serves
# the load-balanced gatekeepers of scale.tf) and one private subnet (proxies
# and databases, all in the first zone) that has no route out: the baked AMIs
# need no Internet.

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# The VPC's default security group is left with no rule at all, so nothing
# launched into it by mistake can talk to anything.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-default-deny" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), 0)
  availability_zone = local.az
  # Only the gatekeeper asks for a public address, explicitly, at launch.
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public", Tier = "public" }
}

# The first zone's subnets keep indexes 0 and 1 (earlier deployments); the
# second zone's public subnet is the VPC's third /24.
resource "aws_subnet" "public_second" {
  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), 2)
  availability_zone       = local.az_second
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public-second", Tier = "public" }
}

resource "aws_subnet" "private" {
  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), 1)
  availability_zone       = local.az
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-private", Tier = "private" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table_association" "public_second" {
  subnet_id      = aws_subnet.public_second.id
  route_table_id = aws_route_table.public.id
}

# No route but the VPC's local one: private hosts reach nothing outside.
resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}

# Flow logs record every accepted and rejected connection in the VPC: the
# evidence that the security groups hold. They go to a log group that
# terraform destroy removes with everything else.
resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn

  tags = { Name = "${var.name}-flow-logs" }
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  name_prefix       = "/${var.name}/vpc-flow-logs/"
  retention_in_days = var.flow_logs_retention_days
  # checkov:skip=CKV_AWS_158:CloudWatch Logs already encrypts at rest with a service key; a customer KMS key would add a monthly charge and a key to manage for connection metadata only.

  tags = { Name = "${var.name}-flow-logs" }
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role" "flow_logs" {
  name_prefix        = "${var.name}-flow-logs-"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json

  tags = { Name = "${var.name}-flow-logs" }
}

resource "aws_iam_role_policy" "flow_logs" {
  name_prefix = "${var.name}-flow-logs-"
  role        = aws_iam_role.flow_logs.id
  policy      = data.aws_iam_policy_document.flow_logs.json
}

# The gatekeeper's public address: an Elastic IP that outlives the instance,
# so a new app AMI (which replaces the gatekeeper) keeps the API's address,
# and with it the clients' configuration and the TLS certificate's name.
# Scaled out (scale.tf), the API's address is the load balancer's and this
# address stays allocated, unassociated, so scaling back to one gatekeeper
# gets it back (and the plan guard never sees it deleted).
resource "aws_eip" "gatekeeper" {
  domain = "vpc"

  tags = { Name = "${var.name}-gatekeeper" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_eip_association" "gatekeeper" {
  count = local.scaled ? 0 : 1

  allocation_id = aws_eip.gatekeeper.id
  instance_id   = aws_instance.gatekeeper[0].id
}

moved {
  from = aws_eip_association.gatekeeper
  to   = aws_eip_association.gatekeeper[0]
}
