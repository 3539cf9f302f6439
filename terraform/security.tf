# Security groups reference each other; every rule is its own resource with a
# description. Egress is as narrow as ingress: each group may open only the
# connections the topology needs (replies are allowed by statefulness).
#
#   clients --443-----> gatekeeper --5000--> proxy --3306, ICMP echo--> db <--3306--> db
#   admin   --22------> gatekeeper --22----> proxy, db   (the jump host)
#
# Scaled out (local.scaled, scale.tf) each tier is reached through its load
# balancer's own group, and the instances reach SSM through a VPC endpoint:
#
#   clients --443--> lb --443--> gatekeeper --5000--> proxy_lb --5000--> proxy --3306--> db
#   gatekeeper, proxy --443--> endpoint (SSM Parameter Store)
#
# The Network Load Balancers keep the clients' addresses, so a target's group
# must admit the balancer's group (which AWS then applies to client traffic
# and health checks alike), never the clients' networks: nothing reaches a
# gatekeeper's 443 but through the public balancer.

resource "aws_security_group" "gatekeeper" {
  name_prefix = "${var.name}-gatekeeper-"
  description = "sqlgate gatekeeper: public HTTPS edge and SSH jump host"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-gatekeeper" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "proxy" {
  name_prefix = "${var.name}-proxy-"
  description = "sqlgate proxy: reachable from the gatekeeper only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-proxy" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "db" {
  name_prefix = "${var.name}-db-"
  description = "sqlgate MySQL manager and workers: reachable from the proxy and each other"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-db" }

  lifecycle {
    create_before_destroy = true
  }
}

# --- gatekeeper ---------------------------------------------------------------

# The API is HTTPS on 443 only, from allowed_cidrs only; port 80 is closed
# (no plaintext API, not even a redirect).
resource "aws_vpc_security_group_ingress_rule" "gatekeeper_https" {
  for_each = local.scaled ? toset([]) : toset(var.allowed_cidrs)

  security_group_id = aws_security_group.gatekeeper.id
  description       = "HTTPS API from allowed client network ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value

  tags = { Name = "${var.name}-gatekeeper-https" }
}

resource "aws_vpc_security_group_ingress_rule" "gatekeeper_ssh" {
  security_group_id = aws_security_group.gatekeeper.id
  description       = "SSH from the admin network only"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr

  tags = { Name = "${var.name}-gatekeeper-ssh" }
}

resource "aws_vpc_security_group_egress_rule" "gatekeeper_to_proxy" {
  security_group_id            = aws_security_group.gatekeeper.id
  description                  = local.scaled ? "Forward API requests to the proxies' internal load balancer" : "Forward API requests to the proxy"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = local.scaled ? aws_security_group.proxy_lb[0].id : aws_security_group.proxy.id

  tags = { Name = "${var.name}-gatekeeper-to-proxy" }
}

resource "aws_vpc_security_group_egress_rule" "gatekeeper_ssh_proxy" {
  security_group_id            = aws_security_group.gatekeeper.id
  description                  = "SSH jump to the proxy"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.proxy.id

  tags = { Name = "${var.name}-gatekeeper-ssh-proxy" }
}

resource "aws_vpc_security_group_egress_rule" "gatekeeper_ssh_db" {
  security_group_id            = aws_security_group.gatekeeper.id
  description                  = "SSH jump to the database nodes"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.db.id

  tags = { Name = "${var.name}-gatekeeper-ssh-db" }
}

# --- proxy --------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "proxy_api" {
  security_group_id            = aws_security_group.proxy.id
  description                  = local.scaled ? "Proxy API (and health checks) from the proxies' internal load balancer only" : "Proxy API from the gatekeeper only"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = local.scaled ? aws_security_group.proxy_lb[0].id : aws_security_group.gatekeeper.id

  tags = { Name = "${var.name}-proxy-api" }
}

resource "aws_vpc_security_group_ingress_rule" "proxy_ssh" {
  # checkov:skip=CKV_AWS_24:False positive: the source is the gatekeeper's security group (referenced_security_group_id), which this check does not read, not 0.0.0.0/0.
  security_group_id            = aws_security_group.proxy.id
  description                  = "SSH from the gatekeeper jump host only"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.gatekeeper.id

  tags = { Name = "${var.name}-proxy-ssh" }
}

resource "aws_vpc_security_group_egress_rule" "proxy_mysql" {
  security_group_id            = aws_security_group.proxy.id
  description                  = "MySQL to the manager and workers"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.db.id

  tags = { Name = "${var.name}-proxy-mysql" }
}

resource "aws_vpc_security_group_egress_rule" "proxy_icmp" {
  security_group_id            = aws_security_group.proxy.id
  description                  = "ICMP echo to the database nodes for the ping mode"
  ip_protocol                  = "icmp"
  from_port                    = 8
  to_port                      = 0
  referenced_security_group_id = aws_security_group.db.id

  tags = { Name = "${var.name}-proxy-icmp" }
}

# --- databases ----------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "db_from_proxy" {
  security_group_id            = aws_security_group.db.id
  description                  = "MySQL from the proxy"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.proxy.id

  tags = { Name = "${var.name}-db-from-proxy" }
}

resource "aws_vpc_security_group_ingress_rule" "db_replication" {
  security_group_id            = aws_security_group.db.id
  description                  = "MySQL replication between the database nodes"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.db.id

  tags = { Name = "${var.name}-db-replication" }
}

resource "aws_vpc_security_group_ingress_rule" "db_icmp" {
  security_group_id            = aws_security_group.db.id
  description                  = "ICMP echo request from the proxy (ping mode)"
  ip_protocol                  = "icmp"
  from_port                    = 8
  to_port                      = 0
  referenced_security_group_id = aws_security_group.proxy.id

  tags = { Name = "${var.name}-db-icmp" }
}

resource "aws_vpc_security_group_ingress_rule" "db_ssh" {
  # checkov:skip=CKV_AWS_24:False positive: the source is the gatekeeper's security group (referenced_security_group_id), which this check does not read, not 0.0.0.0/0.
  security_group_id            = aws_security_group.db.id
  description                  = "SSH from the gatekeeper jump host only"
  ip_protocol                  = "tcp"
  from_port                    = 22
  to_port                      = 22
  referenced_security_group_id = aws_security_group.gatekeeper.id

  tags = { Name = "${var.name}-db-ssh" }
}

resource "aws_vpc_security_group_egress_rule" "db_replication" {
  security_group_id            = aws_security_group.db.id
  description                  = "MySQL replication: workers connect to the manager"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.db.id

  tags = { Name = "${var.name}-db-replication-out" }
}

# --- scaled out: the load balancers' groups and the SSM endpoint's ------------

resource "aws_security_group" "lb" {
  count = local.scaled ? 1 : 0

  name_prefix = "${var.name}-lb-"
  description = "sqlgate public Network Load Balancer: HTTPS from the allowed networks to the gatekeepers"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-lb" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "proxy_lb" {
  count = local.scaled ? 1 : 0

  name_prefix = "${var.name}-proxylb-"
  description = "sqlgate internal Network Load Balancer: the gatekeepers to the proxies"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-proxylb" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "endpoint" {
  count = local.scaled ? 1 : 0

  name_prefix = "${var.name}-endpoint-"
  description = "sqlgate SSM interface endpoint: HTTPS from the gatekeepers and proxies"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-endpoint" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_https" {
  for_each = local.scaled ? toset(var.allowed_cidrs) : toset([])

  security_group_id = aws_security_group.lb[0].id
  description       = "HTTPS API from allowed client network ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value

  tags = { Name = "${var.name}-lb-https" }
}

resource "aws_vpc_security_group_egress_rule" "lb_to_gatekeeper" {
  count = local.scaled ? 1 : 0

  security_group_id            = aws_security_group.lb[0].id
  description                  = "Client connections and health checks to the gatekeepers"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.gatekeeper.id

  tags = { Name = "${var.name}-lb-to-gatekeeper" }
}

resource "aws_vpc_security_group_ingress_rule" "gatekeeper_from_lb" {
  count = local.scaled ? 1 : 0

  security_group_id            = aws_security_group.gatekeeper.id
  description                  = "HTTPS API and health checks from the public load balancer only"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lb[0].id

  tags = { Name = "${var.name}-gatekeeper-from-lb" }
}

resource "aws_vpc_security_group_ingress_rule" "proxy_lb_api" {
  count = local.scaled ? 1 : 0

  security_group_id            = aws_security_group.proxy_lb[0].id
  description                  = "Proxy API from the gatekeepers only"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = aws_security_group.gatekeeper.id

  tags = { Name = "${var.name}-proxylb-api" }
}

resource "aws_vpc_security_group_egress_rule" "proxy_lb_to_proxy" {
  count = local.scaled ? 1 : 0

  security_group_id            = aws_security_group.proxy_lb[0].id
  description                  = "Gatekeeper connections and health checks to the proxies"
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  referenced_security_group_id = aws_security_group.proxy.id

  tags = { Name = "${var.name}-proxylb-to-proxy" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoint_https" {
  for_each = local.scaled ? { gatekeeper = aws_security_group.gatekeeper.id, proxy = aws_security_group.proxy.id } : {}

  security_group_id            = aws_security_group.endpoint[0].id
  description                  = "SSM Parameter Store API from the ${each.key} instances (their configuration at boot)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = each.value

  tags = { Name = "${var.name}-endpoint-from-${each.key}" }
}

resource "aws_vpc_security_group_egress_rule" "ssm" {
  for_each = local.scaled ? { gatekeeper = aws_security_group.gatekeeper.id, proxy = aws_security_group.proxy.id } : {}

  security_group_id            = each.value
  description                  = "SSM Parameter Store through the VPC endpoint (configuration at boot)"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoint[0].id

  tags = { Name = "${var.name}-${each.key}-to-ssm" }
}
