"""gossip.torch: a torch optimizer that is one of gossip's decentralized algorithms.

    opt = gossip.torch.DecentralizedOptimizer(model, peer)   # settings from the run config
    for x, y in loader:
        opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward()
        opt.step(loss=loss.item())                            # one gossip round

The model's parameters become views into the algorithm's x buffer and their gradients views into
its gradient buffer, so a step copies and flattens nothing: autograd writes the gradient where the
algorithm reads it, and the algorithm updates x where the model reads it. The memory crosses as
numpy arrays (torch.from_numpy), so this module works with any torch that has from_numpy; the
extension never links libtorch. Parameters must be float32 tensors in CPU memory.
"""

import contextlib

import torch

from . import ConfigError

# Keyword arguments of DecentralizedOptimizer and the run-config keys they override.
_KEYS = {
    "lr": "algorithm.lr",
    "momentum": "algorithm.momentum",
    "nesterov": "algorithm.nesterov",
    "weight_decay": "algorithm.weight_decay",
    "quasi_global": "algorithm.quasi_global",
    "consensus_step": "algorithm.consensus_step",
    "algorithm": "algorithm.name",
    "codec": "compression.codec",
    "granularity": "compression.granularity",
}


class DecentralizedOptimizer(torch.optim.Optimizer):
    """One peer's gossip algorithm as a torch optimizer: local SGD (momentum, Nesterov, weight
    decay as torch.optim.SGD applies them), the codec and the exchange with the neighbours.

    model: an nn.Module (its parameters that require gradients) or an iterable of parameters.
    peer: gossip.init()'s Peer. Keyword arguments (lr, momentum, nesterov, weight_decay,
    quasi_global, consensus_step, algorithm, codec, granularity) override the run config's; every
    peer must pass the same. An lr scheduler's changes to param_groups[0]["lr"] apply from the
    next step.
    """

    def __init__(self, model, peer, **settings):
        params = list(model.parameters() if isinstance(model, torch.nn.Module) else model)
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ConfigError("DecentralizedOptimizer: the model has no parameters that require "
                              "gradients")
        for i, p in enumerate(params):
            if p.dtype != torch.float32 or p.device.type != "cpu" or p.is_sparse:
                raise ConfigError(f"DecentralizedOptimizer: parameter {i} is {p.dtype} on "
                                  f"{p.device}: gossip needs dense float32 tensors in CPU memory")
        if len({p.data_ptr() for p in params}) != len(params):
            raise ConfigError("DecentralizedOptimizer: the model shares a parameter tensor "
                              "between layers; pass each parameter once")
        unknown = sorted(set(settings) - set(_KEYS))
        if unknown:
            raise ConfigError(f"DecentralizedOptimizer: unknown setting {unknown[0]!r} "
                              f"(known: {', '.join(_KEYS)})")
        overrides = {_KEYS[k]: v for k, v in settings.items() if v is not None}
        sizes = [p.numel() for p in params]
        x0 = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
        self.peer = peer
        self.algorithm = peer.algorithm(x0, tensor_sizes=sizes, overrides=overrides)
        self._x = torch.from_numpy(self.algorithm.params)
        self._g = torch.from_numpy(self.algorithm.grad)
        self._views = []
        offset = 0
        for p, n in zip(params, sizes):
            x = self._x[offset:offset + n].view_as(p)
            g = self._g[offset:offset + n].view_as(p)
            p.data = x
            p.grad = g
            self._views.append((p, x, g))
            offset += n
        self._g.zero_()
        self._lr = self.algorithm.lr
        super().__init__(params, {"lr": self._lr})

    def zero_grad(self, set_to_none=False):
        """Zeroes the flat gradient buffer. The gradients stay views of it whatever set_to_none
        says (torch >= 2.0 defaults it to True, which would detach them)."""
        self._g.zero_()
        for p, _, g in self._views:
            if p.grad is None or p.grad.data_ptr() != g.data_ptr():
                p.grad = g

    def _check_views(self):
        # Something replaced a parameter or its gradient (load_state_dict of the model, a
        # zero_grad(set_to_none) outside ours): copy it back into the buffers and view them again.
        for p, x, g in self._views:
            if p.data_ptr() != x.data_ptr():
                x.copy_(p.data)
                p.data = x
            if p.grad is None:
                g.zero_()
                p.grad = g
            elif p.grad.data_ptr() != g.data_ptr():
                g.copy_(p.grad)
                p.grad = g

    def step(self, closure=None, loss=None):
        """One gossip round with the gradients in the parameters' .grad. closure: recomputes the
        loss (as torch optimizers take it); loss: a number for the metrics lines. Returns the
        loss. Raises gossip.PeerError when a neighbour is silent or misbehaves, gossip.Stopped
        (a KeyboardInterrupt) before the round at which the run agreed to stop after Ctrl-C."""
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_views()
        lr = self.param_groups[0]["lr"]
        if lr != self._lr:  # a scheduler changed it
            self.algorithm.lr = lr
            self._lr = lr
        value = None
        if loss is not None:
            value = float(loss.item() if isinstance(loss, torch.Tensor) else loss)
        self.algorithm.step(None, loss=value)
        return loss

    def average(self):
        """The mean of every peer's parameters as a flat tensor (an all-reduce: every peer calls
        it at the same point)."""
        return torch.from_numpy(self.algorithm.average())

    @contextlib.contextmanager
    def averaged(self):
        """Within the block the model holds the mean of every peer's parameters (to evaluate the
        averaged model); its own come back after. A collective, like average()."""
        own = self._x.clone()
        self._x.copy_(self.average())
        try:
            yield
        finally:
            self._x.copy_(own)

    def log(self, **fields):
        """Writes a metrics line now with extra fields, e.g. opt.log(test_accuracy=0.9)."""
        self.algorithm.log(**fields)

    @property
    def bytes_sent(self):
        """Bytes this peer sent so far, framing included."""
        return self.algorithm.totals["bytes_sent"]

    def state_dict(self):
        """The whole algorithm state (x, error memories, momentum, round, counters) and the lr."""
        return {"state": {}, "param_groups": [{"lr": self.param_groups[0]["lr"],
                                               "params": list(range(len(self._views)))}],
                "gossip": self.algorithm.save()}

    def load_state_dict(self, state_dict):
        """Restores a state_dict() of this peer's run: training goes on bit-identically. The
        model's parameters change in place."""
        if "gossip" not in state_dict:
            raise ConfigError("load_state_dict: not a DecentralizedOptimizer state (no 'gossip' "
                              "entry)")
        self.algorithm.load(state_dict["gossip"])
        self._lr = self.param_groups[0]["lr"] = state_dict["param_groups"][0]["lr"]
        self.algorithm.lr = self._lr

    def close(self):
        """Closes the sockets; the model keeps its parameters."""
        self.algorithm.close()


# torch.optim.Optimizer wraps a subclass's step in a profiler record_function unless the step is
# marked as hooked already (torch 1.13 and 2.x check this attribute). In a training loop, with
# caches cold after backward, that wrapper cost 140 µs a step, four times the rest of the bridge
# (python/benchmarks/bridge_overhead.py; docs/BENCHMARKS.md). The price: torch's profiler shows
# no "Optimizer.step" range for this optimizer, and torch 2's global optimizer step hooks do not
# run for it.
DecentralizedOptimizer.step.hooked = True
