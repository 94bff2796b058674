"""Model files: a NumPy .npz archive of float32 arrays plus one JSON metadata record. Loading never
unpickles (np.load with allow_pickle=False) and only builds the estimator classes listed here.

Layout (format version 1):
    meta            uint8 array holding UTF-8 JSON: {"format": "fastafm-model", "version": 1, "class": ...,
                    "hyperparameters": {...}, "n_features_in": int, "n_epochs_done": int, "history": [...],
                    "classes": [...] | null, "label_range": [lo, hi] | null, "dropout_seed": int, "rng_state": {...}}
    param.<name>    the parameters w0 (1,), w, V, W, b, h, p
    accum.<name>    their Adagrad accumulators (so partial_fit can continue after loading)
"""
from __future__ import annotations

import json
import os

import numpy as np

FORMAT = "fastafm-model"
VERSION = 1


def _registry():
    from .estimators import AFMClassifier, AFMRegressor

    return {"AFMRegressor": AFMRegressor, "AFMClassifier": AFMClassifier}


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.random.Generator) or isinstance(value, np.random.RandomState):
        return None  # a generator object is not a reproducible setting; the rng state is saved separately
    return value


def save_model(model, path) -> None:
    model._check_fitted()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "class": type(model).__name__,
        "hyperparameters": {k: _jsonable(v) for k, v in model.get_params().items()},
        "n_features_in": int(model.n_features_in_),
        "n_epochs_done": int(model.n_epochs_done_),
        "history": model.history_,
        "classes": model.classes_.tolist() if hasattr(model, "classes_") else None,
        "label_range": list(model.label_range_) if hasattr(model, "label_range_") else None,
        "dropout_seed": int(model._dropout_seed_),
        "rng_state": model._rng_.bit_generator.state,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for name, arr in model._params_.items():
        arrays[f"param.{name}"] = arr
    for name, arr in model._accum_.items():
        arrays[f"accum.{name}"] = arr
    with open(os.fspath(path), "wb") as fh:
        np.savez(fh, **arrays)


def load_model(path):
    """Read a model written by `model.save(path)`; raises ValueError for anything that is not one."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a fastafm model file ({exc})") from exc
    with archive:
        if "meta" not in archive.files:
            raise ValueError(f"{path}: not a fastafm model file (no metadata record)")
        try:
            meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: corrupted metadata ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a fastafm model file")
        if meta.get("version") != VERSION:
            raise ValueError(f"{path}: model file version {meta.get('version')!r}; this fastafm reads version {VERSION}")
        cls = _registry().get(meta.get("class"))
        if cls is None:
            raise ValueError(f"{path}: unknown model class {meta.get('class')!r}")
        model = cls(**meta["hyperparameters"])
        params, accum = {}, {}
        for name in ("w0", "w", "V", "W", "b", "h", "p"):
            for prefix, store in (("param", params), ("accum", accum)):
                key = f"{prefix}.{name}"
                if key not in archive.files:
                    raise ValueError(f"{path}: missing array {key}")
                arr = archive[key]
                if arr.dtype != np.float32:
                    raise ValueError(f"{path}: array {key} has dtype {arr.dtype}, expected float32")
                store[name] = np.ascontiguousarray(arr)
    n, k, t = meta["n_features_in"], model.embedding_dim, model.attention_dim
    shapes = {"w0": (1,), "w": (n,), "V": (n, k), "W": (t, k), "b": (t,), "h": (t,), "p": (k,)}
    for name, shape in shapes.items():
        for store, prefix in ((params, "param"), (accum, "accum")):
            if store[name].shape != shape:
                raise ValueError(f"{path}: array {prefix}.{name} has shape {store[name].shape}, expected {shape}")
            if not np.all(np.isfinite(store[name])):
                raise ValueError(f"{path}: array {prefix}.{name} contains NaN or infinity")
    model._params_, model._accum_ = params, accum
    model.n_features_in_ = n
    model.n_epochs_done_ = int(meta["n_epochs_done"])
    model.history_ = list(meta["history"])
    model._dropout_seed_ = int(meta["dropout_seed"])
    model._rng_ = np.random.default_rng()
    model._rng_.bit_generator.state = meta["rng_state"]
    if meta.get("classes") is not None:
        model.classes_ = np.asarray(meta["classes"])
    if meta.get("label_range") is not None:
        model.label_range_ = tuple(meta["label_range"])
    return model
