#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. Prints one line per test and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

# torch too: the Python package's torch tests skip without it, and CI must run them.
bash scripts/install-deps.sh --torch
bash scripts/build.sh "$@"
status=0
meson test -C build --print-errorlogs --num-processes 2 || status=$?

# A closing line in the plain form CI reads: "N passed, N failed, N skipped".
/usr/bin/python3 - <<'PY'
import json
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0, "ERROR": 0}
with open("build/meson-logs/testlog.json") as f:
    for line in f:
        r = json.loads(line).get("result", "ERROR")
        counts[r] = counts.get(r, 0) + 1
passed = counts["OK"] + counts["EXPECTEDFAIL"]
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["UNEXPECTEDPASS"] + counts["ERROR"]
print(f"tests: {passed} passed, {failed} failed, {counts['SKIP']} skipped")
PY
exit $status
