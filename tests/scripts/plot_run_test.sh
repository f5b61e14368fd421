#!/usr/bin/env bash
# scripts/plot-run.sh on a small synthetic run and on damaged copies of it: a truncated last
# metrics line is skipped with a warning, other corruption and bad arguments are refused with a
# message naming the file or argument (no traceback, no PNG on stdout), and odd names still plot.
set -euo pipefail
root=${GOSSIP_SOURCE_ROOT:?}
exe=${GOSSIP_EXE:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/run.toml" <<TOML
[topology]
file = "ring:3"
[data]
dataset = "blobs"
train_limit = 600
test_limit = 150
[algorithm]
name = "dpsgd"
lr = 0.05
[compression]
codec = "identity"
[run]
epochs = 2
eval_every = 1
log_every = 5
TOML
"$exe" simulate --config "$tmp/run.toml" --set "run.output=\"$tmp/good\"" >"$tmp/run.log" 2>&1 ||
  { cat "$tmp/run.log" >&2; fail "gossip simulate failed"; }
(($(wc -l <"$tmp/good/metrics-1.jsonl") >= 3)) || fail "too few metrics lines to damage"
plot() {  # expected status, expected text in stderr, plot-run arguments...
  local want_rc=$1 want=$2 rc=0
  shift 2
  bash "$root/scripts/plot-run.sh" "$@" >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
  local err
  err=$(cat "$tmp/stderr")
  [[ $rc == "$want_rc" && $err == *"$want"* ]] || fail "plot-run $*: rc $rc (want $want_rc), '$err'"
  [[ $err != *Traceback* ]] || fail "plot-run $*: a Python traceback"
  [[ $rc != 0 || $(cat "$tmp/stdout") == "plot: "* ]] || fail "plot-run $*: stdout is not 'plot: FILE'"
  [[ $rc == 0 || ! -s $tmp/stdout ]] || fail "plot-run $*: failed but wrote to stdout"
}
plot 0 "" "$tmp/good"
[[ -s $tmp/good/plot.png ]] || fail "no plot.png"
# A killed run's partial last line: skipped with a warning naming the file.
cp -r "$tmp/good" "$tmp/killed"
head -c 40 "$tmp/good/metrics-1.jsonl" >>"$tmp/killed/metrics-1.jsonl"
plot 0 "killed/metrics-1.jsonl:" "$tmp/killed" -o "$tmp/killed.png"
[[ $(cat "$tmp/stderr") == *"truncated last line"* && -s $tmp/killed.png ]] || fail "truncated line: no warning or no plot"
# Corruption before the last line: refused, naming the file and the line.
cp -r "$tmp/good" "$tmp/corrupt"
sed -i '2s/.*/{"round": 1, garbage/' "$tmp/corrupt/metrics-2.jsonl"
plot 1 "corrupt/metrics-2.jsonl:2: not JSON" "$tmp/corrupt"
# A diverged run logs its non-finite loss as null: drawn as a gap, not refused; a string is not.
cp -r "$tmp/good" "$tmp/diverged"
sed -i '3s/"train_loss":[^,}]*/"train_loss":null/' "$tmp/diverged/metrics-0.jsonl"
grep -q '"train_loss":null' "$tmp/diverged/metrics-0.jsonl" || fail "no null loss planted"
plot 0 "" "$tmp/diverged" -o "$tmp/diverged.png"
sed -i '3s/"train_loss":null/"train_loss":"x"/' "$tmp/diverged/metrics-0.jsonl"
plot 1 "diverged/metrics-0.jsonl:3: not a metrics line (no number 'train_loss')" "$tmp/diverged"
# An unreadable summary.json is named, not mistaken for a missing one.
cp -r "$tmp/good" "$tmp/badsum"
head -c 30 "$tmp/good/summary.json" >"$tmp/badsum/summary.json"
plot 0 "badsum/summary.json is unreadable" "$tmp/badsum"
# Arguments and output paths.
plot 2 "-o needs a file name" "$tmp/good" -o
plot 0 "" "$tmp/good" -o "$tmp/new/folder/x.png"
[[ -s $tmp/new/folder/x.png ]] || fail "-o into a new folder: no plot"
touch "$tmp/afile"
plot 1 "cannot create the output folder $tmp/afile" "$tmp/good" -o "$tmp/afile/x.png"
plot 1 "no run folder $tmp/nothing" "$tmp/nothing"
# Quotes in a run's name and in the output's.
cp -r "$tmp/good" "$tmp/it's"
plot 0 "" "$tmp/it's" "$tmp/good" -o "$tmp/q'uote.png"
[[ -s "$tmp/q'uote.png" ]] || fail "quoted names: no plot"
echo "plot-run: ok"
