#!/usr/bin/env bash
# Bring the Ubuntu base image up to date, once, at build time: the instances
# run from it have no Internet route and never update themselves.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# cloud-init may still be writing apt sources on a fresh instance.
cloud-init status --wait >/dev/null || true

apt-get update -q
apt-get -q -y -o Dpkg::Options::=--force-confold upgrade
apt-get -q -y install --no-install-recommends ca-certificates curl jq
