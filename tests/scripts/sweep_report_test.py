"""scripts/sweep_report.py on hand-written metrics files whose answers are known: the time and
bytes to a target accuracy (the averaged model's, first logged round at or above it) and to a
target loss (mean over peers), the slowest peer's time at that round, "not reached", the mean and
spread over seeds, the speed-up against the all-reduce run of the same network, and a run whose
loss turned non-finite marked diverged."""
import csv
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get("GOSSIP_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
REPORT = os.path.join(ROOT, "scripts", "sweep_report.py")


def require(cond, msg):
    if not cond:
        sys.exit(f"FAIL: {msg}")


def write_run(path, algorithm, lines_by_rank):
    os.makedirs(path)
    with open(os.path.join(path, "config.toml"), "w") as f:
        f.write(f'[run]\nname = "x"\n[algorithm]\nname = "{algorithm}"\n')
    for rank, lines in lines_by_rank.items():
        with open(os.path.join(path, f"metrics-{rank}.jsonl"), "w") as f:
            for j in lines:
                f.write(json.dumps({"rank": rank, **j}) + "\n")


def line(rnd, t, loss, sent, acc=None):
    j = {"round": rnd, "wall_seconds": t, "train_loss": loss, "bytes_sent": sent}
    if acc is not None:
        j["test_accuracy_avg_model"] = acc
    return j


with tempfile.TemporaryDirectory() as out:
    # All-reduce: reaches 0.8 at round 20; rank 1 is slower there (12 s), so 12 s is the time.
    write_run(f"{out}/ar", "allreduce", {
        0: [line(10, 5.0, 1.0, 100, 0.5), line(20, 10.0, 0.6, 200, 0.81), line(30, 15.0, 0.4, 300, 0.9)],
        1: [line(10, 5.5, 1.2, 100), line(20, 12.0, 0.8, 200), line(30, 15.5, 0.6, 300)],
    })
    # Gossip, two seeds: 0.8 at 3 s and 5 s (mean 4, sd 1.414); loss 0.5 at 2 s and 4 s.
    write_run(f"{out}/g1", "choco-sgd", {
        0: [line(10, 1.0, 0.9, 10, 0.7), line(20, 2.0, 0.5, 20, 0.79), line(30, 3.0, 0.3, 30, 0.8)],
        1: [line(10, 1.0, 0.7, 10), line(20, 2.0, 0.5, 20), line(30, 3.0, 0.3, 30)],
    })
    write_run(f"{out}/g2", "choco-sgd", {
        0: [line(10, 2.0, 0.9, 10, 0.6), line(20, 4.0, 0.6, 20, 0.7), line(30, 5.0, 0.4, 30, 0.85)],
        1: [line(10, 2.0, 0.9, 10), line(20, 4.0, 0.4, 20), line(30, 5.0, 0.4, 30)],
    })
    # Never reaches 0.8; its loss becomes NaN.
    write_run(f"{out}/d", "dcd-psgd", {
        0: [line(10, 1.0, 2.0, 10, 0.3), {"round": 20, "wall_seconds": 2.0, "train_loss": None,
                                            "bytes_sent": 20, "test_accuracy_avg_model": 0.1}],
        1: [line(10, 1.0, 2.0, 10), {"round": 20, "wall_seconds": 2.0, "train_loss": float("nan"),
                                     "bytes_sent": 20}],
    })
    with open(f"{out}/index.tsv", "w") as f:
        f.write("run\tlatency_ms\tbandwidth_mbit\tpeers\tseed\tdir\tstatus\n")
        f.write(f"ar\t20\t5\t-\t-\t{out}/ar\tok\n")
        f.write(f"gossip\t20\t5\t-\t1\t{out}/g1\tok\n")
        f.write(f"gossip\t20\t5\t-\t2\t{out}/g2\tok\n")
        f.write(f"dcd\t20\t5\t-\t-\t{out}/d\tdiverged\n")
    r = subprocess.run([sys.executable, REPORT, out, "--target-accuracy", "0.8", "--target-loss",
                        "0.5"], capture_output=True, text=True, timeout=60)
    require(r.returncode == 0, f"report exited {r.returncode}: {r.stderr}")
    print(r.stdout)
    rows = {row["run"]: row for row in csv.DictReader(open(f"{out}/sweep.tsv"), delimiter="\t")}
    ar, g, d = rows["ar"], rows["gossip"], rows["dcd"]
    require(ar["algorithm"] == "allreduce" and g["algorithm"] == "choco-sgd", "algorithm names")
    require(ar["to_accuracy_s"] == "12.00", f"all-reduce to 0.8: {ar['to_accuracy_s']}")
    require(ar["to_accuracy_mb"] == "0.00" and ar["to_accuracy_reached"] == "1/1", "all-reduce bytes")
    # Loss is the mean over peers: (0.6 + 0.8) / 2 = 0.7 at round 20, 0.5 at round 30 (15.5 s).
    require(ar["to_loss_s"] == "15.50", f"all-reduce to loss 0.5: {ar['to_loss_s']}")
    require(g["seeds"] == "2" and g["to_accuracy_s"] == "4.00", f"gossip to 0.8: {g['to_accuracy_s']}")
    require(g["to_accuracy_s_sd"] == "1.41", f"gossip spread {g['to_accuracy_s_sd']}")
    require(g["to_accuracy_vs_allreduce"] == "3.00", f"speed-up {g['to_accuracy_vs_allreduce']}")
    require(g["to_loss_s"] == "3.00", f"gossip to loss 0.5: {g['to_loss_s']}")  # 2 s and 4 s
    require(g["test_acc_avg_model"] == "0.8250", f"final accuracy mean {g['test_acc_avg_model']}")
    require(d["to_accuracy_reached"] == "0/1" and d["to_accuracy_s"] == "", "dcd reached 0.8?")
    require(d["status"] == "diverged", f"dcd status {d['status']}")
    require("not reached" in r.stdout and "| dcd |" in r.stdout and "diverged" in r.stdout,
            "Markdown table: not reached / diverged")
    for png in ("loss-vs-time.png", "time-to-target.png"):
        require(os.path.getsize(f"{out}/{png}") > 1000, f"no plot {png}")
    j = json.load(open(f"{out}/sweep.json"))
    require(j["targets"]["to_accuracy"]["value"] == 0.8, "sweep.json targets")
    require(len([x for x in j["rows"] if x["run"] == "gossip"][0]["seeds"]) == 2, "json seeds")
    # A missing index is an error that names it.
    os.remove(f"{out}/index.tsv")
    r = subprocess.run([sys.executable, REPORT, out], capture_output=True, text=True, timeout=60)
    require(r.returncode != 0 and "index.tsv" in r.stderr, f"no index: {r.stderr}")
print("sweep report: ok")
