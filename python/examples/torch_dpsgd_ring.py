"""Baseline: D-PSGD on a ring with torch.distributed (gloo), the way EPFL's ChocoSGD reference code
does it: a local SGD step, then each rank isend()s its flattened parameters to both ring
neighbours, irecv()s theirs and mixes x_i <- (x_i + x_left + x_right) / 3 (the ring's weights).

Same data, partition, batches, model and evaluation as train_fashion_cnn.py (the gossip version):
both import fashion.py.

    torchrun --standalone --nproc_per_node 8 python/examples/torch_dpsgd_ring.py --epochs 3
    # or any launcher that sets RANK and WORLD_SIZE (MASTER_ADDR defaults to 127.0.0.1,
    # MASTER_PORT to 29400); without them it trains one peer.
"""

import time

STARTED = time.perf_counter()  # before importing torch (~7 s alone)

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.utils import parameters_to_vector, vector_to_parameters  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fashion.add_common_args(p)
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (0.05: see README, \"Settings\")")
    p.add_argument("--momentum", type=float, default=0.9, help="heavy-ball momentum (local, per peer)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--lr-decay-epochs", type=fashion.int_list, default=[],
                   help="comma-separated epochs after which lr is multiplied by --lr-decay-factor")
    p.add_argument("--lr-decay-factor", type=float, default=0.1)
    p.add_argument("--output", default=None,
                   help="folder for metrics-R.jsonl and (rank 0) summary.json; none: print only")
    return p.parse_args()


class RingGossip:
    """x_i <- (x_i + x_left + x_right) / 3 with isend/irecv; bytes_sent counts payload bytes."""

    def __init__(self, rank, world):
        self.rank, self.world = rank, world
        self.left, self.right = (rank - 1) % world, (rank + 1) % world
        # World 2: both neighbours are the other rank; send one copy and weigh it 2/3 (the runtime's
        # ring weights do the same: the 1/3s of coinciding neighbours add up).
        self.neighbours = sorted({self.left, self.right} - {rank})
        self.weights = {j: (2.0 / 3.0 if self.left == self.right else 1.0 / 3.0) for j in self.neighbours}
        self.bytes_sent = 0

    @torch.no_grad()
    def averaged_parameters(self, model):
        """The mean of all peers' parameters (all_reduce / world), as one flat vector."""
        flat = parameters_to_vector(model.parameters()).detach().clone()
        if self.world > 1:
            dist.all_reduce(flat)
            flat /= self.world
        return flat

    @torch.no_grad()
    def mix(self, model):
        if not self.neighbours:  # one peer: nothing to mix
            return
        params = list(model.parameters())
        x = parameters_to_vector(params).detach().clone()  # the copy being sent stays untouched
        bufs = {j: torch.empty_like(x) for j in self.neighbours}
        reqs = [dist.isend(x, dst=j) for j in self.neighbours]
        reqs += [dist.irecv(bufs[j], src=j) for j in self.neighbours]
        for r in reqs:
            r.wait()
        self.bytes_sent += x.numel() * x.element_size() * len(self.neighbours)
        mixed = x * (1.0 / 3.0)
        for j in self.neighbours:
            mixed.add_(bufs[j], alpha=self.weights[j])
        vector_to_parameters(mixed, params)


def main():
    args = parse_args()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29400")
    threads = args.threads or fashion.default_threads(world)
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world)

    train_x, train_y, test_x, test_y = fashion.load_fashion_mnist(args.data, args.train_limit, args.test_limit)
    mine = fashion.shard(len(train_y), rank, world, args.seed)
    rpe = fashion.rounds_per_epoch(len(mine), args.batch_size)
    total_rounds = int(round(args.epochs * rpe))

    torch.manual_seed(args.seed)  # every peer starts from the same model
    model = fashion.Net()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    ring = RingGossip(rank, world)

    metrics = None
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        metrics = open(os.path.join(args.output, f"metrics-{rank}.jsonl"), "w")
    if rank == 0:
        print(f"torch D-PSGD ring: {world} peers, {threads} threads each, {fashion.parameter_count(model):,}"
              f" parameters, shard {len(mine)} rows, {rpe} rounds/epoch, {total_rounds} rounds,"
              f" lr {args.lr} momentum {args.momentum} batch {args.batch_size}", flush=True)

    if world > 1:
        dist.barrier()
    if rank == 0:
        print(f"start-up (import torch, process group, data, model): {time.perf_counter() - STARTED:.1f} s", flush=True)
    progress = fashion.Progress(rank, rpe, total_rounds, args.log_every, metrics)
    round_, epoch = 0, 0
    while round_ < total_rounds:
        for group in opt.param_groups:
            group["lr"] = fashion.lr_at_epoch(args.lr, args.lr_decay_epochs, args.lr_decay_factor, epoch)
        for x, y in fashion.batches(train_x, train_y, mine, args.batch_size, epoch, args.seed, rank):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            ring.mix(model)
            round_ += 1
            progress.update(round_, loss.item(), ring.bytes_sent)
            if round_ == total_rounds:
                break
        epoch += 1
        if args.eval_every and epoch % args.eval_every == 0 and round_ < total_rounds:
            with progress.paused():  # evaluations are not training time
                acc, _ = fashion.evaluate(model, test_x, test_y)
                flat = ring.averaged_parameters(model)  # collective; rank 0 evaluates a copy
                if rank == 0:
                    avg = fashion.Net()
                    vector_to_parameters(flat, avg.parameters())
                    fashion.print_eval(epoch, acc, *fashion.evaluate(avg, test_x, test_y))
    wall = progress.wall()
    eval_started = time.perf_counter()

    acc, loss = fashion.evaluate(model, test_x, test_y)
    mine_result = fashion.peer_result(rank, acc, loss, ring.bytes_sent, wall, total_rounds * args.batch_size)
    if world > 1:
        results = [None] * world
        dist.all_gather_object(results, mine_result)
        vector_to_parameters(ring.averaged_parameters(model), model.parameters())  # the averaged model
        avg_acc, avg_loss = fashion.evaluate(model, test_x, test_y) if rank == 0 else (None, None)
    else:
        results, avg_acc, avg_loss = [mine_result], acc, loss

    if rank == 0:
        print(f"evaluation (own model, then the averaged one): {time.perf_counter() - eval_started:.1f} s",
              flush=True)
        summary = fashion.make_summary(
            "torch.distributed gloo, D-PSGD ring (isend/irecv)", results, avg_acc, avg_loss,
            epochs=args.epochs, rounds=total_rounds, batch_size=args.batch_size, lr=args.lr,
            momentum=args.momentum, weight_decay=args.weight_decay, lr_decay_epochs=args.lr_decay_epochs,
            lr_decay_factor=args.lr_decay_factor, seed=args.seed,
            threads_per_peer=threads, train_rows=len(train_y), test_rows=len(test_y),
            parameters=fashion.parameter_count(model),
            bytes_note="payload bytes (fp32 parameters); gloo's own framing not counted")
        fashion.print_summary(summary)
        if args.output:
            fashion.write_json(os.path.join(args.output, "summary.json"), summary)
    if metrics is not None:
        metrics.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
