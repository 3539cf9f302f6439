#!/usr/bin/env bash
# Compile gatekeeper and proxy on the image itself, so the binaries link the
# glibc of Ubuntu 22.04 (2.35) they run on (docs/architecture.md: Debian 12 builds link
# 2.36 and would not start there). Runs as the build user, not root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

: "${RUST_TOOLCHAIN:?RUST_TOOLCHAIN must name the toolchain to install}"

sudo -E apt-get -q -y install --no-install-recommends build-essential pkg-config

# Jammy's own cargo (1.75) is older than the workspace's rust-version, so
# rustup installs the pinned toolchain; the script is fetched over TLS only.
curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
  | sh -s -- -y --no-modify-path --profile minimal --default-toolchain "$RUST_TOOLCHAIN"
# shellcheck source=/dev/null
. "$HOME/.cargo/env"

rm -rf "$HOME/sqlgate" && mkdir -p "$HOME/sqlgate"
tar -xzf /tmp/sqlgate-src.tar.gz -C "$HOME/sqlgate"
cd "$HOME/sqlgate"

locked=()
if [[ -f Cargo.lock ]]; then
  locked=(--locked)
fi
cargo build --release "${locked[@]}" -p gatekeeper -p proxy

mkdir -p /tmp/sqlgate-bin
install -m 0755 target/release/gatekeeper target/release/proxy /tmp/sqlgate-bin/

# Fail the build here, not at first boot, if a binary needs a newer glibc.
for bin in /tmp/sqlgate-bin/*; do
  ldd "$bin"
  if ldd "$bin" 2>&1 | grep -q 'not found'; then
    echo "ERROR: $bin has unresolved libraries on this image" >&2
    exit 1
  fi
done
