#!/usr/bin/env bash
# Install the binaries and their hardened units. Each service runs as its own
# system user with no shell and no home; the units stay disabled until
# Ansible has delivered their env files and secrets (none is in the image).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

install -o root -g root -m 0755 /tmp/sqlgate-bin/gatekeeper /usr/local/bin/gatekeeper
install -o root -g root -m 0755 /tmp/sqlgate-bin/proxy /usr/local/bin/proxy

for user in sqlgate-gatekeeper sqlgate-proxy; do
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin --user-group "$user"
  fi
done

install -d -o root -g root -m 0755 /etc/sqlgate
install -o root -g root -m 0644 /tmp/sqlgate-app/gatekeeper.service /etc/systemd/system/gatekeeper.service
install -o root -g root -m 0644 /tmp/sqlgate-app/proxy.service /etc/systemd/system/proxy.service

# Scaled out (an Auto Scaling group), an instance configures itself from SSM
# Parameter Store at boot: the AWS CLI, the script and its unit, enabled (it
# does nothing without the /etc/sqlgate/ssm.env the launch template writes).
apt-get install -y --no-install-recommends awscli
install -o root -g root -m 0755 /tmp/sqlgate-app/sqlgate-ssm-config.sh /usr/local/sbin/sqlgate-ssm-config
install -o root -g root -m 0644 /tmp/sqlgate-app/sqlgate-ssm-config.service /etc/systemd/system/sqlgate-ssm-config.service
systemctl daemon-reload
systemctl enable sqlgate-ssm-config.service

# Refuse an image whose units systemd would not accept.
systemd-analyze verify /etc/systemd/system/gatekeeper.service /etc/systemd/system/proxy.service \
  /etc/systemd/system/sqlgate-ssm-config.service

