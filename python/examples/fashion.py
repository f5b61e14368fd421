"""What the two Fashion-MNIST examples share: data, partition, batches, model, evaluation, summary.

torch_dpsgd_ring.py (D-PSGD under torch.distributed) and train_fashion_cnn.py (the same training
with gossip) import everything from here, so the two differ only in how peers exchange models.
"""

import contextlib
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


def _read_idx(file_name, magic, item_shape):
    """Reads one gzip'd IDX file; returns a uint8 array of shape (N, *item_shape)."""
    try:
        with gzip.open(file_name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{file_name}: no such file (Fashion-MNIST IDX, gzip)") from None
    except OSError as e:  # not gzip, truncated, ...
        raise ValueError(f"{file_name}: cannot read as gzip: {e}") from None
    dims = len(item_shape) + 1
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{file_name}: {len(data)} bytes, shorter than the IDX header ({header})")
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        raise ValueError(f"{file_name}: magic number 0x{found:08x}, expected 0x{magic:08x}")
    shape = struct.unpack(f">{dims}I", data[4:header])
    if tuple(shape[1:]) != tuple(item_shape):
        raise ValueError(f"{file_name}: items of shape {tuple(shape[1:])}, expected {tuple(item_shape)}")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{file_name}: {len(data)} bytes, the header {shape} says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(path=DEFAULT_PATH, limit=None, test_limit=None):
    """Returns (train_images, train_labels, test_images, test_labels) as numpy arrays.

    Images are float32 (N, 1, 28, 28), standardised with the mean and standard deviation of the
    whole training set (whatever limit is, so limited runs see the same pixel values); labels are
    int64. limit / test_limit keep the first rows only.
    """
    sets = []
    for prefix in ("train", "t10k"):
        images = _read_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte.gz"), _IMAGES_MAGIC, (28, 28))
        labels = _read_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte.gz"), _LABELS_MAGIC, ())
        if len(images) != len(labels):
            raise ValueError(f"{path}: {prefix} has {len(images)} images but {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{path}/{prefix}-labels-idx1-ubyte.gz: label {labels.max()} outside 0..9")
        sets.append((images, labels))
    (train_x, train_y), (test_x, test_y) = sets
    mean = float(train_x.mean(dtype=np.float64)) / 255.0
    std = float((train_x / 255.0).std(dtype=np.float64))

    def prepare(images, labels, n):
        if n is not None:
            images, labels = images[:n], labels[:n]
        x = ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
        return x.reshape(-1, 1, 28, 28), labels.astype(np.int64)

    return prepare(train_x, train_y, limit) + prepare(test_x, test_y, test_limit)


def shard(n_rows, rank, world, seed):
    """iid partition: the row indices of peer `rank`, a seeded permutation of 0..n_rows-1 cut into
    `world` equal shards (n_rows % world rows are left out). Every peer computes the same
    permutation, so the shards are disjoint."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside 0..{world - 1}")
    size = n_rows // world
    if size == 0:
        raise ValueError(f"{n_rows} rows cannot be shared by {world} peers")
    perm = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(perm[rank * size:(rank + 1) * size])


def rounds_per_epoch(shard_size, batch):
    """One epoch = every peer passes once over its own shard: shard_size // batch rounds."""
    rounds = shard_size // batch
    if rounds == 0:
        raise ValueError(f"a shard of {shard_size} rows holds no batch of {batch}")
    return rounds


def batches(images, labels, indices, batch, epoch, seed, rank):
    """The batches of one epoch of a peer: its shard reshuffled per (seed, rank, epoch), cut into
    len(indices) // batch batches (the last partial one dropped). Yields torch tensors."""
    order = np.random.default_rng([seed, rank, epoch]).permutation(indices)
    for r in range(len(order) // batch):
        rows = order[r * batch:(r + 1) * batch]
        yield torch.from_numpy(images[rows]), torch.from_numpy(labels[rows])


class Net(nn.Module):
    """A small version of the Fashion-MNIST benchmark's 2-conv CNN (conv 5x5 / pool / conv 5x5 /
    pool / dense / dense). The benchmark's widths (32 and 64 channels, a 1024-unit dense layer:
    3.3 M parameters) send 29x more bytes per gossip round and compute ~1.3x slower per batch
    (below); these are 16, 32 and 64:

        conv 1->16 5x5 (416) - ReLU - maxpool 2 - conv 16->32 5x5 (12,832) - ReLU - maxpool 2
        - dense 1568->64 (100,416) - ReLU - dense 64->10 (650)               = 114,314 parameters

    Forward + backward + SGD step of a batch of 32 on one core (torch.set_num_threads(1), Debian's
    torch 1.13 CPU) on the shared 2-core development machine, measured while other builds kept its
    load at 2 to 6, so expect less on an idle core: median 22 to 24 ms (best 17 to 20 ms), about
    1,350 samples/s per core; 8 peers with 1 thread each trained 2,758 samples/s on the 2 cores.
    The benchmark's widths took a median of 30 to 31 ms in the same runs: on this build the
    element-wise ops and pooling on the 28x28 maps cost as much as the convolutions, so narrower
    layers gain less than their FLOPs suggest; the 29x smaller model still means 29x fewer bytes
    per gossip round (457 KB in fp32).
    (python/examples/fashion.py --bench prints these.)
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def evaluate(model, images, labels, batch=1000):
    """(accuracy, mean cross-entropy loss) of `model` on numpy or torch images/labels."""
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, len(labels)
    for i in range(0, n, batch):
        x = torch.as_tensor(images[i:i + batch])
        y = torch.as_tensor(labels[i:i + batch])
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / n, loss / n


def default_threads(world):
    """Cores // peers on this machine, at least 1 (the peers must not oversubscribe the cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, world))


def add_common_args(parser):
    """The arguments both examples take, with the same meaning."""
    parser.add_argument("--epochs", type=float, default=3,
                        help="passes of every peer over its own shard (fractions allowed)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per peer per round")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first N test rows")
    parser.add_argument("--seed", type=int, default=1, help="model init, partition, data order")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per peer (default: cores // peers, at least 1)")
    parser.add_argument("--data", default=DEFAULT_PATH, help="folder of the Fashion-MNIST IDX .gz files")
    parser.add_argument("--log-every", type=int, default=50, help="rounds between progress/metric lines")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="epochs between test evaluations of peer 0 and of the averaged model "
                             "(0: at the end only); not counted in wall_seconds")
    return parser


def int_list(text):
    """argparse type: "10,15" -> [10, 15]; "" -> []."""
    return [int(v) for v in text.split(",") if v.strip()]


def lr_at_epoch(lr, decay_epochs, factor, epoch):
    """Step schedule: lr times factor for every decay epoch already passed (epoch counts from 0)."""
    return lr * factor ** sum(1 for e in decay_epochs if epoch >= e)


def print_eval(epoch, peer0_accuracy, avg_accuracy, avg_loss):
    print(f"epoch {epoch}: test accuracy {peer0_accuracy:.4f} (peer 0) / {avg_accuracy:.4f} (averaged model),"
          f" averaged model's loss {avg_loss:.4f}", flush=True)


class Progress:
    """Mean training loss since the last line, and the lines themselves (same in both examples)."""

    def __init__(self, rank, rounds_per_epoch, total_rounds, log_every, metrics_file=None):
        self.rank, self.rpe, self.total, self.every = rank, rounds_per_epoch, total_rounds, log_every
        self.metrics = metrics_file
        self.loss_sum, self.loss_n = 0.0, 0
        self.start = time.perf_counter()

    def wall(self):
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (evaluations) is left out of wall()."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - t

    def update(self, round_, loss, bytes_sent):
        """round_ counts from 1. Writes a metric line (and prints on rank 0) every log_every rounds."""
        self.loss_sum += loss
        self.loss_n += 1
        if self.every <= 0 or (round_ % self.every and round_ != self.total):
            return
        line = {"rank": self.rank, "round": round_, "epoch": round(round_ / self.rpe, 4),
                "wall_seconds": round(self.wall(), 3), "train_loss": self.loss_sum / self.loss_n,
                "bytes_sent": int(bytes_sent)}
        if self.metrics is not None:
            self.metrics.write(json.dumps(line) + "\n")
            self.metrics.flush()
        if self.rank == 0:
            print(f"round {round_}/{self.total}  epoch {line['epoch']:.2f}  loss {line['train_loss']:.4f}"
                  f"  {line['wall_seconds']:.1f} s  {bytes_sent / 1e6:.1f} MB sent", flush=True)
        self.loss_sum, self.loss_n = 0.0, 0


def peer_result(rank, accuracy, loss, bytes_sent, wall_seconds, samples):
    """What each peer contributes to the summary."""
    return {"rank": rank, "test_accuracy": accuracy, "test_loss": loss, "bytes_sent": int(bytes_sent),
            "wall_seconds": wall_seconds, "samples": int(samples)}


def make_summary(implementation, peers, avg_accuracy, avg_loss, **settings):
    """The summary both examples write (rank 0) and print: `peers` is the list of peer_result()s
    in rank order; avg_* are the figures of the model averaged over all peers."""
    accs = [p["test_accuracy"] for p in peers]
    wall = max(p["wall_seconds"] for p in peers)
    samples = sum(p["samples"] for p in peers)
    summary = {"implementation": implementation, "peers": len(peers)}
    summary.update(settings)
    summary.update({
        "test_accuracy_mean": sum(accs) / len(accs),
        "test_accuracy_min": min(accs),
        "test_accuracy_max": max(accs),
        "test_accuracy_per_peer": accs,
        "test_loss_mean": sum(p["test_loss"] for p in peers) / len(peers),
        "test_accuracy_avg_model": avg_accuracy,
        "test_loss_avg_model": avg_loss,
        "bytes_sent_per_peer": [p["bytes_sent"] for p in peers],
        "bytes_sent_mean": sum(p["bytes_sent"] for p in peers) / len(peers),
        "wall_seconds": wall,  # the slowest peer's training time (loading and start-up excluded)
        "samples_per_second": samples / wall if wall > 0 else 0.0,  # all peers' samples / wall
    })
    return summary


def print_summary(s):
    per_peer = " ".join(f"{a:.4f}" for a in s["test_accuracy_per_peer"])
    print(f"per-peer test accuracy: {per_peer}")
    print(f"summary: {s['implementation']}  peers {s['peers']}  epochs {s.get('epochs')}"
          f"  test accuracy {s['test_accuracy_mean']:.4f} (peers, mean)"
          f" / {s['test_accuracy_avg_model']:.4f} (averaged model)"
          f"  {s['bytes_sent_mean'] / 1e6:.1f} MB sent per peer"
          f"  {s['samples_per_second']:.0f} samples/s  {s['wall_seconds']:.1f} s", flush=True)


def write_json(path, obj):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _bench(steps=200, batch=32):
    """Forward + backward + SGD step time per batch on one thread: this Net and the benchmark's."""
    torch.set_num_threads(1)

    class Wide(nn.Module):  # the benchmark's widths, for comparison
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 32, 5, padding=2), nn.Conv2d(32, 64, 5, padding=2)
            self.f1, self.f2 = nn.Linear(64 * 7 * 7, 1024), nn.Linear(1024, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = F.max_pool2d(F.relu(self.c2(x)), 2)
            return self.f2(F.relu(self.f1(x.flatten(1))))

    torch.manual_seed(0)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    for name, model, n in (("Net", Net(), steps), ("benchmark CNN", Wide(), max(10, steps // 8))):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        times = []
        for i in range(n + 5):
            t = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if i >= 5:
                times.append(time.perf_counter() - t)
        med = float(np.median(times))
        print(f"{name}: {parameter_count(model):,} parameters, batch {batch}, 1 thread: "
              f"median {med * 1e3:.2f} ms (min {min(times) * 1e3:.2f}), {batch / med:.0f} samples/s")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--bench"]:
        _bench()
    else:
        print("usage: fashion.py --bench   (the module is imported by the examples)")
