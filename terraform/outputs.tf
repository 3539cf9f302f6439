output "gatekeeper_url" {
  description = "Public HTTPS URL of the API's only entry point: the gatekeeper's Elastic IP, or scaled out the public Network Load Balancer's DNS name."
  value       = local.scaled ? "https://${aws_lb.gatekeeper[0].dns_name}" : "https://${aws_eip.gatekeeper.public_ip}"
}

output "gatekeeper_public_ip" {
  description = "Elastic IP of the single gatekeeper (also the SSH jump host); it survives a replacement of the instance. Scaled out it stays allocated but unused, and this is null."
  value       = local.scaled ? null : aws_eip.gatekeeper.public_ip
}

output "scaled" {
  description = "Whether the gatekeepers and proxies are Auto Scaling groups behind Network Load Balancers (gatekeeper_count or proxy_count above one)."
  value       = local.scaled
}

output "load_balancer_dns_names" {
  description = "Scaled out: DNS names of the public (gatekeeper) and internal (proxy) Network Load Balancers; null otherwise."
  value       = local.scaled ? { gatekeeper = aws_lb.gatekeeper[0].dns_name, proxy = aws_lb.proxy[0].dns_name } : null
}

output "autoscaling_group_names" {
  description = "Scaled out: the gatekeepers' and proxies' Auto Scaling groups (their instances carry Role and sqlgate:deployment tags); null otherwise."
  value       = local.scaled ? { for k, g in aws_autoscaling_group.tier : k => g.name } : null
}

output "ssm_parameter_prefix" {
  description = "Scaled out: the SSM Parameter Store path under which each tier's SecureString parameters live (<prefix>/gatekeeper/..., <prefix>/proxy/...); null otherwise. Names only: the values are never Terraform's."
  value       = local.scaled ? local.ssm_prefix : null
}

output "deployment_id" {
  description = "Id of this deployment, tagged sqlgate:deployment on its resources, AMIs and snapshots."
  value       = var.deployment_id
}

output "vpc_id" {
  description = "The deployment's VPC; Packer builds the AMIs in it."
  value       = aws_vpc.this.id
}

output "public_subnet_id" {
  description = "The deployment's public subnet; Packer's build instances run in it (no default VPC needed)."
  value       = aws_subnet.public.id
}

output "data_volume_ids" {
  description = "Data volume of each database node (manager, worker-1, ...): MySQL's data directory, snapshotted daily."
  value = merge(
    { manager = aws_ebs_volume.manager_data.id },
    { for i, v in aws_ebs_volume.worker_data : "worker-${i + 1}" => v.id },
  )
}

output "backup_policy_id" {
  description = "Data Lifecycle Manager policy taking the daily data volume snapshots."
  value       = aws_dlm_lifecycle_policy.data.id
}

output "gatekeeper_private_ip" {
  description = "Private IPv4 address of the single gatekeeper; null when scaled out (Auto Scaling group members)."
  value       = one(aws_instance.gatekeeper[*].private_ip)
}

output "proxy_private_ip" {
  description = "Private IPv4 address of the single proxy; null when scaled out (Auto Scaling group members)."
  value       = one(aws_instance.proxy[*].private_ip)
}

output "proxy_url" {
  description = "Internal URL of the proxy tier (HTTPS, the deployment's CA), reachable from the gatekeepers only: the single proxy's address, or scaled out the internal Network Load Balancer's DNS name. The gatekeepers' GATEKEEPER_PROXY_URL."
  value       = local.proxy_url
}

output "manager_private_ip" {
  description = "Private IPv4 address of the MySQL manager (primary)."
  value       = aws_instance.manager.private_ip
}

output "worker_private_ips" {
  description = "Private IPv4 addresses of the MySQL workers (replicas), in order."
  value       = aws_instance.worker[*].private_ip
}

output "ami_ids" {
  description = "AMIs the instances run (app: gatekeeper and proxy; mysql: databases)."
  value       = { app = local.app_ami_id, mysql = local.mysql_ami_id }
}

output "ansible_inventory" {
  description = "Ansible inventory (YAML) of the deployment; make deploy writes it to .local/aws/inventory.yml."
  value = yamlencode({
    all = {
      vars = {
        ansible_user          = "ubuntu"
        sqlgate_aws_region    = var.region
        sqlgate_deployment_id = var.deployment_id
        # Host part of the MySQL accounts the proxy and the workers use.
        sqlgate_mysql_client_host = local.mysql_client_host
        sqlgate_proxy_url         = local.proxy_url
        # Scaled out: Ansible configures no gatekeeper or proxy host; it
        # writes their tiers' parameters to SSM (ssm.yml), and the private
        # hosts are reached through a running gatekeeper that make deploy
        # looks up by tag (sqlgate_jump_host, sqlgate_jump_instance_id).
        sqlgate_scaled     = local.scaled
        sqlgate_ssm_prefix = local.ssm_prefix
        sqlgate_ssm_key_id = local.scaled ? aws_kms_alias.ssm[0].name : ""
      }
      # Groups are plural: a group may not share its host's name.
      children = {
        gatekeepers = {
          hosts = { for g in aws_instance.gatekeeper : "gatekeeper" => {
            ansible_host        = aws_eip.gatekeeper.public_ip
            sqlgate_private_ip  = g.private_ip
            sqlgate_public_ip   = aws_eip.gatekeeper.public_ip
            sqlgate_instance_id = g.id
          } }
          vars = {
            # Host keys are remembered per instance id, so a replaced
            # gatekeeper on the same Elastic IP is a new host, not an attack.
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }} -o HostKeyAlias={{ sqlgate_instance_id }}"
          }
        }
        # Scaled out: each tier's configuration as one pseudo-host on the
        # controller, so sqlgate_tls issues the tier's certificate (for its
        # load balancer's name) and ssm.yml stores it with the tier's secrets.
        tiers = {
          hosts = { for t in local.tiers : t => {
            ansible_connection        = "local"
            ansible_host              = "127.0.0.1"
            sqlgate_tls_is_gatekeeper = t == "gatekeeper"
            sqlgate_tls_extra_dns     = [t == "gatekeeper" ? aws_lb.gatekeeper[0].dns_name : aws_lb.proxy[0].dns_name]
            sqlgate_ssm_tier_path     = "${local.ssm_prefix}/${t}"
            sqlgate_service_name      = t
          } }
        }
        # Reached through the gatekeeper, the only host with a public address.
        private = {
          vars = {
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }} -o HostKeyAlias={{ sqlgate_instance_id }} -o ProxyCommand=\"ssh {{ sqlgate_ssh_opts }} -o HostKeyAlias=${local.jump_instance_id} -i {{ ansible_ssh_private_key_file }} -W %h:%p -q ubuntu@${local.jump_host}\""
          }
          children = {
            proxies = {
              hosts = { for p in aws_instance.proxy : "proxy" => {
                ansible_host        = p.private_ip
                sqlgate_private_ip  = p.private_ip
                sqlgate_instance_id = p.id
              } }
            }
            managers = {
              hosts = {
                manager = {
                  ansible_host           = aws_instance.manager.private_ip
                  sqlgate_private_ip     = aws_instance.manager.private_ip
                  sqlgate_instance_id    = aws_instance.manager.id
                  sqlgate_server_id      = 1
                  sqlgate_data_volume_id = aws_ebs_volume.manager_data.id
                }
              }
            }
            workers = {
              hosts = {
                for i, w in aws_instance.worker : "worker-${i + 1}" => {
                  ansible_host           = w.private_ip
                  sqlgate_private_ip     = w.private_ip
                  sqlgate_instance_id    = w.id
                  sqlgate_server_id      = i + 2
                  sqlgate_data_volume_id = aws_ebs_volume.worker_data[i].id
                }
              }
            }
          }
        }
      }
    }
  })
}
