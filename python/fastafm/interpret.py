"""Reading what the attention learned: mean attention weight per pair of fields."""
from __future__ import annotations

import numpy as np


def _feature_fields(fields, n_features: int) -> np.ndarray:
    """Field of every feature id, from a per-feature array or from contiguous id ranges [(start, stop), ...]."""
    arr = np.asarray(fields)
    if arr.ndim == 2 and arr.shape[1] == 2:  # contiguous id ranges, one per field
        out = np.full(n_features, -1, dtype=np.int64)
        for field, (start, stop) in enumerate(arr):
            out[int(start) : int(stop)] = field
        return out
    if arr.ndim != 1 or arr.shape[0] != n_features:
        raise ValueError(f"fields must map each of the {n_features} feature ids to a field "
                         f"(shape ({n_features},)) or be a list of (start, stop) id ranges; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < -1):
        raise ValueError("fields must hold integer field numbers (-1 for 'no field')")
    return arr.astype(np.int64)


def field_pair_attention(model, X, fields) -> np.ndarray:
    """Mean attention weight of each unordered pair of fields over the rows of X.

    Parameters
    ----------
    model : fitted AFMRegressor or AFMClassifier
    X : sparse rows, as for predict
    fields : array (n_features,) of field numbers, or a list of (start, stop) feature-id ranges per field

    Returns
    -------
    ndarray (n_fields, n_fields), symmetric; NaN for field pairs that never occur together. Features
    mapped to field -1 are ignored.
    """
    field_of = _feature_fields(fields, model.n_features_in_)
    _, pairs, weights = model.attention_weights(X)
    fa, fb = field_of[pairs[:, 0]], field_of[pairs[:, 1]]
    keep = (fa >= 0) & (fb >= 0)
    lo, hi = np.minimum(fa, fb)[keep], np.maximum(fa, fb)[keep]
    n_fields = int(field_of.max()) + 1 if field_of.size else 0
    sums = np.zeros((n_fields, n_fields))
    counts = np.zeros((n_fields, n_fields))
    np.add.at(sums, (lo, hi), weights[keep])
    np.add.at(counts, (lo, hi), 1.0)
    sums = sums + np.triu(sums, 1).T
    counts = counts + np.triu(counts, 1).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def top_field_pairs(matrix: np.ndarray, n: int = 5) -> list[tuple[int, int, float]]:
    """The n field pairs (a <= b) with the largest mean attention, largest first."""
    a, b = np.triu_indices(matrix.shape[0])
    vals = matrix[a, b]
    ok = np.isfinite(vals)
    order = np.argsort(-vals[ok], kind="stable")[:n]
    return [(int(a[ok][i]), int(b[ok][i]), float(vals[ok][i])) for i in order]
