#!/usr/bin/env bash
# A scaled-out gatekeeper or proxy configures itself at boot (no person, no
# Ansible): it reads its tier's SecureString parameters from SSM Parameter
# Store with its instance role, writes the files the service's unit expects,
# and starts the service. Run by sqlgate-ssm-config.service, only where the
# launch template's user data wrote /etc/sqlgate/ssm.env (a single gatekeeper
# or proxy is configured by Ansible instead and never runs this).
#
# Parameters under $SQLGATE_SSM_PATH (written by ansible/ssm.yml):
#   env       the service's env file (gatekeeper.env or proxy.env)
#   tls-cert  the tier's certificate (chain), tls-key its private key
#   ca        the deployment's CA
#   keys      (gatekeeper) the API keys file: ids, roles, SHA-256 hashes
# Values travel through a 0600 file in /run only: never argv, never a log.
set -euo pipefail

# shellcheck source=/dev/null
. /etc/sqlgate/ssm.env
role=${SQLGATE_SSM_ROLE:?} path=${SQLGATE_SSM_PATH:?}
[[ $role == gatekeeper || $role == proxy ]] || { echo "sqlgate-ssm-config: unknown role $role" >&2; exit 64; }
conf=/etc/sqlgate tls=/etc/sqlgate/tls
want=(env tls-cert tls-key ca)
[[ $role == gatekeeper ]] && want+=(keys)

umask 077
out=$(mktemp /run/sqlgate-ssm.XXXXXX)
trap 'rm -f "$out"' EXIT

# The parameters are written after the instances launch on a first deploy:
# wait for all of them (30 minutes at most), then fail for systemd to retry.
for attempt in $(seq 1 180); do
  if aws ssm get-parameters-by-path --path "$path" --recursive --with-decryption \
      --output json >"$out" 2>/dev/null &&
    python3 - "$out" "$path" "${want[@]}" <<'PY'
import json, sys
data, path, want = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3:]
have = {p["Name"][len(path) + 1:] for p in data.get("Parameters", [])}
sys.exit(0 if set(want) <= have else 1)
PY
  then
    break
  fi
  [[ $attempt -lt 180 ]] || { echo "sqlgate-ssm-config: parameters under $path incomplete after 30 minutes" >&2; exit 75; }
  sleep 10
done

install -d -o root -g root -m 0755 "$conf" "$tls"
python3 - "$out" "$path" "$role" "$conf" "$tls" <<'PY'
import json, os, pwd, sys
data, path, role, conf, tls = json.load(open(sys.argv[1])), *sys.argv[2:]
values = {p["Name"][len(path) + 1:]: p["Value"] for p in data.get("Parameters", [])}
user = pwd.getpwnam(f"sqlgate-{role}")

def write(dest, text, mode, owner=None):
    tmp = dest + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    if owner:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    os.replace(tmp, dest)

write(f"{tls}/ca.pem", values["ca"], 0o644)
write(f"{tls}/{role}.pem", values["tls-cert"], 0o644)
write(f"{tls}/{role}-key.pem", values["tls-key"], 0o600, user)
if role == "gatekeeper":
    write(f"{conf}/gatekeeper.keys", values["keys"], 0o600, user)
write(f"{conf}/{role}.env", values["env"], 0o600)
PY
echo "sqlgate-ssm-config: $role configured from $path"
systemctl enable --now "$role.service"
