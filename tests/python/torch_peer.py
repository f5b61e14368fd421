"""One peer of the torch optimizer tests (started by the tests with GOSSIP_RANK/GOSSIP_CONFIG).

    torch_peer.py MODE FOLDER

MODE "train": 12 rounds, saving opt.state_dict() after 6 into FOLDER/state-R.pt and the
parameters after 12 into FOLDER/full-R.bin; MODE "resume": a fresh model and optimizer load the
state and run rounds 7..12 into FOLDER/resumed-R.bin. The batches depend only on (rank, round),
so the two runs see the same data."""
import sys

import torch
import torch.nn.functional as F

import gossip
import gossip.torch as gt

mode, folder = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
peer = gossip.init()


def model():
    torch.manual_seed(3)  # the same x0 on every peer
    return torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def batch(t):
    g = torch.Generator().manual_seed(1000 * peer.rank + t)
    return torch.randn(8, 20, generator=g), torch.randint(0, 4, (8,), generator=g)


def train(net, opt, rounds):
    for t in rounds:
        x, y = batch(t)
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step(loss=loss)


def flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()


net = model()
opt = gt.DecentralizedOptimizer(net, peer, momentum=0.9)
if mode == "train":
    train(net, opt, range(6))
    torch.save(opt.state_dict(), f"{folder}/state-{peer.rank}.pt")
    train(net, opt, range(6, 12))
    flat(net).tofile(f"{folder}/full-{peer.rank}.bin")
else:
    opt.load_state_dict(torch.load(f"{folder}/state-{peer.rank}.pt"))
    assert opt.algorithm.round == 6, opt.algorithm.round
    train(net, opt, range(6, 12))
    flat(net).tofile(f"{folder}/resumed-{peer.rank}.bin")
peer.close()
