"""scripts/sweep.sh --command runs a user's script under `gossip launch -- CMD` for every link
and reads its table row from the peers' metrics lines: the last accuracy each peer logged (mean),
rank 0's averaged-model accuracy, the bytes and rounds of the metrics; emulated latency makes the
run slower, not different."""
import csv
import glob
import json
import os
import subprocess

from util import GOSSIP, HERE, PYTHON, ROOT, require, scratch, write_config

with scratch() as tmp:
    config = write_config(tmp, "ring:4,{ipc}", name="sweep")
    out = os.path.join(tmp, "sweep")
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "sweep.sh"), "--config", config, "--gossip", GOSSIP,
         "--out", out, "--latency", "0 30", "--bandwidth", "0", "--run", "a=algorithm.lr=0.1",
         "--command", f"{PYTHON} {os.path.join(HERE, 'sweep_peer.py')}"],
        capture_output=True, text=True, timeout=300)
    require(r.returncode == 0, f"sweep exited {r.returncode}:\n{r.stderr[-2000:]}")
    rows = list(csv.DictReader(open(os.path.join(out, "sweep.tsv")), delimiter="\t"))
    require(len(rows) == 2, f"{len(rows)} rows: {rows}")
    for row in rows:
        run = os.path.join(out, f"L{row['latency_ms']}-B0", "a")
        last = {}
        for path in glob.glob(f"{run}/metrics-*.jsonl"):
            lines = [json.loads(x) for x in open(path)]
            last[lines[-1]["rank"]] = lines[-1]
        require(sorted(last) == [0, 1, 2, 3], f"metrics of ranks {sorted(last)}")
        mb = sum(p["bytes_sent"] for p in last.values()) / 4 / 1e6
        require(row["rounds"] == "12", f"rounds {row['rounds']}")
        require(row["test_acc_mean"] == "0.5150", f"mean accuracy {row['test_acc_mean']}")
        require(row["test_acc_avg_model"] == "0.7500", f"averaged {row['test_acc_avg_model']}")
        require(row["mb_sent_per_peer"] == f"{mb:.2f}", f"MB {row['mb_sent_per_peer']} vs {mb:.2f}")
    fast, slow = (float(r["wall_s"]) for r in rows)
    require(slow > fast and slow >= 12 * 0.030, f"latency 30 ms: {slow} s against {fast} s")
    print(f"sweep --command: 2 links, rows from the metrics lines, wall {fast} s / {slow} s: ok")
print("ok")
