#!/usr/bin/env bash
# Packs the GPU checks for a machine that has a GPU and a CUDA 13 runtime but not this project's
# Debian packages (no meson, ZeroMQ, OpenBLAS, ...): the gossip binary, the CUDA test binaries and
# the shared libraries they need (all but glibc and the CUDA libraries, which that machine has)
# into one archive, .gpu/gossip-gpu.tar.xz, with scripts/gpu-check.sh beside it.
#
# Usage: scripts/gpu-bundle.sh [BUILD_DIR]     (default: build, configured with CUDA)
# Then, on the GPU machine, from the repository root:  bash scripts/gpu-check.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bins=(src/gossip tests/kernels/test_kernels_cuda_identity tests/runtime/runtime_model_cuda_test
  tests/kernels/test_kernels_gpu_twins tests/gossip/test_algorithm_cuda
  tests/gossip/test_algorithm_bench)
for b in "${bins[@]}"; do
  if [[ ! -x $build/$b ]]; then
    echo "gpu-bundle: $build/$b is missing: configure $build with CUDA (meson setup $build" \
      "-Dcuda=enabled) and build it first" >&2
    exit 1
  fi
done
# (Not `ldd | grep -q`: grep quits at the first match, ldd dies of SIGPIPE, and pipefail calls the
# whole test false.)
if [[ $(ldd "$build/src/gossip") != *libcudart* ]]; then
  echo "gpu-bundle: $build/src/gossip was built without CUDA; configure with -Dcuda=enabled" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for b in "${bins[@]}"; do cp "$build/$b" "$stage/bin/"; done
# Every shared library the binaries load, except glibc's own and CUDA's (libcudart, libcublas,
# libcublasLt: hundreds of MB, and the GPU machine has its own of the same major version).
for b in "${bins[@]}"; do ldd "$build/$b"; done |
  awk '/=>/ && $3 ~ /^\// {print $3}' | sort -u |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|libresolv)\.so|/ld-linux|/libcuda\.so|/libcudart\.so|/libcublas(Lt)?\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
# The CUDA runtime major version the binaries were linked against, for gpu-check.sh to find.
ldd "$build/src/gossip" | awk '/libcudart/ {print $1}' >"$stage/cudart-soname"
git rev-parse --short HEAD >"$stage/commit" 2>/dev/null || echo unknown >"$stage/commit"

mkdir -p .gpu
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
tar -C "$stage" -cJf .gpu/gossip-gpu.tar.xz .
echo "gpu-bundle: .gpu/gossip-gpu.tar.xz ($(du -h .gpu/gossip-gpu.tar.xz | cut -f1)," \
  "commit $(cat "$stage/commit"), $(ls "$stage/lib" | wc -l) libraries)"
