"""The numpy API under `gossip launch` (one process per peer, ZeroMQ) gives parameters
bit-identical to the same algorithm run in one process by the C++ algorithm harness (threads,
in-process transport), for every algorithm: same config, same problem, same gradients."""
import os
import subprocess
import sys

import numpy as np

from util import HERE, PYTHON, launch, require, scratch, write_config

REFERENCE = os.environ["GOSSIP_PYTHON_REFERENCE"]
ROUNDS, D, SEED = 25, 3000, 11

# (algorithm, topology, codec, [algorithm] keys): every algorithm, the compressing ones with a
# lossy codec.
CASES = [
    ("dpsgd", "ring:4", "identity", ""),
    ("dcd-psgd", "ring:4", "qsgd:s=15", ""),
    ("deepsqueeze", "ring:4", "qsgd:s=3,scaled=true,bucket=16", ""),
    ("choco-sgd", "ring:4", "qsgd:s=3,scaled=true", ""),
    ("d2", "ring:4", "identity", ""),
    ("relaysum", "grid:4", "identity", ""),
    ("allreduce", "ring:4", "identity", ""),
    ("dga", "ring:4", "identity", "delay = 3"),
    ("doublesqueeze", "ring:4", "sign", ""),
    # A time-varying topology passes through the package unchanged.
    ("dpsgd", "one-peer-exponential:4", "fp16", ""),
]

for algorithm, topology, codec, keys in CASES:
    with scratch() as tmp:
        config = write_config(tmp, f"{topology},{{ipc}}", algorithm=algorithm, codec=codec,
                              extra="", algorithm_keys=keys)
        subprocess.run([REFERENCE, config, str(ROUNDS), str(D), str(SEED), tmp], check=True,
                       timeout=60)
        r = launch(config, [PYTHON, os.path.join(HERE, "numpy_peer.py"), tmp, str(ROUNDS)])
        require(r.returncode == 0, f"{algorithm}: launch exited {r.returncode}:\n{r.stderr}")
        for rank in range(4):
            ours = np.fromfile(f"{tmp}/out-{rank}.bin", dtype=np.float32)
            ref = np.fromfile(f"{tmp}/ref-{rank}.bin", dtype=np.float32)
            x0 = np.fromfile(f"{tmp}/x0.bin", dtype=np.float32)
            require(ours.size == D and ref.size == D, f"{algorithm}: sizes {ours.size}, {ref.size}")
            require(not np.array_equal(ours, x0), f"{algorithm}: rank {rank} never moved")
            diff = int(np.count_nonzero(ours.view(np.uint32) != ref.view(np.uint32)))
            require(diff == 0, f"{algorithm}: rank {rank}: {diff} of {D} floats differ from the "
                    f"C++ harness (max |diff| {np.max(np.abs(ours - ref))})")
        metrics = open(f"{tmp}/run/metrics-0.jsonl").read().splitlines()
        require(len(metrics) == ROUNDS // 5, f"{algorithm}: {len(metrics)} metrics lines")
        print(f"{algorithm:12s} {topology:22s} {codec:32s} 4 peers x {ROUNDS} rounds: bit-identical")
print("ok")
