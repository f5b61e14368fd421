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
# {n}, {side} and {G/n} per peer count (--dry-run prints the commands): a whole G divides into a
# whole number, a decimal G into a decimal (a TOML float), in the runs' overrides and in --set's.
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --out "$tmp/dry" --dry-run \
  --networks 5:20 --peers '4 64 256' --set 'algorithm.momentum={1.8/n}' \
  --run 'a=run.batch_size={256/n};algorithm.lr={1.28/n};topology.file="torus:{side}x{side}"' \
  --run 'b=algorithm.lr={4.0/n};data.train_limit={1024/n}' >"$tmp/dry.txt" ||
  fail "sweep --dry-run exited with status $?"
[[ ! -e $tmp/dry ]] || fail "--dry-run wrote $tmp/dry"
bash "$root/scripts/sweep.sh" --gossip "$exe" --config "$tmp/run.toml" --dry-run --networks 0:0 \
  --peers 3 --run 'd=algorithm.lr={1.0/n};run.batch_size={12/n}' \
  >>"$tmp/dry.txt" || fail "sweep --dry-run at 3 peers exited with status $?"
python3 - "$tmp/dry.txt" <<'PY' || fail "the substituted values are wrong (commands: $tmp/dry.txt)"
import shlex, sys
want = {  # (run, peers): the overrides as sweep.sh must pass them
    ("a", 4): {"run.batch_size": "64", "algorithm.lr": "0.32", "topology.file": '"torus:2x2"',
               "algorithm.momentum": "0.45"},
    ("a", 64): {"run.batch_size": "4", "algorithm.lr": "0.02", "topology.file": '"torus:8x8"',
                "algorithm.momentum": "0.028125"},
    ("a", 256): {"run.batch_size": "1", "algorithm.lr": "0.005", "topology.file": '"torus:16x16"',
                 "algorithm.momentum": "0.00703125"},
    ("b", 4): {"algorithm.lr": "1.0", "data.train_limit": "256", "algorithm.momentum": "0.45"},
    ("b", 64): {"algorithm.lr": "0.0625", "data.train_limit": "16"},
    ("b", 256): {"algorithm.lr": "0.015625", "data.train_limit": "4"},
    ("d", 3): {"algorithm.lr": "0.333333333333", "run.batch_size": "4"},
}
seen = {}
for line in open(sys.argv[1]):
    args = shlex.split(line)
    sets = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")
    peers = int(sets["run.output"].rstrip('"').rsplit("/n-", 1)[1])
    seen[(sets["run.name"], peers)] = sets
    print(sets["run.name"], peers, {k: sets[k] for k in want.get((sets["run.name"], peers), {})})
assert set(seen) == set(want), f"commands for {sorted(seen)}"
for key, sets in seen.items():
    for k, v in want[key].items():
        assert sets.get(k) == v, f"{key}: {k} = {sets.get(k)!r}, expected {v!r}"
PY
refused "{1/n} in 'c=algorithm.lr={1/n}': 1 is not a multiple of 3 peers" --peers 3 --dry-run \
  --run 'c=algorithm.lr={1/n}'
refused "{1.2.8/n} in 'algorithm.lr={1.2.8/n}': '1.2.8' is not a whole or decimal number" \
  --peers '64' --dry-run --set 'algorithm.lr={1.2.8/n}'
refused "{1e-3/n} in 'e=algorithm.lr={1e-3/n}': '1e-3' is not a whole or decimal number" \
  --peers '64' --run 'e=algorithm.lr={1e-3/n}'
refused "{side} in 'f=topology.file=\"torus:{side}x{side}\"' needs a square peer count, not 8" \
  --peers '4 8' --run 'f=topology.file="torus:{side}x{side}"'
refused "'g=algorithm.lr={1.28/n}' says {1.28/n}, which needs --peers" --run 'g=algorithm.lr={1.28/n}'
refused "--dry-run cannot show --netns runs" --dry-run --netns
echo "sweep: ok"
