"""Building sparse AFM rows: field-id matrices to CSR, and synthetic data with planted pair interactions."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_INT32_MAX = int(np.iinfo(np.int32).max)


def from_fields(ids, n_features: int | None = None) -> sp.csr_matrix:
    """Turn an (n_rows, n_fields) integer matrix of feature ids into one-hot CSR rows (value 1.0).

    Parameters
    ----------
    ids : array-like of int, shape (n_rows, n_fields)
        Global feature ids (already offset per field), each in [0, n_features).
    n_features : int, optional
        Width of the result; default max id + 1.

    Returns
    -------
    scipy.sparse.csr_matrix, float32, shape (n_rows, n_features)
        Row r holds ids[r] in field order (repeats are kept as separate non-zeros).
    """
    arr = np.asarray(ids)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"ids must be 2-D (n_rows, n_fields), got shape {arr.shape}")
    n_rows, n_fields = arr.shape
    if n_rows == 0 or n_fields == 0:
        raise ValueError(f"ids must have at least one row and one field, got shape {arr.shape}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise ValueError(f"ids contains the negative feature id {lo}")
    if hi > _INT32_MAX - 1:
        raise ValueError(f"ids contains the feature id {hi}, beyond the int32 range supported")
    if n_features is None:
        n_features = hi + 1
    elif isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or n_features <= 0:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    elif hi >= n_features:
        raise ValueError(f"ids contains the feature id {hi}, but n_features is {n_features}")
    indptr = np.arange(0, (n_rows + 1) * n_fields, n_fields, dtype=np.int64)
    return sp.csr_matrix(
        (np.ones(n_rows * n_fields, np.float32), arr.reshape(-1).astype(np.int32), indptr),
        shape=(n_rows, int(n_features)),
    )


def field_offsets(cardinalities) -> np.ndarray:
    """Start id of each field when fields of the given sizes are laid out one after another."""
    return np.concatenate([[0], np.cumsum(np.asarray(cardinalities, dtype=np.int64))[:-1]])


def make_planted(n_rows: int = 20000, n_fields: int = 8, cardinality: int = 20, planted_pairs=((0, 1), (2, 3)),
                 strength: float = 1.0, noise: float = 0.1, classification: bool = False, random_state=None):
    """Synthetic one-hot data whose target is driven by a few planted field pairs.

    Each row picks one category per field uniformly. The target is the sum, over the planted field pairs
    (f, g), of a random interaction table T_fg[category_f, category_g] (entries N(0, strength^2)), plus
    Gaussian noise; all other field pairs carry no signal. With `classification=True` the label is 1
    where that sum (before noise) is positive, flipped with probability `noise`.

    Returns
    -------
    X : csr_matrix (n_rows, n_fields * cardinality), y : ndarray, fields : ndarray of the field of each feature id
    """
    rng = np.random.default_rng(random_state)
    cats = rng.integers(0, cardinality, size=(n_rows, n_fields))
    signal = np.zeros(n_rows)
    for f, g in planted_pairs:
        table = rng.normal(0.0, strength, size=(cardinality, cardinality))
        signal += table[cats[:, f], cats[:, g]]
    ids = cats + np.arange(n_fields) * cardinality
    X = from_fields(ids, n_features=n_fields * cardinality)
    fields = np.repeat(np.arange(n_fields), cardinality)
    if classification:
        y = (signal > 0).astype(np.float32)
        flip = rng.random(n_rows) < noise
        y[flip] = 1.0 - y[flip]
    else:
        y = (signal + rng.normal(0.0, noise, n_rows)).astype(np.float32)
    return X, y, fields


def make_clicks(n_rows: int = 50000, n_fields: int = 6, cardinality: int = 10, planted_pairs=((0, 1), (2, 3)),
                strength: float = 1.0, base_logit: float = -3.0, random_state=None):
    """Synthetic click log: one-hot rows as `make_planted`'s, each clicked (y = 1) with probability
    sigmoid(base_logit + the planted pairs' signal), so the click rate is low (about 7% at base_logit -3) and
    the true probabilities are known. Returns X, y (0/1 float32), fields, and the true click probabilities."""
    X, signal, fields = make_planted(n_rows, n_fields, cardinality, planted_pairs, strength, 0.0,
                                     random_state=random_state)
    rng = np.random.default_rng(None if random_state is None else [int(random_state), 1])
    proba = 1.0 / (1.0 + np.exp(-(base_logit + signal.astype(np.float64))))
    y = (rng.random(n_rows) < proba).astype(np.float32)
    return X, y, fields, proba
