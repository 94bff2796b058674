"""Fingerprint of fits, for checking that a refactoring leaves training bit-identical.

    python tools/fingerprint_fits.py save /tmp/fp_before.npz [--models DIR]   # before the change
    python tools/fingerprint_fits.py compare /tmp/fp_before.npz [--models DIR] # after it

`save` fits the four estimators with both optimizers (plain, and with early stopping on an eval_set), a
partial_fit continuation and cache-file fits (one block and several), at a fixed random_state and n_threads,
and writes every learned parameter (and the Adagrad accumulators where the model has them) to an .npz; with
--models it also saves each model with `model.save` (the model files of the version that ran). `compare`
refits, checks every parameter with np.array_equal, and (with --models) loads each saved file and checks that
it predicts exactly what the saved model predicted and that one more partial_fit epoch from the file gives
exactly what it gives from the refitted model.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile

import numpy as np

import fastafm
from fastafm import AFMClassifier, AFMRegressor, CacheFile, FMClassifier, FMRegressor

N_THREADS = 2
SEED = 7


def raw_output(model):
    """The raw model output y(x): a classifier's decision_function, a regressor's predict (it has no other)."""
    return getattr(model, "decision_function", model.predict)



def _data():
    X, y, _ = fastafm.make_planted(n_rows=800, n_fields=5, cardinality=6, random_state=3)
    return X[:600], y[:600], X[600:], y[600:]


def _params(model) -> dict:
    out = {name: np.asarray(a) for name, a in model.get_model_params().items()}
    if hasattr(model, "optimizer_state"):  # after the restructuring: named slots
        for slot, arrays in model.optimizer_state().items():
            out.update({f"{slot}.{name}": np.asarray(a) for name, a in arrays.items()})
    elif model.optimizer == "adagrad":  # before it: one accumulator per parameter (dummies for SGD)
        out.update({f"G.{name}": np.asarray(a) for name, a in model._accum_.items()})
    out["history_loss"] = np.array([r["train_loss"] for r in model.history_])
    return out


def _today(cls, **kw) -> dict:
    """kw as the keyword arguments of a fit as before issue 12 on either version: where the class has them,
    no FM pretraining and early stopping only where asked (`n_iter_no_change`, the former `patience`)."""
    names = inspect.signature(cls.__init__).parameters
    if "patience" in kw and "patience" not in names:
        kw["n_iter_no_change"] = kw.pop("patience")
    if "early_stopping" in names:
        kw.setdefault("early_stopping", "n_iter_no_change" in kw)
    if "pretrain" in names:
        kw["pretrain"] = None
    return kw


def _fits(workdir: str):
    """(name, fitted model, training data for one more epoch) triples, always in the same order."""
    X, y, X_eval, y_eval = _data()
    y_cls = (y > np.median(y)).astype(int)
    y_eval_cls = (y_eval > np.median(y)).astype(int)
    kinds = {"AFMRegressor": (AFMRegressor, y, y_eval), "AFMClassifier": (AFMClassifier, y_cls, y_eval_cls),
             "FMRegressor": (FMRegressor, y, y_eval), "FMClassifier": (FMClassifier, y_cls, y_eval_cls)}
    common = dict(embedding_dim=8, batch_size=32, n_threads=N_THREADS, random_state=SEED)
    for cls_name, (cls, yy, yy_eval) in kinds.items():
        extra = {} if cls_name.startswith("FM") else {"attention_dim": 6}
        for optimizer in ("adagrad", "sgd"):
            lr = 0.05 if optimizer == "adagrad" else 0.01
            base = dict(common, optimizer=optimizer, learning_rate=lr, **extra)
            yield f"{cls_name}.{optimizer}.plain", cls(**_today(cls, n_epochs=4, **base)).fit(X, yy), (X, yy)
            yield (f"{cls_name}.{optimizer}.early",
                   cls(**_today(cls, n_epochs=12, patience=2, **base)).fit(X, yy, eval_set=(X_eval, yy_eval)), (X, yy))
            model = cls(**_today(cls, n_epochs=2, **base)).fit(X, yy)
            model.partial_fit(X, yy)
            yield f"{cls_name}.{optimizer}.partial", model, (X, yy)
        labels = yy.astype(np.float32)
        for block_rows in (None, 128):
            path = os.path.join(workdir, f"{cls_name}.{block_rows}.cache")
            fastafm.convert((X, labels), path)
            cache = CacheFile(path) if block_rows is None else CacheFile(path, block_rows=block_rows)
            model = cls(**_today(cls, n_epochs=3, **dict(common, **extra))).fit(cache)
            yield f"{cls_name}.cache.{block_rows}", model, (cache, None)


def _collect(models_dir: str | None, mode: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as workdir:
        X_eval = _data()[2]
        for name, model, (X_more, y_more) in _fits(workdir):
            for key, arr in _params(model).items():
                out[f"{name}/{key}"] = arr
            pred = raw_output(model)(X_eval)
            out[f"{name}/decision"] = pred
            if models_dir is not None:
                path = os.path.join(models_dir, f"{name}.model")
                if mode == "save":
                    model.save(path)
                else:
                    loaded = fastafm.load(path)
                    same = np.array_equal(raw_output(loaded)(X_eval), pred)
                    # ... and one more epoch from the file trains exactly as from the model in memory
                    loaded.partial_fit(X_more, y_more)
                    model.partial_fit(X_more, y_more)
                    same = same and np.array_equal(raw_output(loaded)(X_eval), raw_output(model)(X_eval))
                    print(f"{'ok  ' if same else 'DIFF'} load+predict+partial_fit {path}")
                    out[f"{name}/loaded_same"] = np.array(same)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("save", "compare"))
    ap.add_argument("npz")
    ap.add_argument("--models", help="folder for model files (save: written; compare: loaded)")
    args = ap.parse_args(argv)
    if args.models and args.mode == "save":
        os.makedirs(args.models, exist_ok=True)
    got = _collect(args.models, args.mode)
    if args.mode == "save":
        np.savez(args.npz, **got)
        print(f"saved {len(got)} arrays to {args.npz}")
        return 0
    before = dict(np.load(args.npz))
    bad = 0
    for key, arr in before.items():
        if key not in got:
            print(f"MISSING {key}")
            bad += 1
        elif not np.array_equal(arr, got[key]):
            print(f"DIFF    {key}")
            bad += 1
    loads = [k for k in got if k.endswith("/loaded_same")]
    bad += sum(not bool(got[k]) for k in loads)
    extra = sorted(set(got) - set(before) - set(loads))
    print(f"compared {len(before)} arrays: {len(before) - bad if bad <= len(before) else 0} identical, {bad} "
          f"differing or missing; {len(loads)} model files loaded; new keys: {extra[:8]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
