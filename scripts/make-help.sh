#!/usr/bin/env bash
# The help of the Makefile and of mk/*.mk used alone: every `target: ## what it does` line of
# the given makefiles, under their `##@ Section` headings.
#
# usage: scripts/make-help.sh COMMAND MAKEFILE...   (COMMAND as the user types it: `make`)
set -euo pipefail
if (($# < 2)); then
  echo "usage: $0 COMMAND MAKEFILE..." >&2
  exit 64
fi
command=$1
shift
awk -v command="$command" '
  BEGIN { FS = ":.*##"; printf "Usage: %s <target>\n", command }
  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $1, $2 }
  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($0, 5) }
' "$@"
