# Scaled out, a gatekeeper or proxy that AWS launches (a new one, or the
# replacement of a failed one) configures itself: at boot it reads its tier's
# SecureString parameters under ${local.ssm_prefix}/<tier>/ from SSM
# Parameter Store (packer/files/sqlgate-app/sqlgate-ssm-config.sh). Ansible
# writes them from the operator's machine (ansible/ssm.yml), so no secret is
# in Terraform's state, the user data, an image or the repository.
#
# Each tier has its own role, allowed to read its own path and nothing else
# (a gatekeeper never sees a database password), and to decrypt with this
# deployment's key only for parameters under that path. The private subnet
# has no route out: the instances reach SSM through an interface endpoint.

data "aws_caller_identity" "current" {
  count = local.scaled ? 1 : 0
}

locals {
  tiers = local.scaled ? toset(["gatekeeper", "proxy"]) : toset([])

  ssm_arn_prefix = local.scaled ? "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current[0].account_id}:parameter${local.ssm_prefix}" : ""
}

data "aws_iam_policy_document" "ssm_key" {
  count = local.scaled ? 1 : 0
  # checkov:skip=CKV_AWS_111:A key policy: "*" is this key alone, and the principal is the account itself (AWS's default key policy), which then delegates to IAM; the instances get Decrypt only through their tier's policy.
  # checkov:skip=CKV_AWS_356:Same: in a key policy the resource "*" means this key.
  # checkov:skip=CKV_AWS_109:Same: key administration stays with the account (as in AWS's default key policy), never a wider principal.

  # The account administers the key (the operator's identity encrypts with it
  # through SSM); the instances' roles get Decrypt from their own policies.
  statement {
    sid       = "Account"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current[0].account_id}:root"]
    }
  }
}

resource "aws_kms_key" "ssm" {
  count = local.scaled ? 1 : 0

  description             = "${var.name} ${var.deployment_id}: the gatekeepers' and proxies' SSM parameters"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.ssm_key[0].json

  tags = { Name = "${var.name}-ssm" }
}

resource "aws_kms_alias" "ssm" {
  count = local.scaled ? 1 : 0

  name          = "alias/${var.name}-${var.deployment_id}-ssm"
  target_key_id = aws_kms_key.ssm[0].key_id
}

data "aws_iam_policy_document" "instance_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "tier" {
  for_each = local.tiers

  statement {
    sid       = "ReadOwnParameters"
    actions   = ["ssm:GetParametersByPath", "ssm:GetParameters", "ssm:GetParameter"]
    resources = ["${local.ssm_arn_prefix}/${each.key}", "${local.ssm_arn_prefix}/${each.key}/*"]
  }

  statement {
    sid       = "DecryptOwnParameters"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.ssm[0].arn]

    # SSM names the parameter in the encryption context: this key decrypts
    # this tier's parameters only, for this role.
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:PARAMETER_ARN"
      values   = ["${local.ssm_arn_prefix}/${each.key}/*"]
    }
  }
}

resource "aws_iam_role" "tier" {
  for_each = local.tiers

  name_prefix        = "${var.name}-${each.key}-"
  assume_role_policy = data.aws_iam_policy_document.instance_assume.json

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_iam_role_policy" "tier" {
  for_each = local.tiers

  name_prefix = "${var.name}-${each.key}-ssm-"
  role        = aws_iam_role.tier[each.key].id
  policy      = data.aws_iam_policy_document.tier[each.key].json
}

resource "aws_iam_instance_profile" "tier" {
  for_each = local.tiers

  name_prefix = "${var.name}-${each.key}-"
  role        = aws_iam_role.tier[each.key].name

  tags = { Name = "${var.name}-${each.key}" }
}

# The private subnet has no route out; the gatekeepers, though public, use
# it too (private DNS answers the SSM name with the endpoint's addresses), so
# their egress needs no Internet rule.
resource "aws_vpc_endpoint" "ssm" {
  count = local.scaled ? 1 : 0

  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.ssm"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [aws_subnet.private.id]
  security_group_ids  = [aws_security_group.endpoint[0].id]
  private_dns_enabled = true

  tags = { Name = "${var.name}-ssm" }
}
