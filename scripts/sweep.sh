#!/usr/bin/env bash
# Which algorithm and codec reaches a target first on a given network, and by how much against
# all-reduce. Trains every run of a list on every network (one-way latency and bandwidth) and
# seed, then scripts/sweep_report.py writes the table and the plots from the runs' metrics:
#   OUT/sweep.tsv, OUT/sweep.json  one row per run and network (seeds: mean and spread): time,
#                                  accuracy, bytes, and the time and bytes to each target;
#   OUT/loss-vs-time.png           training loss against time, one panel per network;
#   OUT/time-to-target.png         time to the target against bandwidth and latency (with a
#                                  target);
#   OUT/L<ms>-B<mbit>.png          loss and accuracy against time and bytes for each network
#                                  (scripts/plot-run.sh).
# Runs are deterministic, so accuracy and bytes do not depend on the network; only time does.
# By default the bandwidth is each peer's NIC (transport.uplink_mbit and downlink_mbit: one
# token bucket each, shared by all of a peer's links) and `gossip simulate` runs in virtual time
# (transport.clock = virtual: nobody sleeps, each peer's clock advances by its own CPU time and
# the modelled network time), so a 5 Mbit/s network costs no more real time than an unlimited
# one. docs/transport.md describes the model.
#
# Usage: scripts/sweep.sh [options]
#   --preset NAME          tang2018: 8 peers on a ring, the MLP, all-reduce against gossip at
#                          (1400 Mbit/s, 0.13 ms), (1400 Mbit/s, 20 ms), (5 Mbit/s, 20 ms), target
#                          accuracy 0.85 (Tang et al., NeurIPS 2018);
#                          choco-table1: the algorithm x compressor grid of the CHOCO-SGD paper's
#                          Table 1 (ICLR 2020) on an unlimited network, accuracy after the budget.
#                          scale: all-reduce against CHOCO-SGD with sign on a ring, a torus and
#                          a random 4-regular graph of 64 and 256 peers at (5 Mbit/s, 20 ms).
#                          A preset sets the options below; options after it change them (--run
#                          adds a run).
#   --config FILE          run config (default configs/ring8_deepsqueeze.toml)
#   --run 'NAME=K=V;K=V'   one run: a name and its config overrides, separated by ';' (repeatable;
#                          default: all-reduce fp32, D-PSGD fp32, CHOCO-SGD 2-bit, DeepSqueeze
#                          2-bit). Any algorithm name the binary knows works.
#   --latency 'MS ...'     one-way latencies in ms (default '0 20')
#   --bandwidth 'MBIT ...' bandwidths in Mbit/s, 0 for unlimited (default '0 1000 100'); every
#                          latency with every bandwidth
#   --networks 'MBIT:MS ...'  these (bandwidth, latency) pairs instead of the grid
#   --link-bandwidth       the bandwidth is each link's (transport.bandwidth_mbit), not the NIC's
#   --clock virtual|real   transport.clock of simulate (default virtual; --launch: real)
#   --epochs E             epochs per run (default 1)
#   --seeds 'S ...'        run.seed values; each run and network is trained once per seed and the
#                          table shows mean and spread (default: the config's seed)
#   --peers 'N ...'        train every run once per peer count; its overrides (and --set's) may
#                          say {n} (the count), {side} (its square root) and {G/n} (G divided by
#                          the count), e.g. topology.file="torus:{side}x{side}";run.batch_size=
#                          {256/n} (the same global batch; a whole G must be a multiple of the
#                          count and gives a whole number); G may be a decimal, which gives a
#                          decimal (12 significant digits): algorithm.lr={1.28/n} (a step in
#                          proportion to the batch per peer: 0.02 at 64 peers, 0.005 at 256);
#                          the table and time-to-target.png then show how the time grows with
#                          the number of peers
#   --target-accuracy A    report the time and bytes to reach test accuracy A (averaged model)
#   --target-loss L        ... and to reach a mean training loss of L
#   --eval-rounds K        run.eval_every_rounds (default 20 with a target, else per epoch)
#   --time-budget S        stop a run after S seconds of real time (an agreed stop, like Ctrl-C);
#                          the table says "budget" for it
#   --set K=V              an override for every run, after the run's own (repeatable)
#   --out DIR              where runs, table and plots go (default runs/sweep)
#   --netns                one process per peer over ZeroMQ, each in its own network namespace
#                          with its NIC shaped by the kernel (tbf, scripts/netns.sh; root); the
#                          latency stays in the transport. The check of the modelled networks.
#                          The namespaces are gsp-s<the sweep's pid>-RANK (and -hub)
#   --launch               one process per peer over ZeroMQ (gossip launch); default: gossip
#                          simulate, all peers in one process over the in-process transport
#   --command 'CMD ARGS'   each peer runs CMD (split at spaces) under `gossip launch -- CMD`,
#                          e.g. a Python training script of your own (docs/python.md); implies
#                          --launch. The command decides how long it trains (run.epochs is its
#                          to read or not), and the table comes from its metrics lines: the
#                          last test_accuracy it logged (opt.log) and test_accuracy_avg_model
#   --gossip PATH          the gossip binary (default build/src/gossip)
#   --dry-run              print each run's command line (quoted for the shell, one a line) and
#                          stop: nothing is trained or written (not with --netns)
# Stopping the sweep (Ctrl-C, SIGTERM, SIGHUP) stops the run in progress first (SIGTERM: its
# peers agree on a stop round), kills it and every process under it if it still runs after
# SWEEP_STOP_GRACE seconds (default 30), and only then exits, removing --netns's namespaces.
# Example: scripts/sweep.sh --preset tang2018 --out runs/tang2018
#          scripts/sweep.sh --networks '5:20 100:1' --target-accuracy 0.8 --seeds '1 2 3' \
#            --run 'allreduce=algorithm.name=allreduce;compression.codec=identity' \
#            --run 'choco-sign=algorithm.name=choco-sgd;compression.codec="sign"'
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/ring8_deepsqueeze.toml
runs=()
latencies="0 20"
bandwidths="0 1000 100"
networks=""
nic=1
netns=0
dry_run=0
clock=""
epochs=1
seeds=""
peer_counts=""
target_acc=""
target_loss=""
eval_rounds=""
budget=""
common=()
out=runs/sweep
command=simulate
user_cmd=()
gossip=build/src/gossip
title=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
need() { (($# >= 2)) || { echo "sweep: $1 needs a value" >&2; exit 2; }; }
# The presets: each sets the options of a study; later options change them.
preset() {
  case $1 in
    tang2018)
      title="Tang et al. 2018 networks: 8 peers, ring, MLP on Fashion-MNIST"
      config=configs/ring8_deepsqueeze.toml
      networks="1400:0.13 1400:20 5:20"
      epochs=3 target_acc=0.85 eval_rounds=20
      runs=(
        'allreduce-fp32=algorithm.name=allreduce;compression.codec=identity'
        'dpsgd-fp32=algorithm.name=dpsgd;compression.codec=identity'
        'dcd-8bit=algorithm.name=dcd-psgd;compression.codec="qsgd:s=127,bucket=64"'
        'choco-sign=algorithm.name=choco-sgd;compression.codec="sign";algorithm.consensus_step=0.45'
        'deepsqueeze-sign=algorithm.name=deepsqueeze;compression.codec="sign";algorithm.consensus_step=0.2'
      ) ;;
    choco-table1)
      title="CHOCO-SGD Table 1 grid: 8 peers, ring, MLP on Fashion-MNIST"
      config=configs/ring8_deepsqueeze.toml
      networks="0:0"
      epochs=3
      # The paper's b-bit QSGD (sign included) is qsgd with s = 2^(b-1) - 1 levels here; its
      # random-k keeps k coordinates unscaled for CHOCO (a contraction, as its theory needs) and
      # scaled by d/k for DCD (unbiased, as its theory needs). γ_c (CHOCO) shrinks with the
      # compressor's δ; the paper tuned it, these are fixed guesses stated in the run names' rows.
      runs=('allreduce-fp32=algorithm.name=allreduce;compression.codec=identity')
      local cells=(
        'qsgd16=qsgd:s=32767,bucket=64=1.0'
        'qsgd8=qsgd:s=127,bucket=64=0.8'
        'qsgd4=qsgd:s=7,bucket=64=0.5'
        'qsgd2=qsgd:s=1,bucket=64=0.3'
        'random50=randomk:ratio=0.5=0.5'
        'random10=randomk:ratio=0.1=0.1'
        'random1=randomk:ratio=0.01=0.01'
        'top50=topk:ratio=0.5=0.5'
        'top10=topk:ratio=0.1=0.2'
        'top1=topk:ratio=0.01=0.05'
        'sign=sign=0.45'
      )
      local cell name codec step
      for cell in "${cells[@]}"; do
        name=${cell%%=*} step=${cell##*=} codec=${cell#*=} codec=${codec%=*}
        if [[ $codec == randomk* ]]; then
          runs+=("dcd-$name=algorithm.name=dcd-psgd;compression.codec=\"$codec,unbiased=true\"")
          runs+=("choco-$name=algorithm.name=choco-sgd;compression.codec=\"$codec,unbiased=false\";algorithm.consensus_step=$step")
        else
          runs+=("dcd-$name=algorithm.name=dcd-psgd;compression.codec=\"$codec\"")
          runs+=("choco-$name=algorithm.name=choco-sgd;compression.codec=\"$codec\";algorithm.consensus_step=$step")
        fi
      done ;;
    scale)
      title="64 and 256 peers, global batch 256, MLP on Fashion-MNIST (virtual time)"
      config=configs/ring8_deepsqueeze.toml
      networks="5:20"
      peer_counts="64 256"
      epochs=10 target_acc=0.85 eval_rounds=100
      # gamma_c 0.2 and a step in proportion to the batch per peer (0.02 at 64 peers, 0.005 at
      # 256): CHOCO-SGD with the 8-peer ring's 0.45 and 0.05 diverges at both counts.
      local same="run.batch_size={256/n};algorithm.name=choco-sgd;compression.codec=\"sign\";algorithm.consensus_step=0.2;algorithm.lr={1.28/n}"
      runs=(
        'allreduce-fp32=algorithm.name=allreduce;compression.codec=identity;run.batch_size={256/n};topology.file="ring:{n}"'
        "ring-choco-sign=$same;topology.file=\"ring:{n}\""
        "torus-choco-sign=$same;topology.file=\"torus:{side}x{side}\""
        "rr4-choco-sign=$same;topology.file=\"random-regular:{n},d=4,seed=1\""
      ) ;;
    *) echo "sweep: unknown preset '$1' (tang2018, choco-table1, scale)" >&2; exit 2 ;;
  esac
}
while (($#)); do
  case $1 in
    --preset) need "$@"; preset "$2"; shift 2 ;;
    --config) need "$@"; config=$2; shift 2 ;;
    --run) need "$@"; runs+=("$2"); shift 2 ;;
    --latency) need "$@"; latencies=$2; networks=""; shift 2 ;;
    --bandwidth) need "$@"; bandwidths=$2; networks=""; shift 2 ;;
    --networks) need "$@"; networks=$2; shift 2
      [[ -n ${networks// /} ]] || { echo "sweep: --networks needs at least one MBIT:MS pair" >&2; exit 2; } ;;
    --link-bandwidth) nic=0; shift ;;
    --clock) need "$@"; clock=$2; shift 2
      [[ $clock == virtual || $clock == real ]] || { echo "sweep: --clock must be virtual or real, not '$clock'" >&2; exit 2; } ;;
    --epochs) need "$@"; epochs=$2; shift 2 ;;
    --seeds) need "$@"; seeds=$2; shift 2 ;;
    --peers) need "$@"; peer_counts=$2; shift 2 ;;
    --target-accuracy) need "$@"; target_acc=$2; shift 2 ;;
    --target-loss) need "$@"; target_loss=$2; shift 2 ;;
    --eval-rounds) need "$@"; eval_rounds=$2; shift 2 ;;
    --time-budget) need "$@"; budget=$2; shift 2 ;;
    --set) need "$@"; common+=("$2"); shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --launch) command=launch; shift ;;
    --netns) command=launch; netns=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --command) need "$@"; read -ra user_cmd <<<"$2"; command=launch; shift 2
      ((${#user_cmd[@]})) || { echo "sweep: --command needs a command" >&2; exit 2; } ;;
    --gossip) need "$@"; gossip=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "sweep: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
((${#runs[@]})) || runs=(
  'allreduce-fp32=algorithm.name=allreduce;compression.codec=identity'
  'dpsgd-fp32=algorithm.name=dpsgd;compression.codec=identity'
  'choco-2bit=algorithm.name=choco-sgd'
  'deepsqueeze-2bit=algorithm.name=deepsqueeze'
)
[[ -n $clock ]] || clock=$([[ $command == simulate ]] && echo virtual || echo real)
[[ $clock == real || $command == simulate ]] || {
  echo "sweep: --clock virtual needs gossip simulate (not --launch or --command)" >&2
  exit 2
}
if ((netns)); then
  ((nic)) || { echo "sweep: --netns shapes each peer's NIC; --link-bandwidth cannot go with it" >&2; exit 2; }
  ((${#user_cmd[@]} == 0)) || { echo "sweep: --netns runs gossip's own peers, not --command" >&2; exit 2; }
  ((!dry_run)) || { echo "sweep: --dry-run cannot show --netns runs (their topology is made with the namespaces)" >&2; exit 2; }
fi
[[ -x $gossip ]] || { echo "sweep: no gossip binary at $gossip (build first: scripts/build.sh)" >&2; exit 1; }
[[ -f $config ]] || { echo "sweep: no config file $config" >&2; exit 1; }
number() {  # NAME VALUE: a non-negative decimal number or exit 2
  [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "sweep: $1 '$2' is not a non-negative number" >&2; exit 2; }
}
for v in "${epochs}" ${target_acc:+"$target_acc"} ${target_loss:+"$target_loss"} ${budget:+"$budget"}; do
  number value "$v"
done
[[ -z $eval_rounds || $eval_rounds =~ ^[1-9][0-9]*$ ]] || {
  echo "sweep: --eval-rounds '$eval_rounds' is not a positive integer" >&2
  exit 2
}
[[ -n $eval_rounds || (-z $target_acc && -z $target_loss) ]] || eval_rounds=20
read -ra seed_list <<<"$seeds"
for v in ${seed_list[@]+"${seed_list[@]}"}; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "sweep: seed '$v' is not a non-negative integer" >&2; exit 2; }
done
dup=$(printf '%s\n' ${seed_list[@]+"${seed_list[@]}"} | sort | uniq -d | head -n 1)
[[ -z $dup ]] || { echo "sweep: --seeds lists $dup twice" >&2; exit 2; }
read -ra peer_list <<<"$peer_counts"
for v in ${peer_list[@]+"${peer_list[@]}"}; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "sweep: peer count '$v' is not a positive integer" >&2; exit 2; }
done
dup=$(printf '%s\n' ${peer_list[@]+"${peer_list[@]}"} | sort | uniq -d | head -n 1)
[[ -z $dup ]] || { echo "sweep: --peers lists $dup twice" >&2; exit 2; }
per_count() {  # TEXT N: TEXT with {n} = N, {side} = its square root, {G/n} = G / N (G a whole
  # number that N divides, giving a whole number; or a decimal such as 1.28 for a learning rate,
  # giving a decimal to 12 significant digits)
  /usr/bin/python3 - "$1" "$2" <<'PY' || exit 2
import math, re, sys
text, n = sys.argv[1], int(sys.argv[2])
def value(m):
    key = m.group(1)
    if key == "n":
        return str(n)
    if key == "side":
        r = math.isqrt(n)
        if r * r != n:
            sys.exit(f"sweep: {{side}} in '{text}' needs a square peer count, not {n}")
        return str(r)
    g = key[:-2]
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", g):
        sys.exit(f"sweep: {{{key}}} in '{text}': {g!r} is not a whole or decimal number "
                 "(write {G/n} with G such as 256 or 1.28)")
    if "." in g:
        q = f"{float(g) / n:.12g}"
        return q if any(c in q for c in ".e") else q + ".0"  # stays a TOML float
    if int(g) % n:
        sys.exit(f"sweep: {{{key}}} in '{text}': {g} is not a multiple of {n} peers")
    return str(int(g) // n)
print(re.sub(r"\{(n|side|[^{}]*/n)\}", value, text))
PY
}
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
# Placeholders that do not fit a peer count, or come without one, stop the sweep before it
# trains anything.
placeholder='\{(n|side|[^{}]*/n)\}'
for r in "${runs[@]}" ${common[@]+"${common[@]}"}; do
  [[ $r =~ $placeholder ]] || continue
  ((${#peer_list[@]})) || {
    echo "sweep: '$r' says ${BASH_REMATCH[0]}, which needs --peers (the peer counts)" >&2
    exit 2
  }
  for n in "${peer_list[@]}"; do per_count "$r" "$n" >/dev/null || exit 2; done
done
# The networks: (bandwidth, latency) pairs, from --networks or the grid of the two lists.
pairs=()
if [[ -n $networks ]]; then
  read -ra pairs <<<"$networks"
  for p in "${pairs[@]}"; do
    [[ $p == *:* ]] || { echo "sweep: --networks '$p' must be MBIT:MS" >&2; exit 2; }
    number bandwidth "${p%%:*}"
    number latency "${p#*:}"
  done
else
  read -ra lat_list <<<"$latencies"
  read -ra bw_list <<<"$bandwidths"
  ((${#lat_list[@]})) || { echo "sweep: --latency needs at least one value" >&2; usage; }
  ((${#bw_list[@]})) || { echo "sweep: --bandwidth needs at least one value" >&2; usage; }
  for v in "${lat_list[@]}" "${bw_list[@]}"; do number value "$v"; done
  # A value listed twice would run into the same folders.
  dup=$(printf '%s\n' "${lat_list[@]}" | sort | uniq -d | head -n 1)
  [[ -z $dup ]] || { echo "sweep: --latency lists $dup twice" >&2; exit 2; }
  dup=$(printf '%s\n' "${bw_list[@]}" | sort | uniq -d | head -n 1)
  [[ -z $dup ]] || { echo "sweep: --bandwidth lists $dup twice" >&2; exit 2; }
  for lat in "${lat_list[@]}"; do
    for bw in "${bw_list[@]}"; do pairs+=("$bw:$lat"); done
  done
fi
dup=$(printf '%s\n' "${pairs[@]}" | sort | uniq -d | head -n 1)
[[ -z $dup ]] || { echo "sweep: the network $dup is listed twice" >&2; exit 2; }

if ((netns)); then
  for p in "${pairs[@]}"; do
    [[ ${p%%:*} =~ ^[0-9]+$ ]] || { echo "sweep: --netns needs whole Mbit/s, not ${p%%:*}" >&2; exit 2; }
  done
  bash scripts/netns.sh check >&2 || { echo "sweep: --netns cannot shape links here" >&2; exit 1; }
  gossip_abs=$(realpath "$gossip")
  ns_tag=s$$  # this sweep's own: no other running sweep has its pid (at most 8 characters)
  ns_peers=0  # how many peers' namespaces may exist: the last thing this script does removes them
  trap '((ns_peers == 0)) || bash scripts/netns.sh down "$ns_tag" "$ns_peers"' EXIT
fi
# A stop (Ctrl-C, SIGTERM, SIGHUP) stops the run in progress first: SIGTERM to it (an agreed stop
# round; `gossip launch` forwards it to every peer), then, if it still runs after the grace
# period, SIGKILL to it and every process under it; only then does the sweep exit (and remove
# its namespaces, which netns.sh down empties of anything still in them).
stop_grace=${SWEEP_STOP_GRACE:-30}
[[ $stop_grace =~ ^[0-9]+$ ]] || { echo "sweep: SWEEP_STOP_GRACE '$stop_grace' is not a whole number of seconds" >&2; exit 2; }
run_pid=""
descendants() {  # PID: every process under it
  local c
  for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done
}
stop_run() {  # SIGNAL_NUMBER
  trap '' INT TERM HUP
  if [[ -n $run_pid ]]; then
    echo "sweep: stopping the run in progress (pid $run_pid; killed if it still runs in $stop_grace s)" >&2
    kill -TERM "$run_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < stop_grace * 10; ++i)); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$run_pid" 2>/dev/null; then
      echo "sweep: the run did not stop in $stop_grace s: killing it" >&2
      kill -KILL "$run_pid" $(descendants "$run_pid") 2>/dev/null || true
    fi
    wait "$run_pid" 2>/dev/null || true
  fi
  exit $((128 + $1))
}
trap 'stop_run 2' INT
trap 'stop_run 15' TERM
trap 'stop_run 1' HUP
# --netns: the run's topology with every peer at 10.77.1.RANK (its namespace's address): a
# generator file or spec gets that endpoint pattern; prints the peer count and the topology.
netns_topology() {  # CONFIG FILE_FOR_THE_NEW_TOPOLOGY --set K=V...
  /usr/bin/python3 - "$gossip" "$@" <<'PY'
import json, os, re, subprocess, sys, tomllib
gossip, config, dest, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
topo = tomllib.load(open(config, "rb")).get("topology", {}).get("file", "")
for i in range(0, len(sets), 2):
    k, _, v = sets[i + 1].partition("=")
    if k.strip() == "topology.file":
        v = v.strip()
        topo = v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
pattern = "tcp://10.77.1.{rank}:29500"
if os.path.isfile(topo):
    text = open(topo).read()
    if "[generator]" not in text:
        sys.exit(f"sweep: --netns needs a generator topology (a [generator] table or a spec), "
                 f"not the explicit peers of {topo}")
    text = re.sub(r"(?m)^\s*endpoint\s*=.*$", "", text)
    text = text.replace("[generator]", f'[generator]\nendpoint = "{pattern}"', 1)
    open(dest, "w").write(text)
    topo = dest
else:
    topo = re.sub(r",endpoint=[^,]*", "", topo) + f",endpoint={pattern}"
r = subprocess.run([gossip, "topo", "inspect", "--json", topo], capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(f"sweep: --netns: {topo}: {r.stderr.strip()}")
n = json.loads(r.stdout)["peers"]
if n > 256:
    sys.exit(f"sweep: --netns: {n} peers; at most 256 (one address each in 10.77.1.0-255)")
print(f"{n}\t{topo}")
PY
}

index=$out/index.tsv
if ((!dry_run)); then
  mkdir -p "$out"
  printf 'run\tlatency_ms\tbandwidth_mbit\tpeers\tseed\tdir\tstatus\n' >"$index"
fi
# Every run once per peer count and seed ("": the config's own), as "PEERS|SEED".
seed_iter=("")
((${#seed_list[@]} == 0)) || seed_iter=("${seed_list[@]}")
peer_iter=("")
((${#peer_list[@]} == 0)) || peer_iter=("${peer_list[@]}")
variants=()
for peers in "${peer_iter[@]}"; do
  for seed in "${seed_iter[@]}"; do variants+=("$peers|$seed"); done
done
total=$((${#pairs[@]} * ${#runs[@]} * ${#variants[@]}))
k=0
started=$SECONDS
for pair in "${pairs[@]}"; do
  bw=${pair%%:*} lat=${pair#*:}
  link="L${lat}-B${bw}"
  if ((netns)); then
    net=()  # the kernel shapes the NICs
  elif ((nic)); then
    net=(--set "transport.uplink_mbit=$bw" --set "transport.downlink_mbit=$bw")
  else
    net=(--set "transport.bandwidth_mbit=$bw")
  fi
  [[ $command != simulate ]] || net+=(--set "transport.clock=\"$clock\"")
  dirs=()
  for r in "${runs[@]}"; do
    name=${r%%=*}
    IFS=';' read -ra kv <<<"${r#*=}"
    for variant in "${variants[@]}"; do
      peers=${variant%%|*} seed=${variant#*|}
      sets=()
      for s in "${kv[@]}" ${common[@]+"${common[@]}"}; do
        [[ -n $s ]] || continue
        if [[ -n $peers && $s =~ $placeholder ]]; then s=$(per_count "$s" "$peers") || exit 2; fi
        sets+=(--set "$s")
      done
      sub=${peers:+/n-$peers}${seed:+/seed-$seed}
      dir=$out/$link/$name$sub
      toml_dir=${dir//\\/\\\\}  # run.output is a TOML string: backslashes and quotes escaped
      toml_dir=${toml_dir//\"/\\\"}
      k=$((k + 1))
      bw_text=$([[ $bw == 0 ]] && echo unlimited || echo "$bw Mbit/s")
      ((dry_run)) || echo "sweep [$k/$total] $name${peers:+, $peers peers}${seed:+, seed $seed}, latency $lat ms, bandwidth $bw_text ($((SECONDS - started)) s so far)" >&2
      log=$out/$link/$name${sub//\//-}.log
      ((dry_run)) || mkdir -p "$out/$link"
      extra=(--set run.eval_every=1)  # per epoch, for the accuracy-against-time plots
      [[ -z $eval_rounds ]] || extra+=(--set "run.eval_every_rounds=$eval_rounds")
      [[ -z $seed ]] || extra+=(--set "run.seed=$seed")
      run_cmd=(${user_cmd[@]+-- "${user_cmd[@]}"})
      late=()
      if ((netns)); then
        # Fresh namespaces for every run: no queue or socket state carries over.
        ((ns_peers == 0)) || bash scripts/netns.sh down "$ns_tag" "$ns_peers"
        IFS=$'\t' read -r n topo < <(netns_topology "$config" "$out/$link/$name.topology.toml" \
          "${sets[@]}") || exit 1
        ns_peers=$n  # before they exist: a stop while they are made removes them
        bash scripts/netns.sh up "$ns_tag" "$n" "$bw"
        extra+=(--every-rank)
        late=(--set "topology.file=\"$topo\"")  # after the run's: it has the namespaces' addresses
        run_cmd=(-- bash -c 'exec bash "$0" exec "$1" "$GOSSIP_RANK" "$2" peer --config "$GOSSIP_CONFIG"'
          scripts/netns.sh "$ns_tag" "$gossip_abs")
      fi
      cmd=("$gossip" "$command" --config "$config" "${extra[@]}" "${sets[@]}"
        --set "run.epochs=$epochs" --set "transport.latency_ms=$lat"
        ${net[@]+"${net[@]}"} --set "run.name=$name" --set "run.output=\"$toml_dir\""
        ${late[@]+"${late[@]}"} ${run_cmd[@]+"${run_cmd[@]}"})
      # A budget ends the run as Ctrl-C does (an agreed stop round, then the summary).
      [[ -z $budget ]] || cmd=(timeout -s INT -k 60 "$budget" "${cmd[@]}")
      if ((dry_run)); then  # the command, quoted for the shell, one line
        line=$(printf '%q ' "${cmd[@]}")
        echo "${line% }"
        continue
      fi
      rc=0
      # In the background, so that a stop reaches stop_run at once (a trap waits for a command
      # in the foreground to end).
      "${cmd[@]}" >"$log" 2>&1 &
      run_pid=$!
      wait "$run_pid" || rc=$?
      run_pid=""
      status=ok
      case $rc in
        0) ;;
        3) status=diverged; echo "  diverged (its log: $log)" >&2 ;;
        124 | 130) status=budget; echo "  stopped by the time budget of $budget s" >&2 ;;
        *)
          echo "sweep: $name failed on $link (exit $rc); its output: $log" >&2
          tail -n 5 "$log" >&2
          exit 1 ;;
      esac
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$lat" "$bw" "${peers:--}" "${seed:--}" "$dir" \
        "$status" >>"$index"
      dirs+=("$dir")
    done
  done
  ((!dry_run)) || continue
  bash scripts/plot-run.sh "${dirs[@]}" -o "$out/$link.png" >/dev/null 2>"$out/$link.plot.log" ||
    echo "sweep: the plot for $link failed: $out/$link.plot.log" >&2
  [[ -s $out/$link.plot.log ]] || rm -f "$out/$link.plot.log"
done

((!dry_run)) || exit 0
[[ -n $title ]] || title="gossip sweep: $epochs epoch(s) per run, $command, $clock clock"
report=(/usr/bin/python3 scripts/sweep_report.py "$out" --title "$title")
[[ -z $target_acc ]] || report+=(--target-accuracy "$target_acc")
[[ -z $target_loss ]] || report+=(--target-loss "$target_loss")
"${report[@]}"
echo "sweep: table $out/sweep.tsv (and sweep.json), plots $out/loss-vs-time.png${target_acc:+ $out/time-to-target.png}${target_loss:+ $out/time-to-target.png} and $out/L*-B*.png ($((SECONDS - started)) s)" >&2
