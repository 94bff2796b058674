"""Targets of fit/partial_fit: regression values, or two class labels encoded as +-1, from y or from a
cache's label blocks. Each function returns what the core trains on and, when fitting, the label facts the
training state keeps ({"label_range": ...} or {"classes": ...})."""
from __future__ import annotations

import numbers

import numpy as np

from ..data.validation import as_targets, check_class_labels, column_or_1d


def _no_classes(classes, owner: str) -> None:
    if classes is not None:
        raise ValueError(f"classes is only for classifiers, not {owner}")


def regression_targets(y, n_rows: int, fitting: bool, classes, owner: str):
    _no_classes(classes, owner)
    y = as_targets(y, n_rows)
    return y, ({"label_range": (float(y.min()), float(y.max()))} if fitting else {})


def regression_cache_targets(cache, fitting: bool, classes, owner: str):
    """Targets of a cache's label blocks (as stored); the label range from the cache's header."""
    _no_classes(classes, owner)
    return _identity, ({"label_range": (cache.label_min, cache.label_max)} if fitting else {})


def _check_against_fitted(found, classes, fitted, where: str = "") -> None:
    if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), fitted):
        raise ValueError(f"classes {classes} differ from classes_ {fitted} of the fitted model")
    try:
        unknown = np.setdiff1d(found, fitted)
    except TypeError:  # the model's labels are not numbers
        unknown = found
    if unknown.size:
        raise ValueError(f"{where}y contains labels not seen in fit: {unknown[:5]}")


class MixedLabelsError(ValueError, TypeError):
    """Labels of more than one type (strings and numbers): a ValueError (bad labels), and a TypeError as
    fastafm raised before it checked them itself."""


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))


def check_label_types(y, arr: np.ndarray, name: str = "y") -> None:
    """Labels given as Python objects (a list, a tuple, an object array) must be all strings, all bytes or all numbers,
    none missing: np.asarray would otherwise turn [1, "a"] into the strings "1", "a" and [0, 1, nan] with
    strings into the label "nan", silently making classes of them."""
    if isinstance(y, (list, tuple)):
        values = list(y)
    elif arr.dtype == object:
        values = arr.ravel().tolist()
    else:
        return
    flat = []
    for v in values:  # one level of nesting: an (n, 1) column given as a list of lists
        if isinstance(v, (list, tuple, np.ndarray)):
            flat.extend(np.asarray(v, dtype=object).ravel().tolist())
        else:
            flat.append(v)
    types = set(map(type, flat))  # classified per type, not per value: cheap for long lists
    if type(None) in types or any(issubclass(t, (float, np.floating)) for t in types):
        if any(_is_missing(v) for v in flat):
            raise ValueError(f"{name} contains missing labels (None or NaN)")
    kinds = {_kind_of_label(t) for t in types}
    if len(kinds) > 1:
        example: dict = {}
        for v in flat:
            example.setdefault(_kind_of_label(type(v)), v)
        shown = ", ".join(f"{k} {example[k]!r}" for k in sorted(example))
        raise MixedLabelsError(f"{name} must hold labels of one type: it mixes {' and '.join(sorted(example))} "
                               f"labels ({shown}); class labels must all be of one type (strings, bytes or numbers)")
    if kinds - {"string", "bytes", "number"}:
        raise ValueError(f"{name} holds labels of type {kinds.pop()}; class labels must be strings or numbers")


def _kind_of_label(t: type) -> str:
    if issubclass(t, (str, np.str_)):
        return "string"
    if issubclass(t, (bytes, np.bytes_)):
        return "bytes"
    if issubclass(t, (numbers.Number, np.bool_)):
        return "number"
    return t.__name__


def as_labels(y, n_rows: int, name: str = "y") -> np.ndarray:
    """y as a 1-D array of n_rows class labels of one type, none missing."""
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} is not a 1-D array of labels: {exc}") from None
    check_label_types(y, arr, name)
    arr = column_or_1d(arr, name)
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} values but X has {n_rows} rows")
    return arr


def eval_targets(y, n_rows: int, classes) -> np.ndarray:
    """The labels of an eval_set: regression targets (`classes` None), or labels of the model's two `classes`
    (strings when the model's are), refusing labels the model was not fitted on: they cannot be scored."""
    if classes is None:
        return as_targets(y, n_rows, name="eval_set y")
    if y is None:
        raise ValueError("eval_set y is None: an eval_set needs its labels")
    arr = as_labels(y, n_rows, "eval_set y")
    check_class_labels(arr, False, name="eval_set y")
    fitted = np.asarray(classes)
    try:
        unknown = np.setdiff1d(np.unique(arr), fitted)
    except TypeError:  # labels of another type than the model's, e.g. numbers against strings
        unknown = np.unique(arr.astype(str))
    if (arr.dtype.kind in "US") != (fitted.dtype.kind in "US"):
        unknown = np.unique(arr)
    if unknown.size:
        raise ValueError(f"eval_set y contains labels not seen in fit: {unknown[:5].tolist()} (the model's classes "
                         f"are {fitted.tolist()})")
    return arr


def class_targets(y, n_rows: int, fitting: bool, classes, fitted, owner: str):
    """+-1 targets; `fitted` is the model's classes_ when not fitting."""
    if y is None:
        raise ValueError(f"y is None: {owner} requires y to be passed, but the target y is None")
    arr = as_labels(y, n_rows)
    check_class_labels(arr, fitting)
    if fitting:
        try:
            found = np.unique(arr)
        except TypeError as exc:  # labels of mixed, unorderable types
            raise MixedLabelsError(f"y must hold labels of one type: {exc}") from None
        if classes is not None:
            found = _declared_classes(found, classes, "")
        if found.shape[0] != 2:
            raise ValueError(f"{owner} needs two classes in y, got {found.shape[0]} class(es): {found[:5]}"
                             + ("; Only binary classification is supported." if found.shape[0] > 2 else ""))
        labels = {"classes": found}
    else:
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), fitted):
            raise ValueError(f"classes {classes} differ from classes_ {fitted} of the fitted model")
        unknown = np.setdiff1d(np.unique(arr), fitted)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in fit: {unknown[:5]}")
        found, labels = fitted, {}
    return np.where(arr == found[1], 1.0, -1.0).astype(np.float32), labels


def class_cache_targets(cache, fitting: bool, classes, fitted, owner: str):
    """+-1 targets of a cache's label blocks; the classes come from the header's label summary (the
    distinct labels, which are the minimum and the maximum when there are at most two)."""
    found = np.unique(np.array([cache.label_min, cache.label_max], dtype=np.float32))
    if cache.n_label_values > 2:
        raise ValueError(f"{cache.path}: {owner} needs two classes in y, got 3 or more (labels from "
                         f"{cache.label_min:g} to {cache.label_max:g}); Only binary classification is supported.")
    if fitting:
        if np.any(found != np.round(found)):
            raise ValueError(f"{cache.path}: Unknown label type: continuous values in y; {owner} needs "
                             "two class labels (use AFMRegressor for real-valued targets)")
        if classes is not None:
            found = _declared_classes(found, classes, f"{cache.path}: ")
        if found.shape[0] != 2:
            raise ValueError(f"{cache.path}: {owner} needs two classes in y, got {found.shape[0]} "
                             f"class(es): {found[:5]}")
        positive, labels = found[1], {"classes": found}
    else:
        _check_against_fitted(found, classes, fitted, f"{cache.path}: ")
        positive, labels = fitted[1], {}
    scratch: dict = {}

    def encode(block_labels):
        out = scratch.get("y")
        if out is None or out.shape[0] < block_labels.shape[0]:
            out = scratch["y"] = np.empty(block_labels.shape[0], dtype=np.float32)
        out = out[:block_labels.shape[0]]
        out.fill(-1.0)
        out[block_labels == positive] = 1.0
        return out

    return encode, labels


def _declared_classes(found, classes, where: str):
    """The two labels of `classes` (partial_fit's argument), checked against the labels found in y."""
    declared = np.unique(np.asarray(classes))
    if declared.ndim != 1 or declared.shape[0] != 2:
        raise ValueError(f"classes must hold exactly two labels, got {declared}")
    unknown = np.setdiff1d(found, declared)
    if unknown.size:
        raise ValueError(f"{where}y contains labels not in classes: {unknown[:5]}")
    return declared


def _identity(labels):
    return labels
