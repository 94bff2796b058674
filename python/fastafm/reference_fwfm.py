"""Float64 NumPy reference of FwFM (Pan et al., WWW 2018), the oracle of the core's field-weighted kernels.

It implements docs/model.md's "FwFM" section literally, pair by pair (O(nnz²·k) a row, not the core's
O(nnz·k + F²·k) field sums), so that the tests check the core's regrouping against the definition:

    y = w0 + Σ_r w[i_r] x_r + p · (d ⊙ q),   q = Σ_{r<s} R[F(i_r), F(i_s)] · V[i_r] ⊙ V[i_s] · x_r x_s   (p = 1)

R is read in its upper triangle (R[min(f, g), max(f, g)]), and its gradient is given in both triangles (the
same value), as the core writes it. The objective is the one of docs/model.md (summed weighted loss, lazy L2 and
frequency L2 on the touched rows of V and w; no L2 on R). Like fastafm.reference, only NumPy is imported.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["forward", "objective", "gradients"]


def _csr(X):
    return np.asarray(X.indptr, np.int64), np.asarray(X.indices, np.int64), np.asarray(X.data, np.float64)


def _r(R, f, g):
    lo, hi = np.minimum(f, g), np.maximum(f, g)
    return R[lo, hi]


def _row_pairs(params: dict, fields, idx, val, d):
    """The row's pairs (r < s in storage order): ends, field weights, x_r x_s, and q."""
    m = idx.shape[0]
    r, s = np.triu_indices(m, k=1)
    f = np.asarray(fields, np.int64)[idx]
    rw = _r(np.asarray(params["R"], np.float64), f[r], f[s])
    xx = val[r] * val[s]
    V = np.asarray(params["V"], np.float64)
    e = V[idx[r]] * V[idx[s]] * (rw * xx)[:, None]          # (P, k)
    return r, s, f, rw, xx, e.sum(axis=0) if m >= 2 else np.zeros(V.shape[1])


def _dropout(dropout_mask, n_rows: int, k: int) -> np.ndarray:
    return np.ones((n_rows, k)) if dropout_mask is None else np.asarray(dropout_mask, np.float64)


def forward(params: dict, fields, X, dropout_mask=None) -> np.ndarray:
    """Model output of every row (float64). params: w0, w, V, R (p is 1); fields: the field of every feature."""
    indptr, indices, data = _csr(X)
    n = indptr.shape[0] - 1
    d = _dropout(dropout_mask, n, np.asarray(params["V"]).shape[1])
    out = np.empty(n)
    w = np.asarray(params["w"], np.float64)
    for i in range(n):
        idx, val = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
        q = _row_pairs(params, fields, idx, val, d[i])[-1]
        out[i] = float(np.asarray(params["w0"]).ravel()[0]) + float(w[idx] @ val) + float(d[i] @ q)
    return out


def _loss_and_grad(y, t, loss):
    if loss == "squared":
        return 0.5 * (y - t) ** 2, y - t
    z = -t * y
    return np.logaddexp(0.0, z), -t / (1.0 + np.exp(-z))


def _targets(y, loss):
    t = np.asarray(y, np.float64)
    return np.where(t > 0, 1.0, -1.0) if loss == "logistic" else t


def _touched_l2(indices, indptr, weight, n_features, l2, frequency_l2, feature_counts):
    keep = np.repeat(weight > 0, np.diff(indptr))
    ids = indices[keep]
    touched = np.unique(ids)
    lam = np.full(touched.shape[0], float(l2))
    if frequency_l2 > 0:
        c = np.bincount(ids, minlength=n_features)[touched].astype(np.float64)
        nn = np.maximum(np.asarray(feature_counts, np.float64)[touched], c)
        lam += float(frequency_l2) * c / (nn * nn)
    return touched, lam


def objective(params: dict, fields, X, y, loss: str = "squared", l2: float = 0.0, dropout_mask=None,
              sample_weight=None, frequency_l2: float = 0.0, feature_counts=None) -> float:
    """J(B) of docs/model.md for FwFM: Σ ω ℓ + Σ_{i∈T(B)} λ_i/2 (||V[i]||² + w[i]²)."""
    return gradients(params, fields, X, y, loss, l2, dropout_mask, sample_weight, frequency_l2, feature_counts)[0]


def gradients(params: dict, fields, X, y, loss: str = "squared", l2: float = 0.0, dropout_mask=None,
              sample_weight=None, frequency_l2: float = 0.0, feature_counts=None,
              ) -> tuple[float, dict]:
    """J(B) and its gradient {w0, w, V, R} (w and V dense, R in both triangles)."""
    indptr, indices, data = _csr(X)
    n = indptr.shape[0] - 1
    V = np.asarray(params["V"], np.float64)
    w = np.asarray(params["w"], np.float64)
    R = np.asarray(params["R"], np.float64)
    k = V.shape[1]
    t = _targets(y, loss)
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    d = _dropout(dropout_mask, n, k)
    y_pred = forward(params, fields, X, dropout_mask)
    G: dict = {"w0": 0.0, "w": np.zeros_like(w), "V": np.zeros_like(V), "R": np.zeros_like(R)}
    total = 0.0
    for i in range(n):
        idx, val = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
        l_i, g = _loss_and_grad(y_pred[i], t[i], loss)
        total += float(weight[i] * l_i)
        g = float(weight[i] * g)
        G["w0"] += g
        np.add.at(G["w"], idx, g * val)
        if idx.shape[0] < 2:
            continue
        c = g * d[i]                                        # ∂ℓ/∂q (p = 1)
        r, s, f, rw, xx, _ = _row_pairs(params, fields, idx, val, d[i])
        # ∂/∂R[f, g] of each pair: c · V_r ⊙ V_s x_r x_s, into the upper entry and mirrored
        dr = (V[idx[r]] * V[idx[s]] * xx[:, None]) @ c
        lo, hi = np.minimum(f[r], f[s]), np.maximum(f[r], f[s])
        np.add.at(G["R"], (lo, hi), dr)
        off = lo != hi
        np.add.at(G["R"], (hi[off], lo[off]), dr[off])
        coef = (rw * xx)[:, None] * c                       # (P, k)
        np.add.at(G["V"], idx[r], coef * V[idx[s]])
        np.add.at(G["V"], idx[s], coef * V[idx[r]])
    touched, lam = _touched_l2(indices, indptr, weight, w.shape[0], l2, frequency_l2, feature_counts)
    G["V"][touched] += lam[:, None] * V[touched]
    G["w"][touched] += lam * w[touched]
    reg = 0.5 * float(np.sum(lam * (np.sum(V[touched] ** 2, axis=1) + w[touched] ** 2)))
    return total + reg, G


def fields_of(n_features: int, fields: Optional[np.ndarray]) -> np.ndarray:
    """The field array the reference reads: `fields`, or one field for all features when None."""
    return np.zeros(n_features, np.int64) if fields is None else np.asarray(fields, np.int64)
