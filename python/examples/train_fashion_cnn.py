"""The Fashion-MNIST CNN trained by gossip: the same data, partition, batches, model and
evaluation as the torch.distributed baseline (torch_dpsgd_ring.py); the algorithm, learning rate,
momentum, codec and topology come from the run config.

    gossip launch --config python/examples/ring8_dpsgd.toml -- \\
        /usr/bin/python3 python/examples/train_fashion_cnn.py --epochs 3
"""

import time

STARTED = time.perf_counter()  # before importing torch (~7 s alone)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gossip  # noqa: E402
import gossip.torch as gt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion  # noqa: E402


def setting(text):
    """argparse type for --set KEY=VALUE: the value is TOML (42, 0.05, true, "s", [10]); a bare
    word is a string, as for `gossip launch --set`."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip(), parsed


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fashion.add_common_args(p)
    p.add_argument("--config", default=None,
                   help="run config (default: GOSSIP_CONFIG, which `gossip launch` sets)")
    p.add_argument("--set", dest="overrides", type=setting, action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key, e.g. --set algorithm.lr=0.05 (repeatable)")
    p.add_argument("--summary", default="runs/fashion-cnn/summary.json",
                   help="summary JSON written by rank 0")
    p.add_argument("--lr-decay-epochs", type=fashion.int_list, default=[],
                   help="comma-separated epochs after which lr is multiplied by --lr-decay-factor")
    p.add_argument("--lr-decay-factor", type=float, default=0.1)
    return p.parse_args()


def main():
    args = parse_args()
    overrides = dict(args.overrides)

    # --- gossip: join the run (rank and config from `gossip launch`'s environment) ---
    peer = gossip.init(config=args.config, rank=None, overrides=overrides)
    rank, world = peer.rank, peer.size

    threads = args.threads or fashion.default_threads(world)
    torch.set_num_threads(threads)
    train_x, train_y, test_x, test_y = fashion.load_fashion_mnist(args.data, args.train_limit, args.test_limit)
    mine = fashion.shard(len(train_y), rank, world, args.seed)
    rpe = fashion.rounds_per_epoch(len(mine), args.batch_size)
    total_rounds = int(round(args.epochs * rpe))

    torch.manual_seed(args.seed)  # every peer starts from the same model
    model = fashion.Net()
    # --- gossip: lr, momentum, algorithm and codec come from the run config ---
    opt = gt.DecentralizedOptimizer(model, peer)
    base_lr = opt.param_groups[0]["lr"]

    if rank == 0:
        print(f"gossip: {world} peers, {threads} threads each, {fashion.parameter_count(model):,}"
              f" parameters, shard {len(mine)} rows, {rpe} rounds/epoch, {total_rounds} rounds,"
              f" batch {args.batch_size}, overrides {overrides}", flush=True)
        print(f"start-up (import torch, gossip.init, data, model): {time.perf_counter() - STARTED:.1f} s",
              flush=True)
    progress = fashion.Progress(rank, rpe, total_rounds, args.log_every)
    round_, epoch = 0, 0
    while round_ < total_rounds:
        # The step schedule, as the baseline's: a torch optimizer's lr, which the next step uses.
        opt.param_groups[0]["lr"] = fashion.lr_at_epoch(base_lr, args.lr_decay_epochs,
                                                        args.lr_decay_factor, epoch)
        for x, y in fashion.batches(train_x, train_y, mine, args.batch_size, epoch, args.seed, rank):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step(loss=loss.item())  # --- gossip: local step and one gossip round ---
            round_ += 1
            progress.update(round_, loss.item(), opt.bytes_sent)
            if round_ == total_rounds:
                break
        epoch += 1
        if args.eval_every and epoch % args.eval_every == 0 and round_ < total_rounds:
            with progress.paused():  # evaluations are not training time
                acc, loss = fashion.evaluate(model, test_x, test_y)
                fields = {"test_accuracy": acc, "test_loss": loss}
                with opt.averaged():  # --- gossip: every peer's model is the average inside ---
                    if rank == 0:
                        avg_acc, avg_loss = fashion.evaluate(model, test_x, test_y)
                        fashion.print_eval(epoch, acc, avg_acc, avg_loss)
                        fields.update(test_accuracy_avg_model=avg_acc, test_loss_avg_model=avg_loss)
                opt.log(**fields)  # --- gossip: a metrics line, as the CLI's evaluations write
    wall = progress.wall()
    eval_started = time.perf_counter()

    acc, loss = fashion.evaluate(model, test_x, test_y)
    print(f"peer {rank}: test accuracy {acc:.4f}, {opt.bytes_sent / 1e6:.1f} MB sent", flush=True)
    # --- gossip: every peer's figures, in rank order (a collective) ---
    figures = opt.algorithm.gather([acc, loss, opt.bytes_sent, wall, total_rounds * args.batch_size])
    with opt.averaged():  # --- gossip: the averaged model ---
        avg_acc, avg_loss = fashion.evaluate(model, test_x, test_y) if rank == 0 else (None, None)
    fields = {"test_accuracy": acc, "test_loss": loss}
    if rank == 0:
        fields.update(test_accuracy_avg_model=avg_acc, test_loss_avg_model=avg_loss)
    opt.log(**fields)  # the final evaluation, for scripts/plot-run.sh

    if rank == 0:
        results = [fashion.peer_result(r, float(f[0]), float(f[1]), round(float(f[2])), float(f[3]),
                                       round(float(f[4]))) for r, f in enumerate(figures)]
        print(f"evaluation (own model, then the averaged one): {time.perf_counter() - eval_started:.1f} s",
              flush=True)
        summary = fashion.make_summary(
            "gossip", results, avg_acc, avg_loss,
            epochs=args.epochs, rounds=total_rounds, batch_size=args.batch_size,
            config=args.config or os.environ.get("GOSSIP_CONFIG"), overrides=overrides, seed=args.seed,
            threads_per_peer=threads, train_rows=len(train_y), test_rows=len(test_y),
            parameters=fashion.parameter_count(model),
            lr_decay_epochs=args.lr_decay_epochs, lr_decay_factor=args.lr_decay_factor,
            bytes_note="bytes the peer sent, framing included (opt.bytes_sent; gathered as "
                       "float32: within 2^-24 of it)")
        fashion.print_summary(summary)
        fashion.write_json(args.summary, summary)
    peer.close()


if __name__ == "__main__":
    main()
