#!/usr/bin/env bash
# Draws loss and test accuracy against wall time and against bytes sent for one or more runs
# (folders written by gossip simulate/launch), as one PNG with four panels.
# Usage: scripts/plot-run.sh RUN_DIR [RUN_DIR ...] [-o out.png]   (default: first RUN_DIR/plot.png)
set -euo pipefail
out=""
runs=()
while (($#)); do
  case $1 in
    -o) out=$2; shift 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
((${#runs[@]})) || { echo "usage: $0 RUN_DIR [RUN_DIR ...] [-o out.png]" >&2; exit 2; }
out=${out:-${runs[0]}/plot.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Mean over peers of each logged round: wall, MB sent, loss; accuracy where evaluated.
plots_loss_t=() plots_loss_b=() plots_acc_t=() plots_acc_b=()
for k in "${!runs[@]}"; do
  run=${runs[$k]}
  ls "$run"/metrics-*.jsonl >/dev/null 2>&1 || { echo "plot-run: no metrics-*.jsonl in $run" >&2; exit 1; }
  python3 - "$run" "$tmp/$k.tsv" <<'PY'
import glob, json, sys
from collections import defaultdict
run, out = sys.argv[1], sys.argv[2]
rows = defaultdict(list)
for path in glob.glob(f"{run}/metrics-*.jsonl"):
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            rows[j["round"]].append(j)
with open(out, "w") as f, open(out + ".acc", "w") as fa:
    for rnd in sorted(rows):
        r = rows[rnd]
        mean = lambda k: sum(x[k] for x in r) / len(r)
        line = f"{rnd}\t{mean('wall_seconds')}\t{mean('bytes_sent') / 1e6}\t{mean('train_loss')}"
        f.write(line + "\n")
        accs = [x["test_accuracy"] for x in r if "test_accuracy" in x]
        if accs:
            fa.write(f"{line}\t{sum(accs) / len(accs)}\n")
PY
  name=$(basename "$run")
  plots_loss_t+=("'$tmp/$k.tsv' using 2:4 with linespoints lw 2 title '$name'")
  plots_loss_b+=("'$tmp/$k.tsv' using 3:4 with linespoints lw 2 title '$name'")
  plots_acc_t+=("'$tmp/$k.tsv.acc' using 2:5 with linespoints lw 2 title '$name'")
  plots_acc_b+=("'$tmp/$k.tsv.acc' using 3:5 with linespoints lw 2 title '$name'")
done
join() { local IFS=","; echo "$*"; }
gnuplot <<GP
set terminal pngcairo size 1400,1000 font ",11"
set output '$out'
set datafile separator "\t"
set grid
set key top right
set multiplot layout 2,2 title "gossip: training loss and test accuracy (mean over peers)"
set xlabel "wall time (s)"; set ylabel "train loss"
plot $(join "${plots_loss_t[@]}")
set xlabel "MB sent per peer"; set ylabel "train loss"
plot $(join "${plots_loss_b[@]}")
set key bottom right
set xlabel "wall time (s)"; set ylabel "test accuracy"
plot $(join "${plots_acc_t[@]}")
set xlabel "MB sent per peer"; set ylabel "test accuracy"
plot $(join "${plots_acc_b[@]}")
unset multiplot
GP
echo "plot: $out"
