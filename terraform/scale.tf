# Scaled out (gatekeeper_count or proxy_count above one, local.scaled): the
# gatekeepers are an Auto Scaling group across two zones behind an
# Internet-facing Network Load Balancer, and the proxies an Auto Scaling group
# behind an internal one, which the gatekeepers' GATEKEEPER_PROXY_URL names.
#
# Both balancers pass TLS through (TCP listeners): the gatekeepers keep
# terminating the clients' TLS with the deployment's certificate and the
# proxies the gatekeepers', so the end-to-end design holds and no ACM
# certificate is needed (docs/decisions.md, decision 27). Health checks are
# HTTPS GET /health on the service's own port (liveness: a target that fails
# them gets no new connections, and its group replaces it).
#
# Every instance configures itself at boot from SSM (ssm.tf): AWS replaces a
# failed one with no person involved. The databases stay plain instances.

locals {
  # What each tier's launch template and group are made of.
  tier = {
    gatekeeper = {
      count   = var.gatekeeper_count
      type    = var.gatekeeper_instance_type
      port    = 443
      subnets = [aws_subnet.public.id, aws_subnet.public_second.id]
      group   = aws_security_group.gatekeeper.id
      # A public address for SSH from admin_cidr only (the jump host to the
      # databases); the API's 443 admits only the balancer's group.
      public = true
    }
    proxy = {
      count   = var.proxy_count
      type    = var.proxy_instance_type
      port    = 5000
      subnets = [aws_subnet.private.id]
      group   = aws_security_group.proxy.id
      public  = false
    }
  }
}

resource "aws_lb" "gatekeeper" {
  count = local.scaled ? 1 : 0

  name_prefix                      = "sg-gk-"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = [aws_subnet.public.id, aws_subnet.public_second.id]
  security_groups                  = [aws_security_group.lb[0].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = false # checkov:skip=CKV_AWS_150:terraform destroy (make destroy, after its own confirmation) must remove it; the data it protects lives on the database volumes, which are guarded.
  # checkov:skip=CKV_AWS_91:Access logs of a TCP passthrough listener hold only connection metadata, which the VPC flow logs already record; the gatekeepers log every request.

  tags = { Name = "${var.name}-gatekeeper" }
}

resource "aws_lb" "proxy" {
  count = local.scaled ? 1 : 0

  name_prefix                      = "sg-px-"
  load_balancer_type               = "network"
  internal                         = true
  subnets                          = [aws_subnet.private.id]
  security_groups                  = [aws_security_group.proxy_lb[0].id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = false # checkov:skip=CKV_AWS_150:terraform destroy (make destroy, after its own confirmation) must remove it; it holds no data.
  # checkov:skip=CKV_AWS_91:Access logs of a TCP passthrough listener hold only connection metadata, which the VPC flow logs already record; the proxies log every request.

  tags = { Name = "${var.name}-proxy" }
}

resource "aws_lb_target_group" "tier" {
  for_each = local.tiers

  name_prefix = each.key == "gatekeeper" ? "sg-gk-" : "sg-px-"
  port        = local.tier[each.key].port
  protocol    = "TCP"
  vpc_id      = aws_vpc.this.id
  target_type = "instance"
  # A replaced or scaled-in instance finishes its requests (the gatekeeper's
  # own limit is 30 s, a stream's 130 s) before it leaves.
  deregistration_delay = 135

  health_check {
    protocol            = "HTTPS"
    port                = "traffic-port"
    path                = "/health"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = { Name = "${var.name}-${each.key}" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "tier" {
  for_each = local.tiers

  load_balancer_arn = each.key == "gatekeeper" ? aws_lb.gatekeeper[0].arn : aws_lb.proxy[0].arn
  port              = local.tier[each.key].port
  protocol          = "TCP" # checkov:skip=CKV_AWS_2:TLS passthrough: the gatekeepers and proxies terminate TLS themselves with the deployment's certificates (decision 27); the balancer never sees plaintext.
  # checkov:skip=CKV_AWS_103:Same: TCP passthrough of the services' own TLS 1.2+ (rustls), not a TLS listener.

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.tier[each.key].arn
  }

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_launch_template" "tier" {
  for_each = local.tiers

  name_prefix            = "${var.name}-${each.key}-"
  image_id               = local.app_ami_id
  instance_type          = local.tier[each.key].type
  key_name               = aws_key_pair.admin.key_name
  ebs_optimized          = true
  update_default_version = true
  # Not secret: which tier this is and where its parameters are. The
  # instance reads the parameters with its role (ssm.tf), never from here.
  user_data = base64encode(<<-EOT
    #!/bin/sh
    set -eu
    umask 022
    mkdir -p /etc/sqlgate
    cat >/etc/sqlgate/ssm.env <<EOF
    SQLGATE_SSM_ROLE=${each.key}
    SQLGATE_SSM_PATH=${local.ssm_prefix}/${each.key}
    AWS_REGION=${var.region}
    AWS_DEFAULT_REGION=${var.region}
    EOF
    systemctl start --no-block sqlgate-ssm-config.service
  EOT
  )

  iam_instance_profile {
    arn = aws_iam_instance_profile.tier[each.key].arn
  }

  monitoring {
    enabled = false # Basic 5-minute metrics suffice, as for the plain instances.
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  network_interfaces {
    associate_public_ip_address = local.tier[each.key].public
    security_groups             = [local.tier[each.key].group]
    delete_on_termination       = true
  }

  block_device_mappings {
    device_name = "/dev/sda1"

    ebs {
      volume_type           = "gp3"
      volume_size           = var.root_volume_size
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-${each.key}", Role = each.key })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = "${var.name}-${each.key}", Role = each.key })
  }

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_autoscaling_group" "tier" {
  for_each = local.tiers

  name_prefix         = "${var.name}-${each.key}-"
  min_size            = local.tier[each.key].count
  max_size            = local.tier[each.key].count
  desired_capacity    = local.tier[each.key].count
  vpc_zone_identifier = local.tier[each.key].subnets
  target_group_arns   = [aws_lb_target_group.tier[each.key].arn]
  # The balancer's health check decides: a hung service is replaced too.
  health_check_type         = "ELB"
  health_check_grace_period = 300

  launch_template {
    id      = aws_launch_template.tier[each.key].id
    version = aws_launch_template.tier[each.key].latest_version
  }

  # A new app AMI or setting replaces the instances a few at a time, each
  # new one healthy before the next old one goes.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = "${var.name}-${each.key}", Role = each.key })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
