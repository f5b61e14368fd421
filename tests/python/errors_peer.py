"""A peer of the error tests, started as a process with GOSSIP_RANK and GOSSIP_CONFIG.

    errors_peer.py SCENARIO FOLDER

killed:  rank 1 dies by SIGKILL after 3 rounds; rank 0 must raise PeerError naming it.
stop:    rank 1 is slow (50 ms a round); the test sends rank 0 one SIGINT: both must raise
         gossip.Stopped before the same round.
hang:    rank 1 stops stepping after 3 rounds (it sleeps); rank 0 gets SIGINT while blocked and
         must raise KeyboardInterrupt within about a second.
mismatch: rank 1 runs another learning rate: both must raise PeerError at the handshake.
handshake: only rank 0 runs; SIGINT while it waits for rank 1 at the start must raise
         KeyboardInterrupt at once.
left:    4 peers, on_peer_loss = continue; after 5 rounds rank 3 dies by SIGKILL while the others
         call average(): they must raise PeerError, then after 8 more rounds average() works and
         gives the mean of the 3 left (each saves its model and that average as .npy).
Each writes FOLDER/SCENARIO-RANK.txt with what happened."""
import os
import signal
import sys
import time

import numpy as np

import gossip

scenario, folder = sys.argv[1], sys.argv[2]
peer = gossip.init()
out = f"{folder}/{scenario}-{peer.rank}.txt"


def report(text):
    with open(out, "w") as f:
        f.write(text)


if scenario == "handshake":
    open(f"{folder}/{scenario}-{peer.rank}.ready", "w").close()
try:
    lr = 0.5 if scenario == "mismatch" and peer.rank == 1 else 0.1
    algo = peer.algorithm(np.zeros(1000, np.float32), overrides={"algorithm.lr": lr})
except gossip.PeerError as e:
    report(f"PeerError at the handshake: {e}")
    sys.exit(0)
except KeyboardInterrupt:
    report(f"KeyboardInterrupt at the handshake at {time.monotonic():.3f}")
    sys.exit(0)

open(f"{folder}/{scenario}-{peer.rank}.ready", "w").close()
if scenario == "left":
    g = np.full(1000, float(peer.rank + 1), np.float32)  # models apart: the mean says who is in
    lines = []
    try:
        for t in range(5):
            algo.step(g)
        if peer.rank == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            algo.average()
            lines.append(f"average at round {algo.round}: no error")
        except gossip.PeerError as e:
            lines.append(f"PeerError during the loss: {e}")
        for t in range(8):
            algo.step(g)
        avg = algo.average()
        np.save(f"{folder}/left-{peer.rank}-params.npy", algo.params)
        np.save(f"{folder}/left-{peer.rank}-average.npy", avg)
        lines.append(f"average at round {algo.round}: ok")
    except gossip.PeerError as e:
        lines.append(f"PeerError at round {algo.round}: {e}")
    report("\n".join(lines))
    peer.close()
    sys.exit(0)
g = np.ones(1000, np.float32)
t0 = time.monotonic()
try:
    for t in range(100000):
        if peer.rank == 1 and scenario == "killed" and t == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        if peer.rank == 1 and scenario == "hang" and t == 3:
            time.sleep(60)
        if peer.rank == 1:
            time.sleep(0.05)
        algo.step(g)
        if time.monotonic() - t0 > 60:
            break
    report(f"no error after {algo.round} rounds")
except gossip.PeerError as e:
    report(f"PeerError at round {algo.round}: {e}")
except gossip.Stopped as e:
    report(f"Stopped at round {algo.round}: {e}")
except KeyboardInterrupt:
    report(f"KeyboardInterrupt at round {algo.round} at {time.monotonic():.3f}")
peer.close()
