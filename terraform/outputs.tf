output "gatekeeper_url" {
  description = "Public HTTPS URL of the gatekeeper (the API's only entry point), on its Elastic IP."
  value       = "https://${aws_eip.gatekeeper.public_ip}"
}

output "gatekeeper_public_ip" {
  description = "Elastic IP of the gatekeeper (also the SSH jump host); it survives a replacement of the instance."
  value       = aws_eip.gatekeeper.public_ip
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
  description = "Private IPv4 address of the gatekeeper."
  value       = aws_instance.gatekeeper.private_ip
}

output "proxy_private_ip" {
  description = "Private IPv4 address of the proxy; the gatekeeper's GATEKEEPER_PROXY_URL points at it."
  value       = aws_instance.proxy.private_ip
}

output "proxy_url" {
  description = "Internal URL of the proxy (HTTPS, the deployment's CA), reachable from the gatekeeper only."
  value       = "https://${aws_instance.proxy.private_ip}:5000"
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
        sqlgate_proxy_url         = "https://${aws_instance.proxy.private_ip}:5000"
      }
      # Groups are plural: a group may not share its host's name.
      children = {
        gatekeepers = {
          hosts = {
            gatekeeper = {
              ansible_host        = aws_eip.gatekeeper.public_ip
              sqlgate_private_ip  = aws_instance.gatekeeper.private_ip
              sqlgate_public_ip   = aws_eip.gatekeeper.public_ip
              sqlgate_instance_id = aws_instance.gatekeeper.id
            }
          }
          vars = {
            # Host keys are remembered per instance id, so a replaced
            # gatekeeper on the same Elastic IP is a new host, not an attack.
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }} -o HostKeyAlias={{ sqlgate_instance_id }}"
          }
        }
        # Reached through the gatekeeper, the only host with a public address.
        private = {
          vars = {
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }} -o HostKeyAlias={{ sqlgate_instance_id }} -o ProxyCommand=\"ssh {{ sqlgate_ssh_opts }} -o HostKeyAlias=${aws_instance.gatekeeper.id} -i {{ ansible_ssh_private_key_file }} -W %h:%p -q ubuntu@${aws_eip.gatekeeper.public_ip}\""
          }
          children = {
            proxies = {
              hosts = {
                proxy = {
                  ansible_host        = aws_instance.proxy.private_ip
                  sqlgate_private_ip  = aws_instance.proxy.private_ip
                  sqlgate_instance_id = aws_instance.proxy.id
                }
              }
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
