#!/usr/bin/env bash
# Installs missing Debian packages, then configures (once) and builds gossip in ./build.
# Extra arguments go to `meson setup` on the first run, e.g. -Dcuda=disabled.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
# nvcc lives outside PATH in the CUDA toolkit; meson picks the CUDA backend up when it sees it.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then export PATH="$PATH:/usr/local/cuda/bin"; fi

if [[ ! -f build/build.ninja ]]; then
  meson setup build "$@"
fi
echo "build: compiling (this takes a few minutes on 2 cores the first time)"
meson compile -C build
