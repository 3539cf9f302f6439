#!/usr/bin/env bash
# The operator's tools for make deploy / destroy / backup (make deploy-tools).
#
#   terraform/tools/deploy-tools.sh [check [deploy|destroy|backup]] [venv]
#
# check: Python >= 3.10 (with venv), Terraform >= 1.5, Packer >= 1.9 (deploy
#        only), ssh, ssh-keygen and git must be on PATH; for each one missing
#        or too old it says exactly what to install, for Debian/Ubuntu and for
#        macOS, and exits 1. It installs nothing.
# venv:  a Python venv (.local/venv-deploy) with the pinned Ansible and boto3
#        of ansible/requirements.txt + constraints.txt. Idempotent: a second
#        run checks a stamp and returns in well under a second.
# With no argument: check deploy, then venv.
#
# This script never calls a system package manager: everything it installs
# goes into the venv. CI's own test tools (MariaDB, shellcheck, Debian's
# packer for validation, checkov, moto) are installed by check-tools.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
REQ=$ROOT/ansible/requirements.txt
CONSTRAINTS=$ROOT/ansible/constraints.txt

# version_ge A B: dotted version A >= B (no sort -V: macOS's sort may lack it).
version_ge() {
  local IFS=. i
  local -a a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  for i in 0 1 2; do
    ((10#${a[i]:-0} > 10#${b[i]:-0})) && return 0
    ((10#${a[i]:-0} < 10#${b[i]:-0})) && return 1
  done
  return 0
}

HASHICORP_APT='wget -O- https://apt.releases.hashicorp.com/gpg | sudo gpg --dearmor -o /usr/share/keyrings/hashicorp-archive-keyring.gpg
      echo "deb [signed-by=/usr/share/keyrings/hashicorp-archive-keyring.gpg] https://apt.releases.hashicorp.com $(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/hashicorp.list
      sudo apt update &&'

# hint TOOL: what to install, for Debian/Ubuntu and for macOS (printed, never run).
hint() {
  local deb mac
  case $1 in
    python)
      deb="sudo apt install python3 python3-venv   (Ubuntu 22.04 has 3.10; Debian 11 has 3.9: use a newer release or pyenv)"
      mac="brew install python@3.12   (Apple's /usr/bin/python3 is 3.9, too old)" ;;
    python-venv)
      deb="sudo apt install python3-venv"
      mac="brew install python@3.12" ;;
    terraform)
      deb="$HASHICORP_APT sudo apt install terraform"
      mac="brew tap hashicorp/tap && brew install hashicorp/tap/terraform" ;;
    packer)
      deb="$HASHICORP_APT sudo apt install packer   (HashiCorp's repository: Debian's own packer 1.6 is too old)"
      mac="brew tap hashicorp/tap && brew install hashicorp/tap/packer" ;;
    ssh)
      deb="sudo apt install openssh-client"
      mac="ssh and ssh-keygen come with macOS" ;;
    git)
      deb="sudo apt install git"
      mac="xcode-select --install   (or: brew install git)" ;;
  esac
  printf '    Debian/Ubuntu: %s\n    macOS:         %s\n' "$deb" "$mac"
}

# The Python the venv is made from: $PYTHON, else the first of these >= 3.10.
find_python() {
  local p v
  for p in ${PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
    command -v "$p" >/dev/null 2>&1 || continue
    v=$("$p" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    if version_ge "$v" 3.10; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

check() {
  local purpose=${1:-deploy} problems=0 v py
  fail() { # tool, message
    problems=$((problems + 1))
    printf 'deploy-tools: %s\n' "$2" >&2
    hint "$1" >&2
  }
  if py=$(find_python); then
    "$py" -c 'import venv, ensurepip' 2>/dev/null ||
      fail python-venv "$py cannot create a venv (no ensurepip): install the venv module"
  else
    v=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "none")
    fail python "Python >= 3.10 not found (python3 is $v)"
  fi
  if ! command -v terraform >/dev/null 2>&1; then
    fail terraform "terraform not found: Terraform >= 1.5 is needed"
  else
    v=$(terraform version 2>/dev/null | sed -n 's/^Terraform v\([0-9.]*\).*/\1/p' | head -n1)
    version_ge "${v:-0}" 1.5.0 || fail terraform "terraform ${v:-?} is too old: Terraform >= 1.5 is needed"
  fi
  if [[ $purpose == deploy ]]; then
    if ! command -v packer >/dev/null 2>&1; then
      fail packer "packer not found: Packer >= 1.9 is needed to build the AMIs"
    else
      v=$(packer version 2>/dev/null | sed -n 's/^Packer v\([0-9.]*\).*/\1/p' | head -n1)
      version_ge "${v:-0}" 1.9.0 || fail packer "packer ${v:-?} is too old to build (packer init needs >= 1.9)"
    fi
  fi
  command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 ||
    fail ssh "ssh or ssh-keygen not found"
  command -v git >/dev/null 2>&1 || fail git "git not found"
  if ((problems)); then
    printf 'deploy-tools: install the above, then retry (nothing was created)\n' >&2
    return 1
  fi
}

venv() {
  local py want stamp=$VENV/.sqlgate-deploy-tools
  py=$(find_python) || { check deploy; return 1; }
  want="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])') $(cat "$REQ" "$CONSTRAINTS" | cksum)"
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  echo "deploy-tools: creating $VENV with $py (ansible, boto3; a minute or two, once)"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" -c "$CONSTRAINTS"
  # community.mysql comes inside the ansible package; fail here if it did not.
  "$VENV/bin/ansible-galaxy" collection list community.mysql 2>/dev/null | grep -q community.mysql ||
    { echo "deploy-tools: community.mysql is missing from the ansible package" >&2; return 1; }
  echo "$want" >"$stamp"
  echo "deploy-tools: ready ($("$VENV/bin/ansible" --version | head -n1))"
}

if (($# == 0)); then
  set -- check deploy venv
fi
while (($#)); do
  case $1 in
    check)
      purpose=deploy
      if [[ ${2:-} =~ ^(deploy|destroy|backup)$ ]]; then purpose=$2; shift; fi
      check "$purpose" ;;
    venv) venv ;;
    *) echo "usage: $0 [check [deploy|destroy|backup]] [venv]" >&2; exit 64 ;;
  esac
  shift
done
