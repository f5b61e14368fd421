#!/usr/bin/env bash
# Which algorithm and codec wins on a given network. Trains every run of a list under every
# emulated link (one-way latency and bandwidth, applied by the receiving transport to each link:
# transport.latency_ms, transport.bandwidth_mbit), prints a table of wall time, accuracy and bytes
# per run and link, and draws
#   OUT/sweep.png            wall time against bandwidth (one line per run and latency) and test
#                            accuracy against wall time (one point per run and link);
#   OUT/L<ms>-B<mbit>.png    loss and accuracy against wall time and bytes for each link
#                            (scripts/plot-run.sh).
# The table is also written as OUT/sweep.tsv. Runs are deterministic, so accuracy and bytes do not
# depend on the link; only the time does.
#
# Usage: scripts/sweep.sh [options]
#   --config FILE          run config (default configs/ring8_deepsqueeze.toml)
#   --run 'NAME=K=V;K=V'   one run: a name and its config overrides, separated by ';' (repeatable;
#                          default: D-PSGD fp32, CHOCO-SGD 2-bit, DeepSqueeze 2-bit)
#   --latency 'MS ...'     one-way latencies in ms (default '0 20')
#   --bandwidth 'MBIT ...' link bandwidths in Mbit/s, 0 for unlimited (default '0 1000 100')
#   --epochs E             epochs per run (default 1)
#   --set K=V              an override for every run (repeatable)
#   --out DIR              where runs, table and plots go (default runs/sweep)
#   --launch               one process per peer over ZeroMQ (gossip launch); default: gossip
#                          simulate, all peers in one process over the in-process transport
#   --command 'CMD ARGS'   each peer runs CMD (split at spaces) under `gossip launch -- CMD`,
#                          e.g. a Python training script of your own (docs/python.md); implies
#                          --launch. The command decides how long it trains (run.epochs is its
#                          to read or not), and the table comes from its metrics lines: the
#                          last test_accuracy it logged (opt.log) and test_accuracy_avg_model
#   --gossip PATH          the gossip binary (default build/src/gossip)
# Example: scripts/sweep.sh --bandwidth '0 100 10' --run 'fp32=algorithm.name=dpsgd;compression.codec=identity' \
#            --run 'choco=algorithm.name=choco-sgd'
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/ring8_deepsqueeze.toml
runs=()
latencies="0 20"
bandwidths="0 1000 100"
epochs=1
common=()
out=runs/sweep
command=simulate
user_cmd=()
gossip=build/src/gossip
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
need() { (($# >= 2)) || { echo "sweep: $1 needs a value" >&2; exit 2; }; }
while (($#)); do
  case $1 in
    --config) need "$@"; config=$2; shift 2 ;;
    --run) need "$@"; runs+=("$2"); shift 2 ;;
    --latency) need "$@"; latencies=$2; shift 2 ;;
    --bandwidth) need "$@"; bandwidths=$2; shift 2 ;;
    --epochs) need "$@"; epochs=$2; shift 2 ;;
    --set) need "$@"; common+=(--set "$2"); shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --launch) command=launch; shift ;;
    --command) need "$@"; read -ra user_cmd <<<"$2"; command=launch; shift 2
      ((${#user_cmd[@]})) || { echo "sweep: --command needs a command" >&2; exit 2; } ;;
    --gossip) need "$@"; gossip=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "sweep: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((${#runs[@]})) || runs=(
  'dpsgd-fp32=algorithm.name=dpsgd;compression.codec=identity'
  'choco-2bit=algorithm.name=choco-sgd'
  'deepsqueeze-2bit=algorithm.name=deepsqueeze'
)
[[ -x $gossip ]] || { echo "sweep: no gossip binary at $gossip (build first: scripts/build.sh)" >&2; exit 1; }
[[ -f $config ]] || { echo "sweep: no config file $config" >&2; exit 1; }
# Run names become folders OUT/L*-B*/NAME and logs NAME.log: plain, distinct names only.
declare -A seen=()
for r in "${runs[@]}"; do
  [[ $r == *=* ]] || { echo "sweep: --run '$r' must be NAME=KEY=VALUE[;KEY=VALUE...]" >&2; exit 2; }
  name=${r%%=*}
  [[ $name =~ ^[A-Za-z0-9._-]+$ && $name != . && $name != .. ]] || {
    echo "sweep: --run '$r': the name '$name' is not plain (letters, digits, '.', '_', '-'; not '.' or '..')" >&2
    exit 2
  }
  [[ -z ${seen[$name]+x} ]] || { echo "sweep: two runs are named '$name'" >&2; exit 2; }
  seen[$name]=1
done
for name in "${!seen[@]}"; do
  [[ -z ${seen[$name.log]+x} ]] || { echo "sweep: the run '$name.log' would collide with the log of '$name'" >&2; exit 2; }
done
read -ra lat_list <<<"$latencies"
read -ra bw_list <<<"$bandwidths"
((${#lat_list[@]})) || { echo "sweep: --latency needs at least one value" >&2; usage; }
((${#bw_list[@]})) || { echo "sweep: --bandwidth needs at least one value" >&2; usage; }
for v in "${lat_list[@]}" "${bw_list[@]}"; do
  [[ $v =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "sweep: '$v' is not a non-negative number" >&2; exit 2; }
done
# A value listed twice would run into the same folders.
dup=$(printf '%s\n' "${lat_list[@]}" | sort | uniq -d | head -n 1)
[[ -z $dup ]] || { echo "sweep: --latency lists $dup twice" >&2; exit 2; }
dup=$(printf '%s\n' "${bw_list[@]}" | sort | uniq -d | head -n 1)
[[ -z $dup ]] || { echo "sweep: --bandwidth lists $dup twice" >&2; exit 2; }

mkdir -p "$out"
table=$out/sweep.tsv
printf 'run\tlatency_ms\tbandwidth_mbit\twall_s\ttest_acc_mean\ttest_acc_avg_model\tmb_sent_per_peer\trounds\n' >"$table"
total=$((${#lat_list[@]} * ${#bw_list[@]} * ${#runs[@]}))
k=0
for lat in "${lat_list[@]}"; do
  for bw in "${bw_list[@]}"; do
    link="L${lat}-B${bw}"
    dirs=()
    for r in "${runs[@]}"; do
      name=${r%%=*}
      IFS=';' read -ra kv <<<"${r#*=}"
      sets=()
      for s in "${kv[@]}"; do [[ -n $s ]] && sets+=(--set "$s"); done
      dir=$out/$link/$name
      toml_dir=${dir//\\/\\\\}  # run.output is a TOML string: backslashes and quotes escaped
      toml_dir=${toml_dir//\"/\\\"}
      k=$((k + 1))
      bw_text=$([[ $bw == 0 ]] && echo unlimited || echo "$bw Mbit/s")
      echo "sweep [$k/$total] $name, latency $lat ms, bandwidth $bw_text" >&2
      log=$out/$link/$name.log
      mkdir -p "$out/$link"
      # Evaluated every epoch (runs and --set may say otherwise) for the accuracy-against-time plots.
      if ! "$gossip" "$command" --config "$config" --set run.eval_every=1 "${sets[@]}" \
        "${common[@]+"${common[@]}"}" \
        --set "run.epochs=$epochs" --set "transport.latency_ms=$lat" \
        --set "transport.bandwidth_mbit=$bw" --set "run.name=$name" \
        --set "run.output=\"$toml_dir\"" ${user_cmd[@]+-- "${user_cmd[@]}"} >"$log" 2>&1; then
        echo "sweep: $name failed under $link; its output: $log" >&2
        tail -n 5 "$log" >&2
        exit 1
      fi
      python3 - "$dir" "$name" "$lat" "$bw" >>"$table" <<'PY'
import glob, json, os, sys
run = sys.argv[1]
if os.path.exists(f"{run}/summary.json"):  # the CLI's runs
    s = json.load(open(f"{run}/summary.json"))
    row = [s["wall_seconds"], s["test_accuracy_mean"], s["test_accuracy_avg_model"],
           s["bytes_sent_per_peer"], s["rounds"]]
else:  # a command's run (--command): each peer's metrics lines, the last values logged
    last = {}
    for path in sorted(glob.glob(f"{run}/metrics-*.jsonl")):
        for line in open(path):
            j = json.loads(line)
            for k, v in j.items():
                if v is not None:
                    last.setdefault(j["rank"], {})[k] = v
    if not last:
        sys.exit(f"sweep: {run} has neither summary.json nor metrics lines")
    peers = list(last.values())
    acc = [p["test_accuracy"] for p in peers if "test_accuracy" in p]
    avg = [p["test_accuracy_avg_model"] for p in peers if "test_accuracy_avg_model" in p]
    row = [max(p["wall_seconds"] for p in peers), sum(acc) / len(acc) if acc else float("nan"),
           avg[0] if avg else float("nan"), sum(p["bytes_sent"] for p in peers) / len(peers),
           max(p["round"] for p in peers)]
wall, mean, average, sent, rounds = row
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], f"{wall:.2f}", f"{mean:.4f}",
                 f"{average:.4f}", f"{sent / 1e6:.2f}", str(rounds)]))
PY
      tail -n 1 "$table" | awk -F'\t' '{printf "  wall %s s, test accuracy %s (averaged model %s), %s MB sent per peer\n", $4, $5, $6, $7}' >&2
      dirs+=("$dir")
    done
    bash scripts/plot-run.sh "${dirs[@]}" -o "$out/$link.png" >/dev/null 2>"$out/$link.plot.log" ||
      echo "sweep: the plot for $link failed: $out/$link.plot.log" >&2
    [[ -s $out/$link.plot.log ]] || rm -f "$out/$link.plot.log"
  done
done

# The table, as Markdown, on stdout.
python3 - "$table" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| run | latency ms | bandwidth Mbit/s | wall s | test acc (peers / averaged) | MB sent per peer |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    bw = "unlimited" if float(r["bandwidth_mbit"]) == 0 else r["bandwidth_mbit"]
    print(f"| {r['run']} | {r['latency_ms']} | {bw} | {r['wall_s']} | "
          f"{r['test_acc_mean']} / {r['test_acc_avg_model']} | {r['mb_sent_per_peer']} |")
PY

# sweep.png: wall time against bandwidth (categories, unlimited first), accuracy against time.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$table" "$tmp" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
bws = sorted({float(r["bandwidth_mbit"]) for r in rows}, key=lambda b: (b != 0, -b))
series = {}
for r in rows:
    series.setdefault((r["run"], r["latency_ms"]), []).append(r)
with open(f"{sys.argv[2]}/series", "w") as index:
    for i, ((run, lat), rs) in enumerate(series.items()):
        with open(f"{sys.argv[2]}/{i}.tsv", "w") as f:
            for r in sorted(rs, key=lambda r: bws.index(float(r["bandwidth_mbit"]))):
                b = float(r["bandwidth_mbit"])
                label = "unlimited" if b == 0 else f"{r['bandwidth_mbit']}"
                f.write(f"{bws.index(b)}\t{label}\t{r['wall_s']}\t{r['test_acc_avg_model']}\n")
        index.write(f"{i}\t{run}, {lat} ms\n")
PY
wall_plots=() acc_plots=()
while IFS=$'\t' read -r i title; do
  wall_plots+=("'$i.tsv' using 1:3:xtic(2) with linespoints lw 2 title '$title'")
  acc_plots+=("'$i.tsv' using 3:4 with points pt 7 ps 1.5 title '$title'")
done <"$tmp/series"
join() { local IFS=","; echo "$*"; }
# gnuplot draws in $tmp, under plain names, whatever OUT is called; the PNG is copied to OUT.
(cd "$tmp" && gnuplot >&2) <<GP || { echo "sweep: gnuplot failed on sweep.png" >&2; exit 1; }
set terminal pngcairo size 1400,600 font ",11"
set output 'sweep.png'
set termoption noenhanced
set datafile separator "\t"
set grid
set multiplot layout 1,2 title "gossip sweep: $epochs epoch(s) per run, $command"
set xlabel "link bandwidth (Mbit/s)"; set ylabel "wall time (s)"; set key top left
plot $(join "${wall_plots[@]}")
set xlabel "wall time (s)"; set ylabel "test accuracy (averaged model)"; set key bottom right
set xtics auto
plot $(join "${acc_plots[@]}")
unset multiplot
GP
cp -- "$tmp/sweep.png" "$out/sweep.png"
echo "sweep: table $table, plots $out/sweep.png and $out/L*-B*.png" >&2
