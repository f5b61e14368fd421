#!/usr/bin/python3
"""Bulk-synchronous rounds of TCP transfers between peers in kernel-shaped namespaces
(scripts/netns.sh), against the NIC model of docs/transport.md.

Each peer sends BYTES to each of its out-neighbours and receives BYTES from each of its
in-neighbours every round, over one persistent TCP connection per direction of a link (as the
transport's DEALER to ROUTER), and starts its next round once its own sends and receives are done
(as D-PSGD does). The model says a round takes max(out-degree, in-degree) * BYTES * 8 / MBIT:
one uplink and one downlink token bucket per peer, shared by its links. Prints, per graph and
queue setting, the time a round takes (when the last peer finished it; round 0, the
connections' first, is not counted) and its ratio to the model (plus --compute, a sleep after
each round). Root only; the namespaces are gsp-x<pid>-* and 10.77.1.RANK as netns.sh
makes them, removed at the end.

Usage: scripts/netns_rounds.py [--mbit 5] [--bytes 940000] [--rounds 4] [--compute 0]
         [--queue netns.sh|LATENCY] [--graph ring:8 | pair | fanout | fanin | ...] ...
  --graph  ring:N (each peer to both neighbours), cycle:N (each peer to the next only),
           pair (0 -> 1), bidir (0 <-> 1), fanout (0 -> 1, 0 -> 2), fanin (1 -> 0, 2 -> 0);
           repeatable (default: pair and ring:8)
  --queue  netns.sh: the buckets as netns.sh makes them; LATENCY (tc's units: 50ms): the same
           buckets with their queues cut to that wait (`tc qdisc change ... latency`); repeatable
  --cc     the senders' TCP congestion control (cubic, reno, bbr; default: the namespaces', which
           netns.sh sets: reno, or NETNS_TCP_CC)
  --ack-first  a pfifo_fast under every bucket and the receiving sockets at SO_PRIORITY 6, so
           that ACKs pass the data queued in a bucket (this kernel has no fq_codel or sfq)
Also prints how early a peer's first incoming message of a round is complete against its last
(1.00: its links shared its downlink evenly).
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

PORT = 29700
HERE = os.path.dirname(os.path.abspath(__file__))


def edges_of(graph):
    if graph.startswith("ring:"):
        n = int(graph[5:])
        return n, [(r, (r + d) % n) for r in range(n) for d in (1, n - 1)]
    if graph.startswith("cycle:"):
        n = int(graph[6:])
        return n, [(r, (r + 1) % n) for r in range(n)]
    table = {"pair": (2, [(0, 1)]), "bidir": (2, [(0, 1), (1, 0)]),
             "fanout": (3, [(0, 1), (0, 2)]), "fanin": (3, [(1, 0), (2, 0)])}
    if graph not in table:
        sys.exit(f"netns_rounds: unknown graph '{graph}'")
    return table[graph]


def recv_exactly(sock, n):
    got = 0
    while got < n:
        b = sock.recv(min(1 << 20, n - got))
        if not b:
            raise ConnectionError("closed")
        got += len(b)


def worker(rank, outs, ins, nbytes, rounds, compute, ack_first, cc):
    srv = socket.create_server((f"10.77.1.{rank}", PORT), backlog=16)
    srv.settimeout(30)
    out_socks = []
    for peer in outs:
        deadline = time.monotonic() + 30
        while True:
            try:
                s = socket.create_connection((f"10.77.1.{peer}", PORT), timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if cc:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        s.sendall(rank.to_bytes(4, "little"))
        out_socks.append(s)
    in_socks = []
    for _ in ins:
        c, _ = srv.accept()
        c.settimeout(60)
        if ack_first:  # this connection only receives: what it sends is ACKs
            c.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6)  # TC_PRIO_INTERACTIVE
        recv_exactly(c, 4)
        in_socks.append(c)
    payload = bytes(nbytes)
    ends = []  # CLOCK_MONOTONIC: one clock for every namespace
    spread = []  # per round: when the first and the last incoming message were complete
    for _ in range(rounds + 1):
        start = time.monotonic()
        got = []

        def receive(c):
            recv_exactly(c, nbytes)
            got.append(time.monotonic() - start)
        jobs = [threading.Thread(target=s.sendall, args=(payload,)) for s in out_socks]
        jobs += [threading.Thread(target=receive, args=(c,)) for c in in_socks]
        for j in jobs:
            j.start()
        for j in jobs:
            j.join()
        ends.append(time.monotonic())
        if len(got) > 1:
            spread.append(min(got) / max(got))
        if compute > 0:
            time.sleep(compute)
    print(json.dumps({"rank": rank, "ends": ends, "spread": spread[1:]}))


def set_queue(tag, n, latency, ack_first):
    """Every tbf of the set (peer ends and hub ends) with its queue cut to LATENCY (tc's
    `latency`: how long a packet may wait for tokens; None: as it is), the rate and burst
    unchanged; ack_first: a pfifo_fast under it, whose first band the ACKs take."""
    for r in range(n):
        for ns, dev in ((f"gsp-{tag}-{r}", "nic"), (f"gsp-{tag}-hub", f"p{r}")):
            q = subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", dev],
                               capture_output=True, text=True, check=True).stdout.split()
            if latency:
                rate, burst = q[q.index("rate") + 1], q[q.index("burst") + 1]
                subprocess.run(["tc", "-n", ns, "qdisc", "change", "dev", dev, "root", "tbf",
                                "rate", rate, "burst", burst, "latency", latency], check=True)
            if ack_first:
                subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "parent",
                                q[2] + "1", "pfifo_fast"], check=True)  # q[2]: "8001:"


def run(graph, latency, a):
    n, edges = edges_of(graph)
    tag = f"x{os.getpid()}"
    subprocess.run(["bash", os.path.join(HERE, "netns.sh"), "up", tag, str(n), str(a.mbit)],
                   check=True)
    procs = []
    try:
        cc = a.cc or subprocess.run(
            ["ip", "netns", "exec", f"gsp-{tag}-0", "sysctl", "-n",
             "net.ipv4.tcp_congestion_control"], capture_output=True, text=True,
            check=True).stdout.strip()
        if latency != "netns.sh" or a.ack_first:
            set_queue(tag, n, None if latency == "netns.sh" else latency, a.ack_first)
        for r in range(n):
            outs = [d for s, d in edges if s == r]
            ins = [s for s, d in edges if d == r]
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", f"gsp-{tag}-{r}", sys.executable,
                 os.path.abspath(__file__), "--worker", str(r), ",".join(map(str, outs)),
                 ",".join(map(str, ins)), str(a.bytes), str(a.rounds), str(a.compute),
                 str(int(a.ack_first)), a.cc], stdout=subprocess.PIPE, text=True))
        limit = 30 + (a.rounds + 1) * (a.compute + 20 * n * a.bytes * 8 / (a.mbit * 1e6))
        out = [p.communicate(timeout=limit)[0] for p in procs]
        if any(p.returncode for p in procs):
            sys.exit(f"netns_rounds: a worker failed on {graph}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["bash", os.path.join(HERE, "netns.sh"), "down", tag, str(n)])
    ends = [json.loads(o)["ends"] for o in out]
    spread = [x for o in out for x in json.loads(o)["spread"]]
    # The pace: from the end of round 0 to the end of the last round, both when the last peer
    # finished them (a peer that only sends finishes when its data is in its socket buffers).
    pace = (max(e[-1] for e in ends) - max(e[0] for e in ends)) / a.rounds
    degree = max(max(sum(1 for e in edges if e[0] == r), sum(1 for e in edges if e[1] == r))
                 for r in range(n))
    model = degree * a.bytes * 8 / (a.mbit * 1e6) + a.compute
    print(f"{graph:8} queue {latency:8} {a.mbit:5} Mbit/s {a.bytes:>9} B  "
          f"compute {a.compute:5.3f} s  model {model:7.3f} s a round  measured {pace:7.3f} s ({pace / model:.2f}x)"
          + (f"  first/last message {sum(spread) / len(spread):.2f}" if spread else "")
          + ("  ACKs first" if a.ack_first else "") + f"  {cc}", flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        r, outs, ins, nbytes, rounds, compute, ack_first, cc = sys.argv[2:10]
        worker(int(r), [int(x) for x in outs.split(",") if x], [int(x) for x in ins.split(",") if x],
               int(nbytes), int(rounds), float(compute), ack_first == "1", cc)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mbit", type=int, default=5)
    p.add_argument("--bytes", type=int, default=940000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--compute", type=float, default=0.0)
    p.add_argument("--graph", action="append")
    p.add_argument("--queue", action="append")
    p.add_argument("--ack-first", action="store_true")
    p.add_argument("--cc", default="")
    a = p.parse_args()
    for latency in a.queue or ["netns.sh"]:
        for graph in a.graph or ["pair", "ring:8"]:
            run(graph, latency, a)


if __name__ == "__main__":
    main()
