#!/usr/bin/env bash
# Remove what compiled the services (build-services.sh): the Rust toolchain,
# the sources, and the C toolchain packages with everything they pulled in.
# The image keeps the two binaries only; the build fails here if a compiler,
# rustup or cargo is still reachable.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

rm -rf /home/ubuntu/.cargo /home/ubuntu/.rustup /home/ubuntu/sqlgate /tmp/sqlgate-src.tar.gz

apt-get -q -y purge --auto-remove build-essential pkg-config gcc g++ cpp make dpkg-dev
# Whatever the purge left as automatically installed (libc6-dev, binutils, ...).
apt-get -q -y autoremove --purge

left=()
for tool in cc gcc g++ c++ clang cargo rustc rustup; do
  if command -v "$tool" >/dev/null 2>&1 || [[ -e /home/ubuntu/.cargo/bin/$tool ]]; then
    left+=("$tool")
  fi
done
for pkg in build-essential gcc g++ cpp; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    left+=("package:$pkg")
  fi
done
if ((${#left[@]})); then
  echo "ERROR: the app image still has a toolchain: ${left[*]}" >&2
  exit 1
fi
echo "no compiler, rustup or cargo left in the image"
