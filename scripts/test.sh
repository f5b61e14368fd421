#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test twice: in ./build (release, as users build
# it) and in ./build-asan under AddressSanitizer and UBSan (scripts/build-sanitized.sh; there the
# libFuzzer targets are also run for a few seconds each, the test fuzz-smoke). Prints one line per
# test, a summary per build, and exits non-zero when either build has a failure.
#   GOSSIP_TEST_SANITIZED=0 skips the sanitizer build (a quick run while editing).
set -euo pipefail
cd "$(dirname "$0")/.."

# torch too: the Python package's torch tests skip without it, and CI must run them.
bash scripts/install-deps.sh --torch --sanitizers
bash scripts/build.sh "$@"

# A closing line in the plain form CI reads: "DIR: N passed, N failed, N skipped".
summary() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0, "ERROR": 0}
with open(f"{sys.argv[1]}/meson-logs/testlog.json") as f:
    for line in f:
        r = json.loads(line).get("result", "ERROR")
        counts[r] = counts.get(r, 0) + 1
passed = counts["OK"] + counts["EXPECTEDFAIL"]
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["UNEXPECTEDPASS"] + counts["ERROR"]
print(f"tests ({sys.argv[1]}): {passed} passed, {failed} failed, {counts['SKIP']} skipped")
PY
}

status=0
meson test -C build --print-errorlogs --num-processes 2 || status=$?
summary build
if [[ ${GOSSIP_TEST_SANITIZED:-1} != 0 ]]; then
  bash scripts/build-sanitized.sh build-asan
  # A sanitizer report fails the test that triggers it (UBSan would only print and go on).
  # Timeouts x3: the instrumented code runs a few times slower than the release build.
  asan_status=0
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 ||
    asan_status=$?
  summary build-asan
  ((asan_status == 0)) || status=$asan_status
fi
exit $status
