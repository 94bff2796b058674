"""Count-like numeric columns: standardised values (FieldEncoder's default) against quantile bins (`numeric_bins`),
for the AFM, FwFM and FM classifier defaults and LogisticRegression (C from 0.01, 0.1, 1, 10 on the validation
part), on the Criteo head (13 count columns I1-I13, bench/click_logs.py) and a synthetic count log made here
(`count_log`). Issue 22, item 3.

    python bench/numeric_bins.py --data ../shared/data --bins 0 10 32 --seeds 0 1 2 \
        --json bench/results/accuracy/numeric_bins.json

`--bins 0` is numeric_bins=None (FieldEncoder's default was None until "auto" was chosen from this table). The validation part is a seeded stratified 10% of the training rows
(bench/peer_table.py's), the same for every model. Adult is not here: it is not in ../shared/data or any local
cache (only scikit-learn's test fixture stubs), and nothing may be downloaded.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import click_logs  # noqa: E402
import peer_table  # noqa: E402


def count_log(n_rows: int = 60_000, seed: int = 0):
    """(train DataFrame, test DataFrame, label column) of a synthetic click log with 4 categorical columns
    (Zipf-drawn ids, 10 to 5,000 of them) and 6 count columns (log-normal counts, heavy-tailed like Criteo's
    I1-I13, 10% missing). The logit adds the ids' effects, a non-monotone effect of each count's logarithm
    (a bump) and one count x id interaction; what a standardised value can express is only a slope."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    cards = [10, 100, 1000, 5000]
    cats = [rng.zipf(1.3, n_rows) % c for c in cards]
    logit = np.full(n_rows, -2.2)
    for c, ids in zip(cards, cats):
        logit += rng.normal(0, 0.4, c)[ids]
    counts = []
    for j in range(6):
        x = np.floor(np.exp(rng.normal(1.0 + 0.5 * j, 1.2, n_rows)))
        lx = np.log1p(x)
        centre = np.quantile(lx, rng.uniform(0.3, 0.7))
        logit += 0.8 * np.exp(-((lx - centre) ** 2)) - 0.4 + 0.15 * (j % 2) * lx
        x[rng.random(n_rows) < 0.1] = np.nan
        counts.append(x)
    logit += 0.5 * np.tanh(np.log1p(np.nan_to_num(counts[0])) - 1.0) * rng.normal(0, 1, cards[1])[cats[1]]
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame({**{f"C{i}": ids.astype(str) for i, ids in enumerate(cats)},
                       **{f"I{j}": x for j, x in enumerate(counts)}, "label": y})
    cut = int(0.7 * n_rows)
    return df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True), "label"


def synth_counts(bins) -> click_logs.ClickLog:
    train, test, label = count_log()
    encoder_kw = {"categorical": [c for c in train.columns if c.startswith("C")],
                  "numeric": [c for c in train.columns if c.startswith("I")]}
    encoder_kw["numeric_bins"] = bins or None  # --bins 0: standardised (numeric_bins=None; the default is "auto")
    return click_logs._encoded("synth-counts", train, test, label, encoder_kw)


def summary(results: list, bins) -> str:
    """Mean AUC / log loss per set, model and bins setting (0: None), over the seeds run."""
    lines = ["| set | model | " + " | ".join(f"bins {b or 'None'}: AUC / log loss" for b in bins) + " | seeds |",
             "|---|---|" + "---|" * len(bins) + "---:|"]
    for name in dict.fromkeys(r["set"] for r in results):
        for model in dict.fromkeys(r["model"] for r in results):
            cells, n = [], 0
            for b in bins:
                rs = [r for r in results if r["set"] == name and r["model"] == model and r["bins"] == b]
                n = len(rs)
                cells.append(f"{statistics.mean(r['auc'] for r in rs):.4f} / "
                             f"{statistics.mean(r['logloss'] for r in rs):.4f}")
            lines.append(f"| {name} | {model} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="../shared/data (the Criteo head); without it only synth-counts")
    ap.add_argument("--bins", type=int, nargs="+", default=[0, 10, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--json")
    ap.add_argument("--from-json", nargs="+", help="print the summary of earlier runs (several files: joined)")
    args = ap.parse_args(argv)
    if args.from_json:
        results = [r for path in args.from_json for r in json.loads(Path(path).read_text())]
        print(summary(results, args.bins))
        return results
    results = []
    for bins in args.bins:
        logs = [synth_counts(bins)]
        if args.data:
            logs.insert(0, click_logs.criteo(Path(args.data), numeric_bins=bins or None))
        for log in logs:
            for seed in args.seeds:
                split = peer_table.click_split(log, args.data, seed)
                runs = [peer_table.fastafm_run(f"fastafm {n}", f"{n}Classifier", {}, split, seed)
                        for n in ("AFM", "FwFM", "FM")] + [peer_table.logistic_regression(split, seed)]
                for r in runs:
                    r.update(bins=bins, seed=seed)
                    print(f"{r['set']} bins {bins or None} seed {seed} {r['model']}: AUC {r['auc']:.4f} "
                          f"log loss {r['logloss']:.4f} ({r['seconds']:.1f} s)", flush=True)
                results.extend(runs)
    print(summary(results, args.bins))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")
    return results


if __name__ == "__main__":
    main()
