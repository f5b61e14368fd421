#!/usr/bin/env bash
# scripts/sweep.sh on a small synthetic run: it trains every run under every link, writes the
# table and the plots, accuracy and bytes do not depend on the link, the emulated bandwidth bounds
# the wall time from below, and bad arguments are refused with a message.
set -euo pipefail
root=${GOSSIP_SOURCE_ROOT:?}
exe=${GOSSIP_EXE:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$tmp/run.toml" <<TOML
[topology]
file = "ring:3,endpoint=ipc://$tmp/peer-{rank}.sock"
[data]
dataset = "blobs"
train_limit = 1500
test_limit = 300
[algorithm]
lr = 0.05
consensus_step = 0.3
[compression]
codec = "qsgd:s=3,scaled=true"
[run]
log_every = 10
TOML
rc=0
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --latency 0 \
  --bandwidth '0 10' --out "$tmp/out" \
  --run 'fp32=algorithm.name=dpsgd;compression.codec=identity' \
  --run 'choco=algorithm.name=choco-sgd' >"$tmp/table.md" 2>"$tmp/progress.txt" || rc=$?
cat "$tmp/progress.txt" >&2
[[ $rc == 0 ]] || fail "sweep exited with status $rc"
cat "$tmp/table.md"
grep -q '^| fp32 | 0 | 10 |' "$tmp/table.md" || fail "no fp32 row at 10 Mbit/s in the table"
grep -q 'sweep \[4/4\] choco, latency 0 ms, bandwidth 10 Mbit/s' "$tmp/progress.txt" ||
  fail "no progress line for the last run"
for f in sweep.tsv sweep.png L0-B0.png L0-B10.png; do [[ -s $tmp/out/$f ]] || fail "no $f"; done
python3 - "$tmp/out/sweep.tsv" "$tmp/out/L0-B10/fp32/summary.json" <<'PY'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
assert len(rows) == 4, f"{len(rows)} rows, expected 4"
by = {(r["run"], r["bandwidth_mbit"]): r for r in rows}
for run in ("fp32", "choco"):
    a, b = by[(run, "0")], by[(run, "10")]
    for k in ("test_acc_mean", "test_acc_avg_model", "mb_sent_per_peer", "rounds"):
        assert a[k] == b[k], f"{run}: {k} differs between links: {a[k]} vs {b[k]}"
# Each of the two links of a ring peer carries half its bytes at 10 Mbit/s at most.
s = json.load(open(sys.argv[2]))
bound = s["bytes_sent_per_peer"] / 2 * 8 / 10e6
assert s["wall_seconds"] >= 0.9 * bound, f"wall {s['wall_seconds']} s below the bound {bound} s"
print(f"fp32 at 10 Mbit/s: {s['wall_seconds']:.2f} s, bandwidth bound {bound:.2f} s")
PY
# --launch: one process per peer over ZeroMQ gives the same accuracy and bytes as simulate.
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --latency 0 --bandwidth 0 \
  --out "$tmp/zmq" --launch --run 'choco=algorithm.name=choco-sgd' >/dev/null 2>"$tmp/zmq.txt" ||
  { cat "$tmp/zmq.txt" >&2; fail "sweep --launch failed"; }
sim=$(awk -F'\t' '$1 == "choco" && $3 == "0" {print $5, $6, $7, $8}' "$tmp/out/sweep.tsv")
zmq=$(awk -F'\t' '$1 == "choco" {print $5, $6, $7, $8}' "$tmp/zmq/sweep.tsv")
[[ -n $sim && $sim == "$zmq" ]] || fail "launch row '$zmq' differs from simulate's '$sim'"
echo "launch and simulate agree: accuracy, bytes and rounds $zmq"
# Bad arguments: exit 2 and a message that names them.
set +e
msg=$(bash "$root/scripts/sweep.sh" --gossip "$exe" --latency 'ten' 2>&1); rc=$?
[[ $rc == 2 && $msg == *"'ten' is not a non-negative number"* ]] || fail "bad latency: rc $rc, '$msg'"
msg=$(bash "$root/scripts/sweep.sh" --gossip "$exe" --run 'noname' 2>&1); rc=$?
[[ $rc == 2 && $msg == *"must be NAME=KEY=VALUE"* ]] || fail "bad --run: rc $rc, '$msg'"
msg=$(bash "$root/scripts/sweep.sh" --gossip "$exe" --frobnicate 2>&1); rc=$?
[[ $rc == 2 && $msg == *"unknown argument '--frobnicate'"* ]] || fail "unknown flag: rc $rc, '$msg'"
# Empty lists, duplicate and non-plain run names: refused before anything is written to --out.
refused() {  # expected message, sweep arguments...
  local want=$1
  shift
  msg=$(bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --out "$tmp/refused" \
    "$@" 2>&1); rc=$?
  [[ $rc == 2 && $msg == *"$want"* ]] || fail "$*: rc $rc, '$msg'"
  [[ ! -e $tmp/refused ]] || fail "$*: wrote $tmp/refused"
}
refused "--latency needs at least one value" --latency ''
refused "--bandwidth needs at least one value" --bandwidth ' '
refused "--bandwidth lists 10 twice" --bandwidth '10 0 10'
refused "two runs are named 'a'" --run 'a=algorithm.name=dpsgd' --run 'a=algorithm.name=choco-sgd'
refused "the name '..' is not plain" --run '..='
refused "the name 'x/y' is not plain" --run 'x/y=algorithm.name=dpsgd'
refused "the name '' is not plain" --run '=algorithm.name=dpsgd'
echo "sweep: ok"
