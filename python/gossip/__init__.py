"""gossip: decentralized training over ZeroMQ, from Python.

    import gossip
    peer = gossip.init(config="run.toml")          # rank from GOSSIP_RANK, RANK, SLURM_PROCID, ...
    algo = peer.algorithm(x0)                      # x0: float32 numpy array, the same on every peer
    for t in range(rounds):
        g = my_gradient(algo.params)               # algo.params: a view of x_i, no copy
        algo.step(g, loss=...)                     # one gossip round
    peer.close()

gossip.torch wraps a torch model instead (DecentralizedOptimizer). The run config is the CLI's TOML
([topology], [algorithm], [compression], [transport], [run]); [model] and [data] belong to the
CLI's built-in trainer and are not needed here. Start one process per peer with
`gossip launch --config run.toml -- /usr/bin/python3 train.py`, or under torchrun/srun/mpirun.
"""

import json
import os
import signal
import sys
import threading

from . import _core
from ._core import ConfigError, GossipError, PeerError, StateError, Stopped

__all__ = ["init", "Peer", "Algorithm", "GossipError", "ConfigError", "PeerError", "StateError",
           "Stopped"]


def _toml_value(value):
    """A Python value as TOML text, for a "section.key=value" override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: quotes and backslashes escaped
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"override value {value!r} is not a bool, number, string or list")


def _overrides(overrides):
    if overrides is None:
        return []
    if not isinstance(overrides, dict):
        raise ConfigError("overrides must be a dict such as {'algorithm.lr': 0.05}")
    return [f"{key}={_toml_value(value)}" for key, value in overrides.items()]


class Algorithm:
    """One peer's algorithm state over a flat float32 vector (the numpy level).

    params and grad are numpy views of x_i and of the gradient buffer (no copies); step() runs one
    bulk-synchronous round, every peer the same number of times. Metrics lines go to
    run.output/metrics-RANK.jsonl every run.log_every rounds, as the CLI's do.
    """

    def __init__(self, peer, core):
        self._peer = peer
        self._core = core

    @property
    def params(self):
        """x_i as a float32 numpy view (writable: writing it changes the state)."""
        return self._core.params

    @property
    def grad(self):
        """The gradient buffer as a float32 view: step() without a gradient uses what is there.
        After a round it holds scratch."""
        return self._core.grad

    def step(self, grad=None, loss=None):
        """One round with the gradient `grad` computed at params (float32, copied in), or with the
        gradient already written into `grad`'s buffer when None. `loss` goes into the metrics.
        Raises PeerError when a neighbour is silent or misbehaves, Stopped at an agreed stop."""
        self._core.step(grad, None if loss is None else float(loss))

    def average(self):
        """The mean of every peer's model, as a new array (an all-reduce: every peer calls it at
        the same point of the run)."""
        return self._core.average()

    def mean(self, values):
        """The element-wise mean over every peer of `values` (float32, the same length on every
        peer): a collective, after the first step()."""
        return self._core.mean(values)

    def gather(self, values):
        """Every peer's `values` (a list of numbers, the same length on every peer), as a
        (peers × len) float32 array in rank order: a collective, after the first step(). Each
        value travels as a float32 (about 7 significant digits)."""
        import numpy as np
        n, rank = self._peer.size, self._peer.rank
        row = np.asarray(values, dtype=np.float64).reshape(-1)
        table = np.zeros((n, row.size), dtype=np.float32)
        table[rank] = row * n  # the mean of the table is every peer's row
        return self.mean(table.reshape(-1)).reshape(n, row.size)

    def log(self, **fields):
        """Writes a metrics line now, with extra fields (test_accuracy=..., ...)."""
        self._core.log(json.dumps(fields))

    def save(self):
        """The whole state as bytes: load() into an algorithm of the same run and rank goes on
        bit-identically."""
        return self._core.save()

    def load(self, state):
        self._core.load(state)

    def close(self):
        """Closes the sockets; params and grad stay readable."""
        self._core.close()

    round = property(lambda self: self._core.round, doc="rounds done")
    dim = property(lambda self: self._core.dim, doc="model size")
    name = property(lambda self: self._core.name, doc="canonical algorithm name")
    codec = property(lambda self: self._core.codec)
    tensor_sizes = property(lambda self: self._core.tensor_sizes,
                            doc="tensor sizes the codec sees (empty: one tensor)")
    wire_bytes = property(lambda self: self._core.wire_bytes, doc="bytes of one codec message")
    last_round = property(lambda self: json.loads(self._core.last_round),
                          doc="bytes and seconds per phase of the last round")
    totals = property(lambda self: json.loads(self._core.totals),
                      doc="running totals of last_round")
    wall_seconds = property(lambda self: self._core.wall_seconds)
    last_step_seconds = property(lambda self: self._core.last_step_seconds,
                                 doc="wall seconds of the last round inside the C++ algorithm")
    stop_round = property(lambda self: self._core.stop_round)
    momentum = property(lambda self: self._core.momentum)
    weight_decay = property(lambda self: self._core.weight_decay)

    @property
    def lr(self):
        return self._core.lr

    @lr.setter
    def lr(self, value):
        self._core.lr = value


class Peer:
    """This process's place in the run: rank, size, neighbours, config. Made by gossip.init()."""

    def __init__(self, core):
        self._core = core
        self._algorithms = []
        self._old_handler = None

    rank = property(lambda self: self._core.rank)
    size = property(lambda self: self._core.size)
    neighbors = property(lambda self: self._core.neighbors)
    output_dir = property(lambda self: self._core.output_dir, doc="the run folder")
    config_toml = property(lambda self: self._core.config_toml,
                           doc="the run config, overrides applied, as TOML")

    def algorithm(self, x0, tensor_sizes=None, overrides=None):
        """Builds this peer's algorithm from the run config over the float32 vector x0 (the same
        on every peer), connects to the neighbours and waits for them (transport.connect_timeout_s).
        tensor_sizes: the tensors of x0, for compression.granularity = "layer". overrides: a dict
        of config keys for this algorithm (every peer must pass the same)."""
        core = self._core.algorithm(x0, list(tensor_sizes or []), _overrides(overrides))
        algo = Algorithm(self, core)
        self._algorithms.append(algo)
        return algo

    def close(self):
        """Closes every algorithm's sockets and gives SIGINT back its earlier handler."""
        for a in self._algorithms:
            a.close()
        if self._old_handler is not None:
            try:
                signal.signal(signal.SIGINT, self._old_handler)
            except ValueError:
                pass
            self._old_handler = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _install_sigint(self):
        """First Ctrl-C: every peer stops before an agreed round (step() raises Stopped there);
        the second raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return  # the script has its own: leave it

        def on_sigint(signum, frame):
            if self._core.interrupted:
                raise KeyboardInterrupt
            self._core.interrupt()
            print(f"gossip: rank {self.rank}: stopping at a round agreed with the other peers "
                  "(Ctrl-C again to stop now)", file=sys.stderr, flush=True)

        self._old_handler = signal.signal(signal.SIGINT, on_sigint)


def init(config=None, rank=None, overrides=None, handle_sigint=True):
    """This process's peer of the run described by `config` (a run config TOML path; None: the
    GOSSIP_CONFIG environment variable, which `gossip launch` sets).

    rank: None reads GOSSIP_RANK, RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK or PMI_RANK.
    overrides: {"section.key": value}, as the CLI's --set.
    handle_sigint: the first Ctrl-C asks every peer to stop before the same round (as the CLI).
    Raises ConfigError naming the file, line or key at fault."""
    if config is None:
        config = os.environ.get("GOSSIP_CONFIG")
        if not config:
            raise ConfigError("no run config: pass gossip.init(config=PATH) or set GOSSIP_CONFIG "
                              "(gossip launch sets it)")
    if rank is not None and (not isinstance(rank, int) or rank < 0):
        raise ConfigError(f"rank must be a non-negative integer, got {rank!r}")
    peer = Peer(_core.Peer(os.fspath(config), -1 if rank is None else rank, _overrides(overrides)))
    ignored = peer._core.trainer_only_keys
    if ignored and peer.rank == 0:
        print(f"gossip: {config}: {', '.join(ignored)} only concern the CLI's trainer (its epochs); "
              "in a Python run use a torch lr scheduler or set opt.algorithm.lr", file=sys.stderr)
    if handle_sigint:
        peer._install_sigint()
    return peer
