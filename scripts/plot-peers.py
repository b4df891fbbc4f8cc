#!/usr/bin/env python3
"""Draws scripts/bench-peers.py's results (its --json file) as one image:
a panel per workload, a bar per server (tusd-rs once per --durability level
where the level costs something), the median over rounds with the range of
the rounds as a line. Run through scripts/plot-peers.sh, which installs the
pinned matplotlib into the project's .venv.

    plot-peers.py [RESULTS_JSON] [OUTPUT_PNG]
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PANELS = [
    ("create-16k", "16 KiB creation-with-upload\nuploads/s (higher is better)"),
    ("create-64k", "64 KiB creation-with-upload\nuploads/s (higher is better)"),
    ("head", "HEAD, 32 connections\nrequests/s (higher is better)"),
    ("patch-1g", "1 GiB PATCH, page cache\nMiB/s (higher is better)"),
    ("patch-1g-cpu", "1 GiB PATCH\nserver CPU s per GiB (lower is better)"),
    ("memory", "4 MiB burst, then trickling\nKiB per in-flight upload (lower is better)"),
]
COLOURS = {"tusd-rs": "#1f6f8b", "rustus": "#c05a2b", "tus-node": "#6b8e23"}
SHADES = {"none": 1.0, "create": 0.75, "complete": 0.5}


def main():
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/bench-peers/results.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs/benchmarks-peers.png"
    results = json.loads(source.read_text())
    runs, meta = results["runs"], results["meta"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (workload, title) in zip(axes.flat, PANELS):
        series = {}
        for r in runs:
            if r["workload"] == workload:
                name = r["label"].replace(" (", "\n(") if r["kind"] == "tusd-rs" else r["label"].replace(" ", "\n", 1)
                series.setdefault((r["kind"], r["durability"], name), []).append(r["value"])
        keys = sorted(series, key=lambda k: (k[0] != "tusd-rs", k[0], list(SHADES).index(k[1])))
        medians = [statistics.median(series[k]) for k in keys]
        lows = [m - min(series[k]) for m, k in zip(medians, keys)]
        highs = [max(series[k]) - m for m, k in zip(medians, keys)]
        colours = [matplotlib.colors.to_rgba(COLOURS[k[0]], SHADES[k[1]] if k[0] == "tusd-rs" else 1.0)
                   for k in keys]
        bars = ax.bar(range(len(keys)), medians, yerr=[lows, highs], color=colours, capsize=3)
        ax.bar_label(bars, labels=[f"{m:,.0f}" if m >= 10 else f"{m:.2f}" for m in medians], fontsize=8)
        ax.set_xticks(range(len(keys)), [k[2] for k in keys], fontsize=7.5)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    fig.suptitle(f"tusd-rs and its peers, {meta['date']}, commit {meta['commit']}, {meta['cores']} cores "
                 f"(load average {meta['load_start']} at the start, shared machine); "
                 f"median of {meta['rounds']} rounds, line: range", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=90)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
