"""Reads a run folder's metrics-*.jsonl (written by gossip simulate/launch/peer and the Python
package), shared by scripts/plot-run.sh and scripts/sweep_report.py. Standard library only.

read_metrics(run_dir, prog, need): every metrics line by rank. Each line must be a JSON object
with an integer "round" and a number under every other key of `need` (a "train_loss" of null,
which a diverged run or a script that passes no loss logs, is accepted); otherwise the program
`prog` exits naming the file and line. A partial last line (a killed run) is skipped with a
warning; an unreadable or empty file set is an error.
"""

import glob
import json
import os
import sys
from collections import defaultdict


def read_metrics(run_dir, prog, need=()):
    by_rank = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), "metrics-*.jsonl"))):
        try:
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            sys.exit(f"{prog}: cannot read {path}: {e.strerror}")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                j = json.loads(line)
            except ValueError:
                # A killed run can leave a partial last line; anything else is corruption.
                if n == len(lines):
                    print(f"{prog}: warning: {path}:{n}: truncated last line, skipped",
                          file=sys.stderr)
                    continue
                sys.exit(f"{prog}: {path}:{n}: not JSON")
            if not isinstance(j, dict) or not isinstance(j.get("round"), int):
                sys.exit(f"{prog}: {path}:{n}: not a metrics line (no integer 'round')")
            for k in need:
                v = j.get(k)
                if isinstance(v, (int, float)) or (k == "train_loss" and k in j and v is None):
                    continue
                sys.exit(f"{prog}: {path}:{n}: not a metrics line (no number '{k}')")
            by_rank[j.get("rank", 0)].append(j)
    return by_rank
