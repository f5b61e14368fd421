#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/: decoder, frame, topology, config, checkpoint) with
# clang, AddressSanitizer and UBSan (scripts/build-sanitized.sh), and runs each for a bounded
# number of inputs or seconds from a seed corpus of valid inputs (real codec messages and frames,
# the repository's topology files and run configs, real checkpoints), then prints one line per
# target: inputs run, wall and CPU seconds, result. Exits 1 when a target found a crash, leak or sanitizer
# report (its log and the input that did it are under BUILD/fuzz/), 77 when there is no clang
# with libFuzzer (or, with --no-build, no targets in BUILD).
#
# Usage: scripts/fuzz.sh [--runs N] [--seconds S] [--timeout S] [--build DIR] [--out DIR] [--no-build]
#                        [TARGET...]
#   --runs N     inputs per target (libFuzzer -runs)
#   --seconds S  seconds per target (default 60 without --runs; libFuzzer -max_total_time);
#                with both, each target stops at whichever comes first
#   --timeout S  wall seconds one input may take before it counts as a hang (default 10; libFuzzer
#                measures wall time, so a fuzzer at low priority on a busy machine needs more)
#   --build DIR  build folder (default build-asan, shared with scripts/test.sh's sanitizer build)
#   --out DIR    corpora, logs and crashing inputs (default BUILD/fuzz)
#   --no-build   use the targets already built in DIR (the meson test fuzz-smoke does)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
all=(decoder frame topology config checkpoint)
runs=()
secs=()
build="$root/build-asan"
work=""
compile=1
timeout=10
targets=()
while (($#)); do
  case "$1" in
    --runs) runs=(-runs="$2"); shift 2 ;;
    --seconds) secs=(-max_total_time="$2"); shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --build) build="$(cd "$2" 2>/dev/null && pwd || echo "$2")"; shift 2 ;;
    --out) work="$2"; shift 2 ;;
    --no-build) compile=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=("${all[@]}")
((${#runs[@]} + ${#secs[@]})) || secs=(-max_total_time=60)
limit=("${runs[@]}" "${secs[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (known: ${all[*]})" >&2; exit 2; }
done

if ((compile)); then
  if ! command -v clang++-14 >/dev/null; then
    echo "fuzz.sh: SKIP: no clang++-14 (apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)"
    exit 77
  fi
  bash "$root/scripts/build-sanitized.sh" "$build" "${targets[@]/#/fuzz_}"
fi
for t in "${targets[@]}"; do
  if [[ ! -x "$build/tests/fuzz/fuzz_$t" ]]; then
    echo "fuzz.sh: SKIP: $build has no fuzz targets (built by clang with libFuzzer only; scripts/fuzz.sh builds them)"
    exit 77
  fi
done

# One thread in the codecs and the BLAS: runs are reproducible and use one core.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 GOSSIP_SOURCE_ROOT="$root"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" ASAN_OPTIONS="detect_leaks=1"
declare -A max_len=([decoder]=8192 [frame]=4096 [topology]=4096 [config]=4096 [checkpoint]=16384)
work="${work:-$build/fuzz}"
status=0
rows=()
for t in "${targets[@]}"; do
  exe="$build/tests/fuzz/fuzz_$t"
  corpus="$work/corpus/$t"
  mkdir -p "$corpus" "$work/artifacts/$t"
  log="$work/$t.log"
  # Seeds: the target writes valid inputs at start-up, then runs them once.
  GOSSIP_FUZZ_SEED_DIR="$corpus" "$exe" -runs=0 "$corpus" >"$log.seed" 2>&1 || true
  start=$(date +%s.%N)
  rc=0
  /usr/bin/time -f "%U %S" -o "$log.cpu" "$exe" "${limit[@]}" -max_len="${max_len[$t]}" -timeout="$timeout" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" "$corpus" >"$log" 2>&1 || rc=$?
  secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  inputs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cpu=$(tail -1 "$log.cpu" 2>/dev/null | awk '{ printf "%.1f", $1 + $2 }')
  if ((rc == 0)); then
    result="ok"
  else
    result="FAILED (exit $rc): $(grep -m1 -E 'ERROR|runtime error|property violated|deadly signal' "$log" || echo "see log") -- $log"
    status=1
  fi
  rows+=("$(printf '%-11s %13s %9s %9s  %s' "$t" "${inputs:-?}" "$secs" "$cpu" "$result")")
done
# seconds: wall clock; cpu: the fuzzer's CPU seconds (the rate on a machine shared with others)
printf '%-11s %13s %9s %9s  %s\n' target inputs seconds cpu result
printf '%s\n' "${rows[@]}"
exit $status
