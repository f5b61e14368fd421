#!/usr/bin/env bash
# Draws loss and test accuracy (mean of the peers' models: solid; the averaged model: dashed)
# against wall time and against bytes sent, and the peers' distance to the average model, for one
# or more runs (folders written by gossip simulate/launch), as one PNG with five panels. Accuracy
# points are the run.eval_every evaluations plus the final one of summary.json. On a problem with
# a known optimum (data.dataset = least-squares, logistic) the optimality gap F(x) - F(x*), on a
# log scale, takes the place of the accuracy.
# Usage: scripts/plot-run.sh RUN_DIR [RUN_DIR ...] [-o out.png]   (default: first RUN_DIR/plot.png)
set -euo pipefail
usage() { echo "usage: $0 RUN_DIR [RUN_DIR ...] [-o out.png]" >&2; exit 2; }
out=""
runs=()
while (($#)); do
  case $1 in
    -o) [[ -n ${2-} ]] || { echo "plot-run: -o needs a file name" >&2; usage; }; out=$2; shift 2 ;;
    -h | --help) usage ;;
    -?*) echo "plot-run: unknown option '$1'" >&2; usage ;;
    *) runs+=("$1"); shift ;;
  esac
done
((${#runs[@]})) || usage
out=${out:-${runs[0]}/plot.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A title between gnuplot's single quotes: quotes doubled, newlines as spaces.
gp_title() { local t=${1//$'\n'/ }; echo "${t//\'/\'\'}"; }

# Mean over peers of each logged round: wall, MB sent, loss; accuracy where evaluated.
plots_loss_t=() plots_loss_b=() plots_acc_t=() plots_acc_b=() plots_dist=()
for k in "${!runs[@]}"; do
  run=${runs[$k]}
  [[ -d $run ]] || { echo "plot-run: no run folder $run" >&2; exit 1; }
  ls "$run"/metrics-*.jsonl >/dev/null 2>&1 || { echo "plot-run: no metrics-*.jsonl in $run" >&2; exit 1; }
  python3 - "$run" "$tmp/$k.tsv" "$(dirname "$0")" <<'PY'
import json, sys
from collections import defaultdict
run, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from metrics_lines import read_metrics
rows = defaultdict(list)
for lines in read_metrics(run, "plot-run", ("wall_seconds", "bytes_sent", "train_loss")).values():
    for j in lines:
        rows[j["round"]].append(j)
if not rows:
    sys.exit(f"plot-run: no metrics lines in {run}")
# The quality measure: the optimality gap where the problem has a known optimum, else accuracy.
key = "optimality_gap" if any("optimality_gap" in x for r in rows.values() for x in r) else "test_accuracy"
def mean_of(values):
    # A Python run whose script passes no loss logs train_loss as null: drawn as a gap.
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else "NaN"
with open(out + ".kind", "w") as fk:
    fk.write(key)
with open(out, "w") as f, open(out + ".acc", "w") as fa:
    for rnd in sorted(rows):
        r = rows[rnd]
        mean = lambda k: mean_of([x.get(k) for x in r])
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
    # The final evaluation (not in the metrics lines); a run still going or killed has none.
    spath = f"{run}/summary.json"
    try:
        with open(spath, "rb") as fs:
            s = json.loads(fs.read().decode("utf-8", "replace"))
        last = rows[max(rows)]
        loss = mean_of([x.get("train_loss") for x in last])
        num = lambda v: "NaN" if v is None else f"{float(v)}"
        fa.write(f"{s['rounds']}\t{s['wall_seconds']}\t{s['bytes_sent_per_peer'] / 1e6}\t{loss}"
                 f"\t{num(s[key + '_mean'])}\t{num(s.get(key + '_avg_model'))}"
                 f"\t{num(s.get('distance_to_average_relative_mean'))}\n")
    except FileNotFoundError:
        pass
    except OSError as e:
        print(f"plot-run: warning: {spath} is unreadable ({e.strerror}): no final evaluation", file=sys.stderr)
    except ValueError:
        print(f"plot-run: warning: {spath} is unreadable (not JSON): no final evaluation", file=sys.stderr)
    except (KeyError, TypeError, AttributeError) as e:
        print(f"plot-run: warning: {spath} is unreadable (no number {e}): no final evaluation",
              file=sys.stderr)
PY
  # gnuplot runs in $tmp and reads the data under plain names; only the titles carry the run's name.
  name=$(gp_title "$(basename -- "$run")")
  plots_loss_t+=("'$k.tsv' using 2:4 with linespoints lw 2 title '$name'")
  plots_loss_b+=("'$k.tsv' using 3:4 with linespoints lw 2 title '$name'")
  c=$((k + 1))
  if [[ ! -s $tmp/$k.tsv.acc ]]; then
    why="no summary.json"
    [[ -e $run/summary.json ]] && why="an unreadable summary.json"
    echo "plot-run: $run has no evaluation points (run.eval_every) and $why: loss only" >&2
    continue
  fi
  plots_acc_t+=("'$k.tsv.acc' using 2:5 with linespoints lw 2 lc $c title '$name'"
    "'$k.tsv.acc' using 2:6 with linespoints lw 2 lc $c dt 2 title '$name (avg model)'")
  plots_acc_b+=("'$k.tsv.acc' using 3:5 with linespoints lw 2 lc $c title '$name'"
    "'$k.tsv.acc' using 3:6 with linespoints lw 2 lc $c dt 2 title '$name (avg model)'")
  plots_dist+=("'$k.tsv.acc' using 2:7 with linespoints lw 2 lc $c title '$name'")
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
# The PNG's folder must exist; gnuplot draws in $tmp (plain names) and the PNG is copied there.
outdir=$(dirname -- "$out")
[[ ! -d $out ]] || { echo "plot-run: the output $out is a folder" >&2; exit 1; }
mkdir -p -- "$outdir" 2>/dev/null || { echo "plot-run: cannot create the output folder $outdir" >&2; exit 1; }
[[ -w $outdir ]] || { echo "plot-run: cannot write to the output folder $outdir" >&2; exit 1; }
(cd "$tmp" && gnuplot >&2) <<GP || { echo "plot-run: gnuplot failed" >&2; exit 1; }
set terminal pngcairo size 1400,1400 font ",11"
set output 'plot.png'
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
[[ -s $tmp/plot.png ]] || { echo "plot-run: gnuplot wrote no plot" >&2; exit 1; }
cp -- "$tmp/plot.png" "$out" || { echo "plot-run: cannot write $out" >&2; exit 1; }
echo "plot: $out"
