"""Reading what the attention learned: every row's pair weights, the mean attention per pair of fields, and the
field-pair tables of a field-aware model (field_pair_terms)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PairAttention(Sequence):
    """The attention weights of every row of a matrix, as returned by `model.pair_attention(X)`.

    `len(result)` is the number of rows; `result[r]` is `(pairs, weights)` for row r: pairs an int32 array
    (P_r, 2) of feature ids (i, j), weights the float32 a_ij (P_r,). The flat arrays are kept as
    `indptr` (int64, n_rows + 1), `pairs` (n_pairs, 2) and `weights` (n_pairs,): row r's pairs are
    `pairs[indptr[r]:indptr[r + 1]]` (iterating yields rows, so use the attributes for the flat arrays).
    """

    def __init__(self, indptr, pairs, weights):
        self.indptr, self.pairs, self.weights = indptr, pairs, weights

    def __len__(self) -> int:
        return int(self.indptr.shape[0]) - 1

    def __getitem__(self, r):
        if isinstance(r, slice):
            return [self[i] for i in range(*r.indices(len(self)))]
        n = len(self)
        r = int(r)
        if r < 0:
            r += n
        if not 0 <= r < n:
            raise IndexError(f"row {r} out of range for {n} rows")
        lo, hi = int(self.indptr[r]), int(self.indptr[r + 1])
        return self.pairs[lo:hi], self.weights[lo:hi]

    def top(self, r: int, n: int = 5) -> list[tuple[int, int, float]]:
        """Row r's n pairs with the largest weight, as (feature i, feature j, a_ij), largest first."""
        pairs, weights = self[r]
        order = np.argsort(-weights, kind="stable")[:n]
        return [(int(pairs[i, 0]), int(pairs[i, 1]), float(weights[i])) for i in order]

    def __repr__(self) -> str:
        return f"PairAttention({len(self)} rows, {self.weights.shape[0]} pairs)"


def _feature_fields(fields, n_features: int) -> np.ndarray:
    """Field of every feature id (-1: none), from a feature-id -> field map (an array of length n_features or a
    dict {feature id: field}) or from contiguous half-open id ranges [(start, stop), ...], one per field."""
    if isinstance(fields, dict):
        out = np.full(n_features, -1, dtype=np.int64)
        for fid, field in fields.items():
            if not 0 <= int(fid) < n_features:
                raise ValueError(f"fields maps the feature id {fid}, outside [0, {n_features})")
            if int(field) < 0:
                raise ValueError(f"fields maps feature {fid} to the negative field {field}")
            out[int(fid)] = int(field)
        return out
    arr = np.asarray(fields)
    if arr.ndim == 2 and arr.shape[1] == 2:  # contiguous id ranges, one per field
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError("field id ranges must be integers (start, stop)")
        out = np.full(n_features, -1, dtype=np.int64)
        for field, (start, stop) in enumerate(arr):
            start, stop = int(start), int(stop)
            if not 0 <= start < stop <= n_features:
                raise ValueError(f"field {field}: id range ({start}, {stop}) is not a non-empty half-open range "
                                 f"within [0, {n_features}]")
            if np.any(out[start:stop] >= 0):
                raise ValueError(f"field {field}: id range ({start}, {stop}) overlaps an earlier field")
            out[start:stop] = field
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
    fields : the field of every feature id, either as a map (an int array of length n_features, -1 for
        "no field", or a dict {feature id: field}) or as contiguous feature-id ranges, one (start, stop)
        per field, half-open as Python slices: field f is ids start_f .. stop_f - 1. Ids in no range are
        ignored. For example Frappe's user 0-956, item 957-5038, ... is [(0, 957), (957, 5039), ...].

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


def field_pair_terms(model) -> dict:
    """The field-pair tables a model learned, straight from its weights: {"weights": r, "logits": s} of a
    field-aware AFM (those of its field_aware mode), {"weights": R} of an FwFM; each (n_fields, n_fields),
    symmetric, read from the upper triangle as the model does. {} for the other models. A weight r > 1 (< 1)
    strengthens (weakens) a field pair's pooled products; a logit term s > 0 draws attention to the pair
    (e^s times the softmax odds)."""
    from ._compat import fitted_state

    params = fitted_state(model).params
    out = {}
    for key, name in (("weights", "R"), ("logits", "S")):
        if name in params:
            upper = np.triu(np.asarray(params[name], np.float64))
            out[key] = upper + np.triu(upper, 1).T
    return out


def top_field_pairs(matrix: np.ndarray, n: int = 5) -> list[tuple[int, int, float]]:
    """The n field pairs (a <= b) with the largest mean attention, largest first."""
    a, b = np.triu_indices(matrix.shape[0])
    vals = matrix[a, b]
    ok = np.isfinite(vals)
    order = np.argsort(-vals[ok], kind="stable")[:n]
    return [(int(a[ok][i]), int(b[ok][i]), float(vals[ok][i])) for i in order]
