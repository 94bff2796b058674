"""fastafm's defaults against every peer on every classification tuning set (issue 22, item 4), with the same
training, validation and test rows for all.

    python bench/peer_table.py --data ../shared/data --seeds 0 1 2 --json bench/results/accuracy/peer_table.json
    python bench/peer_table.py --from-json bench/results/accuracy/peer_table.json   # the tables and verdicts again
    python bench/peer_table.py --from-json A.json B.json --afm "fastafm AFM" "AFM both"   # B's rows replace A's

Sets: the shared click logs (bench/click_logs.py: avazu-head, criteo-head, ipinyou, frappe-clf; a seeded,
stratified 10% of the training rows is the validation part, the rest is trained on) and the synthetic sets of
bench/tuning_data.py (synth-tag: the tag-click log's shape; synth-3f; synth-installs: an app-install log's; their
own train/valid/test). Per seed:

* fastafm AFM, FwFM and FM at their defaults (`--fastafm NAME=CLASS:JSON` replaces them with configurations,
  `--field-aware` adds AFM's field-aware ones; every AFM and FwFM is given the set's fields, as a user of
  FieldEncoder or libFFM files has them: AFMClassifier's default field_aware="auto" then uses them), fitted on the
  training part with the validation part as `eval_set` (what `fit(X, y)` does with its own 10% hold-out);
* LogisticRegression on the same one-hot rows, C from 0.01, 0.1, 1, 10 chosen on the validation part;
* HistGradientBoostingClassifier on one column per field (the field's id as a category where the field has at
  most 255 ids seen in training, else its ids ranked by training frequency as a number; a numeric field's value),
  up to 300 iterations, the iteration count chosen on the validation part;
* modern-fm's FM, FwFM and FFM (`pip install modern-fm`) with early_stopping=True on the same validation part;
* the PyTorch AFM of bench/torch_afm_fit.py (Adam 1e-2; `--torch` to run it, slow: minutes a fit).

Rows of the tables: the mean over seeds, the spread (max - min) of the AUC and the log loss, the mean best epoch
where the model has one, and seconds of a fit (wall time on this machine as it was: not a speed comparison).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import click_logs  # noqa: E402
import tuning_data  # noqa: E402

import fastafm  # noqa: E402
from fastafm import metrics  # noqa: E402

CLICK_SETS = ["avazu", "criteo", "ipinyou", "frappe-clf"]
SYNTH_SETS = ["synth-tag", "synth-3f", "synth-installs"]
FASTAFM = {"fastafm AFM": ("AFMClassifier", {}), "fastafm FwFM": ("FwFMClassifier", {}),
           "fastafm FM": ("FMClassifier", {})}
#: --field-aware: AFM's field-aware configurations (docs/model.md), given each set's fields (fastafm_run).
FIELD_AWARE = {f"AFM {mode}": ("AFMClassifier", {"field_aware": mode}) for mode in ("weights", "logits", "both")}
FRAPPE_FIELD_STARTS = [0, 957, 5039, 5046, 5053, 5055, 5058, 5060, 5069, 5149]  # ../shared/data/README.md


@dataclass
class Split:
    name: str
    train: tuple
    valid: tuple
    test: tuple
    fields: np.ndarray  # each feature's field

    @property
    def n_features(self) -> int:
        return int(self.train[0].shape[1])

    task = "classification"


def _fields_of(log, data_dir) -> np.ndarray:
    if log.fields is not None:  # the encoder's
        return np.asarray(log.fields)
    n = log.X.shape[1]
    if log.name.startswith("frappe"):
        return np.searchsorted(FRAPPE_FIELD_STARTS, np.arange(n), side="right") - 1
    fields = np.zeros(n, dtype=np.int64)
    with open(Path(data_dir) / "ipinyou" / "featindex.txt") as fh:
        for line in fh:
            name, _, index = line.rstrip("\n").rpartition("\t")
            if ":" in name and index.isdigit() and int(index) < n:
                fields[int(index)] = int(name.split(":", 1)[0])
    return fields


def click_split(log, data_dir, seed: int) -> Split:
    """A seeded stratified 10% of the training rows as the validation part."""
    rng = np.random.default_rng([seed, 22])
    y = log.y.astype(np.float32)
    held = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(log.y == c)
        held[rng.permutation(idx)[: int(round(0.1 * len(idx)))]] = True
    fields = _fields_of(log, data_dir)
    return Split(log.name, (log.X[~held], y[~held]), (log.X[held], y[held]),
                 (log.X_test, log.y_test.astype(np.float32)), fields)


def synth_split(name: str, seed: int) -> Split:
    data = tuning_data.synthetic(name)  # the data is fixed; the seed is the models'
    X = data.train[0]
    fields = np.zeros(X.shape[1], dtype=np.int64)
    for part in (data.train[0], data.valid[0], data.test[0]):  # one id per field, the fields in column order:
        fields[part.indices] = np.arange(part.nnz) - np.repeat(part.indptr[:-1], np.diff(part.indptr))
    return Split(name, data.train, data.valid, data.test, fields)


def _scores(name, split, p, seconds, extra=None) -> dict:
    y = split.test[1]
    return {"set": split.name, "model": name, "auc": metrics.roc_auc(y, p),
            "logloss": metrics.log_loss(y, np.clip(p, 1e-12, 1 - 1e-12)), "seconds": seconds, **(extra or {})}


def fastafm_run(name, cls_name, params, split, seed) -> dict:
    cls = getattr(fastafm, cls_name)
    kw = dict(params, random_state=seed, n_threads=1)
    if cls_name.startswith(("FwFM", "AFM")):  # the fields a user has (FieldEncoder().fields_, a libFFM file's):
        kw.setdefault("fields", split.fields)  # FwFM's, and AFMClassifier's field_aware="auto" default's
    start = time.perf_counter()
    model = cls(**kw).fit(split.train[0], split.train[1], eval_set=split.valid[:2])
    return _scores(name, split, model.predict_proba(split.test[0])[:, 1], time.perf_counter() - start,
                   {"best_epoch": getattr(model, "best_epoch_", None),
                    "linear_share": getattr(model, "linear_share_", None)})


def logistic_regression(split, seed) -> dict:
    from sklearn.linear_model import LogisticRegression

    start, best = time.perf_counter(), None
    for C in (0.01, 0.1, 1.0, 10.0):
        m = LogisticRegression(C=C, max_iter=2000).fit(split.train[0], split.train[1])
        ll = metrics.log_loss(split.valid[1], np.clip(m.predict_proba(split.valid[0])[:, 1], 1e-12, 1 - 1e-12))
        if best is None or ll < best[0]:
            best = (ll, C, m)
    return _scores("LogisticRegression", split, best[2].predict_proba(split.test[0])[:, 1],
                   time.perf_counter() - start, {"C": best[1]})


def field_columns(split):
    """One column per field for the gradient boosting: (train, valid, test) dense arrays and the categorical
    mask. A one-hot field's column is its id (a category up to 255 ids, else the id's training-frequency rank);
    a field with a non-binary value (a numeric column) is that value. Missing: NaN."""
    n_fields = int(split.fields.max()) + 1
    parts = [split.train[0], split.valid[0], split.test[0]]
    counts = np.bincount(split.train[0].indices, minlength=split.n_features)
    numeric = np.zeros(n_fields, dtype=bool)
    for X in parts:
        f = split.fields[X.indices]
        numeric[np.unique(f[(X.data != 1.0)])] = True
    outs = []
    for X in parts:
        out = np.full((X.shape[0], n_fields), np.nan)
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        f = split.fields[X.indices]
        value = np.where(numeric[f], X.data, X.indices.astype(np.float64))
        out[rows[::-1], f[::-1]] = value[::-1]  # the first non-zero of a field in each row
        outs.append(out)
    categorical = np.zeros(n_fields, dtype=bool)
    for f in range(n_fields):
        if numeric[f]:
            continue
        ids = np.flatnonzero(split.fields == f)
        seen = ids[counts[ids] > 0]
        order = seen[np.argsort(-counts[seen], kind="stable")]
        code = np.full(split.n_features, np.nan)
        code[order] = np.arange(len(order))
        categorical[f] = len(order) <= 255
        for out in outs:
            col = out[:, f]
            ok = ~np.isnan(col)
            col[ok] = code[col[ok].astype(np.int64)]  # ids unseen in training stay NaN (missing)
    return outs, categorical


def hist_gb(split, seed) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier

    start = time.perf_counter()
    (tr, va, te), categorical = field_columns(split)
    model = HistGradientBoostingClassifier(max_iter=300, early_stopping=False, categorical_features=categorical,
                                           random_state=seed).fit(tr, split.train[1])
    losses = [metrics.log_loss(split.valid[1], np.clip(p[:, 1], 1e-12, 1 - 1e-12))
              for p in model.staged_predict_proba(va)]
    best = int(np.argmin(losses))
    p_test = next(p for i, p in enumerate(model.staged_predict_proba(te)) if i == best)[:, 1]
    return _scores("HistGradientBoosting", split, p_test, time.perf_counter() - start, {"best_epoch": best + 1})


def modern_fm_runs(split, seed) -> list:
    try:
        import modern_fm
    except ImportError:
        return []
    out = []
    fields = split.fields.astype(np.int32)
    X, X_val, X_test = (part[0].astype(np.float32) for part in (split.train, split.valid, split.test))
    for name, cls_name, kw in (("modern-fm FM", "FMClassifier", {}), ("modern-fm FwFM", "FwFMClassifier",
                                                                    {"field_ids": fields}),
                               ("modern-fm FFM", "FFMClassifier", {"field_ids": fields})):
        cls = getattr(modern_fm, cls_name, None)
        if cls is None:
            continue
        start = time.perf_counter()
        model = cls(early_stopping=True, random_state=seed, n_jobs=1)
        model.fit(X, split.train[1], eval_set=(X_val, split.valid[1]), **kw)
        out.append(_scores(name, split, model.predict_proba(X_test)[:, 1], time.perf_counter() - start))
    return out


def torch_afm(split, seed) -> dict:
    import torch_afm_fit

    s, record = torch_afm_fit.fit(split, 1e-2, seed=seed)
    return _scores("PyTorch AFM (Adam 1e-2)", split, 1 / (1 + np.exp(-s)), record["seconds"],
                   {"best_epoch": record["best_epoch"]})


def table(results: list) -> str:
    lines = []
    for name in dict.fromkeys(r["set"] for r in results):
        runs = [r for r in results if r["set"] == name]
        base = runs[0]["base_logloss"]
        lines += [f"\n#### {name} (base rate's log loss {base:.4f})\n",
                  "| model | AUC | log loss | best epoch | seconds | seeds |", "|---|---:|---:|---:|---:|---:|"]
        for model in dict.fromkeys(r["model"] for r in runs):
            rs = [r for r in runs if r["model"] == model]

            def spread(key):
                vals = [r[key] for r in rs]
                return f" ± {(max(vals) - min(vals)) / 2:.4f}" if len(vals) > 1 else ""

            epochs = [r["best_epoch"] for r in rs if r.get("best_epoch") is not None]
            lines.append(f"| {model} | {statistics.mean(r['auc'] for r in rs):.4f}{spread('auc')} | "
                         f"{statistics.mean(r['logloss'] for r in rs):.4f}{spread('logloss')} | "
                         f"{statistics.mean(epochs):.1f} | " if epochs else
                         f"| {model} | {statistics.mean(r['auc'] for r in rs):.4f}{spread('auc')} | "
                         f"{statistics.mean(r['logloss'] for r in rs):.4f}{spread('logloss')} | — | ")
            lines[-1] += f"{statistics.mean(r['seconds'] for r in rs):.1f} | {len(rs)} |"
    return "\n".join(lines)


def _mean(results, set_name, model, key):
    vals = [r[key] for r in results if r["set"] == set_name and r["model"] == model]
    return statistics.mean(vals) if vals else None


def verdicts(results: list, afm: str = "fastafm AFM", fwfm: str = "fastafm FwFM", exclude=()) -> str:
    """Issue 22's targets per set, on the means over seeds: AFM's AUC at least the best model's - 0.002 and its
    log loss at most the best's x 1.01 (the best of every model in the results, AFM included, but `exclude`: the
    other AFM configurations under comparison), AFM's log loss below the base rate's, and fastafm's FwFM at least
    as good as modern-fm's in both."""
    results = [r for r in results if r["model"] == afm or r["model"] not in exclude]
    lines = ["| set | best AUC (model) | best log loss (model) | AFM AUC >= best - 0.002 "
             "| AFM log loss <= best x 1.01 | AFM below the base rate | FwFM >= modern-fm FwFM |",
             "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["set"] for r in results):
        models = list(dict.fromkeys(r["model"] for r in results if r["set"] == name))
        auc = {m: _mean(results, name, m, "auc") for m in models}
        ll = {m: _mean(results, name, m, "logloss") for m in models}
        best_auc, best_ll = max(auc, key=auc.get), min(ll, key=ll.get)
        base = next(r["base_logloss"] for r in results if r["set"] == name)
        row = [name, f"{auc[best_auc]:.4f} ({best_auc})", f"{ll[best_ll]:.4f} ({best_ll})"]
        if afm in auc:
            row += [("met" if auc[afm] >= auc[best_auc] - 0.002 else "**not met**") + f": {auc[afm]:.4f}",
                    ("met" if ll[afm] <= ll[best_ll] * 1.01 else "**not met**")
                    + f": {ll[afm]:.4f} ({100 * (ll[afm] / ll[best_ll] - 1):+.1f}%)",
                    ("met" if ll[afm] < base else "**not met**") + f": {ll[afm]:.4f} < {base:.4f}"]
        else:
            row += ["—"] * 3
        theirs = "modern-fm FwFM"
        if fwfm in auc and theirs in auc:
            ok = auc[fwfm] >= auc[theirs] and ll[fwfm] <= ll[theirs]
            row.append(("met" if ok else "**not met**")
                       + f": {auc[fwfm]:.4f} / {ll[fwfm]:.4f} vs {auc[theirs]:.4f} / {ll[theirs]:.4f}")
        else:
            row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="../shared/data (the click logs)")
    ap.add_argument("--sets", nargs="+", default=CLICK_SETS + SYNTH_SETS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fastafm", nargs="*", default=None,
                    help="NAME=CLASS:JSON configurations instead of the defaults' three, e.g. "
                         "'AFM lin=AFMClassifier:{\"pretrain\": \"linear+fm\"}'")
    ap.add_argument("--field-aware", action="store_true",
                    help="also AFM's field-aware configurations ('AFM weights', 'AFM logits', 'AFM both')")
    ap.add_argument("--peers", choices=["all", "none", "lr"], default="all", help="lr: LogisticRegression only")
    ap.add_argument("--numeric-bins", type=int, help="FieldEncoder(numeric_bins=N) for the logs' numeric columns "
                    "(Criteo's counts); the set's name gets [bins N]")
    ap.add_argument("--torch", action="store_true", help="also the PyTorch AFM (slow)")
    ap.add_argument("--json")
    ap.add_argument("--from-json", nargs="+", help="print the tables of earlier runs (several files: joined)")
    ap.add_argument("--afm", nargs="+", default=["fastafm AFM"],
                    help="the configurations the targets are checked for (several: one table each, the others "
                         "left out of its 'best')")
    args = ap.parse_args(argv)
    if args.from_json:
        results = join_runs([json.loads(Path(path).read_text()) for path in args.from_json])
        print(table(results))
        print_verdicts(results, args.afm)
        return results
    configs = dict(FASTAFM)
    if args.fastafm is not None:
        configs = {}
        for spec in args.fastafm:
            name, _, rest = spec.partition("=")  # NAME has no "="
            cls_name, _, params = rest.partition(":")
            configs[name] = (cls_name, json.loads(params or "{}"))
    if args.field_aware:
        configs.update(FIELD_AWARE)
    results = []
    encoder_kw = {} if args.numeric_bins is None else {"numeric_bins": args.numeric_bins}
    logs = click_logs.load(args.data, [s for s in args.sets if s in CLICK_SETS], **encoder_kw) if args.data else {}
    for log in logs.values():
        if args.numeric_bins is not None and log.name == "criteo-head":
            log.name += f" [bins {args.numeric_bins}]"
    for name in args.sets:
        for seed in args.seeds:
            split = click_split(logs[name], args.data, seed) if name in CLICK_SETS else synth_split(name, seed)
            base = metrics.log_loss(split.test[1], np.full(len(split.test[1]),
                                                           np.clip(split.train[1].mean(), 1e-6, 1 - 1e-6)))
            runs = [fastafm_run(n, c, p, split, seed) for n, (c, p) in configs.items()]
            if args.peers != "none":
                runs.append(logistic_regression(split, seed))
            if args.peers == "all":
                runs += [hist_gb(split, seed)] + modern_fm_runs(split, seed)
            if args.torch:
                runs.append(torch_afm(split, seed))
            for r in runs:
                r.update(base_logloss=base, seed=seed)
                print(f"{r['set']} seed {seed} {r['model']}: AUC {r['auc']:.4f} log loss {r['logloss']:.4f} "
                      f"({r['seconds']:.1f} s, best epoch {r.get('best_epoch')})", flush=True)
            results.extend(runs)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(table(results))
    print_verdicts(results, args.afm)
    return results


def join_runs(runs: list) -> list:
    """The rows of several runs; a (set, model) a later run has replaces the earlier runs' rows of it (a rerun
    of some configurations, e.g. after a change of the data's encoding)."""
    out: list = []
    for rows in runs:
        redone = {(r["set"], r["model"]) for r in rows}
        out = [r for r in out if (r["set"], r["model"]) not in redone] + list(rows)
    return out


def print_verdicts(results: list, names: list) -> None:
    for name in names:
        print(f"\n{name}:\n" + verdicts(results, name, exclude=[n for n in names if n != name] + ["AFM linear+fm"]))


if __name__ == "__main__":
    main()
