#!/usr/bin/env bash
# The main job: install what is missing, build, then train. 8 peers on a ring, one process each on
# this machine, talking ZeroMQ, train an MLP on Fashion-MNIST with DeepSqueeze and 2-bit (scaled)
# QSGD. Prints the test accuracy, the bytes sent against fp32 D-PSGD, and the plot's path.
# Extra arguments are passed to `gossip launch`, e.g. --set run.epochs=1.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
gossip=build/src/gossip
config=configs/ring8_deepsqueeze.toml

echo
echo "== the topology: gossip topo inspect configs/topologies/ring8.toml"
$gossip topo inspect configs/topologies/ring8.toml | sed -n 1,14p
echo
echo "== training: gossip launch --config $config $*"
$gossip launch --config "$config" "$@"
echo
bash scripts/plot-run.sh runs/ring8-deepsqueeze
