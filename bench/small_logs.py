"""Early stopping on small logs (issue 22, item 4): the defaults with early stopping off (what early_stopping="auto"
gave below 10,000 training rows) against on (validation_fraction of the training rows held out), on the real click
logs of ../shared/data and subsamples of them, as AFM and FM classifiers; test AUC, log loss and the base rate's
log loss, per seed.

    python bench/small_logs.py --data ../shared/data --seeds 0 1 2 --json bench/results/accuracy/small_logs.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import click_logs  # noqa: E402

import fastafm  # noqa: E402
from fastafm import metrics  # noqa: E402

#: (set, training rows or None for all of them)
CASES = [("avazu", None), ("avazu", 2000), ("criteo", None), ("criteo", 2000), ("ipinyou", 5000),
         ("frappe-clf", 1000), ("frappe-clf", 5000)]


def base_rate_logloss(y_train, y_test) -> float:
    p = float(np.clip(np.mean(y_train), 1e-6, 1 - 1e-6))
    return metrics.log_loss(y_test, np.full(y_test.shape[0], p))


def run(log, family: str, stopping: bool, seed: int) -> dict:
    cls = fastafm.AFMClassifier if family == "afm" else fastafm.FMClassifier
    model = cls(random_state=seed, early_stopping=stopping, n_threads=1)
    start = time.perf_counter()
    model.fit(log.X, log.y)
    p = model.predict_proba(log.X_test)[:, 1]
    return {"set": log.name, "family": family, "early_stopping": stopping, "seed": seed,
            "auc": metrics.roc_auc(log.y_test, p), "logloss": metrics.log_loss(log.y_test, p),
            "base_logloss": base_rate_logloss(log.y, log.y_test), "epochs": model.n_epochs_done_,
            "best_epoch": getattr(model, "best_epoch_", None), "seconds": time.perf_counter() - start}


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--families", nargs="+", default=["afm", "fm"])
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args(argv)
    logs = click_logs.load(args.data, sorted({name for name, _ in CASES}))
    out = []
    print("| set | model | early stopping | AUC | log loss | base-rate log loss | epochs |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, n in CASES:
        for seed in args.seeds:
            log = logs[name] if n is None else click_logs.subsample(logs[name], n, seed)
            for family in args.families:
                for stopping in (False, True):
                    r = run(log, family, stopping, seed)
                    out.append(r)
                    print(f"| {r['set']} | {family} | {stopping} | {r['auc']:.4f} | {r['logloss']:.4f} | "
                          f"{r['base_logloss']:.4f} | {r['epochs']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
