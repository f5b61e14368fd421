#!/usr/bin/env bash
# Which topology mixes fastest for its cost? Runs `gossip topo compare --json` for ring, 2-D torus,
# hypercube, exponential and random 4-regular graphs at 16 to 4096 peers and plots the spectral gap
# and the rounds to a 10^6-fold consensus against n (log-log), plus the degree each pays.
# Usage: scripts/plot-topologies.sh [out.png] [path/to/gossip]
set -euo pipefail
out=${1:-topologies.png}
gossip=${2:-build/src/gossip}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A family=(
  [ring]="ring:16 ring:64 ring:256 ring:1024 ring:4096"
  [torus]="torus:4x4 torus:8x8 torus:16x16 torus:32x32 torus:64x64"
  [hypercube]="hypercube:16 hypercube:64 hypercube:256 hypercube:1024 hypercube:4096"
  [exponential]="exponential:16 exponential:64 exponential:256 exponential:1024 exponential:4096"
  [random-regular]="random-regular:16,d=4 random-regular:64,d=4 random-regular:256,d=4 random-regular:1024,d=4 random-regular:4096,d=4"
)
order=(ring torus hypercube exponential random-regular)
for f in "${order[@]}"; do
  echo "plot-topologies: $f" >&2
  # shellcheck disable=SC2086
  "$gossip" topo compare --json ${family[$f]} |
    python3 -c 'import json,sys
for line in sys.stdin:
    j = json.loads(line)
    print(j["peers"], j["spectral_gap"], j["rounds_to_1e-6"] or "nan", j["degree_mean"], sep="\t")' > "$tmp/$f.tsv"
done
plots() {  # column
  local parts=()
  for f in "${order[@]}"; do parts+=("'$tmp/$f.tsv' using 1:$1 with linespoints lw 2 title '$f'"); done
  local IFS=,
  echo "${parts[*]}"
}
gnuplot <<GP
set terminal pngcairo size 1500,500 font ",11"
set output '$out'
set grid
set logscale x 2
set xlabel "peers n"
set multiplot layout 1,3 title "Topologies: consensus speed against degree (default weights)"
set logscale y
set ylabel "spectral gap 1 - rho"
unset key
plot $(plots 2)
set ylabel "rounds to shrink disagreement 10^6-fold"
set key top left
plot $(plots 3)
unset logscale y
unset key
set ylabel "mean degree (messages per round)"
plot $(plots 4)
unset multiplot
GP
echo "plot: $out"
