output "gatekeeper_url" {
  description = "Public URL of the gatekeeper (the API's only entry point)."
  value       = "http://${aws_instance.gatekeeper.public_ip}"
}

output "gatekeeper_public_ip" {
  description = "Public IPv4 address of the gatekeeper (also the SSH jump host)."
  value       = aws_instance.gatekeeper.public_ip
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
  description = "Internal URL of the proxy, reachable from the gatekeeper only."
  value       = "http://${aws_instance.proxy.private_ip}:5000"
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
        ansible_user = "ubuntu"
        # Host part of the MySQL accounts the proxy and the workers use.
        sqlgate_mysql_client_host = local.mysql_client_host
        sqlgate_proxy_url         = "http://${aws_instance.proxy.private_ip}:5000"
      }
      # Groups are plural: a group may not share its host's name.
      children = {
        gatekeepers = {
          hosts = {
            gatekeeper = {
              ansible_host       = aws_instance.gatekeeper.public_ip
              sqlgate_private_ip = aws_instance.gatekeeper.private_ip
            }
          }
          vars = {
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }}"
          }
        }
        # Reached through the gatekeeper, the only host with a public address.
        private = {
          vars = {
            ansible_ssh_common_args = "{{ sqlgate_ssh_opts }} -o ProxyCommand=\"ssh {{ sqlgate_ssh_opts }} -i {{ ansible_ssh_private_key_file }} -W %h:%p -q ubuntu@${aws_instance.gatekeeper.public_ip}\""
          }
          children = {
            proxies = {
              hosts = {
                proxy = {
                  ansible_host       = aws_instance.proxy.private_ip
                  sqlgate_private_ip = aws_instance.proxy.private_ip
                }
              }
            }
            managers = {
              hosts = {
                manager = {
                  ansible_host       = aws_instance.manager.private_ip
                  sqlgate_private_ip = aws_instance.manager.private_ip
                  sqlgate_server_id  = 1
                }
              }
            }
            workers = {
              hosts = {
                for i, w in aws_instance.worker : "worker-${i + 1}" => {
                  ansible_host       = w.private_ip
                  sqlgate_private_ip = w.private_ip
                  sqlgate_server_id  = i + 2
                }
              }
            }
          }
        }
      }
    }
  })
}
