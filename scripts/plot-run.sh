#!/usr/bin/env bash
# Draws loss and test accuracy (mean of the peers' models: solid; the averaged model: dashed)
# against wall time and against bytes sent, and the peers' distance to the average model, for one
# or more runs (folders written by gossip simulate/launch), as one PNG with five panels. Accuracy
# points are the run.eval_every evaluations plus the final one of summary.json. On a problem with
# a known optimum (data.dataset = least-squares, logistic) the optimality gap F(x) - F(x*), on a
# log scale, takes the place of the accuracy.
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
plots_loss_t=() plots_loss_b=() plots_acc_t=() plots_acc_b=() plots_dist=()
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
# The quality measure: the optimality gap where the problem has a known optimum, else accuracy.
key = "optimality_gap" if any("optimality_gap" in x for r in rows.values() for x in r) else "test_accuracy"
with open(out + ".kind", "w") as fk:
    fk.write(key)
with open(out, "w") as f, open(out + ".acc", "w") as fa:
    for rnd in sorted(rows):
        r = rows[rnd]
        mean = lambda k: sum(x[k] for x in r) / len(r)
        line = f"{rnd}\t{mean('wall_seconds')}\t{mean('bytes_sent') / 1e6}\t{mean('train_loss')}"
        f.write(line + "\n")
        accs = [x[key] for x in r if key in x]
        if accs:
            avg = [x[key + "_avg_model"] for x in r if key + "_avg_model" in x]
            dist = [x["distance_to_average"] / max(x["average_norm"], 1e-30)
                    for x in r if "distance_to_average" in x]
            na = lambda v: f"{v[0]}" if v else "NaN"
            rel = [sum(dist) / len(dist)] if dist else []
            fa.write(f"{line}\t{sum(accs) / len(accs)}\t{na(avg)}\t{na(rel)}\n")
    try:  # the final evaluation (not in the metrics lines)
        with open(f"{run}/summary.json") as fs:
            s = json.load(fs)
        last = rows[max(rows)] if rows else []
        loss = sum(x["train_loss"] for x in last) / len(last) if last else float("nan")
        num = lambda v: "NaN" if v is None else f"{v}"
        fa.write(f"{s['rounds']}\t{s['wall_seconds']}\t{s['bytes_sent_per_peer'] / 1e6}\t{loss}"
                 f"\t{num(s[key + '_mean'])}\t{num(s.get(key + '_avg_model'))}"
                 f"\t{num(s.get('distance_to_average_relative_mean'))}\n")
    except (OSError, KeyError, ValueError):
        pass
PY
  name=$(basename "$run")
  plots_loss_t+=("'$tmp/$k.tsv' using 2:4 with linespoints lw 2 title '$name'")
  plots_loss_b+=("'$tmp/$k.tsv' using 3:4 with linespoints lw 2 title '$name'")
  c=$((k + 1))
  [[ -s $tmp/$k.tsv.acc ]] || { echo "plot-run: $run has no evaluation points (run.eval_every) and no summary.json: loss only" >&2; continue; }
  plots_acc_t+=("'$tmp/$k.tsv.acc' using 2:5 with linespoints lw 2 lc $c title '$name'"
    "'$tmp/$k.tsv.acc' using 2:6 with linespoints lw 2 lc $c dt 2 title '$name (avg model)'")
  plots_acc_b+=("'$tmp/$k.tsv.acc' using 3:5 with linespoints lw 2 lc $c title '$name'"
    "'$tmp/$k.tsv.acc' using 3:6 with linespoints lw 2 lc $c dt 2 title '$name (avg model)'")
  plots_dist+=("'$tmp/$k.tsv.acc' using 2:7 with linespoints lw 2 lc $c title '$name'")
done
join() { local IFS=","; echo "$*"; }
# The first run's measure names the panels: accuracy, or the optimality gap (log scale).
quality="test accuracy" qscale="unset logscale y"
if [[ $(cat "$tmp/0.tsv.kind") == optimality_gap ]]; then
  quality="F(x) - F(x*)" qscale="set logscale y"
fi
# Accuracy panels: the curves, or (no run evaluated) a note instead of a gnuplot error.
if ((${#plots_acc_t[@]})); then
  acc_t="plot $(join "${plots_acc_t[@]}")" acc_b="plot $(join "${plots_acc_b[@]}")"
  dist="set logscale y; plot $(join "${plots_dist[@]}")"
else
  empty="set label 1 'no evaluation points: set run.eval_every' at graph 0.5,0.5 center
set xrange [0:1]; set yrange [0:1]; plot -1 notitle; unset label 1; set autoscale"
  acc_t=$empty acc_b=$empty dist=$empty
fi
gnuplot <<GP
set terminal pngcairo size 1400,1400 font ",11"
set output '$out'
set termoption noenhanced
set datafile separator "\t"
set grid
set key top right
set multiplot layout 3,2 title "gossip: training loss, $quality and disagreement (mean over peers)"
set xlabel "wall time (s)"; set ylabel "train loss"
plot $(join "${plots_loss_t[@]}")
set xlabel "MB sent per peer"; set ylabel "train loss"
plot $(join "${plots_loss_b[@]}")
set key bottom right
$qscale
set xlabel "wall time (s)"; set ylabel "$quality"
$acc_t
set xlabel "MB sent per peer"; set ylabel "$quality"
$acc_b
unset logscale y
set key top right
set xlabel "wall time (s)"; set ylabel "|x_i - x_avg| / |x_avg|"
$dist
unset multiplot
GP
echo "plot: $out"
