#!/usr/bin/env bash
# Training throughput on this machine, in one run: samples per second of 8 ZeroMQ peers on a ring
# (one process each, `gossip launch`) against one peer doing all the work (batch 8x larger, the
# same samples per round). Prints a table; the runs land in OUT/throughput-* (default runs/), each
# with its output in OUT/throughput-*.log.
# Usage: scripts/bench-throughput.sh [epochs] [path/to/gossip] [OUT]
#   epochs: a positive number (default 1); gossip: default build/src/gossip of this repository;
#   relative paths are taken from the current folder.
set -euo pipefail
usage() { sed -n '6,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ ${1-} == -h || ${1-} == --help ]] && usage
(($# <= 3)) || { echo "bench-throughput: too many arguments" >&2; usage; }
epochs=${1:-1}
[[ $epochs =~ ^([0-9]+([.][0-9]*)?|[.][0-9]+)$ && ! $epochs =~ ^[0.]+$ ]] ||
  { echo "bench-throughput: epochs '$epochs' is not a positive number" >&2; usage; }
# Paths given by the caller are relative to their folder, not to the repository.
abs() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
gossip=${2:+$(abs "$2")}
out=${3:+$(abs "$3")}
cd "$(dirname "$0")/.."
gossip=${gossip:-build/src/gossip}
out=${out:-runs}
[[ -f $gossip && -x $gossip ]] ||
  { echo "bench-throughput: no gossip binary at $gossip (build first: scripts/build.sh)" >&2; exit 1; }
config=configs/ring8_deepsqueeze.toml
if ! mkdir -p "$out" 2>/dev/null || [[ ! -w $out ]]; then
  echo "bench-throughput: cannot write to the output folder $out" >&2
  exit 1
fi
common=(--set "run.epochs=$epochs" --set run.eval_every=0 --set run.checkpoint_every=0 --set run.log_every=100000)

run() {  # name, command, extra args...
  local name=$1 cmd=$2
  shift 2
  local dir=$out/throughput-$name log=$out/throughput-$name.log
  echo "bench-throughput: $name" >&2
  # run.output is a TOML string: escape backslashes and quotes.
  local toml_dir=${dir//\\/\\\\}
  toml_dir=${toml_dir//\"/\\\"}
  local rc=0
  "$gossip" "$cmd" --config "$config" "${common[@]}" --set "run.name=throughput-$name" \
    --set "run.output=\"$toml_dir\"" "$@" >"$log" 2>&1 || rc=$?
  if ((rc)) || [[ ! -f $dir/summary.json ]]; then
    echo "bench-throughput: the $name run failed (exit $rc); the last lines of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
}
run single simulate --set topology.file=ring:1 --set run.batch_size=256 \
  --set algorithm.name=dpsgd --set compression.codec=identity
run dpsgd-fp32 launch --set algorithm.name=dpsgd --set compression.codec=identity
run deepsqueeze-2bit launch
run choco-2bit launch --set algorithm.name=choco-sgd

python3 - "$out" <<'PY'
import json, sys
rows = [("single", "1 peer, batch 256"), ("dpsgd-fp32", "8 ZeroMQ peers, D-PSGD fp32"),
        ("deepsqueeze-2bit", "8 ZeroMQ peers, DeepSqueeze 2-bit"), ("choco-2bit", "8 ZeroMQ peers, CHOCO 2-bit")]
base = None
print(f"{'run':<36}{'samples/s':>12}{'x single':>10}{'test acc':>10}{'MB/peer':>10}{'wall s':>9}")
for name, label in rows:
    s = json.load(open(f"{sys.argv[1]}/throughput-{name}/summary.json"))
    sps = s["samples_per_second"]
    base = base or sps
    print(f"{label:<36}{sps:>12.0f}{sps / base:>10.2f}{s['test_accuracy_avg_model']:>10.4f}"
          f"{s['bytes_sent_per_peer'] / 1e6:>10.1f}{s['wall_seconds']:>9.1f}")
PY
