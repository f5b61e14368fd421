#!/usr/bin/env bash
# Times `gossip topo inspect` on large topologies and prints a table (seconds, solver, rho).
# Usage: scripts/bench-topology.sh [path/to/gossip]
set -euo pipefail
gossip=${1:-build/src/gossip}
specs=(
  "random-regular:2000,d=4"
  "random-regular:10000,d=4"
  "random-regular:100000,d=4"
  "random-regular:100000,d=4,weights=best-constant"
  "torus:316x316"
  "exponential:65536"
)
printf '%-50s %8s %10s %-26s %14s\n' topology peers seconds solver rho
for spec in "${specs[@]}"; do
  echo "bench-topology: inspecting $spec" >&2
  start=$(date +%s.%N)
  json=$("$gossip" topo inspect "$spec" --json)
  end=$(date +%s.%N)
  python3 - "$spec" "$start" "$end" "$json" <<'PY'
import json, sys
spec, start, end, j = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
print(f"{spec:<50} {j['peers']:>8} {end - start:>10.2f} {j['solver']:<26} {j['rho']:>14.10f}")
PY
done
