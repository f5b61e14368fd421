#!/usr/bin/env bash
# Samples per second of the Fashion-MNIST CNN on 8 peers of a ring: gossip (fp32 D-PSGD and
# CHOCO-SGD with 2-bit scaled QSGD) against the same training under torch.distributed (gloo,
# isend/irecv to the ring neighbours, python/examples/torch_dpsgd_ring.py). Every run is started
# by the same launcher (`gossip launch -- ...`, which sets RANK and WORLD_SIZE for torch too) with
# the same threads, data, batches and epochs; the runs alternate, REPEAT times, so a change in the
# machine's load falls on all of them. Prints a Markdown table (and writes OUT/table.md).
#
#   python/benchmarks/against_torch_distributed.sh [EPOCHS] [REPEAT] [OUT] [ARGS...]
# ARGS go to both training scripts (e.g. --test-limit 2000: a shorter evaluation, which is not
# part of the timed training).
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-1}
repeat=${2:-2}
out=${3:-runs/against-torch}
extra=("${@:4}")
gossip=${GOSSIP:-build/src/gossip}
export PYTHONPATH=${PYTHONPATH:-$PWD/build/python}
ex=python/examples
mkdir -p "$out"
for ((i = 1; i <= repeat; i++)); do
  for run in torch dpsgd choco; do
    dir=$out/$run-$i
    echo "== $run, repetition $i of $repeat ($(date +%T))" >&2
    if [[ $run == torch ]]; then
      "$gossip" launch --config $ex/ring8_dpsgd.toml --set "run.output=\"$dir\"" -- \
        /usr/bin/python3 $ex/torch_dpsgd_ring.py --epochs "$epochs" --output "$dir" "${extra[@]}" >/dev/null
    else
      "$gossip" launch --config $ex/ring8_$run.toml --set "run.output=\"$dir\"" -- \
        /usr/bin/python3 $ex/train_fashion_cnn.py --epochs "$epochs" \
        --summary "$dir/summary.json" "${extra[@]}" >/dev/null
    fi
  done
done
/usr/bin/python3 - "$out" "$repeat" <<'PY' | tee "$out/table.md"
import json, statistics, sys
out, repeat = sys.argv[1], int(sys.argv[2])
def load(run, i):
    with open(f"{out}/{run}-{i}/summary.json") as f:
        return json.load(f)
names = {"torch": "torch.distributed (gloo) D-PSGD fp32", "dpsgd": "gossip D-PSGD fp32",
         "choco": "gossip CHOCO-SGD 2-bit"}
base = statistics.median(load("torch", i)["samples_per_second"] for i in range(1, repeat + 1))
print("| run | samples/s (each repetition) | median | vs torch.distributed | MB sent per peer | test accuracy (peers / averaged) |")
print("| --- | --- | --- | --- | --- | --- |")
for run in ("torch", "dpsgd", "choco"):
    s = [load(run, i) for i in range(1, repeat + 1)]
    sps = [x["samples_per_second"] for x in s]
    med = statistics.median(sps)
    mb = statistics.mean(s[-1]["bytes_sent_per_peer"]) / 1e6
    print(f"| {names[run]} | {', '.join(f'{v:.0f}' for v in sps)} | {med:.0f} | {med / base:.2f}x "
          f"| {mb:.1f} | {s[-1]['test_accuracy_mean']:.4f} / {s[-1]['test_accuracy_avg_model']:.4f} |")
PY
