"""What a torch opt.step() costs beyond the C++ round: views, the GIL, Python.

    gossip launch --config CONFIG -- /usr/bin/python3 python/benchmarks/bridge_overhead.py [STEPS]

Each peer trains a 1,000,000-parameter MLP (784-1000-200-10, float32) on random batches and
times, for every step, opt.step() as Python sees it and the C++ round inside it
(Algorithm.last_step_seconds: Algorithm::step with the GIL released). Rank 0 prints one table
row: the medians and the overhead as a share of the round."""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import gossip
import gossip.torch as gt

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
torch.manual_seed(0)
torch.set_num_threads(1)
peer = gossip.init()
model = torch.nn.Sequential(torch.nn.Linear(784, 1000), torch.nn.ReLU(),
                            torch.nn.Linear(1000, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10))
opt = gt.DecentralizedOptimizer(model, peer)
d = sum(p.numel() for p in model.parameters())
x = torch.randn(32, 784)
y = torch.randint(0, 10, (32,))
outer, inner = [], []
for t in range(steps):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    start = time.perf_counter()
    opt.step(loss=loss)
    outer.append(time.perf_counter() - start)
    inner.append(opt.algorithm.last_step_seconds)
# The first rounds include connection warm-up: the medians of the second half.
half = steps // 2
o, i = statistics.median(outer[half:]), statistics.median(inner[half:])
over = [a - b for a, b in zip(outer[half:], inner[half:])]
if peer.rank == 0:
    print(f"| {peer.size} | {opt.algorithm.name} | {opt.algorithm.codec} | {d} | {i * 1e3:.3f} | "
          f"{o * 1e3:.3f} | {statistics.median(over) * 1e6:.1f} | "
          f"{100 * statistics.median(over) / i:.2f} % |", flush=True)
peer.close()
