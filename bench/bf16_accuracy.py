"""The accuracy cost of precision="bf16" (issue 25): the runs of bench/accuracy_runs.py's configurations
afm-defaults and afm-bf16 (the same estimator and seed, fp32 against bf16 training) as a Markdown table, per
set and seed and the mean over seeds.

    python bench/accuracy_runs.py --frappe ../shared/data/frappe --sets frappe-reg frappe-clf \\
        --config afm-defaults afm-bf16 --seeds 0 1 2 3 4 --out bench/results/accuracy/bf16_runs.jsonl
    python bench/bf16_accuracy.py bench/results/accuracy/bf16_runs.jsonl
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def table(path: str) -> str:
    runs = [json.loads(line) for line in open(path) if line.strip()]
    pairs = defaultdict(dict)
    for r in runs:
        pairs[(r["set"], r["seed"])][r["config"]] = r
    lines = ["| set | seed | metric | fp32 | bf16 | bf16 - fp32 | best epoch fp32 / bf16 |", "|---|---:|---|---:|---:|---:|---:|"]
    means = defaultdict(lambda: defaultdict(list))
    for (name, seed), by in sorted(pairs.items()):
        if len(by) < 2:
            continue
        a, b = by["afm-defaults"], by["afm-bf16"]
        metrics = ["rmse"] if "rmse" in a else ["auc", "logloss"]
        for m in metrics:
            rel = f"{100 * (b[m] / a[m] - 1):+.2f}%" if m != "auc" else f"{b[m] - a[m]:+.4f}"
            lines.append(f"| {name} | {seed} | {m} | {a[m]:.5f} | {b[m]:.5f} | {rel} | {a['best_epoch']} / {b['best_epoch']} |")
            means[(name, m)]["fp32"].append(a[m])
            means[(name, m)]["bf16"].append(b[m])
    for (name, m), v in sorted(means.items()):
        fa, fb = statistics.mean(v["fp32"]), statistics.mean(v["bf16"])
        rel = f"{100 * (fb / fa - 1):+.2f}%" if m != "auc" else f"{fb - fa:+.4f}"
        lines.append(f"| **{name}** | mean of {len(v['fp32'])} | {m} | {fa:.5f} | {fb:.5f} | **{rel}** | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else "bench/results/accuracy/bf16_runs.jsonl"))
