#!/usr/bin/env bash
# The AWS deploy path behind `make deploy`, `make destroy` and their kin.
#
#   terraform/tools/aws.sh preflight|deploy|destroy|sysbench|env
#
# deploy:  preflight -> build the AMIs whose inputs changed (Packer) -> terraform apply
#          -> Ansible (replication, services) -> a real query through the gatekeeper.
# destroy: terraform destroy, then the AMIs and their snapshots (KEEP_AMIS=1 keeps them),
#          then the local state of the deployment (.local/aws).
#
# Settings (environment; the Makefile passes its variables):
#   AWS_REGION      region                                  (us-east-1)
#   ADMIN_CIDR      who may SSH to the gatekeeper           (your address/32, detected)
#   ALLOWED_CIDRS   who may call the API, comma-separated   (0.0.0.0/0)
#   WORKERS         number of MySQL workers                 (2)
#   DEPLOY_VENV     venv with ansible and boto3             (.local/venv-deploy)
#   KEEP_AMIS       1: destroy leaves the AMIs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=$ROOT/.local/aws
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
export AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
export AWS_DEFAULT_REGION=$AWS_REGION
WORKERS=${WORKERS:-2}
ALLOWED_CIDRS=${ALLOWED_CIDRS:-0.0.0.0/0}
TFVARS=$STATE/terraform.tfvars.json
INVENTORY=$STATE/inventory.yml
KEYS_ENV=$STATE/keys/api-keys.env
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
export ANSIBLE_CONFIG=$ROOT/ansible/ansible.cfg

say() { printf '==> %s\n' "$*"; }
die() { printf '%s\n' "$*" >&2; exit 1; }

tf() { terraform -chdir="$ROOT/terraform" "$@"; }
py() { "$VENV/bin/python" "$@"; }

version_ge() { # a >= b, dotted versions
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# One clear line per missing prerequisite, before anything is created.
preflight() {
  local need_packer=${1:-1} v
  command -v terraform >/dev/null ||
    die "deploy: terraform not found: install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install), then retry"
  v=$(terraform version -json 2>/dev/null | py -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null || echo 0)
  version_ge "$v" 1.5.0 || die "deploy: terraform $v is too old: install Terraform >= 1.5, then retry"
  if [[ $need_packer == 1 ]]; then
    command -v packer >/dev/null ||
      die "deploy: packer not found: install Packer >= 1.9 (https://developer.hashicorp.com/packer/install), then retry"
    v=$(packer version | sed -n 's/^Packer v\([0-9.]*\).*/\1/p' | head -n1)
    version_ge "${v:-0}" 1.9.0 ||
      die "deploy: packer ${v:-?} is too old to build (needs >= 1.9 for packer init): install it from https://developer.hashicorp.com/packer/install, then retry"
  fi
  for tool in ssh ssh-keygen curl git; do
    command -v "$tool" >/dev/null || die "deploy: $tool not found: install it (apt-get install openssh-client curl git), then retry"
  done
  [[ -x $VENV/bin/ansible-playbook ]] || die "deploy: the deploy tools are missing: run make deploy-tools, then retry"
  local who
  who=$(py "$ROOT/terraform/tools/aws_amis.py" whoami) || exit 1
  say "AWS account ${who%% *} as ${who#* }, region $AWS_REGION"
}

ssh_key() {
  mkdir -p "$STATE/ssh" && chmod 700 "$STATE" "$STATE/ssh"
  [[ -f $STATE/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "sqlgate-deploy" -f "$STATE/ssh/id_ed25519"
}

admin_cidr() {
  if [[ -n ${ADMIN_CIDR:-} ]]; then echo "$ADMIN_CIDR"; return; fi
  local ip
  ip=$(curl -fsS --max-time 10 https://checkip.amazonaws.com | tr -d '[:space:]') ||
    die "deploy: could not detect your public address: set ADMIN_CIDR (e.g. make deploy ADMIN_CIDR=203.0.113.7/32)"
  [[ $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "deploy: unexpected address '$ip': set ADMIN_CIDR"
  echo "$ip/32"
}

# The Rust workspace as Packer uploads it: every non-ignored file but the
# deploy path, docs and local tooling; deterministic, so its hash says
# whether the code changed.
source_tarball() {
  local out=$STATE/sqlgate-src.tar.gz
  (cd "$ROOT" && git ls-files -z -co --exclude-standard |
    grep -zvE '^(packer|terraform|ansible|docs|local|mk|\.ci|results)/|\.md$' |
    tar --null -T - --ignore-failed-read --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner -cf - |
    gzip -n >"$out")
  echo "$out"
}

hash_files() { (cd "$ROOT" && sha256sum "$@" | sha256sum | cut -c1-16); }

build_amis() {
  local tarball app_hash mysql_hash commit only=() app_ami mysql_ami
  tarball=$(source_tarball)
  app_hash=$( (sha256sum "$tarball" | cut -d' ' -f1; hash_files packer/plugins.pkr.hcl packer/variables.pkr.hcl packer/app.pkr.hcl \
    packer/scripts/base.sh packer/scripts/build-services.sh packer/scripts/install-services.sh packer/scripts/cleanup.sh \
    packer/files/sqlgate-app/*) | sha256sum | cut -c1-16)
  mysql_hash=$(hash_files packer/plugins.pkr.hcl packer/variables.pkr.hcl packer/mysql.pkr.hcl packer/scripts/base.sh \
    packer/scripts/mysql.sh packer/scripts/cleanup.sh packer/files/sqlgate-mysql/*)
  app_ami=$(py "$ROOT/terraform/tools/aws_amis.py" find app "$app_hash")
  mysql_ami=$(py "$ROOT/terraform/tools/aws_amis.py" find mysql "$mysql_hash")
  [[ -n $app_ami ]] || only+=(amazon-ebs.app)
  [[ -n $mysql_ami ]] || only+=(amazon-ebs.mysql)
  if ((${#only[@]})); then
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
    say "building ${only[*]} with Packer (code changed since the last AMI; 10-20 minutes)"
    packer init "$ROOT/packer" >/dev/null
    (IFS=,; packer build -only="${only[*]}" \
      -var "region=$AWS_REGION" -var "git_commit=$commit" \
      -var "app_source_hash=$app_hash" -var "mysql_source_hash=$mysql_hash" \
      -var "source_tarball=$tarball" "$ROOT/packer")
    app_ami=$(py "$ROOT/terraform/tools/aws_amis.py" find app "$app_hash")
    mysql_ami=$(py "$ROOT/terraform/tools/aws_amis.py" find mysql "$mysql_hash")
  else
    say "AMIs up to date: app $app_ami, mysql $mysql_ami (no Packer build)"
  fi
  [[ -n $app_ami && -n $mysql_ami ]] || die "deploy: the Packer build registered no AMI; see its output above"
  APP_AMI=$app_ami MYSQL_AMI=$mysql_ami
}

write_tfvars() {
  local cidr; cidr=$(admin_cidr)
  say "SSH allowed from $cidr only; API open to $ALLOWED_CIDRS; $WORKERS workers"
  py - "$TFVARS" <<PY
import json, sys
json.dump({
    "region": "$AWS_REGION",
    "admin_cidr": "$cidr",
    "allowed_cidrs": [c.strip() for c in "$ALLOWED_CIDRS".split(",") if c.strip()],
    "worker_count": int("$WORKERS"),
    "ssh_public_key": open("$STATE/ssh/id_ed25519.pub").read().strip(),
    "app_ami_id": "$APP_AMI",
    "mysql_ami_id": "$MYSQL_AMI",
}, open(sys.argv[1], "w"), indent=2)
PY
}

api_key() { sed -n "s/^SQLGATE_API_KEY_$1=//p" "$KEYS_ENV"; }

deploy() {
  preflight
  ssh_key
  build_amis
  write_tfvars
  say "terraform apply"
  tf init -input=false >/dev/null
  tf apply -input=false -auto-approve -var-file="$TFVARS"
  tf output -raw ansible_inventory >"$INVENTORY"
  say "configuring the hosts with Ansible (replication, then services)"
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" "$ROOT/ansible/site.yml"
  local url key body
  url=$(tf output -raw gatekeeper_url)
  key=$(api_key READ)
  say "checking the deployment with a real query"
  body=$(curl -fsS --max-time 20 -X POST "$url/query" -H 'Content-Type: application/json' -H "X-API-Key: $key" \
    -d '{"sql": "SELECT COUNT(*) AS actors FROM sakila.actor", "mode": "random"}') ||
    die "deploy: the gatekeeper at $url did not answer the test query"
  echo "$body"
  cat <<EOF

sqlgate is deployed: $url
API keys (read, write, admin): $KEYS_ENV (mode 0600, keep it secret)
Try it:
  curl -s -X POST $url/query -H 'Content-Type: application/json' \\
    -H "X-API-Key: \$(sed -n 's/^SQLGATE_API_KEY_READ=//p' $KEYS_ENV)" \\
    -d '{"sql": "SELECT first_name FROM sakila.actor WHERE actor_id = ?", "params": [7], "mode": "random"}'
Benchmarks: make deploy-sysbench, make deploy-loadtest.  Remove everything: make destroy
EOF
}

destroy() {
  preflight 0
  if [[ -f $TFVARS ]]; then
    say "terraform destroy"
    tf init -input=false >/dev/null
    tf destroy -input=false -auto-approve -var-file="$TFVARS"
  elif [[ -n $(tf state list 2>/dev/null) ]]; then
    die "destroy: Terraform state holds resources but $TFVARS is gone: run terraform -chdir=terraform destroy by hand"
  else
    say "no deployment recorded in $TFVARS: nothing for Terraform to destroy"
  fi
  if [[ ${KEEP_AMIS:-0} == 1 ]]; then
    say "keeping the AMIs (KEEP_AMIS=1)"
  else
    py "$ROOT/terraform/tools/aws_amis.py" purge
  fi
  rm -rf "$TFVARS" "$INVENTORY" "$STATE/secrets" "$STATE/keys" "$STATE/ssh" "$STATE/sqlgate-src.tar.gz" "$STATE/packer-manifest.json"
  say "destroyed: nothing of sqlgate is left in $AWS_REGION"
}

need_deployment() {
  [[ -s $INVENTORY ]] || die "no deployment found ($INVENTORY is missing): run make deploy first"
}

sysbench() {
  need_deployment
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" "$ROOT/ansible/sysbench.yml"
  say "results in $ROOT/results/sysbench/"
}

# For deploy-loadtest: the target and a write key, as the shell assignments
# `make loadtest` reads (GATEKEEPER_URL, API_KEY).
env_for_loadtest() {
  need_deployment
  printf 'GATEKEEPER_URL=%s\nAPI_KEY=%s\n' "$(tf output -raw gatekeeper_url)" "$(api_key WRITE)"
}

mkdir -p "$STATE"
case "${1:-}" in
  preflight) preflight ;;
  deploy) deploy ;;
  destroy) destroy ;;
  sysbench) sysbench ;;
  env) env_for_loadtest ;;
  *) die "usage: $0 preflight|deploy|destroy|sysbench|env" ;;
esac
