#!/usr/bin/env bash
# Leave nothing of the build in the image: no toolchain, no sources, no
# uploaded files, no host keys or machine id shared by every instance.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

rm -rf /home/ubuntu/.cargo /home/ubuntu/.rustup /home/ubuntu/sqlgate \
  /tmp/sqlgate-src.tar.gz /tmp/sqlgate-bin /tmp/sqlgate-app /tmp/sqlgate-mysql

apt-get -q -y autoremove --purge
apt-get -q -y clean
rm -rf /var/lib/apt/lists/*

# Regenerated at first boot (host keys by cloud-init), so instances share none.
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
cloud-init clean --logs
