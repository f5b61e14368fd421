#!/usr/bin/env bash
# The checks that need a GPU, from the archive scripts/gpu-bundle.sh made (.gpu/gossip-gpu.tar.xz):
#   1. the CUDA tests: device codecs byte-identical to the host ones, the cuBLAS model against
#      the OpenBLAS one, every algorithm's state on the GPU bit-identical to the host's (a skip,
#      exit 77, counts as a failure here: there must be a GPU);
#   2. compute-sanitizer memcheck, racecheck and synccheck on the device-codec test (and memcheck
#      on the algorithm test), when the machine has compute-sanitizer;
#   3. `gossip bench codecs --device cuda` at 16M elements (JSON rows), beside
#      device-to-device copy bandwidth;
#   4. time per round of every algorithm with its state on the GPU and on the host (ring of 8
#      threads, d = 10^6);
#   5. two epochs of the MLP with run.device=cuda on synthetic data, against run.device=cpu.
# Every step's output goes to OUT_DIR (default gpu-check-out); a summary line per step ends it.
# Exit status: the number of failed steps.
#
# Usage: bash scripts/gpu-check.sh [OUT_DIR]
set -uo pipefail
export PATH="$PATH:/usr/local/cuda/bin"
cd "$(dirname "$0")/.."
out=${1:-gpu-check-out}
mkdir -p "$out"
archive=.gpu/gossip-gpu.tar.xz
if [[ ! -f $archive ]]; then
  echo "gpu-check: $archive is missing: run scripts/gpu-bundle.sh on the build machine first" >&2
  exit 100
fi
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no GPU visible (nvidia-smi -L failed): run this on a machine with one" >&2
  exit 100
fi
root=$(mktemp -d)
tar -C "$root" -xJf "$archive"
echo "gpu-check: bundle of commit $(cat "$root/commit") on $(nvidia-smi -L | head -1)"

# The CUDA libraries of the major version the binaries need, from wherever this machine keeps
# them (the toolkit, or the pip wheels of a framework).
soname=$(cat "$root/cudart-soname")
major=${soname##*.so.}
libdirs=()
for name in "$soname" "libcublas.so.$major" "libcublasLt.so.$major"; do
  found=$(find /usr/local/cuda*/lib* /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu \
    /opt /usr/local/lib -name "$name" 2>/dev/null | head -1)
  if [[ -z $found ]]; then
    echo "gpu-check: $name not found on this machine (need a CUDA $major runtime)" >&2
    exit 100
  fi
  libdirs+=("$(dirname "$found")")
done
export LD_LIBRARY_PATH="$root/lib:$(printf '%s:' "${libdirs[@]}")${LD_LIBRARY_PATH:-}"
bin=$root/bin

failed=0
summary=()
step() {  # step NAME COMMAND...: runs it, output to $out/NAME.log, records pass/fail
  local name=$1
  shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$out/$name.log"
  if [[ $rc -eq 0 ]]; then summary+=("PASS $name"); else
    summary+=("FAIL $name (exit $rc; $out/$name.log)")
    failed=$((failed + 1))
  fi
}

step cuda-identity "$bin/test_kernels_cuda_identity"
step gpu-twins "$bin/test_kernels_gpu_twins"
step model-cuda "$bin/runtime_model_cuda_test"
step algorithm-cuda "$bin/test_algorithm_cuda"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    step "sanitizer-$tool" env GOSSIP_CUDA_TEST_QUICK=1 compute-sanitizer --tool "$tool" \
      --error-exitcode 1 "$bin/test_kernels_cuda_identity"
  done
  step sanitizer-memcheck-algorithms compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$bin/test_algorithm_cuda"
else
  summary+=("SKIP compute-sanitizer (not installed)")
fi
bench() {  # once, JSON rows to a file of their own; progress and errors go to the step's log
  "$bin/gossip" bench codecs --device cuda --size 16777216 --json >"$out/bench-codecs-cuda.json"
}
step bench-codecs-cuda bench
step bench-algorithms-cuda "$bin/test_algorithm_bench" 1000000 20 cuda
step bench-algorithms-cpu "$bin/test_algorithm_bench" 1000000 20 cpu
train() {  # train DEVICE: two epochs of the MLP on synthetic blobs, 4 peers on a ring
  "$bin/gossip" simulate --config configs/ring8_deepsqueeze.toml --set topology.file=ring:4 \
    --set data.dataset=blobs --set run.epochs=2 --set run.device="$1" \
    --set run.output="\"$out/train-$1\""
}
step train-cpu train cpu
step train-cuda train cuda

echo
echo "gpu-check summary (logs in $out):"
printf '  %s\n' "${summary[@]}"
for d in cpu cuda; do
  [[ -f $out/train-$d/summary.json ]] &&
    echo "  train $d: $(grep -o '"test_accuracy_mean":[^,]*' "$out/train-$d/summary.json")"
done
exit $failed
