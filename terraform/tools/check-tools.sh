#!/usr/bin/env bash
# CI's tools for the offline proof (make deploy-check), never needed by
# make deploy: the Debian packages the local replication test and the linters
# use (MariaDB, sysbench, Debian's packer 1.6 for validate, shellcheck), the
# operator's venv (deploy-tools.sh venv), and on top of it, in the same venv,
# ansible-lint, checkov, moto, PyMySQL and pytest (ansible/requirements-check.txt).
# Idempotent: a second run checks dpkg and a stamp and returns in about a second.
#
# Terraform and its AWS provider cannot come from a package registry: the
# Terraform checks use the terraform on PATH and the mirror in /opt/tf-plugins
# when present and say SKIP loudly when not.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
REQ_CHECK=$ROOT/ansible/requirements-check.txt
CONSTRAINTS=$ROOT/ansible/constraints.txt
# CI only: the local MariaDB cluster of ansible/tests/run.sh, shellcheck,
# Debian's packer (validate only), and a Python with venv for the tools.
APT_PACKAGES=(mariadb-server mariadb-client sysbench packer openssh-client shellcheck python3 python3-venv)

"$ROOT/scripts/os-packages.sh" --for "check-tools (CI)" "${APT_PACKAGES[@]}"

DEPLOY_VENV=$VENV "$ROOT/terraform/tools/deploy-tools.sh" venv

stamp=$VENV/.sqlgate-check-tools
want=$(cat "$REQ_CHECK" "$CONSTRAINTS" | cksum)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
echo "check-tools: adding ansible-lint, checkov, moto, PyMySQL, pytest to $VENV (a minute or two, once)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ_CHECK" -c "$CONSTRAINTS"
echo "$want" >"$stamp"
# Versions from the package metadata: running ansible-lint here would leave a .ansible/ cache in the cwd.
echo "check-tools: ready ($("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("ansible-lint", "checkov", "moto")))'))"
