#!/usr/bin/env bash
# Installs what the deploy path and its offline proof need (make deploy-tools):
# Debian packages (MariaDB, sysbench, Packer for validation, shellcheck), then a Python
# venv with ansible, ansible-lint, checkov, moto, boto3, PyMySQL, pytest at
# the versions of ansible/requirements.txt + constraints.txt. Idempotent: a
# second run checks a stamp and returns in well under a second.
#
# Terraform and its AWS provider cannot come from a package registry: the
# Terraform checks use /usr/local/bin/terraform and the mirror in
# /opt/tf-plugins when present and say SKIP loudly when not.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
REQ=$ROOT/ansible/requirements.txt
CONSTRAINTS=$ROOT/ansible/constraints.txt
APT_PACKAGES=(mariadb-server mariadb-client sysbench packer openssh-client shellcheck python3 python3-venv)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { echo "deploy-tools: install ${missing[*]} with your package manager" >&2; exit 1; }
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "deploy-tools: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

stamp=$VENV/.sqlgate-deploy-tools
want=$(cat "$REQ" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)
if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi

python=${PYTHON:-python3}
echo "deploy-tools: creating $VENV (ansible, ansible-lint, checkov, moto, boto3; a minute or two, once)"
rm -rf "$VENV"
"$python" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" -c "$CONSTRAINTS"
# community.mysql comes inside the ansible package; fail here if it did not.
"$VENV/bin/ansible-galaxy" collection list community.mysql 2>/dev/null | grep -q community.mysql ||
  { echo "deploy-tools: community.mysql is missing from the ansible package" >&2; exit 1; }
echo "$want" >"$stamp"
echo "deploy-tools: ready ($("$VENV/bin/ansible" --version | head -n1), checkov $("$VENV/bin/checkov" --version))"
