"""fastafm's defaults against the peers on the real click logs of ../shared/data (issue 22, item 6): test AUC and
log loss of AFM and FM defaults (seeds given), scikit-learn's LogisticRegression on the same one-hot rows (C chosen
on a seeded 10% validation split of the training rows, then refitted on all of them) and, when installed,
modern-fm's FwFM and FM with their early stopping (`pip install modern-fm`; field ids from the encoder).

    python bench/click_peers.py --data ../shared/data --seeds 0 1 2 --json bench/results/accuracy/click_peers.json

Seconds are wall time of each fit on this machine as it was (other jobs may have run: not a speed figure).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import click_logs  # noqa: E402

import fastafm  # noqa: E402
from fastafm import metrics  # noqa: E402

FRAPPE_FIELD_STARTS = [0, 957, 5039, 5046, 5053, 5055, 5058, 5060, 5069, 5149]  # ../shared/data/README.md


def _fields(log) -> np.ndarray:
    """Each feature's field: the encoder's, Frappe's documented id ranges, iPinYou's featindex.txt."""
    if log.fields is not None:
        return np.asarray(log.fields)
    n = log.X.shape[1]
    if log.name.startswith("frappe"):
        return np.searchsorted(FRAPPE_FIELD_STARTS, np.arange(n), side="right") - 1
    fields = np.zeros(n, dtype=np.int64)
    with open(Path(ARGS.data) / "ipinyou" / "featindex.txt") as fh:
        for line in fh:
            name, _, index = line.rstrip("\n").rpartition("\t")
            if ":" in name and index.isdigit() and int(index) < n:  # a few lines hold values with tabs: skipped
                fields[int(index)] = int(name.split(":", 1)[0])
    return fields


def _scores(name, log, p, seconds, extra=None) -> dict:
    return {"set": log.name, "model": name, "auc": metrics.roc_auc(log.y_test, p),
            "logloss": metrics.log_loss(log.y_test, np.clip(p, 1e-12, 1 - 1e-12)), "seconds": seconds,
            **(extra or {})}


def fastafm_runs(log, seeds) -> list:
    out = []
    for cls in (fastafm.AFMClassifier, fastafm.FMClassifier):
        for seed in seeds:
            start = time.perf_counter()
            model = cls(random_state=seed).fit(log.X, log.y)
            out.append(_scores(f"fastafm {cls.__name__[:-10]}", log, model.predict_proba(log.X_test)[:, 1],
                               time.perf_counter() - start, {"seed": seed, "best_epoch": getattr(model, "best_epoch_",
                                                                                              None)}))
    return out


def logistic_regression(log) -> dict:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    held = rng.random(log.X.shape[0]) < 0.1
    start = time.perf_counter()
    best = None
    for C in (0.01, 0.1, 1.0, 10.0):
        m = LogisticRegression(C=C, max_iter=2000).fit(log.X[~held], log.y[~held])
        ll = metrics.log_loss(log.y[held], np.clip(m.predict_proba(log.X[held])[:, 1], 1e-12, 1 - 1e-12))
        if best is None or ll < best[0]:
            best = (ll, C)
    model = LogisticRegression(C=best[1], max_iter=2000).fit(log.X, log.y)
    return _scores("LogisticRegression", log, model.predict_proba(log.X_test)[:, 1], time.perf_counter() - start,
                   {"C": best[1]})


def modern_fm_runs(log) -> list:
    try:
        import modern_fm
    except ImportError:
        return []
    out = []
    fields = _fields(log).astype(np.int32)
    X, X_test = log.X.astype(np.float32), log.X_test.astype(np.float32)
    for name, cls, kw in (("modern-fm FwFM", modern_fm.FwFMClassifier, {"field_ids": fields}),
                          ("modern-fm FM", modern_fm.FMClassifier, {})):
        start = time.perf_counter()
        model = cls(early_stopping=True, random_state=0).fit(X, log.y, **kw)
        out.append(_scores(name, log, model.predict_proba(X_test)[:, 1], time.perf_counter() - start))
    return out


def main(argv=None) -> list:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sets", nargs="+", default=list(click_logs.LOADERS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--json")
    ARGS = args = ap.parse_args(argv)
    results = []
    for name, log in click_logs.load(args.data, args.sets).items():
        base = metrics.log_loss(log.y_test, np.full(log.y_test.shape[0], np.clip(log.y.mean(), 1e-6, 1 - 1e-6)))
        runs = fastafm_runs(log, args.seeds) + [logistic_regression(log)] + modern_fm_runs(log)
        for r in runs:
            r["base_logloss"] = base
        results.extend(runs)
        print(f"\n{log.describe()}; base rate's log loss {base:.4f}")
        print("| model | AUC | log loss | seconds |")
        print("|---|---:|---:|---:|")
        for model in dict.fromkeys(r["model"] for r in runs):
            rs = [r for r in runs if r["model"] == model]
            spread = (f" ({min(r['auc'] for r in rs):.4f}-{max(r['auc'] for r in rs):.4f})" if len(rs) > 1 else "")
            print(f"| {model} | {statistics.mean(r['auc'] for r in rs):.4f}{spread} | "
                  f"{statistics.mean(r['logloss'] for r in rs):.4f} | {statistics.mean(r['seconds'] for r in rs):.1f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return results


ARGS = None

if __name__ == "__main__":
    main()
