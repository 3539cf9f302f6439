#!/usr/bin/env bash
# The AWS deploy path proved offline (make deploy-check): Terraform (fmt,
# validate, a real apply against a moto mock on loopback, then plans and an
# apply with new AMIs that must replace no database instance, data volume or
# Elastic IP, then destroy), checkov, Packer (fmt, validate, the build
# instance's lock-down), the operator's tools (pins resolve for Python 3.10
# and 3.11; no package manager is ever run), the systemd units' hardening,
# shell syntax, Ansible (syntax, lint, and the replication play run for real
# against three local MariaDB instances).
#
# CI's own tools come from check-tools.sh (make check-tools); the operator's
# path (make deploy) installs nothing outside its venv. Every step runs, each under a time limit; the summary
# line counts them and the exit code is non-zero if any failed. A step whose
# tool cannot be installed from a package registry (Terraform) is reported
# as SKIP, loudly, never as a pass.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
LOGS=$ROOT/.local/deploy-check
TF_PLUGIN_DIR=${TF_PLUGIN_DIR:-/opt/tf-plugins}
export PATH=$VENV/bin:$PATH
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0 NO_COLOR=1
export TF_CLI_CONFIG_FILE=$LOGS/terraformrc

export ROOT VENV TF_PLUGIN_DIR
passed=0 failed=0 skipped=0
failures=() skips=()
rm -rf "$LOGS" && mkdir -p "$LOGS" && : >"$TF_CLI_CONFIG_FILE"

cleanup() {
  # The moto server of the Terraform test, should that test have been killed.
  local pidfile=$ROOT/.local/tf-test/moto.pid
  if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
  # The local MariaDB instances of the Ansible test (run.sh stops them itself).
  if [[ -d $ROOT/.local/ansible-test/db ]]; then
    SQLGATE_LOCAL_DIR=$ROOT/.local/ansible-test SQLGATE_MANAGER_PORT=3417 SQLGATE_WORKER_PORTS="3418 3419" \
      "$ROOT/local/cluster.sh" stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step NAME SECONDS COMMAND...: runs COMMAND from the repo root under a time limit.
step() {
  local name=$1 limit=$2; shift 2
  local log=$LOGS/${name//[^A-Za-z0-9]/_}.log start=$SECONDS rc
  printf '%-52s ' "$name"
  if declare -F "$1" >/dev/null; then
    set -- bash -c "set -o pipefail; $1"
  fi
  (cd "$ROOT" && timeout --kill-after=20 "$limit" "$@") >"$log" 2>&1 </dev/null
  rc=$?
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1))
    printf 'PASS (%ss)\n' $((SECONDS - start))
  else
    failed=$((failed + 1))
    failures+=("$name")
    [[ $rc -eq 124 ]] && echo "(timed out after ${limit}s)" >>"$log"
    printf 'FAIL (%ss, exit %s)\n' $((SECONDS - start)) "$rc"
    echo "---- last lines of $log ----"
    tail -n 40 "$log"
    echo "----"
  fi
}

skip() {
  skipped=$((skipped + 1))
  skips+=("$1: $2")
  printf '%-52s SKIP\n' "$1"
  printf '\n!!!!! SKIP: %s: %s\n\n' "$1" "$2"
}

# --- Terraform ---------------------------------------------------------------
tf_reason=""
if ! command -v terraform >/dev/null; then
  tf_reason="terraform is not installed (no package registry ships it; install Terraform >= 1.5 to run this check)"
elif [[ ! -d $TF_PLUGIN_DIR/registry.terraform.io/hashicorp/aws ]]; then
  tf_reason="no hashicorp/aws provider mirror in $TF_PLUGIN_DIR (terraform init -plugin-dir needs it offline)"
fi

tf_validate() {
  local work=$ROOT/.local/tf-validate
  rm -rf "$work" && mkdir -p "$work" && cp terraform/*.tf "$work/"
  terraform -chdir="$work" init -input=false -no-color -plugin-dir="$TF_PLUGIN_DIR" &&
    terraform -chdir="$work" validate -no-color
}
export -f tf_validate

if command -v terraform >/dev/null; then
  step "terraform fmt -check" 60 terraform fmt -check -diff -recursive terraform
fi
if [[ -z $tf_reason ]]; then
  step "terraform validate" 120 tf_validate
  step "terraform+moto: apply; new AMIs keep the data" 900 \
    python -m pytest -p no:cacheprovider -q terraform/tests/test_moto.py
  step "terraform+moto: gatekeeper_count, proxy_count (NLB, ASG)" 900 \
    python -m pytest -p no:cacheprovider -q -rA terraform/tests/test_moto_scale.py
else
  skip "terraform $(command -v terraform >/dev/null || echo 'fmt, ')validate, apply/destroy against moto" "$tf_reason"
fi

step "checkov -d terraform" 300 checkov -d terraform --quiet --compact --skip-download

# --- The operator's tools ------------------------------------------------------
step "operator tools: py3.10/3.11 pins, no apt, hints" 900 \
  python -m pytest -p no:cacheprovider -q terraform/tests/test_operator_path.py

# --- Packer ------------------------------------------------------------------
# Debian's packer 1.6.6 predates required_plugins and the amazon plugin's
# imds_support and metadata_options: validate every file but plugins.pkr.hcl,
# from a staging directory (links to scripts/ and files/, so path.root
# resolves), with those two settings cut from copies of the templates. The
# operator path test checks that they are there (IMDSv2 on the builds).
packer_validate() {
  local stage=$ROOT/.local/packer-validate f
  rm -rf "$stage" && mkdir -p "$stage"
  for f in packer/*.pkr.hcl; do
    [[ $(basename "$f") == plugins.pkr.hcl ]] && continue
    sed -e '/^ *imds_support *=/d' -e '/^ *metadata_options *{/,/^ *}/d' "$f" >"$stage/$(basename "$f")"
  done
  ln -s "$ROOT/packer/scripts" "$ROOT/packer/files" "$stage/"
  : >"$stage/src.tar.gz"
  packer validate -var "source_tarball=$stage/src.tar.gz" -var deployment_id=check -var vpc_id=vpc-0123456789abcdef0 \
    -var subnet_id=subnet-0123456789abcdef0 -var 'ssh_source_cidrs=["203.0.113.7/32"]' "$stage"
}
export -f packer_validate

if command -v packer >/dev/null; then
  step "packer fmt -check" 60 packer fmt -check -diff packer
  step "packer validate (all but plugins.pkr.hcl)" 120 packer_validate
else
  step "packer installed (make check-tools)" 5 false
fi

# --- systemd units and scripts -------------------------------------------------
units_check() {
  local root=$ROOT/.local/units-check u out
  rm -rf "$root" && mkdir -p "$root/etc/systemd/system" "$root/usr/local/bin"
  cp packer/files/sqlgate-app/*.service "$root/etc/systemd/system/"
  for u in gatekeeper proxy; do printf '#!/bin/sh\n' >"$root/usr/local/bin/$u"; chmod +x "$root/usr/local/bin/$u"; done
  for u in gatekeeper proxy; do
    out=$(systemd-analyze security --offline=true --threshold=20 --root="$root" "$u.service" 2>&1) ||
      { echo "$out"; echo "$u.service: exposure above 2.0 (threshold 20 of 100) or unit rejected"; return 1; }
    if grep -Eiq 'unknown (key|lvalue|section)|failed to parse|ignoring' <<<"$out"; then
      echo "$out"; echo "$u.service: systemd rejected a setting"; return 1
    fi
    grep -q "^User=sqlgate-$u$" "$root/etc/systemd/system/$u.service" || { echo "$u: no dedicated user"; return 1; }
    grep "Overall exposure" <<<"$out"
  done
  grep -qx 'AmbientCapabilities=CAP_NET_RAW' "$root/etc/systemd/system/proxy.service" &&
    grep -qx 'CapabilityBoundingSet=CAP_NET_RAW' "$root/etc/systemd/system/proxy.service" ||
    { echo "proxy.service must hold CAP_NET_RAW and nothing more"; return 1; }
}
export -f units_check
if systemd-analyze --help 2>/dev/null | grep -q -- --offline; then
  step "systemd units: hardening (systemd-analyze security)" 60 units_check
else
  skip "systemd units: hardening" "systemd-analyze without --offline (needs systemd >= 250)"
fi

shell_check() {
  local f
  for f in packer/scripts/*.sh packer/files/*/*.sh terraform/tools/*.sh ansible/tests/*.sh scripts/*.sh; do bash -n "$f" || return 1; done
  if command -v shellcheck >/dev/null; then
    shellcheck -S warning packer/scripts/*.sh packer/files/*/*.sh terraform/tools/*.sh ansible/tests/*.sh scripts/*.sh
  else
    echo "shellcheck not installed: bash -n only"
  fi
}
export -f shell_check
step "shell scripts: syntax" 60 shell_check

# --- Ansible -------------------------------------------------------------------
ansible_syntax() {
  cd ansible && export ANSIBLE_CONFIG=$PWD/ansible.cfg &&
    ansible-playbook --syntax-check -i tests/inventory.yml site.yml replication.yml services.yml sysbench.yml backup.yml
}
export -f ansible_syntax
step "ansible-playbook --syntax-check" 120 ansible_syntax
step "ansible-lint (production profile)" 300 bash -c 'cd ansible && ansible-lint --profile production'
step "replication play for real (db_flavor=mariadb, local)" 600 ansible/tests/run.sh

# --- Summary -------------------------------------------------------------------
echo
for s in "${skips[@]}"; do echo "!!!!! SKIPPED: $s"; done
for f in "${failures[@]}"; do echo "FAILED: $f (log: $LOGS/${f//[^A-Za-z0-9]/_}.log)"; done
echo "deploy-check: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
