# Inputs shared by the two image templates (app.pkr.hcl, mysql.pkr.hcl).
# `make deploy` passes every one of them; the defaults suit a manual build.

variable "region" {
  description = "AWS region the AMIs are built and registered in."
  type        = string
  default     = "us-east-1"
}

variable "deployment_id" {
  description = "Id of the deployment the AMIs belong to (tag sqlgate:deployment); make destroy removes only its own AMIs."
  type        = string
}

variable "vpc_id" {
  description = "VPC the build instances run in (make deploy passes the deployment's own; no default VPC needed)."
  type        = string
}

variable "subnet_id" {
  description = "Public subnet of vpc_id the build instances run in; they get a public address for SSH."
  type        = string
}

variable "ssh_source_cidrs" {
  description = "Networks the temporary build security group admits SSH from: the operator's address (make deploy passes ADMIN_CIDR)."
  type        = list(string)
}

variable "git_commit" {
  description = "Git commit the images are built from (tagged on each AMI)."
  type        = string
  default     = "unknown"
}

variable "app_source_hash" {
  description = "Hash of the service sources and app template; `make deploy` builds a new app AMI only when no AMI carries it."
  type        = string
  default     = "manual"
}

variable "mysql_source_hash" {
  description = "Hash of the mysql template and its scripts; `make deploy` builds a new mysql AMI only when no AMI carries it."
  type        = string
  default     = "manual"
}

variable "source_tarball" {
  description = "Tarball of the Cargo workspace (no target/, no .git) uploaded to the app build instance."
  type        = string
  default     = "../.local/aws/sqlgate-src.tar.gz"
}

variable "rust_toolchain" {
  description = "Rust toolchain rustup installs on the app build instance (the workspace needs >= 1.80)."
  type        = string
  default     = "1.95.0"
}

variable "app_build_instance_type" {
  description = "Instance type compiling the services; release builds need several cores and >= 4 GiB."
  type        = string
  default     = "c6i.xlarge"
}

variable "mysql_build_instance_type" {
  description = "Instance type installing MySQL and loading sakila."
  type        = string
  default     = "t3.small"
}

variable "sakila_url" {
  description = "The official sakila sample database archive (dev.mysql.com)."
  type        = string
  default     = "https://downloads.mysql.com/docs/sakila-db.tar.gz"
}

locals {
  # One timestamp for both images of a build, so their names pair up.
  timestamp = formatdate("YYYYMMDDhhmmss", timestamp())

  # Canonical's account; the filter takes its latest Ubuntu 22.04 (jammy) amd64 image.
  ubuntu_owner = "099720109477"
  ubuntu_name  = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"

  tags = {
    Project              = "sqlgate"
    ManagedBy            = "packer"
    "sqlgate:deployment" = var.deployment_id
    "sqlgate:commit"     = var.git_commit
    "sqlgate:base-ami"   = "{{ .SourceAMI }}"
  }
}
