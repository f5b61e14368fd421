"""One peer of the numpy identity test (started by `gossip launch -- /usr/bin/python3 ...`):
steps the run config's algorithm ROUNDS times with the gradient a ⊙ (x − c) of the problem the
reference wrote into DIR, and writes its model to DIR/out-RANK.bin."""
import sys

import numpy as np

import gossip

folder, rounds = sys.argv[1], int(sys.argv[2])
peer = gossip.init()
x0 = np.fromfile(f"{folder}/x0.bin", dtype=np.float32)
a = np.fromfile(f"{folder}/a-{peer.rank}.bin", dtype=np.float32)
c = np.fromfile(f"{folder}/c-{peer.rank}.bin", dtype=np.float32)
algo = peer.algorithm(x0)
x = algo.params  # a view: it follows the state
for _ in range(rounds):
    algo.step(a * (x - c), loss=float(0.5 * np.sum(a * (x - c) ** 2)))
x.tofile(f"{folder}/out-{peer.rank}.bin")
peer.close()
