"""gossip.torch.DecentralizedOptimizer: parameters and gradients are views of the algorithm's
buffers (same data pointers before and after steps, no model-sized allocation per step), the
step is SGD's on one peer, layer-wise tensor sizes reach the codec, and a state_dict round trip
resumes bit-identically (2 peers over ZeroMQ, CHOCO-SGD with momentum and a lossy codec)."""
import os
import tracemalloc

from util import HERE, PYTHON, launch, require, scratch, skip, write_config

try:
    import torch
except ImportError:
    skip("torch is not installed (apt-get install python3-torch)")
import numpy as np
import torch.nn.functional as F

import gossip
import gossip.torch as gt

torch.set_num_threads(1)

with scratch() as tmp:
    # --- One peer: views, SGD's arithmetic, no allocation per step, layer-wise sizes. ---
    config = write_config(tmp, "ring:1,{ipc}", name="one")
    peer = gossip.init(config, rank=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.ReLU(), torch.nn.Linear(200, 10))
    d = sum(p.numel() for p in net.parameters())
    opt = gt.DecentralizedOptimizer(net, peer, lr=0.05, codec="identity")
    x, g = opt.algorithm.params, opt.algorithm.grad
    ptrs = [(p.data_ptr(), p.grad.data_ptr()) for p in net.parameters()]
    offset = 0
    for p in net.parameters():  # each parameter is its slice of x, each gradient its slice of g
        require(p.data_ptr() == x.ctypes.data + 4 * offset, "parameter is not a view of x")
        require(p.grad.data_ptr() == g.ctypes.data + 4 * offset, "gradient is not a view of g")
        offset += p.numel()
    require(offset == d == opt.algorithm.dim, f"model {d}, algorithm {opt.algorithm.dim}")
    data = torch.randn(64, 300)
    labels = torch.randint(0, 10, (64,))
    tracemalloc.start()
    peak_step = 0
    for t in range(8):
        opt.zero_grad()
        loss = F.cross_entropy(net(data), labels)
        loss.backward()
        before = np.array(x)  # x before the round, and the gradient it gets
        grad = np.array(g)
        tracemalloc.reset_peak()
        with torch.autograd.profiler.profile(profile_memory=True) as prof:
            base = tracemalloc.get_traced_memory()[0]
            opt.step(loss=loss)
            peak_step = max(peak_step, tracemalloc.get_traced_memory()[1] - base)
        torch_bytes = sum(max(e.cpu_memory_usage, 0) for e in prof.function_events)
        require(torch_bytes < d, f"step allocated {torch_bytes} bytes of torch memory")
        # One peer, no momentum: x ← x − γ g, in float32.
        expect = before - np.float32(0.05) * grad
        require(np.array_equal(x, expect), f"round {t}: not x - lr * g")
    require(peak_step < d, f"a step allocated {peak_step} bytes through Python (model: {4 * d})")
    tracemalloc.stop()
    require([(p.data_ptr(), p.grad.data_ptr()) for p in net.parameters()] == ptrs,
            "parameters or gradients moved during the steps")
    opt.zero_grad(set_to_none=True)  # torch 2's default: the views must survive it
    require(all(p.grad is not None and p.grad.data_ptr() == q for p, (_, q) in
                zip(net.parameters(), ptrs)), "zero_grad(set_to_none=True) dropped the views")
    require(float(g.max()) == 0.0 == float(g.min()), "zero_grad left gradient values")
    # An lr scheduler's change reaches the algorithm.
    opt.param_groups[0]["lr"] = 0.01
    opt.zero_grad(); F.cross_entropy(net(data), labels).backward(); opt.step()
    require(abs(opt.algorithm.lr - 0.01) < 1e-9, f"lr {opt.algorithm.lr} after the scheduler's 0.01")
    peer.close()
    print(f"views, SGD step, no allocation per step (d = {d}, peak {peak_step} B): ok")

    # Layer-wise compression gets the parameters' tensor sizes.
    for granularity in ("layer", "model"):
        peer = gossip.init(config, rank=0, overrides={"compression.granularity": granularity})
        opt = gt.DecentralizedOptimizer(net, peer, algorithm="choco-sgd", codec="qsgd:s=3,scaled=true")
        sizes = [p.numel() for p in net.parameters()]
        want = sizes if granularity == "layer" else []
        require(list(opt.algorithm.tensor_sizes) == want,
                f"{granularity}: codec tensors {opt.algorithm.tensor_sizes}, expected {want}")
        peer.close()
    print("layer-wise tensor sizes reach the codec: ok")

    # --- Two peers over ZeroMQ: a state_dict round trip resumes bit-identically. ---
    config = write_config(tmp, "ring:2,{ipc}", name="two", algorithm="choco-sgd",
                          codec="qsgd:s=3,scaled=true",
                          extra="")
    peer_py = os.path.join(HERE, "torch_peer.py")
    for mode in ("train", "resume"):
        r = launch(config, [PYTHON, peer_py, mode, tmp], timeout=180)
        require(r.returncode == 0, f"{mode}: launch exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    for rank in range(2):
        full = np.fromfile(f"{tmp}/full-{rank}.bin", dtype=np.float32)
        resumed = np.fromfile(f"{tmp}/resumed-{rank}.bin", dtype=np.float32)
        require(full.size > 0 and full.tobytes() == resumed.tobytes(),
                f"rank {rank}: resumed parameters differ in "
                f"{int(np.count_nonzero(full != resumed))} of {full.size}")
    print("state_dict round trip (choco-sgd, momentum, 2 peers): bit-identical")
print("ok")
