#!/usr/bin/env bash
# The AWS deploy path behind `make deploy`, `make destroy`, `make backup` and their kin.
#
#   terraform/tools/aws.sh preflight|deploy|destroy|backup|sysbench|env
#
# deploy:  preflight -> the network (first deploy only) -> the AMIs whose inputs changed
#          (Packer, in the deployment's own public subnet) -> terraform plan, refused if it
#          would delete or replace a database instance, a data volume or the Elastic IP
#          -> apply -> Ansible (data volumes, replication, TLS, services) -> a real query.
# destroy: asks for confirmation (CONFIRM=yes skips it), offers a final snapshot of the
#          data volumes (FINAL_SNAPSHOT=yes|no), terraform destroy, then this deployment's
#          AMIs and their snapshots (KEEP_AMIS=1 keeps them) and its daily snapshots,
#          then the local state of the deployment (.local/aws).
# backup:  a consistent snapshot of a worker's data volume, taken with MySQL stopped on it.
#
# Settings (environment; the Makefile passes its variables):
#   AWS_REGION       region                                  (us-east-1)
#   ADMIN_CIDR       who may SSH to the gatekeeper           (your address/32, detected)
#   ALLOWED_CIDRS    who may call the API, comma-separated   (0.0.0.0/0)
#   WORKERS          number of MySQL workers                 (2)
#   GATEKEEPERS      number of gatekeepers                   (1; more: NLB + Auto Scaling group)
#   PROXIES          number of proxies                       (1; more: internal NLB + Auto Scaling group)
#   DEPLOY_VENV      venv with ansible and boto3             (.local/venv-deploy)
#   KEEP_AMIS        1: destroy leaves the AMIs
#   CONFIRM          yes: destroy without asking
#   FINAL_SNAPSHOT   yes|no: snapshot the data volumes before destroy (asked; yes with CONFIRM=yes)
#   ALLOW_DATA_LOSS  yes: apply a plan that deletes database instances or volumes (fewer WORKERS)
#   GATEKEEPER_DNS_NAME      a DNS name the gatekeeper's certificate also names (besides its Elastic IP)
#   GATEKEEPER_TLS_CERT_FILE your own certificate (chain) for the gatekeeper, instead of the deployment CA's
#   GATEKEEPER_TLS_KEY_FILE  its private key (both files or neither; never modified, installed mode 0600)
#   GATEKEEPER_CA_FILE       with your own certificate: the CA the deploy's test query trusts (system store)
#
# Nothing here installs anything outside the venv (deploy-tools.sh), and nothing runs a
# system package manager.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=$ROOT/.local/aws
VENV=${DEPLOY_VENV:-$ROOT/.local/venv-deploy}
[[ $VENV = /* ]] || VENV=$ROOT/$VENV
export AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
export AWS_DEFAULT_REGION=$AWS_REGION
WORKERS=${WORKERS:-2}
GATEKEEPERS=${GATEKEEPERS:-1}
PROXIES=${PROXIES:-1}
ALLOWED_CIDRS=${ALLOWED_CIDRS:-0.0.0.0/0}
TFVARS=$STATE/terraform.tfvars.json
INVENTORY=$STATE/inventory.yml
KEYS_ENV=$STATE/keys/api-keys.env
DEPLOYMENT_ID_FILE=$STATE/deployment-id
TLS_CA=$STATE/tls/ca.pem
TOOLS=$ROOT/terraform/tools
export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
export ANSIBLE_CONFIG=$ROOT/ansible/ansible.cfg

say() { printf '==> %s\n' "$*"; }
die() { printf '%s\n' "$*" >&2; exit 1; }

tf() { terraform -chdir="$ROOT/terraform" "$@"; }
py() { "$VENV/bin/python" "$@"; }
aws_py() { py "$TOOLS/aws_amis.py" "$@"; }

# Every tool and its version (saying what to install, Debian/Ubuntu and macOS),
# then the venv, then the AWS credentials: before anything is created.
preflight() {
  DEPLOY_VENV=$VENV "$TOOLS/deploy-tools.sh" check "${1:-deploy}" venv
  local who
  who=$(aws_py whoami) || exit 1
  say "AWS account ${who%% *} as ${who#* }, region $AWS_REGION"
}

deployment_id() {
  if [[ ! -s $DEPLOYMENT_ID_FILE ]]; then
    py -c 'import secrets; print("d" + secrets.token_hex(4))' >"$DEPLOYMENT_ID_FILE"
  fi
  cat "$DEPLOYMENT_ID_FILE"
}

ssh_key() {
  mkdir -p "$STATE/ssh" && chmod 700 "$STATE" "$STATE/ssh"
  [[ -f $STATE/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "sqlgate-deploy" -f "$STATE/ssh/id_ed25519"
}

admin_cidr() {
  if [[ -n ${ADMIN_CIDR:-} ]]; then echo "$ADMIN_CIDR"; return; fi
  local ip
  ip=$(py "$TOOLS/deploy_util.py" my-ip) || exit 1
  echo "$ip/32"
}

# tfvars APP_AMI MYSQL_AMI (empty: null, for the network-only first apply).
write_tfvars() {
  py - "$TFVARS" "$1" "$2" <<PY
import json, sys
out, app, mysql = sys.argv[1:]
json.dump({
    "region": "$AWS_REGION",
    "deployment_id": "$DEPLOYMENT_ID",
    "admin_cidr": "$CIDR",
    "allowed_cidrs": [c.strip() for c in "$ALLOWED_CIDRS".split(",") if c.strip()],
    "worker_count": int("$WORKERS"),
    "gatekeeper_count": int("$GATEKEEPERS"),
    "proxy_count": int("$PROXIES"),
    "ssh_public_key": open("$STATE/ssh/id_ed25519.pub").read().strip(),
    "app_ami_id": app or None,
    "mysql_ami_id": mysql or None,
}, open(out, "w"), indent=2)
PY
}

# The first deploy creates the network alone, so Packer can build in the
# deployment's own public subnet (no default VPC needed).
network() {
  tf init -input=false >/dev/null
  if ! tf state list 2>/dev/null | grep -qx 'aws_route_table_association.public'; then
    say "creating the network first (Packer builds in its public subnet)"
    tf apply -input=false -auto-approve -var-file="$TFVARS" \
      -target=aws_route_table_association.public -target=aws_route.public_internet >/dev/null
  fi
  VPC_ID=$(tf output -raw vpc_id 2>/dev/null || tf state show -no-color aws_vpc.this | sed -n 's/^ *id *= *"\(vpc-[^"]*\)".*/\1/p')
  SUBNET_ID=$(tf output -raw public_subnet_id 2>/dev/null || tf state show -no-color aws_subnet.public | sed -n 's/^ *id *= *"\(subnet-[^"]*\)".*/\1/p')
  [[ -n $VPC_ID && -n $SUBNET_ID ]] || die "deploy: could not read the VPC and public subnet from the Terraform state"
}

build_amis() {
  local hashes app_hash mysql_hash commit only=() app_ami mysql_ami tarball=$STATE/sqlgate-src.tar.gz
  hashes=$(py "$TOOLS/deploy_util.py" bundle "$tarball")
  app_hash=$(py -c 'import json,sys; print(json.loads(sys.argv[1])["app"])' "$hashes")
  mysql_hash=$(py -c 'import json,sys; print(json.loads(sys.argv[1])["mysql"])' "$hashes")
  app_ami=$(aws_py find app "$app_hash" "$DEPLOYMENT_ID")
  mysql_ami=$(aws_py find mysql "$mysql_hash" "$DEPLOYMENT_ID")
  [[ -n $app_ami ]] || only+=(amazon-ebs.app)
  [[ -n $mysql_ami ]] || only+=(amazon-ebs.mysql)
  if ((${#only[@]})); then
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
    say "building ${only[*]} with Packer in $SUBNET_ID, SSH from $CIDR only (10-20 minutes)"
    packer init "$ROOT/packer" >/dev/null
    (IFS=,; packer build -only="${only[*]}" \
      -var "region=$AWS_REGION" -var "deployment_id=$DEPLOYMENT_ID" -var "git_commit=$commit" \
      -var "vpc_id=$VPC_ID" -var "subnet_id=$SUBNET_ID" -var "ssh_source_cidrs=[\"$CIDR\"]" \
      -var "app_source_hash=$app_hash" -var "mysql_source_hash=$mysql_hash" \
      -var "source_tarball=$tarball" "$ROOT/packer")
    app_ami=$(aws_py find app "$app_hash" "$DEPLOYMENT_ID")
    mysql_ami=$(aws_py find mysql "$mysql_hash" "$DEPLOYMENT_ID")
  else
    say "AMIs up to date: app $app_ami, mysql $mysql_ami (no Packer build)"
  fi
  [[ -n $app_ami && -n $mysql_ami ]] || die "deploy: the Packer build registered no AMI; see its output above"
  APP_AMI=$app_ami MYSQL_AMI=$mysql_ami
}

# Plan, refuse a plan that loses data, apply exactly that plan.
apply() {
  local plan=$STATE/tfplan
  tf plan -input=false -out="$plan" -var-file="$TFVARS" >"$STATE/tfplan.txt" ||
    { cat "$STATE/tfplan.txt"; die "deploy: terraform plan failed"; }
  grep -E '^(Plan:|No changes)' "$STATE/tfplan.txt" || true
  tf show -json "$plan" >"$plan.json"
  if ! py "$TOOLS/deploy_util.py" plan-guard "$plan.json"; then
    if [[ ${ALLOW_DATA_LOSS:-} == yes ]]; then
      say "ALLOW_DATA_LOSS=yes: applying a plan that deletes the resources above"
    else
      die "deploy: nothing was applied. The plan above would delete database data; if that is intended
(e.g. fewer WORKERS), take a backup (make backup) and rerun with ALLOW_DATA_LOSS=yes."
    fi
  fi
  tf apply -input=false "$plan"
}

# The gatekeeper's certificate settings, checked before anything is created;
# GATEKEEPER_TLS_VARS: the Ansible extra vars (JSON) they become.
gatekeeper_tls_settings() {
  local dns=${GATEKEEPER_DNS_NAME:-} cert=${GATEKEEPER_TLS_CERT_FILE:-} key=${GATEKEEPER_TLS_KEY_FILE:-}
  if [[ -n $dns ]]; then
    [[ ${#dns} -le 253 && $dns =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$ &&
      ! $dns =~ ^[0-9.]+$ ]] ||
      die "deploy: GATEKEEPER_DNS_NAME=$dns is not a hostname (letters, digits and hyphens, labels separated by dots). Nothing was created."
  fi
  if [[ -n $cert || -n $key ]]; then
    [[ -n $cert && -n $key ]] ||
      die "deploy: give both GATEKEEPER_TLS_CERT_FILE and GATEKEEPER_TLS_KEY_FILE, or neither (the deployment's CA then issues the gatekeeper's certificate). Nothing was created."
    [[ -f $cert && -r $cert ]] || die "deploy: GATEKEEPER_TLS_CERT_FILE=$cert is not a readable file. Nothing was created."
    [[ -f $key && -r $key ]] || die "deploy: GATEKEEPER_TLS_KEY_FILE=$key is not a readable file. Nothing was created."
    cert=$(cd "$(dirname "$cert")" && pwd)/$(basename "$cert")
    key=$(cd "$(dirname "$key")" && pwd)/$(basename "$key")
  fi
  GATEKEEPER_TLS_VARS=$(DNS=$dns CERT=$cert KEY=$key python3 -c 'import json, os
print(json.dumps({"sqlgate_tls_gatekeeper_dns": os.environ["DNS"],
                  "sqlgate_tls_gatekeeper_cert_file": os.environ["CERT"],
                  "sqlgate_tls_gatekeeper_key_file": os.environ["KEY"]}))')
}

# JUMP: Ansible's extra vars naming the SSH jump host when scaled out (any
# running gatekeeper, found by tag); empty with a single gatekeeper, whose
# Elastic IP the inventory names itself.
JUMP=()
jump_host() {
  local host
  if [[ $(tf output -raw scaled 2>/dev/null) == true ]]; then
    host=$(aws_py jump-host "$(cat "$DEPLOYMENT_ID_FILE")") || die "no running gatekeeper to reach the databases through"
    JUMP=(-e "sqlgate_jump_host=${host% *}" -e "sqlgate_jump_instance_id=${host#* }")
  fi
}

api_key() { sed -n "s/^SQLGATE_API_KEY_$1=//p" "$KEYS_ENV"; }

deploy() {
  gatekeeper_tls_settings
  preflight deploy
  DEPLOYMENT_ID=$(deployment_id)
  CIDR=$(admin_cidr)
  ssh_key
  say "deployment $DEPLOYMENT_ID; SSH allowed from $CIDR only; API (HTTPS) open to $ALLOWED_CIDRS; $WORKERS workers"
  write_tfvars "" ""
  network
  build_amis
  write_tfvars "$APP_AMI" "$MYSQL_AMI"
  say "terraform apply (database instances and volumes are never replaced)"
  apply
  tf output -raw ansible_inventory >"$INVENTORY"
  jump_host
  say "configuring the hosts with Ansible (data volumes, replication workers first, TLS, services or SSM parameters)"
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" -e "$GATEKEEPER_TLS_VARS" ${JUMP[@]+"${JUMP[@]}"} "$ROOT/ansible/site.yml"
  local url key ca=$TLS_CA tls_note="the certificate is issued by this deployment's CA, $TLS_CA (give it to your clients)"
  url=$(tf output -raw gatekeeper_url)
  key=$(api_key READ)
  if [[ -n ${GATEKEEPER_TLS_CERT_FILE:-} ]]; then
    # Your own certificate: clients trust your CA; the test query uses your name, if given.
    ca=${GATEKEEPER_CA_FILE:-}
    [[ -z ${GATEKEEPER_DNS_NAME:-} ]] || url=https://$GATEKEEPER_DNS_NAME
    tls_note="your own certificate ($GATEKEEPER_TLS_CERT_FILE): clients trust its CA; the proxy and databases use $TLS_CA"
  fi
  say "checking the deployment with a real query"
  py "$TOOLS/deploy_util.py" query "$url" "$key" ${ca:+"$ca"}
  cat <<EOF

sqlgate is deployed: $url  (deployment $DEPLOYMENT_ID; its address is an Elastic IP)
API keys (read, write, admin): $KEYS_ENV (mode 0600, keep it secret)
TLS: $tls_note
Try it:
  curl -s --cacert $TLS_CA -X POST $url/query -H 'Content-Type: application/json' \\
    -H "X-API-Key: \$(sed -n 's/^SQLGATE_API_KEY_READ=//p' $KEYS_ENV)" \\
    -d '{"sql": "SELECT first_name FROM sakila.actor WHERE actor_id = ?", "params": [7], "mode": "random"}'
Backups: daily snapshots (Data Lifecycle Manager); make backup for one now.
Benchmarks: make deploy-sysbench, make deploy-loadtest.  Remove everything: make destroy
EOF
}

# ask QUESTION: yes/no from the terminal; no terminal answers no.
ask() {
  local answer
  [[ -t 0 ]] || return 1
  read -r -p "$1 " answer
  [[ $answer =~ ^[Yy]([Ee][Ss])?$ ]]
}

destroy() {
  preflight destroy
  [[ -s $DEPLOYMENT_ID_FILE ]] || die "destroy: no deployment recorded in $DEPLOYMENT_ID_FILE: nothing to destroy"
  DEPLOYMENT_ID=$(cat "$DEPLOYMENT_ID_FILE")
  if [[ ${CONFIRM:-} != yes ]]; then
    [[ -t 0 ]] || die "destroy: this deletes deployment $DEPLOYMENT_ID and its database data: rerun with CONFIRM=yes"
    printf 'This deletes deployment %s in %s: its instances and its DATABASE DATA VOLUMES.\n' "$DEPLOYMENT_ID" "$AWS_REGION"
    local answer
    read -r -p "Type the deployment id ($DEPLOYMENT_ID) to confirm: " answer
    [[ $answer == "$DEPLOYMENT_ID" ]] || die "destroy: not confirmed; nothing was deleted"
  fi
  local final=${FINAL_SNAPSHOT:-}
  if [[ -z $final ]]; then
    if [[ ${CONFIRM:-} == yes ]]; then final=yes
    elif ask "Take a final snapshot of the data volumes first (kept after destroy)? [Y/n]"; then final=yes
    else final=no; fi
  fi
  if [[ $final == yes ]]; then
    say "final snapshot of the data volumes (kept; tagged sqlgate:snapshot=final)"
    aws_py snapshot-data "$DEPLOYMENT_ID" final
  fi
  if [[ -f $TFVARS ]]; then
    say "terraform destroy"
    tf init -input=false >/dev/null
    tf destroy -input=false -auto-approve -var-file="$TFVARS"
  elif [[ -n $(tf state list 2>/dev/null) ]]; then
    die "destroy: Terraform state holds resources but $TFVARS is gone: run terraform -chdir=terraform destroy by hand"
  fi
  if [[ ${KEEP_AMIS:-0} == 1 ]]; then
    say "keeping the AMIs (KEEP_AMIS=1)"
  else
    aws_py purge "$DEPLOYMENT_ID"
  fi
  aws_py purge-snapshots "$DEPLOYMENT_ID"
  rm -rf "$TFVARS" "$INVENTORY" "$STATE/secrets" "$STATE/keys" "$STATE/ssh" "$STATE/tls" "$STATE/sqlgate-src.tar.gz" \
    "$STATE/packer-manifest.json" "$STATE/tfplan" "$STATE/tfplan.json" "$STATE/tfplan.txt"
  [[ ${KEEP_AMIS:-0} == 1 ]] || rm -f "$DEPLOYMENT_ID_FILE"
  say "destroyed deployment $DEPLOYMENT_ID in $AWS_REGION"
}

need_deployment() {
  [[ -s $INVENTORY ]] || die "no deployment found ($INVENTORY is missing): run make deploy first"
  DEPLOY_VENV=$VENV "$TOOLS/deploy-tools.sh" venv >&2
}

backup() {
  need_deployment
  preflight backup
  jump_host
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" ${JUMP[@]+"${JUMP[@]}"} "$ROOT/ansible/backup.yml"
}

sysbench() {
  need_deployment
  jump_host
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" ${JUMP[@]+"${JUMP[@]}"} "$ROOT/ansible/sysbench.yml"
  say "results in $ROOT/results/sysbench/"
}

# A planned switchover to worker `$1` (ansible/switchover.yml; docs/reliability.md).
switchover() {
  local to=${1:-}
  [[ $to =~ ^[A-Za-z0-9_-]+$ ]] || die "give the worker to promote: make deploy-switchover TO=worker-1"
  need_deployment
  jump_host
  "$VENV/bin/ansible-playbook" -i "$INVENTORY" ${JUMP[@]+"${JUMP[@]}"} -e "sqlgate_switchover_to=$to" "$ROOT/ansible/switchover.yml"
  say "$to is the primary; make deploy keeps it (recorded in the state directory)"
}

# For deploy-loadtest: the target, a write key and the CA, as the shell assignments
# `make loadtest` reads (GATEKEEPER_URL, API_KEY; GATEKEEPER_CA_FILE: the CA that signed the
# gatekeeper's certificate: the deployment's, or with your own certificate the one you name in
# GATEKEEPER_CA_FILE, empty for the system store).
env_for_loadtest() {
  need_deployment
  local ca=$TLS_CA
  if [ -n "${GATEKEEPER_TLS_CERT_FILE:-}" ]; then ca=${GATEKEEPER_CA_FILE:-}; fi
  printf 'GATEKEEPER_URL=%s\nAPI_KEY=%s\nGATEKEEPER_CA_FILE=%s\n' "$(tf output -raw gatekeeper_url)" "$(api_key WRITE)" "$ca"
}

mkdir -p "$STATE"
case "${1:-}" in
  preflight) preflight "${2:-deploy}" ;;
  deploy) deploy ;;
  destroy) destroy ;;
  backup) backup ;;
  sysbench) sysbench ;;
  switchover) switchover "${2:-}" ;;
  env) env_for_loadtest ;;
  *) die "usage: $0 preflight [deploy|destroy|backup]|deploy|destroy|backup|sysbench|switchover WORKER|env" ;;
esac
