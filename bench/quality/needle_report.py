#!/usr/bin/env python3
"""Tables and the accuracy-vs-K plot from a needle_bench.py CSV (and its -latency.csv).

    /tmp/h9venv/bin/python bench/quality/needle_report.py RESULTS.csv [--plot OUT.png]

Prints markdown: mean turn-2 score per condition and K with 95% confidence intervals over
examples (Wilson score interval when every score is 0 or 1, else a percentile bootstrap with
10,000 resamples), and the client-side repair latency per stage (p50 / p95).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict

import numpy as np

ORDER = ("full", "norepair", "matched", "repairkv", "random", "oldest", "staleq", "wrongq")
LABEL = {"full": "Full cache", "norepair": "No repair (B)", "matched": "Matched no repair (B+K)",
         "repairkv": "RepairKV (kvtierd)", "random": "Random-K (kvtierd)",
         "oldest": "Oldest-K (kvtierd)", "staleq": "StaleQ-K (kvtierd)",
         "wrongq": "WrongQ-K (kvtierd)"}


def ci95(scores):
    s = np.asarray(scores, np.float64)
    n = len(s)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(s.mean())
    if np.isin(s, (0.0, 1.0)).all():
        z = 1.959964
        denom = 1 + z * z / n
        center = (mean + z * z / (2 * n)) / denom
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / denom
        return mean, center - half, center + half
    rng = np.random.default_rng(0)
    boots = s[rng.integers(0, n, (10000, n))].mean(1)
    return mean, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def load(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", help="one or more CSVs of the same setting (joined)")
    p.add_argument("--plot", default=None)
    p.add_argument("--k", type=int, default=96, help="K of the detailed table")
    a = p.parse_args()
    rows = [r for path in a.csv for r in load(path)]
    acc = defaultdict(list)
    recall = defaultdict(list)
    for r in rows:
        key = (r["policy"], r["condition"], int(r["K"]))
        acc[key].append(float(r["score"]))
        recall[key].append(float(r["needle_row_recall"]))
    policies = sorted({k[0] for k in acc})
    ks = sorted({k[2] for k in acc if k[2] > 0})
    for pol in policies:
        n = len(acc[(pol, "full", 0)])
        print(f"\n### policy {pol}: K = {a.k}, {n} examples\n")
        print("| condition | active rows | turn-2 accuracy | 95% CI | turn-2 needle rows in cache |")
        print("|---|---|---|---|---|")
        for cond in ORDER:
            key = (pol, cond, 0 if cond in ("full", "norepair") else a.k)
            if key not in acc:
                continue
            m, lo, hi = ci95(acc[key])
            rows_txt = {"full": "all", "norepair": "B"}.get(cond, f"B + {a.k}")
            print(f"| {LABEL[cond]} | {rows_txt} | {100 * m:.1f}% | "
                  f"[{100 * lo:.1f}, {100 * hi:.1f}] | {100 * np.mean(recall[key]):.1f}% |")
        print(f"\n### policy {pol}: accuracy (%) by K\n")
        print("| condition | " + " | ".join(f"K={k}" for k in ks) + " |")
        print("|---|" + "---|" * len(ks))
        for cond in ORDER:
            if cond in ("full", "norepair"):
                m = 100 * np.mean(acc[(pol, cond, 0)])
                print(f"| {LABEL[cond]} | " + " | ".join(f"{m:.1f}" for _ in ks) + " |")
            else:
                print(f"| {LABEL[cond]} | " + " | ".join(
                    f"{100 * np.mean(acc[(pol, cond, k)]):.1f}" for k in ks) + " |")
    lat = []
    for path in a.csv:
        try:
            lat += load(path[:-4] + "-latency.csv")
        except FileNotFoundError:
            pass
    lat_path = a.csv[0][:-4] + "-latency.csv"
    if lat:
        stages = ("score_s", "select_s", "gather_s", "send_s", "server_total_s",
                  "client_wall_s", "reoffload_s")
        print(f"\n### client-side repair latency, ms (p50 / p95), {lat_path.split('/')[-1]}\n")
        print("| selector / K | repairs | candidates | " + " | ".join(
            s[:-2] for s in stages) + " |")
        print("|---|---|---|" + "---|" * len(stages))
        groups = defaultdict(list)
        for r in lat:
            sel = {"repairkv": "repairkv", "staleq": "repairkv", "wrongq": "repairkv"}.get(
                r["condition"], r["condition"])
            groups[(sel, int(r["K"]))].append(r)
        for (sel, k) in sorted(groups):
            g = groups[(sel, k)]
            cells = []
            for s in stages:
                v = np.asarray([float(r[s]) for r in g]) * 1e3
                cells.append(f"{np.percentile(v, 50):.2f} / {np.percentile(v, 95):.2f}")
            cand = int(np.median([int(r["candidates"]) for r in g]))
            print(f"| {sel} K={k} | {len(g)} | {cand} | " + " | ".join(cells) + " |")
        off = np.asarray([float(r["offload_all_s"]) for r in lat])
        print(f"\nOffload of every evicted row (30 layer calls, float32): median "
              f"{1e3 * np.median(off):.0f} ms per example.")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(policies), figsize=(9.5 * len(policies), 4.8),
                                 squeeze=False)
        for ax, pol in zip(axes[0], policies):
            for cond in ORDER:
                if cond in ("full", "norepair"):
                    m = 100 * np.mean(acc[(pol, cond, 0)])
                    ax.axhline(m, ls="--" if cond == "full" else ":", color="k" if cond == "full"
                               else "grey", label=f"{LABEL[cond]} ({m:.0f}%)")
                    continue
                ys = [100 * np.mean(acc[(pol, cond, k)]) for k in ks]
                ax.plot(ks, ys, marker="o", label=LABEL[cond],
                        lw=2.5 if cond == "repairkv" else 1.2)
            n = len(acc[(pol, "full", 0)])
            ax.set_title(f"SmolLM2-135M, {pol} first stage, {n} examples")
            ax.set_xlabel("K (promoted rows)")
            ax.set_ylabel("turn-2 needle accuracy (%)")
            ax.set_xticks(ks)
            ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"\nplot: {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
