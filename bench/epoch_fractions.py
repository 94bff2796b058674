"""Validation at fractions of an epoch (issue 22 item 3), emulated: does a best point inside an epoch beat
whole-epoch early stopping?

    OPENBLAS_NUM_THREADS=1 python bench/epoch_fractions.py --data ../shared/data --sets avazu criteo ipinyou \
        frappe-clf synth-tag --seeds 0 1

The core trains whole epochs per call, so fractions are emulated with `partial_fit` (one epoch over the rows it
is given): the training rows are cut into c seeded parts and each `partial_fit` call trains one part, the model
is scored on the validation part after every call, and the best one is kept (patience: 2 epochs, that is 2c
calls; at most 20 epochs). `frequency_l2` is divided by c^2, because each call charges id i frequency_l2 /
(2 n_i) with n_i counted in its part (about n_i / c), c times per pass: the same penalty per pass as c = 1.
FMClassifier at its defaults otherwise, without the linear fallback (to isolate the stopping point), on
bench/peer_table.py's splits; prints test AUC / log loss and the kept point in epochs for c = 1, 2, 4.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import click_logs  # noqa: E402
import peer_table  # noqa: E402

import fastafm  # noqa: E402
from fastafm import metrics  # noqa: E402


def log_loss(y, p) -> float:
    return metrics.log_loss(y, np.clip(p, 1e-12, 1 - 1e-12))


def fit_in_fractions(split, seed: int, c: int, patience_epochs: int = 2, max_epochs: int = 20) -> tuple:
    """(test AUC, test log loss, the kept point in epochs) of the FM trained in c parts an epoch."""
    X, y = split.train
    parts = np.array_split(np.random.default_rng([seed, 99]).permutation(X.shape[0]), c)
    model = fastafm.FMClassifier(random_state=seed, n_threads=1, frequency_l2=1.0 / c**2, early_stopping=False,
                                 linear_fallback=False)
    best, best_loss, since, calls, kept_at = None, None, 0, 0, 0
    while calls < max_epochs * c and since < patience_epochs * c:
        part = parts[calls % c]
        model.partial_fit(X[part], y[part], classes=[0, 1])
        calls += 1
        loss = log_loss(split.valid[1], model.predict_proba(split.valid[0])[:, 1])
        if best_loss is None or loss < best_loss:
            best, best_loss, since, kept_at = copy.deepcopy(model), loss, 0, calls
        else:
            since += 1
    p = best.predict_proba(split.test[0])[:, 1]
    return metrics.roc_auc(split.test[1], p), log_loss(split.test[1], p), kept_at / c


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="../shared/data")
    ap.add_argument("--sets", nargs="+", default=["avazu", "criteo", "ipinyou", "frappe-clf", "synth-tag"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--parts", nargs="+", type=int, default=[1, 2, 4])
    args = ap.parse_args(argv)
    logs = click_logs.load(args.data, [s for s in args.sets if s in peer_table.CLICK_SETS])
    print("| set | seed | " + " | ".join(f"c = {c}: AUC / log loss (kept at epoch)" for c in args.parts) + " |")
    print("|---|---:|" + "---|" * len(args.parts))
    for name in args.sets:
        for seed in args.seeds:
            split = (peer_table.click_split(logs[name], args.data, seed) if name in peer_table.CLICK_SETS
                     else peer_table.synth_split(name, seed))
            cells = [fit_in_fractions(split, seed, c) for c in args.parts]
            print(f"| {split.name} | {seed} | " + " | ".join(f"{a:.4f} / {l:.4f} ({at:.2f})" for a, l, at in cells)
                  + " |", flush=True)


if __name__ == "__main__":
    main()
