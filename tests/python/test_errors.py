"""Errors as a Python user meets them: a bad key is a ConfigError naming it; one peer (world size
1) trains; a killed neighbour is a PeerError naming it within the timeout; the first Ctrl-C stops
every peer before the same round (gossip.Stopped), and Ctrl-C while a round waits for a neighbour
that will never come raises KeyboardInterrupt within about a second."""
import os
import signal
import subprocess
import time

import numpy as np

from util import HERE, PYTHON, require, scratch, write_config

import gossip

PEER = os.path.join(HERE, "errors_peer.py")


def start(config, scenario, folder, n=2):
    return [subprocess.Popen([PYTHON, PEER, scenario, folder],
                             env=dict(os.environ, GOSSIP_RANK=str(r), GOSSIP_CONFIG=config),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(n)]


def wait_all(procs, timeout=60):
    for p in procs:
        try:
            p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def wait_ready(folder, scenario, n=2, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(os.path.exists(f"{folder}/{scenario}-{r}.ready") for r in range(n)):
            return
        time.sleep(0.05)
    raise SystemExit(f"FAIL: {scenario}: peers not ready within {timeout} s")


def result(folder, scenario, rank):
    with open(f"{folder}/{scenario}-{rank}.txt") as f:
        return f.read()


with scratch() as tmp:
    one = write_config(tmp, "ring:1,{ipc}", name="one")
    # Unknown keys and bad values name the key.
    for overrides, key in (({"algorithm.lerning_rate": 0.1}, "algorithm.lerning_rate"),
                           ({"algorithm.lr": "fast"}, "algorithm.lr")):
        try:
            gossip.init(one, rank=0, overrides=overrides)
            require(False, f"{overrides} was accepted")
        except gossip.ConfigError as e:
            require(key in str(e), f"ConfigError does not name {key}: {e}")
    try:
        gossip.init(os.path.join(tmp, "missing.toml"), rank=0)
        require(False, "a missing config was accepted")
    except gossip.ConfigError as e:
        require("missing.toml" in str(e), f"ConfigError does not name the file: {e}")
    try:
        gossip.init(one, rank=1)
        require(False, "rank 1 of one peer was accepted")
    except gossip.ConfigError as e:
        require("rank 1 is out of range" in str(e), str(e))
    print("config errors name the key, the file, the rank: ok")

    # World size 1: plain SGD, no neighbours, a loss that goes down.
    peer = gossip.init(one, rank=0)
    require(peer.size == 1 and peer.neighbors == [], f"size {peer.size}, {peer.neighbors}")
    algo = peer.algorithm(np.full(100, 3.0, np.float32))
    for _ in range(30):
        algo.step(algo.params.copy())  # gradient of |x|²/2
    require(float(np.abs(algo.params).max()) < 3.0 * 0.9 ** 29, f"x = {algo.params[:3]}")
    require(np.array_equal(algo.average(), algo.params), "the average of one peer is its model")
    # A saved state that is not whole is refused and changes nothing; a whole one loads.
    saved, at_save = algo.save(), algo.params.copy()
    algo.step(algo.params.copy())
    moved = algo.params.copy()
    for bad in (saved + b"x", saved[:-1], b"GSPYST01", saved[:40]):
        try:
            algo.load(bad)
            require(False, f"a state of {len(bad)} bytes was loaded")
        except gossip.StateError:
            require(np.array_equal(algo.params, moved), "a refused state changed the model")
    algo.load(saved)
    require(np.array_equal(algo.params, at_save) and algo.round == 30, "the saved state did not load")
    require(algo.totals["rounds"] == 30, f"totals after load: {algo.totals}")
    peer.close()
    print("one peer trains: ok")

    # A killed neighbour: PeerError naming it, within the timeout.
    two = write_config(tmp, "ring:2,{ipc}", name="two", timeout_s=3)
    t0 = time.monotonic()
    procs = start(two, "killed", tmp)
    wait_all(procs)
    text = result(tmp, "killed", 0)
    require(text.startswith("PeerError") and "peer 1" in text and "ipc://" in text,
            f"rank 0 after its neighbour was killed: {text}")
    require(time.monotonic() - t0 < 30, "PeerError took too long")
    print(f"killed neighbour: {text.splitlines()[0][:160]}")

    # A peer lost during a collective (on_peer_loss = continue): PeerError for the call, then the
    # mean over the peers left once the loss is agreed.
    four = write_config(tmp, "ring:4,{ipc}", name="four", timeout_s=3,
                        extra='on_peer_loss = "continue"')
    procs = start(four, "left", tmp, n=4)
    wait_all(procs, timeout=90)
    params = []
    for r in range(3):
        text = result(tmp, "left", r)
        # Either the peer learned of the loss in the ring (cut), or knew of it already and did
        # not enter a ring the others might count differently.
        require(text.startswith("PeerError during the loss") and "a peer left" in text
                and "has no result" in text and text.rstrip().endswith("ok"),
                f"rank {r}: {text}")
        params.append(np.load(f"{tmp}/left-{r}-params.npy").astype(np.float64))
    mean = sum(params) / 3
    for r in range(3):
        avg = np.load(f"{tmp}/left-{r}-average.npy")
        require(np.allclose(avg, mean, rtol=1e-5, atol=1e-6),
                f"rank {r}: average {avg[:3]} is not the mean of the 3 left {mean[:3]}")
    require(not np.allclose(mean, (sum(params) + params[0]) / 4), "the mean cannot tell who is in")
    print(f"peer lost in a collective: {result(tmp, 'left', 0).splitlines()[0][:140]}; then the "
          "mean of the 3 left: ok")

    # A neighbour with other settings: refused at the handshake, by both.
    procs = start(two, "mismatch", tmp)
    wait_all(procs)
    texts = [result(tmp, "mismatch", r) for r in range(2)]
    require(all(t.startswith("PeerError at the handshake") for t in texts),
            f"peers with different learning rates: {texts}")
    print(f"mismatched neighbour: {texts[0][:160]}")

    # First Ctrl-C: both peers stop before the same round.
    procs = start(two, "stop", tmp)
    wait_ready(tmp, "stop")
    time.sleep(0.5)
    procs[0].send_signal(signal.SIGINT)
    wait_all(procs)
    texts = [result(tmp, "stop", r) for r in range(2)]
    require(all(t.startswith("Stopped") for t in texts), f"after one Ctrl-C: {texts}")
    rounds = {t.split()[3].rstrip(":") for t in texts}
    require(len(rounds) == 1, f"the peers stopped at different rounds: {texts}")
    print(f"Ctrl-C: both peers stopped at round {rounds.pop()}: ok")

    # Ctrl-C while a round waits for a neighbour that will not come: KeyboardInterrupt within ~1 s.
    procs = start(two, "hang", tmp)
    wait_ready(tmp, "hang")
    time.sleep(1.0)  # rank 1 is asleep, rank 0 waits in round 4
    sent = time.monotonic()
    procs[0].send_signal(signal.SIGINT)
    try:
        procs[0].communicate(timeout=10)
    except subprocess.TimeoutExpired:
        procs[0].kill()
    procs[1].kill()
    wait_all(procs)
    text = result(tmp, "hang", 0)
    require(text.startswith("KeyboardInterrupt"), f"rank 0 after Ctrl-C while blocked: {text}")
    took = float(text.split()[-1]) - sent
    require(took < 2.0, f"KeyboardInterrupt came {took:.2f} s after Ctrl-C")
    print(f"Ctrl-C while blocked: KeyboardInterrupt after {took:.2f} s: ok")
    # Ctrl-C while the start-up handshake waits for a peer that never comes.
    procs = start(two, "handshake", tmp, n=1)
    wait_ready(tmp, "handshake", n=1)
    time.sleep(0.5)
    sent = time.monotonic()
    procs[0].send_signal(signal.SIGINT)
    wait_all(procs, timeout=20)
    text = result(tmp, "handshake", 0)
    require(text.startswith("KeyboardInterrupt at the handshake"), f"after Ctrl-C: {text}")
    took = float(text.split()[-1]) - sent
    require(took < 1.5, f"KeyboardInterrupt came {took:.2f} s after Ctrl-C")
    print(f"Ctrl-C in the handshake: KeyboardInterrupt after {took:.2f} s: ok")
print("ok")
