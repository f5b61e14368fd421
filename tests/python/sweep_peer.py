"""A peer for the sweep test (scripts/sweep.sh --command): 12 rounds of D-PSGD on a small
quadratic, then a metrics line with a test_accuracy the test can predict (0.5 + rank/100; rank 0
adds test_accuracy_avg_model = 0.75)."""
import numpy as np

import gossip

peer = gossip.init()
algo = peer.algorithm(np.ones(500, np.float32))
for _ in range(12):
    algo.step(algo.params.copy(), loss=float(np.sum(algo.params ** 2)))
fields = {"test_accuracy": 0.5 + peer.rank / 100}
if peer.rank == 0:
    fields["test_accuracy_avg_model"] = 0.75
algo.log(**fields)
peer.close()
