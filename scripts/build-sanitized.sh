#!/usr/bin/env bash
# Configures (once) and builds gossip with AddressSanitizer and UBSan in a build folder of its own:
# scripts/test.sh runs the whole test suite there, scripts/fuzz.sh builds its libFuzzer targets
# there. clang-14 when present (then the fuzz targets are built too), else the default compiler.
# -O1 (ASan's usual level: readable stacks, a few times slower than release); no CUDA; -Db_lundef=false
# because the Python module leaves the sanitizer runtime to the interpreter, which the Python tests
# preload (tests/python/meson.build).
# Usage: scripts/build-sanitized.sh [build dir=build-asan] [meson target...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build-asan}"
shift || true
if [[ ! -f "$dir/build.ninja" ]]; then
  link_args=()
  if command -v clang++-14 >/dev/null; then
    launcher=""
    if command -v ccache >/dev/null; then launcher="ccache "; fi
    export CC="${launcher}clang-14" CXX="${launcher}clang++-14"
    # The shared sanitizer runtime (gcc's default), so that the Python tests can preload the same
    # one the executables they start use; an rpath to find it.
    rt="$(dirname "$(clang++-14 -print-file-name=libclang_rt.asan-x86_64.so)")"
    link_args=(-Dcpp_link_args="-shared-libasan -Wl,-rpath,$rt")
  fi
  meson setup "$dir" -Dcuda=disabled -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized -Doptimization=1 "${link_args[@]}"
fi
echo "build-sanitized: compiling $dir (AddressSanitizer + UBSan)"
meson compile -C "$dir" "$@"
