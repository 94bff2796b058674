"""Exact additive explanations of AFM and FM predictions (`model.explain(X)`).

Both models are sums of a linear part and pair terms (docs/model.md):

    y(x) = w0 + Σ_r w[i_r] x_r + Σ_{r<s} a_rs · p·(V[i_r] ⊙ V[i_s]) x_r x_s

(FM: a_rs = 1, p = 1). So the explanation is exact, not sampled: the base value is w0 (plus a classifier's
log(negative_sampling_rate)), feature i gets its linear terms w[i] x plus half of every pair term it is in,
and a row's values sum to the raw output y(x) (a classifier's `decision_function`, a squared-loss regressor's `predict`) up to float32 rounding. The per-pair terms (and the attention
a_rs) are kept, so a row's contribution can be read per pair or summed per pair of fields.

The attention weights come from the core (`_core.pair_attention`, the kernels predict uses); the rest is
vectorised NumPy over all the pairs of a block of rows.
"""
from __future__ import annotations

import json

import importlib
from typing import Optional

import numpy as np
import scipy.sparse as sp

from . import _core
from .data.validation import check_memory, csr_arrays
from .training.state import TrainingState

#: Above this many (row, feature) cells, `values` and `data` are SciPy CSR matrices instead of dense arrays.
DENSE_CELLS = 1 << 24
_BLOCK_CELLS = 1 << 21  # rows of one length whose embeddings are gathered at once: about this many floats


class Explanation:
    """The explanation of the rows of X, in SHAP's layout (`shap.Explanation` takes its attributes).

    Attributes
    ----------
    values : (n_rows, n_features) float64 array (a SciPy CSR matrix above DENSE_CELLS cells): each feature's
        contribution to the row's raw output (its linear term plus half of each pair term it is in).
    base_values : (n_rows,) float64: w0 (plus log(negative_sampling_rate) for a classifier trained on
        downsampled negatives). `base_values + values.sum(axis=1)` is the raw output y(x).
    data : the feature values of X (dense or CSR like `values`).
    feature_names : list of str or None.
    pair_indptr, pairs, pair_values, pair_weights : every pair's term: row r's pairs are
        `pair_indptr[r]:pair_indptr[r+1]`, `pairs` their (feature i, feature j) ids (r < s in storage order),
        `pair_values` the term a_ij p·(v_i ⊙ v_j) x_i x_j, `pair_weights` a_ij (all 1 for FM; times the field
        pair's weight r of FwFM and of field-aware AFM's R); None when made with pairs=False.
    linear_values : (n_rows,) the linear part Σ w x of each row; `pair_values` summed over a row is the rest.
    """

    def __init__(self, values, base_values, data, feature_names, pair_indptr, pairs, pair_values, pair_weights,
                 linear_values, fields=None, field_names=None):
        self.values, self.base_values, self._data = values, base_values, data
        self.feature_names = feature_names
        self.pair_indptr, self.pairs, self.pair_values, self.pair_weights = pair_indptr, pairs, pair_values, pair_weights
        self.linear_values = linear_values
        self.fields, self.field_names = fields, field_names

    @property
    def data(self):
        """The feature values of X, dense or CSR like `values` (built on first access)."""
        return self._data.get() if isinstance(self._data, _LazyData) else self._data

    @property
    def shape(self) -> tuple:
        return tuple(self.values.shape)

    def __len__(self) -> int:
        return int(self.base_values.shape[0])

    def row(self, r: int) -> dict:
        """Row r as plain arrays: its non-zero feature contributions ('features', 'values', 'data'), the base
        value, the score, and its pairs ('pairs', 'pair_values', 'pair_weights')."""
        r = range(len(self))[r]
        vals = self.values[r]
        dense_vals = vals.toarray().ravel() if sp.issparse(vals) else np.asarray(vals)
        dense_data = self.data[r].toarray().ravel() if sp.issparse(self.data) else np.asarray(self.data[r])
        features = np.flatnonzero((dense_vals != 0) | (dense_data != 0))
        out = {"base_value": float(self.base_values[r]), "score": float(self.base_values[r] + dense_vals.sum()),
               "features": features, "values": dense_vals[features], "data": dense_data[features]}
        if self.pair_values is not None:
            lo, hi = int(self.pair_indptr[r]), int(self.pair_indptr[r + 1])
            out.update(pairs=self.pairs[lo:hi], pair_values=self.pair_values[lo:hi],
                       pair_weights=self.pair_weights[lo:hi])
        return out

    def _need_pairs(self) -> None:
        if self.pair_values is None:
            raise ValueError("this explanation was made with pairs=False: it holds no pair terms")

    def top_pairs(self, r: int, n: int = 5) -> list:
        """Row r's n pairs of largest |term|: (feature i, feature j, term, a_ij), largest first."""
        self._need_pairs()
        row = self.row(r)
        order = np.argsort(-np.abs(row["pair_values"]), kind="stable")[:n]
        return [(int(row["pairs"][i, 0]), int(row["pairs"][i, 1]), float(row["pair_values"][i]),
                 float(row["pair_weights"][i])) for i in order]

    def field_pairs(self, fields=None) -> np.ndarray:
        """Each row's pair terms summed per pair of fields: (n_rows, n_fields, n_fields), the sum of the pairs
        of fields (f, g) at [r, min(f, g), max(f, g)] (upper triangle; the matrix sums to the row's pair part).
        `fields`: as fastafm.field_pair_attention's (an id -> field map or id ranges); default: the fields
        given to explain. Pairs with a feature in no field (-1) are left out."""
        from .interpret import _feature_fields

        self._need_pairs()
        if fields is None:
            fields = self.fields
        if fields is None:
            raise ValueError("field_pairs needs `fields` (an id -> field map or id ranges), here or in explain()")
        field_of = _feature_fields(fields, self.values.shape[1])
        n_fields = int(field_of.max()) + 1 if field_of.size else 0
        fa, fb = field_of[self.pairs[:, 0]], field_of[self.pairs[:, 1]]
        keep = (fa >= 0) & (fb >= 0)
        rows = np.repeat(np.arange(len(self)), np.diff(self.pair_indptr))[keep]
        lo, hi = np.minimum(fa, fb)[keep], np.maximum(fa, fb)[keep]
        out = np.zeros((len(self), n_fields, n_fields))
        np.add.at(out, (rows, lo, hi), self.pair_values[keep])
        return out

    def to_shap(self):
        """A shap.Explanation of the same values (needs shap; dense values)."""
        shap = importlib.import_module("shap")  # optional: not a dependency

        dense = (lambda a: a.toarray() if sp.issparse(a) else a)
        return shap.Explanation(values=dense(self.values), base_values=self.base_values, data=dense(self.data),
                                feature_names=self.feature_names)

    def __repr__(self) -> str:
        n_pairs = "no" if self.pairs is None else self.pairs.shape[0]
        return f"Explanation({len(self)} rows, {self.values.shape[1]} features, {n_pairs} pairs)"


def _pair_terms(indptr, indices, values, nnz, pair_indptr, V, p, weights):
    """(first, second, terms): every pair's global non-zero positions (r < s in storage order, the order of
    the core's pair_attention) and its term a_rs p·(V[i_r] ⊙ V[i_s]) x_r x_s. Rows of equal length m go
    through one batched matmul of their (m, k) embedding blocks (the Gram matrix's upper triangle holds the
    pairs), a block of rows at a time, in float32 as the core computes (8x faster than float64 here; the terms
    agree with the float64 reference to float32 rounding, tests/test_explain.py)."""
    n_pairs = int(pair_indptr[-1])
    first = np.empty(n_pairs, dtype=np.int64)
    second = np.empty_like(first)
    terms = np.empty(n_pairs)
    k = V.shape[1]
    for m in np.unique(nnz[nnz >= 2]):
        m = int(m)
        group = np.flatnonzero(nnz == m)
        a, b = np.triu_indices(m, k=1)
        step = max(1, _BLOCK_CELLS // (m * max(m, k)))
        for lo in range(0, group.shape[0], step):
            rows = group[lo:lo + step]
            pos = indptr[rows][:, None] + np.arange(m)                      # (c, m) non-zero positions
            E = np.take(V, indices[pos], axis=0)                              # (c, m, k): v_i x_i
            E *= values[pos][..., None]
            gram = np.matmul(E * p, E.transpose(0, 2, 1))                   # (c, m, m): p·(e_i ⊙ e_j)
            out = (pair_indptr[rows][:, None] + np.arange(a.shape[0])).ravel()
            first[out], second[out] = pos[:, a].ravel(), pos[:, b].ravel()
            terms[out] = gram[:, a, b].ravel()
    terms *= weights
    return first, second, terms


def _canonical(m: sp.csr_matrix) -> sp.csr_matrix:
    """m with each row's repeated ids summed into one entry (a CSR row may repeat an id)."""
    if not m.has_canonical_format:
        m.sum_duplicates()
    return m


class _LazyData:
    """X's values as `data` (dense or CSR like `values`), built on first use: most callers never read it."""

    def __init__(self, x, indices, indptr, shape, dense: bool):
        self.args, self.dense, self.value = (x, indices, indptr, shape), dense, None

    def get(self):
        if self.value is None:
            x, indices, indptr, shape = self.args
            m = _canonical(sp.csr_matrix((x, indices.copy(), indptr.copy()), shape=shape))
            self.value = m.toarray() if self.dense else m
        return self.value


def _uniform_shares(X, indices, values, V, p) -> np.ndarray:
    """Under uniform pooling (FM), non-zero r's half of its pair terms in O(k) (not O(k) a pair):
    0.5 x_r p·(v_r ⊙ (S - v_r x_r)) = 0.5 x_r v_r·(p ⊙ S) - 0.5 x_r² v_r·(p ⊙ v_r), with S = Σ_s v_s x_s of its
    row (X @ V, repeated ids included)."""
    Vg = np.take(V, indices, axis=0)                                         # (nnz, k)
    S_of = np.repeat((X @ V) * p, np.diff(X.indptr), axis=0)                 # each non-zero's p ⊙ S
    x = values.astype(np.float64)
    cross = np.einsum("nk,nk->n", Vg, S_of).astype(np.float64)
    if V.shape[0] <= indices.shape[0]:  # v·(p ⊙ v) of every feature, then gathered
        own = np.take(np.einsum("fk,fk->f", V * p, V), indices).astype(np.float64)
    else:
        own = np.einsum("nk,nk->n", Vg * p, Vg).astype(np.float64)
    return 0.5 * x * (cross - x * own)


def explain(state: TrainingState, X, n_threads: int, offset: float = 0.0, feature_names=None, fields=None,
            field_names=None, dense: Optional[bool] = None, pairs: bool = True) -> Explanation:
    """The exact explanation of a fitted model's raw output y(x) on the checked CSR rows X (see Explanation;
    `model.explain(X)` calls it with the model's training state, threads and logit offset).

    feature_names: one name per feature id (e.g. a FieldEncoder's `feature_names_`); fields and field_names:
    the field of each feature id (e.g. its `fields_`, or id ranges), kept for `field_pairs`. dense: values as
    a dense array (True), a CSR matrix (False) or dense up to DENSE_CELLS cells (None). pairs=False (FM and
    uniform pooling only; AFM needs them for its attention): the feature values without the per-pair terms
    (pair attributes None), in O(k) a non-zero instead of a pair."""
    indptr, indices, values = csr_arrays(X)
    n_rows, n_features = X.shape
    nnz = np.diff(indptr)
    pair_indptr = np.concatenate([[0], np.cumsum(nnz * (nnz - 1) // 2)]).astype(np.int64)
    n_pairs = int(pair_indptr[-1])
    check_memory(n_pairs * 48 + int(indptr[-1]) * 24, f"the explanation of {n_pairs} feature pairs")
    params = state.params
    attention = state.spec.pooling == "attention"
    x64 = values.astype(np.float64)
    pair_ids: Optional[np.ndarray] = None
    pair_values: Optional[np.ndarray] = None
    weights: Optional[np.ndarray] = None
    per_nonzero = params["w"][indices].astype(np.float64) * x64
    rows_of = np.repeat(np.arange(n_rows), nnz)
    linear = np.bincount(rows_of, per_nonzero, minlength=n_rows)
    if pairs or attention or "R" in params:  # (the O(k) shares know no field-pair weights)
        if attention:  # (a field-aware AFM's field array is beside its parameters: core_params)
            weights = _core.pair_attention(state.core_params(), indptr, indices, values, pair_indptr, True,
                                           n_threads)
        else:
            weights = np.ones(n_pairs, dtype=np.float32)
        first, second, pair_values = _pair_terms(indptr, indices, values, nnz, pair_indptr, params["V"],
                                                 params["p"], weights)
        if "R" in params and state.fields is not None:  # FwFM, field-aware AFM: each pair's r in its weight
            f, g = state.fields[indices[first]], state.fields[indices[second]]
            r = params["R"][np.minimum(f, g), np.maximum(f, g)]
            pair_values = pair_values * r
            weights = (weights * r).astype(np.float32)
        per_nonzero += 0.5 * (np.bincount(first, pair_values, minlength=per_nonzero.shape[0])
                              + np.bincount(second, pair_values, minlength=per_nonzero.shape[0]))
        pair_ids = np.column_stack([indices[first], indices[second]]).astype(np.int32)
    else:  # uniform pooling without the pair terms: each non-zero's half share in O(k) (sum-of-squares identity)
        per_nonzero += _uniform_shares(X, indices, values, params["V"], params["p"])
    # Copies of the index arrays: summing repeated ids sorts them in place, and they may be X's own.
    contributions = _canonical(sp.csr_matrix((per_nonzero, indices.copy(), indptr.copy()), shape=(n_rows, n_features)))
    as_dense = bool(dense or (dense is None and n_rows * n_features <= DENSE_CELLS))
    if as_dense:
        contributions = contributions.toarray()
    base = np.full(n_rows, float(params["w0"][0]) + offset)
    if feature_names is not None:
        feature_names = [str(n) for n in feature_names]
        if len(feature_names) != n_features:
            raise ValueError(f"feature_names has {len(feature_names)} names, the model {n_features} features")
    data = _LazyData(x64, indices, indptr, (n_rows, n_features), as_dense)
    return Explanation(contributions, base, data, feature_names, None if pair_values is None else pair_indptr,
                       pair_ids, pair_values, weights,
                       linear, fields, None if field_names is None else [str(n) for n in field_names])


def explanation_lines(e, top: int = 0):
    """One JSON line per row of the Explanation e (what `fastafm explain` writes): its features and pairs by
    decreasing |contribution|, the `top` largest of each (0: all)."""
    for r in range(len(e)):
        row = e.row(r)
        order = np.argsort(-np.abs(row["values"]), kind="stable")[:top or None]
        pair_order = np.argsort(-np.abs(row["pair_values"]), kind="stable")[:top or None]
        yield json.dumps({
            "row": r, "base_value": row["base_value"], "score": row["score"],
            "features": [[int(row["features"][i]), float(row["data"][i]), float(row["values"][i])] for i in order],
            "pairs": [[int(row["pairs"][i, 0]), int(row["pairs"][i, 1]), float(row["pair_values"][i]),
                       float(row["pair_weights"][i])] for i in pair_order]}) + "\n"
