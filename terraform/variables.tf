variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as us-east-1."
  }
}

variable "name" {
  description = "Name prefix of every resource, and the Project tag."
  type        = string
  default     = "sqlgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "The name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment tag (dev, test, prod, ...)."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z0-9-]{1,16}$", var.environment))
    error_message = "The environment must be 1-16 lowercase letters, digits or hyphens."
  }
}

variable "deployment_id" {
  description = "Id of this deployment (make deploy generates one and keeps it in .local/aws/deployment-id): tagged on every resource and AMI, it selects this deployment's AMIs, volumes and snapshots."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{3,31}$", var.deployment_id))
    error_message = "The deployment_id must be 4-32 lowercase letters, digits or hyphens."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the dedicated VPC; the public and private subnets are its first two /24s, the second zone's public subnet its third."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 22
    error_message = "The vpc_cidr must be an IPv4 CIDR block of /22 or larger."
  }
}

variable "availability_zone" {
  description = "Availability zone of the databases, the proxies and the first public subnet; null picks the region's first available zone."
  type        = string
  default     = null
}

variable "second_availability_zone" {
  description = "Availability zone of the second public subnet (the load-balanced gatekeepers' other zone); null picks the next available zone after availability_zone."
  type        = string
  default     = null
}

variable "allowed_cidrs" {
  description = "CIDR blocks allowed to reach the gatekeeper's HTTPS port (443), the API's clients; port 80 is closed."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrnetmask(c))])
    error_message = "The allowed_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "admin_cidr" {
  description = "The one CIDR block (usually your address as a /32) allowed to SSH into the gatekeeper, the jump host."
  type        = string

  validation {
    condition     = can(cidrnetmask(var.admin_cidr)) && tonumber(split("/", var.admin_cidr)[1]) >= 16
    error_message = "The admin_cidr must be an IPv4 CIDR block no larger than a /16 (never 0.0.0.0/0), e.g. 203.0.113.7/32."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key installed for the ubuntu user on every instance (make deploy generates one under .local/aws/ssh)."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "The ssh_public_key must be an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256)."
  }
}

variable "worker_count" {
  description = "Number of MySQL replicas (workers) behind the manager."
  type        = number
  default     = 2

  validation {
    condition     = var.worker_count >= 1 && var.worker_count <= 10 && floor(var.worker_count) == var.worker_count
    error_message = "The worker_count must be a whole number from 1 to 10."
  }
}

variable "gatekeeper_count" {
  description = "Number of gatekeepers. 1: the single gatekeeper instance on its Elastic IP, configured by Ansible. More: an Auto Scaling group of that size across two availability zones behind an Internet-facing Network Load Balancer (TLS passthrough on 443), each instance configured at boot from SSM Parameter Store (docs/deploy.md, Scaling out)."
  type        = number
  default     = 1

  validation {
    condition     = var.gatekeeper_count >= 1 && var.gatekeeper_count <= 20 && floor(var.gatekeeper_count) == var.gatekeeper_count
    error_message = "The gatekeeper_count must be a whole number from 1 to 20."
  }
}

variable "proxy_count" {
  description = "Number of proxies. 1 (with gatekeeper_count 1): the single proxy instance. More (or gatekeeper_count above 1): an Auto Scaling group of that size behind an internal Network Load Balancer that the gatekeepers' GATEKEEPER_PROXY_URL names, configured at boot from SSM Parameter Store."
  type        = number
  default     = 1

  validation {
    condition     = var.proxy_count >= 1 && var.proxy_count <= 20 && floor(var.proxy_count) == var.proxy_count
    error_message = "The proxy_count must be a whole number from 1 to 20."
  }
}

variable "gatekeeper_instance_type" {
  description = "Instance type of the gatekeeper."
  type        = string
  default     = "t3.micro"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.gatekeeper_instance_type))
    error_message = "The gatekeeper_instance_type must be an EC2 instance type such as t3.micro."
  }
}

variable "proxy_instance_type" {
  description = "Instance type of the proxy."
  type        = string
  default     = "t3.micro"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.proxy_instance_type))
    error_message = "The proxy_instance_type must be an EC2 instance type such as t3.micro."
  }
}

variable "db_instance_type" {
  description = "Instance type of the manager and the workers (MySQL 8.0 wants >= 2 GiB)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.db_instance_type))
    error_message = "The db_instance_type must be an EC2 instance type such as t3.small."
  }
}

variable "root_volume_size" {
  description = "Size in GiB of each instance's encrypted gp3 root volume (at least the AMI's 16 GiB); database data is on its own volume (db_data_volume_size)."
  type        = number
  default     = 16

  validation {
    condition     = var.root_volume_size >= 16 && var.root_volume_size <= 1024
    error_message = "The root_volume_size must be between 16 and 1024 GiB."
  }
}

variable "db_data_volume_size" {
  description = "Size in GiB of each database node's encrypted gp3 data volume (MySQL's data directory). Growing it is an in-place change; shrinking is refused by AWS."
  type        = number
  default     = 20

  validation {
    condition     = var.db_data_volume_size >= 8 && var.db_data_volume_size <= 16384
    error_message = "The db_data_volume_size must be between 8 and 16384 GiB."
  }
}

variable "db_data_device_name" {
  description = "Device name the data volumes are attached as (Nitro instances show them as NVMe devices; Ansible finds them by volume id)."
  type        = string
  default     = "/dev/sdf"

  validation {
    condition     = can(regex("^/dev/sd[f-p]$", var.db_data_device_name))
    error_message = "The db_data_device_name must be one of /dev/sdf ... /dev/sdp."
  }
}

variable "backup_retention_days" {
  description = "Daily snapshots of each data volume the Data Lifecycle Manager keeps (one a day, so also the number of days)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 1000 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "The backup_retention_days must be a whole number from 1 to 1000."
  }
}

variable "backup_time" {
  description = "Time of day (UTC, hh:mm) the daily data volume snapshots start."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.backup_time))
    error_message = "The backup_time must be a UTC time of day as hh:mm, e.g. 03:00."
  }
}

variable "app_ami_id" {
  description = "AMI of the gatekeeper and proxy; null takes the newest AMI of this account tagged sqlgate:role=app and this deployment_id (built by make deploy). A new one replaces both (they hold no data)."
  type        = string
  default     = null

  validation {
    condition     = var.app_ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.app_ami_id))
    error_message = "The app_ami_id must be null or an AMI id (ami-...)."
  }
}

variable "mysql_ami_id" {
  description = "AMI of new database nodes; null takes the newest AMI of this account tagged sqlgate:role=mysql and this deployment_id. Existing database instances ignore a change (updated in place by Ansible)."
  type        = string
  default     = null

  validation {
    condition     = var.mysql_ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.mysql_ami_id))
    error_message = "The mysql_ami_id must be null or an AMI id (ami-...)."
  }
}

variable "flow_logs_retention_days" {
  description = "Days CloudWatch keeps the VPC flow logs (they are deleted with the deployment)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_logs_retention_days)
    error_message = "The flow_logs_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ...)."
  }
}
