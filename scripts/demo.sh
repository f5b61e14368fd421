#!/usr/bin/env bash
# The main job: install what is missing, build, and run the demo.
# Until training lands (issue 5) the demo is the spectral report of the bundled topologies:
# which graph mixes fastest, and what each costs in rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh "$@"
gossip=build/src/gossip

echo
echo "== gossip topo inspect configs/topologies/ring8.toml"
$gossip topo inspect configs/topologies/ring8.toml
echo
echo "== gossip topo compare configs/topologies/*.toml"
$gossip topo compare configs/topologies/*.toml
echo
echo "== gossip topo compare (ring, torus, exponential, random 4-regular at 16, 64, 256 peers)"
$gossip topo compare
