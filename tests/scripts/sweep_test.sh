#!/usr/bin/env bash
# scripts/sweep.sh on a small synthetic run: it trains every run on every network, writes the
# table and the plots, accuracy, bytes and the bytes to a target do not depend on the network,
# the modelled NIC bounds the (virtual) time from below, --launch agrees with simulate, and bad
# arguments are refused with a message.
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
# Virtual time (simulate's default in the sweep), the NIC model, a target and two seeds.
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --latency 0 \
  --bandwidth '0 10' --out "$tmp/out" --target-accuracy 0.5 --eval-rounds 5 \
  --run 'fp32=algorithm.name=dpsgd;compression.codec=identity' \
  --run 'choco=algorithm.name=choco-sgd' >"$tmp/table.md" 2>"$tmp/progress.txt" || rc=$?
cat "$tmp/progress.txt" >&2
[[ $rc == 0 ]] || fail "sweep exited with status $rc"
cat "$tmp/table.md"
grep -q '^| fp32 | 10 Mbit/s, 0 ms |' "$tmp/table.md" || fail "no fp32 row at 10 Mbit/s in the table"
grep -q 'sweep \[4/4\] choco, latency 0 ms, bandwidth 10 Mbit/s' "$tmp/progress.txt" ||
  fail "no progress line for the last run"
for f in sweep.tsv sweep.json loss-vs-time.png time-to-target.png L0-B0.png L0-B10.png; do
  [[ -s $tmp/out/$f ]] || fail "no $f"
done
python3 - "$tmp/out/sweep.tsv" "$tmp/out/L0-B10/fp32" <<'PY'
import csv, glob, json, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
assert len(rows) == 4, f"{len(rows)} rows, expected 4"
by = {(r["run"], r["bandwidth_mbit"]): r for r in rows}
for run in ("fp32", "choco"):
    a, b = by[(run, "0")], by[(run, "10")]
    for k in ("test_acc_mean", "test_acc_avg_model", "mb_sent_per_peer", "rounds", "to_accuracy_mb"):
        assert a[k] == b[k], f"{run}: {k} differs between networks: {a[k]} vs {b[k]}"
    assert a["to_accuracy_reached"] == "1/1", f"{run} never reached 0.5: {a}"
    assert float(b["to_accuracy_s"]) > float(a["to_accuracy_s"]), f"{run}: 10 Mbit/s not slower"
# The NIC: a ring peer's uplink carries the bytes to both neighbours at 10 Mbit/s.
s = json.load(open(sys.argv[2] + "/summary.json"))
bound = s["bytes_sent_per_peer"] * 8 / 10e6
assert s["wall_seconds"] >= 0.99 * bound, f"time {s['wall_seconds']} s below the bound {bound} s"
print(f"fp32 at 10 Mbit/s: {s['wall_seconds']:.2f} s (virtual), NIC bound {bound:.2f} s")
PY
# --launch: one process per peer over ZeroMQ gives the same accuracy and bytes as simulate.
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --latency 0 --bandwidth 0 \
  --out "$tmp/zmq" --launch --run 'choco=algorithm.name=choco-sgd' >/dev/null 2>"$tmp/zmq.txt" ||
  { cat "$tmp/zmq.txt" >&2; fail "sweep --launch failed"; }
python3 - "$tmp/out/sweep.tsv" "$tmp/zmq/sweep.tsv" <<'PY'
import csv, sys
keys = ("test_acc_mean", "test_acc_avg_model", "mb_sent_per_peer", "rounds")
sim = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t")
       if r["run"] == "choco" and r["bandwidth_mbit"] == "0"][0]
zmq = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))[0]
assert all(sim[k] == zmq[k] for k in keys), f"launch row {zmq} differs from simulate's {sim}"
print("launch and simulate agree:", [zmq[k] for k in keys])
PY
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
refused "--clock must be virtual or real, not 'fast'" --clock fast
refused "--clock virtual needs gossip simulate" --clock virtual --launch
refused "--networks '5' must be MBIT:MS" --networks '5'
refused "the network 5:20 is listed twice" --networks '5:20 5:20'
refused "seed 'x' is not a non-negative integer" --seeds '1 x'
refused "unknown preset 'nope'" --preset nope
refused "--eval-rounds '0' is not a positive integer" --eval-rounds 0
echo "sweep: ok"
