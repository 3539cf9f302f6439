#!/usr/bin/env bash
# The one place this repository installs OS packages (`make deps`, CI's `make check-tools`).
# The operator's deploy path (`make deploy`) never calls it; Packer's image scripts run on the
# build machine and install their own.
#
# usage: scripts/os-packages.sh [--for WHO] PACKAGE...
#
# Installs the Debian/Ubuntu PACKAGEs that are not installed yet, quietly, with sudo when not
# root. `apt-get update` runs only when the install fails (stale or missing package lists),
# then the install is tried once more. Prints nothing when everything is there. WHO names the
# caller in messages (`make deps`).
set -euo pipefail

who=os-packages
if [[ ${1:-} == --for ]]; then
  who=${2:?usage: $0 [--for WHO] PACKAGE...}
  shift 2
fi
if (($# == 0)); then
  echo "usage: $0 [--for WHO] PACKAGE..." >&2
  exit 64
fi

# dpkg -s also succeeds for a removed package whose configuration files remain.
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for p in "$@"; do
  installed "$p" || missing+=("$p")
done
((${#missing[@]})) || exit 0

if ! command -v apt-get >/dev/null; then
  echo "$who: apt-get not found (not Debian or Ubuntu): install ${missing[*]} with your system's package manager" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "$who: installing ${missing[*]} needs root: run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi

echo "$who: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() { ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq "${missing[@]}" >"$log" 2>&1; }
if ! install; then
  if ! ${sudo[@]+"${sudo[@]}"} apt-get update -qq >"$log" 2>&1 || ! install; then
    cat "$log" >&2
    echo "$who: apt-get could not install ${missing[*]}" >&2
    exit 1
  fi
fi
