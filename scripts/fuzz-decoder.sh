#!/usr/bin/env bash
# Builds the codec decoder fuzzer with clang (libFuzzer + AddressSanitizer + UBSan) and runs it for
# a bounded time. Usage: scripts/fuzz-decoder.sh [seconds=60] [build dir=build-fuzz]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
out="${2:-$root/build-fuzz}"
cxx="${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++)}"
mkdir -p "$out/corpus"
# The host codecs use OpenMP (clang: libomp); one thread keeps runs reproducible.
export OMP_NUM_THREADS=1
"$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -fopenmp -I "$root" -ffp-contract=off \
  "$root"/kernels/{cpu,crc32c,wire,params,sparse,codec_host}.cpp "$root/tests/kernels/fuzz_decoder.cpp" \
  -o "$out/fuzz_decoder"
# Seed corpus: one valid message per codec, so mutations start from well-formed input.
GOSSIP_FUZZ_SEED_DIR="$out/corpus" "$out/fuzz_decoder" -runs=0 "$out/corpus" >/dev/null 2>&1
exec "$out/fuzz_decoder" -max_total_time="$secs" -max_len=8192 -timeout=10 "$out/corpus"
