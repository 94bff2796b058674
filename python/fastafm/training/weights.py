"""Sample and class weights: checked at the Python boundary into the float32 per-row weights the core takes.

A row's loss (and so its gradient) is multiplied by its weight (docs/model.md, "Sample weights"). None
everywhere means "every weight 1" and passes None on to the core, which then multiplies nothing.
"""
from __future__ import annotations

import numbers

import numpy as np


def check_sample_weight(sample_weight, n_rows: int, name: str = "sample_weight",
                        positive_sum: bool = True) -> np.ndarray | None:
    """`sample_weight` as a float32 vector of n_rows finite weights >= 0 with a positive sum (None stays None);
    ValueError naming the problem otherwise (strings, wrong shape or length, NaN, infinity, negative, all 0).
    positive_sum=False accepts all zeros (one part of the data, e.g. a Dask partition, whose whole is checked)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, (str, bytes)):
        raise ValueError(f"{name} must be an array of numbers, got a {type(sample_weight).__name__}")
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, (bool, np.bool_)):
        arr = np.full(n_rows, float(sample_weight))  # a scalar: the same weight for every row (as scikit-learn)
    else:
        try:
            arr = np.asarray(sample_weight)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name} is not a 1-D array of numbers: {exc}") from None
        if arr.dtype.kind not in "biuf":
            if arr.dtype.kind == "O":
                try:
                    arr = arr.astype(np.float64)
                except (ValueError, TypeError):
                    raise ValueError(f"{name} must hold numbers, got dtype object holding a non-number") from None
            else:
                raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if arr.shape[0] != n_rows:
            raise ValueError(f"{name} has {arr.shape[0]} values but X has {n_rows} rows")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
    if np.any(out < 0):
        raise ValueError(f"{name} contains negative weights (the smallest is {float(out.min())}); weights must be >= 0")
    if positive_sum and n_rows and not np.any(out > 0):
        raise ValueError(f"{name} is all zero: at least one row must have a positive weight")
    return out


def check_class_weight(class_weight, name: str = "class_weight") -> None:
    """None, "balanced" or a dict {label: weight >= 0 finite} (the hyperparameter's constraint)."""
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return
    if not isinstance(class_weight, dict):
        raise ValueError(f"{name} must be None, 'balanced' or a dict {{label: weight}}, got {class_weight!r}")
    for label, weight in class_weight.items():
        if (isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real)
                or not np.isfinite(float(weight)) or float(weight) < 0):
            raise ValueError(f"{name}[{label!r}] = {weight!r}: class weights must be finite numbers >= 0")


def class_row_weights(class_weight, y_labels: np.ndarray, classes: np.ndarray, partial: bool = False):
    """Each row's class weight (float64), as sklearn.utils.class_weight.compute_sample_weight: "balanced"
    gives class c the weight n_rows / (n_classes * count(c)) over these rows; a dict gives each listed class
    its weight and the others 1. None: None. A dict key that is not one of the classes is a ValueError."""
    if class_weight is None:
        return None
    check_class_weight(class_weight)
    classes = np.asarray(classes)
    if isinstance(class_weight, str):
        if partial:
            raise ValueError("class_weight='balanced' is not supported by partial_fit (the class counts of one "
                             "batch are not those of the data); pass a dict class_weight or sample_weight")
        counts = np.array([np.count_nonzero(y_labels == c) for c in classes], dtype=np.float64)
        per_class = np.where(counts > 0, y_labels.shape[0] / (classes.shape[0] * np.maximum(counts, 1)), 0.0)
    else:
        per_class = np.ones(classes.shape[0])
        known = classes.tolist()
        for label, weight in class_weight.items():
            matches = [i for i, c in enumerate(known) if _same_label(c, label)]
            if not matches:
                raise ValueError(f"class_weight has the label {label!r}, which is not one of the classes {known}")
            per_class[matches[0]] = float(weight)
    out = np.ones(y_labels.shape[0])
    for i, c in enumerate(classes):
        out[y_labels == c] = per_class[i]
    return out


def cache_class_weights(class_weight, cache, classes: np.ndarray, partial: bool = False):
    """class_row_weights for the label blocks of a CacheFile: a function labels -> per-row class weights.
    "balanced" counts the classes over all the cache's rows first (one pass over its labels section)."""
    check_class_weight(class_weight)
    classes = np.asarray(classes)
    if isinstance(class_weight, str):
        if partial:
            class_row_weights(class_weight, classes[:0], classes, partial=True)  # the same refusal as in memory
        counts = cache_class_counts(cache, classes)
        class_weight = {c: cache.n_rows / (classes.shape[0] * n) if n else 0.0
                        for c, n in zip(classes.tolist(), counts.tolist())}
    else:
        class_row_weights(class_weight, classes[:0], classes)  # unknown labels refused before training

    def weights(labels):
        out = class_row_weights(class_weight, labels, classes)
        assert out is not None
        return out

    return weights


def cache_class_counts(cache, classes: np.ndarray) -> np.ndarray:
    """How many rows of a CacheFile hold each of `classes` (one pass over its labels section, block by block)."""
    counts = np.zeros(classes.shape[0])
    step = max(int(cache.block_rows), 1)
    for start in range(0, int(cache.n_rows), step):
        labels = cache.read_labels(start, min(start + step, int(cache.n_rows)))
        counts += [np.count_nonzero(labels == c) for c in classes]
    return counts


def _same_label(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def combine(sample_weight: np.ndarray | None, class_weights, name: str = "sample_weight") -> np.ndarray | None:
    """sample_weight x class weights (either may be None), float32, checked again (a zero class weight may
    leave no positive weight)."""
    if class_weights is None:
        return check_sample_weight(sample_weight, np.shape(sample_weight)[0], name) if sample_weight is not None \
            else None
    w = np.asarray(class_weights, dtype=np.float64)
    if sample_weight is not None:
        w = w * sample_weight
    return check_sample_weight(w, w.shape[0], name=f"{name} x class_weight" if sample_weight is not None
                               else "the class weights (class_weight)")


def weight_sum(weights: np.ndarray | None, n_rows: int) -> float:
    """The total weight of the rows (n_rows when unweighted), the denominator of a mean loss."""
    return float(n_rows) if weights is None else float(np.sum(weights, dtype=np.float64))
