#!/usr/bin/python3
"""The tables and plots of a sweep (scripts/sweep.sh), from the runs' metrics files.

Reads OUT/index.tsv (one line per run, network and seed, written by sweep.sh), each run's
metrics-*.jsonl and summary.json, and writes
  OUT/sweep.tsv    one row per run and network, the seeds aggregated (mean and spread);
  OUT/sweep.json   the same rows with every seed's figures and the settings of the sweep;
  stdout           the table as Markdown;
  OUT/loss-vs-time.png      training loss against time, one panel per network;
  OUT/time-to-target.png    time to the target against bandwidth and against latency
                            (only with a target).
Time is the metrics' wall_seconds: virtual time under transport.clock = virtual, else the
wall clock. Time to a target is the time of the first logged round at which it holds (accuracy
of the averaged model at least A, or the peers' mean training loss at most L): its resolution
is run.eval_every_rounds (accuracy) or run.log_every (loss).

Usage: sweep_report.py OUT [--target-accuracy A] [--target-loss L] [--title T]
"""

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections import defaultdict

from metrics_lines import read_metrics

INDEX_FIELDS = ["run", "latency_ms", "bandwidth_mbit", "peers", "seed", "dir", "status"]
CENTRALIZED = {"allreduce", "c-psgd", "ring-allreduce"}


def fail(msg):
    sys.exit(f"sweep-report: {msg}")


def rounds_table(by_rank):
    """Per logged round: the slowest peer's time, the peers' mean loss and bytes sent, the
    averaged model's accuracy (or the peers' mean accuracy when there is no averaged model)."""
    rounds = defaultdict(list)
    for lines in by_rank.values():
        for j in lines:
            rounds[j["round"]].append(j)
    table = []
    for r in sorted(rounds):
        js = rounds[r]
        times = [j["wall_seconds"] for j in js if isinstance(j.get("wall_seconds"), (int, float))]
        losses = [j["train_loss"] for j in js if isinstance(j.get("train_loss"), (int, float))]
        sent = [j["bytes_sent"] for j in js if isinstance(j.get("bytes_sent"), (int, float))]
        avg = [j["test_accuracy_avg_model"] for j in js
               if isinstance(j.get("test_accuracy_avg_model"), (int, float))]
        own = [j["test_accuracy"] for j in js if isinstance(j.get("test_accuracy"), (int, float))]
        acc = avg[0] if avg else (statistics.fmean(own) if own else None)
        table.append({
            "round": r,
            "time": max(times) if times else None,
            "loss": statistics.fmean(losses) if losses else None,
            "bytes": statistics.fmean(sent) if sent else None,
            "accuracy": acc,
        })
    return table


def time_to_target(table, key, reached):
    """(time, bytes per peer, round) of the first row whose `key` satisfies `reached`, or None."""
    for row in table:
        v = row[key]
        if v is not None and math.isfinite(v) and reached(v) and row["time"] is not None:
            return row["time"], row["bytes"], row["round"]
    return None


def algorithm_of(run_dir):
    """algorithm.name of the settings a run wrote (config.toml; launch-config.toml for
    --command runs), "?" when neither is there."""
    for name in ("config.toml", "launch-config.toml"):
        try:
            with open(os.path.join(run_dir, name), "rb") as f:
                return tomllib.load(f).get("algorithm", {}).get("name", "?")
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return "?"


def run_result(entry, targets):
    """One run (one network and seed): final figures and the times to the targets."""
    d = entry["dir"]
    by_rank = read_metrics(d, "sweep-report")
    table = rounds_table(by_rank)
    res = {"seed": entry["seed"], "status": entry["status"], "dir": d, "curve": table}
    summary = os.path.join(d, "summary.json")
    if os.path.exists(summary):
        s = json.load(open(summary))
        res.update(time=s["wall_seconds"], acc_mean=s["test_accuracy_mean"],
                   acc_avg=s["test_accuracy_avg_model"], bytes=s["bytes_sent_per_peer"],
                   rounds=s["rounds"], clock=s.get("clock"))
    elif by_rank:  # a --command run: the last value each peer logged of every field
        last = [{k: v for j in lines for k, v in j.items() if v is not None}
                for lines in by_rank.values()]
        acc = [p["test_accuracy"] for p in last if "test_accuracy" in p]
        avg = [p["test_accuracy_avg_model"] for p in last if "test_accuracy_avg_model" in p]
        res.update(time=max(p.get("wall_seconds", 0.0) for p in last),
                   acc_mean=statistics.fmean(acc) if acc else None,
                   acc_avg=avg[0] if avg else None,
                   bytes=statistics.fmean(p.get("bytes_sent", 0) for p in last),
                   rounds=max(p["round"] for p in last))
    else:
        res.update(time=None, acc_mean=None, acc_avg=None, bytes=None, rounds=0)
    if any(row["loss"] is not None and not math.isfinite(row["loss"]) for row in table):
        res["status"] = "diverged"
    for name, (key, reached, _) in targets.items():
        hit = time_to_target(table, key, reached)
        res[name] = None if hit is None else {"time": hit[0], "bytes": hit[1], "round": hit[2]}
    return res


def mean_sd(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(v, digits=2):
    return "" if v is None else f"{v:.{digits}f}"


def aggregate(entries, targets):
    """Rows by (run, latency, bandwidth), every seed's result kept."""
    groups = defaultdict(list)
    for e in entries:
        groups[(e["run"], algorithm_of(e["dir"]), e["latency_ms"], e["bandwidth_mbit"],
                e["peers"])].append(e)
    rows = []
    for (run, algo, lat, bw, peers), es in groups.items():
        seeds = [run_result(e, targets) for e in es]
        row = {"run": run, "algorithm": algo, "latency_ms": lat, "bandwidth_mbit": bw,
               "peers": peers, "seeds": seeds}
        for k in ("time", "acc_mean", "acc_avg", "bytes"):
            row[k], row[k + "_sd"] = mean_sd([s[k] for s in seeds])
        row["rounds"] = max(s["rounds"] or 0 for s in seeds)
        row["status"] = ",".join(sorted({s["status"] for s in seeds}))
        for name in targets:
            hits = [s[name] for s in seeds if s[name] is not None]
            t, t_sd = mean_sd([h["time"] for h in hits])
            b, _ = mean_sd([h["bytes"] for h in hits])
            row[name] = {"reached": len(hits), "of": len(seeds), "time": t, "time_sd": t_sd,
                         "bytes": b}
        rows.append(row)
    # Network by network (in the order the sweep ran them), runs in the order listed.
    net_order = {n: k for k, n in reversed(list(enumerate(
        (e["latency_ms"], e["bandwidth_mbit"]) for e in entries)))}
    run_order = {n: k for k, n in reversed(list(enumerate(e["run"] for e in entries)))}
    rows.sort(key=lambda r: (net_order[(r["latency_ms"], r["bandwidth_mbit"])],
                             run_order[r["run"]], int(r["peers"]) if r["peers"] != "-" else 0))
    # Speed-up against the all-reduce run of the same network (mean times; reached seeds only).
    for name in targets:
        base = {(r["latency_ms"], r["bandwidth_mbit"], r["peers"]): r[name]["time"] for r in rows
                if r["algorithm"] in CENTRALIZED and r[name]["time"] is not None}
        for r in rows:
            b = base.get((r["latency_ms"], r["bandwidth_mbit"], r["peers"]))
            t = r[name]["time"]
            r[name]["vs_allreduce"] = b / t if b is not None and t else None
    return rows


def network_label(lat, bw):
    bw_text = "unlimited" if float(bw) == 0 else f"{bw} Mbit/s"
    return f"{bw_text}, {lat} ms"


def target_cell(t):
    if t["reached"] == 0:
        return "not reached"
    text = fmt(t["time"], 1) + (f" ± {t['time_sd']:.1f}" if t["of"] > 1 else "")
    if t["reached"] < t["of"]:
        text += f" ({t['reached']}/{t['of']} seeds)"
    return text


def write_outputs(out, rows, targets, title):
    fields = ["run", "algorithm", "latency_ms", "bandwidth_mbit", "peers", "seeds", "status", "wall_s",
              "wall_s_sd", "test_acc_mean", "test_acc_avg_model", "test_acc_avg_model_sd",
              "mb_sent_per_peer", "rounds"]
    for name in targets:
        fields += [f"{name}_s", f"{name}_s_sd", f"{name}_reached", f"{name}_mb",
                   f"{name}_vs_allreduce"]
    with open(os.path.join(out, "sweep.tsv"), "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(fields)
        for r in rows:
            line = [r["run"], r["algorithm"], r["latency_ms"], r["bandwidth_mbit"], r["peers"],
                    len(r["seeds"]), r["status"], fmt(r["time"]), fmt(r["time_sd"]),
                    fmt(r["acc_mean"], 4), fmt(r["acc_avg"], 4), fmt(r["acc_avg_sd"], 4),
                    fmt(None if r["bytes"] is None else r["bytes"] / 1e6), r["rounds"]]
            for name in targets:
                t = r[name]
                line += [fmt(t["time"]), fmt(t["time_sd"]), f"{t['reached']}/{t['of']}",
                         fmt(None if t["bytes"] is None else t["bytes"] / 1e6),
                         fmt(t["vs_allreduce"])]
            w.writerow(line)
    slim = [{k: v for k, v in r.items() if k != "seeds"} |
            {"seeds": [{k: v for k, v in s.items() if k != "curve"} for s in r["seeds"]]}
            for r in rows]
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump({"title": title,
                   "targets": {n: {"label": t[2][0], "value": t[2][1]} for n, t in targets.items()},
                   "rows": slim}, f, indent=1)

    with_peers = any(r["peers"] != "-" for r in rows)
    head = "| run | network |" + (" peers |" if with_peers else "") + \
        " seeds | time s | test acc (averaged model) | MB sent per peer |"
    rule = "| --- | --- |" + (" ---: |" if with_peers else "") + " ---: | ---: | ---: | ---: |"
    for name in targets:
        head += f" {targets[name][2][0]} s | vs all-reduce |"
        rule += " ---: | ---: |"
    print(head)
    print(rule)
    for r in rows:
        acc = "diverged" if "diverged" in r["status"] else fmt(r["acc_avg"], 4)
        if r["acc_avg_sd"] and len(r["seeds"]) > 1:
            acc += f" ± {r['acc_avg_sd']:.4f}"
        line = (f"| {r['run']} | {network_label(r['latency_ms'], r['bandwidth_mbit'])} | "
                + (f"{r['peers']} | " if with_peers else "") + f"{len(r['seeds'])} | {fmt(r['time'], 1)} | {acc} | "
                f"{fmt(None if r['bytes'] is None else r['bytes'] / 1e6)} |")
        for name in targets:
            v = r[name]["vs_allreduce"]
            line += f" {target_cell(r[name])} | {'' if v is None else f'{v:.2f}×'} |"
        print(line)


def gnuplot(script, cwd):
    try:
        subprocess.run(["gnuplot"], input=script, text=True, cwd=cwd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"sweep-report: gnuplot failed: {e}", file=sys.stderr)
        return False
    return True


def gp_quote(s):
    return s.replace("'", "''").replace("\n", " ")


def plot_loss(out, rows, title, tmp):
    """Training loss against time, one panel per network, one line per run (first seed)."""
    networks = sorted({(r["latency_ms"], r["bandwidth_mbit"]) for r in rows},
                      key=lambda n: (-float(n[1]) if float(n[1]) else -math.inf, float(n[0])))
    panels = []
    for i, (lat, bw) in enumerate(networks):
        plots = []
        for k, r in enumerate(x for x in rows if (x["latency_ms"], x["bandwidth_mbit"]) == (lat, bw)):
            path = f"loss-{i}-{k}.tsv"
            with open(os.path.join(tmp, path), "w") as f:
                for row in r["seeds"][0]["curve"]:
                    if row["time"] is not None and row["loss"] is not None and math.isfinite(row["loss"]):
                        f.write(f"{row['time']}\t{row['loss']}\n")
            name = r["run"] + ("" if r["peers"] == "-" else f", {r['peers']} peers")
            plots.append(f"'{path}' using 1:2 with lines lw 2 title '{gp_quote(name)}'")
        panels.append((network_label(lat, bw), plots))
    if not panels:
        return
    cols = min(3, len(panels))
    nrows = (len(panels) + cols - 1) // cols
    script = [f"set terminal pngcairo size {560 * cols},{420 * nrows} font ',10'",
              "set output 'loss-vs-time.png'", "set termoption noenhanced",
              "set datafile separator '\\t'", "set grid", "set logscale xy",
              f"set multiplot layout {nrows},{cols} title '{gp_quote(title)}'",
              "set xlabel 'time (s, log scale)'", "set ylabel 'training loss (mean over peers)'"]
    for label, plots in panels:
        script += [f"set title '{gp_quote(label)}'", "plot " + ", ".join(plots)]
    script.append("unset multiplot")
    if gnuplot("\n".join(script) + "\n", tmp):
        os.replace(os.path.join(tmp, "loss-vs-time.png"), os.path.join(out, "loss-vs-time.png"))


def plot_targets(out, rows, targets, title, tmp):
    """Time to each target against bandwidth (one line per run and latency) and against latency
    (one line per run and bandwidth), or, when the sweep has several peer counts, against the
    number of peers (one line per run and network); runs that never reach it are left out of
    the lines."""
    if not targets:
        return
    if len({r["peers"] for r in rows}) > 1:
        axes = [("peers", lambda r: network_label(r["latency_ms"], r["bandwidth_mbit"]),
                 "peers", True)]
    else:
        axes = [("bandwidth_mbit", lambda r: f"{r['latency_ms']} ms",
                 "NIC bandwidth (Mbit/s; 1e6 = unlimited)", True),
                ("latency_ms", lambda r: network_label("", r["bandwidth_mbit"]).split(",")[0],
                 "one-way latency (ms)", False)]
        # An axis along which nothing varies says nothing: left out (one stays).
        axes = [a for a in axes if len({r[a[0]] for r in rows}) > 1] or axes[:1]
    script = ["set terminal pngcairo size %d,%d font ',10'" % (700 * len(axes), 480 * len(targets)),
              "set output 'time-to-target.png'", "set termoption noenhanced",
              "set datafile separator '\\t'", "set grid", "set logscale y",
              f"set multiplot layout {len(targets)},{len(axes)} title '{gp_quote(title)}'"]
    for name in targets:
        label = targets[name][2][0]
        for axis, other, xlabel, logx in axes:
            series = defaultdict(list)
            for r in rows:
                if r[name]["time"] is not None:
                    series[(r["run"], other(r))].append((float(r[axis]), r[name]["time"]))
            plots = []
            for k, ((run, o), pts) in enumerate(sorted(series.items())):
                path = f"ttt-{name}-{axis}-{k}.tsv"
                with open(os.path.join(tmp, path), "w") as f:
                    for x, t in sorted(pts):
                        # Unlimited bandwidth (0) drawn to the right of every finite one.
                        f.write(f"{x if x or axis != 'bandwidth_mbit' else 1e6}\t{t}\n")
                plots.append(f"'{path}' using 1:2 with linespoints lw 2 pt 7 "
                             f"title '{gp_quote(run)}, {gp_quote(o)}'")
            script += ["set logscale x" if logx else "unset logscale x",
                       f"set xlabel '{xlabel}'", f"set ylabel 'time to {gp_quote(label)} (s)'"]
            script.append("plot " + ", ".join(plots) if plots else
                          "set label 1 'no run reached the target' at graph 0.3,0.5\n"
                          "plot [0:1][1:10] NaN notitle\nunset label 1")
    script.append("unset multiplot")
    if gnuplot("\n".join(script) + "\n", tmp):
        os.replace(os.path.join(tmp, "time-to-target.png"), os.path.join(out, "time-to-target.png"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--target-accuracy", type=float)
    p.add_argument("--target-loss", type=float)
    p.add_argument("--title", default="gossip sweep")
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args()
    index = os.path.join(a.out, "index.tsv")
    if not os.path.exists(index):
        fail(f"no {index} (written by scripts/sweep.sh)")
    with open(index) as f:
        entries = list(csv.DictReader(f, delimiter="\t"))
    if not entries or set(INDEX_FIELDS) - set(entries[0]):
        fail(f"{index}: expected the columns {' '.join(INDEX_FIELDS)}")
    # name -> (metric, test, (label, value)): what sweep.json records and the table's heading.
    targets = {}
    if a.target_accuracy is not None:
        A = a.target_accuracy
        targets["to_accuracy"] = ("accuracy", lambda v: v >= A, (f"to acc {A:g}", A))
    if a.target_loss is not None:
        L = a.target_loss
        targets["to_loss"] = ("loss", lambda v: v <= L, (f"to loss {L:g}", L))
    rows = aggregate(entries, targets)
    write_outputs(a.out, rows, targets, a.title)
    if not a.no_plots:
        with tempfile.TemporaryDirectory() as tmp:
            plot_loss(a.out, rows, a.title, tmp)
            plot_targets(a.out, rows, targets, a.title, tmp)


if __name__ == "__main__":
    main()
