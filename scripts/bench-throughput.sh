#!/usr/bin/env bash
# Training throughput on this machine, in one run: samples per second of 8 ZeroMQ peers on a ring
# (one process each, `gossip launch`) against one peer doing all the work (batch 8x larger, the
# same samples per round). Prints a table; the runs land in runs/throughput-*.
# Usage: scripts/bench-throughput.sh [epochs] [path/to/gossip]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-1}
gossip=${2:-build/src/gossip}
config=configs/ring8_deepsqueeze.toml
common=(--set "run.epochs=$epochs" --set run.eval_every=0 --set run.checkpoint_every=0 --set run.log_every=100000)

run() {  # name, command, extra args...
  local name=$1 cmd=$2
  shift 2
  echo "bench-throughput: $name" >&2
  "$gossip" "$cmd" --config "$config" "${common[@]}" --set "run.name=throughput-$name" "$@" >/dev/null 2>&1
}
run single simulate --set topology.file=ring:1 --set run.batch_size=256 \
  --set algorithm.name=dpsgd --set compression.codec=identity
run dpsgd-fp32 launch --set algorithm.name=dpsgd --set compression.codec=identity
run deepsqueeze-2bit launch
run choco-2bit launch --set algorithm.name=choco-sgd

python3 - "$epochs" <<'PY'
import json, sys
rows = [("single", "1 peer, batch 256"), ("dpsgd-fp32", "8 ZeroMQ peers, D-PSGD fp32"),
        ("deepsqueeze-2bit", "8 ZeroMQ peers, DeepSqueeze 2-bit"), ("choco-2bit", "8 ZeroMQ peers, CHOCO 2-bit")]
base = None
print(f"{'run':<36}{'samples/s':>12}{'x single':>10}{'test acc':>10}{'MB/peer':>10}{'wall s':>9}")
for name, label in rows:
    s = json.load(open(f"runs/throughput-{name}/summary.json"))
    sps = s["samples_per_second"]
    base = base or sps
    print(f"{label:<36}{sps:>12.0f}{sps / base:>10.2f}{s['test_accuracy_avg_model']:>10.4f}"
          f"{s['bytes_sent_per_peer'] / 1e6:>10.1f}{s['wall_seconds']:>9.1f}")
PY
