"""Float64 NumPy reference of field-aware AFM (docs/model.md, "Field-aware AFM"), the oracle of the core's
field-pair terms in the attention kernels. Pair by pair, from the definition:

    e_rs = V[i_r] ⊙ V[i_s] x_r x_s,   a'_rs = h · ReLU(W e_rs + b) + S[F(i_r), F(i_s)],   a = softmax_rs(a')
    y    = w0 + Σ_r w[i_r] x_r + p · (d ⊙ Σ_{r<s} a_rs R[F(i_r), F(i_s)] e_rs)

R (field-pair weights on the pooled pairs) and S (field-pair terms in the attention logits) are each optional
(absent: R = 1, S = 0, plain AFM), read in their upper triangles, and their gradients are given in both triangles
(the same value), as the core writes them. The objective is docs/model.md's (summed weighted loss, attention L2
on W once, lazy L2 and frequency L2 on the touched rows of V and w; no L2 on R or S). Only NumPy is imported
(self-contained: the package imports no oracle but at its root).
"""
from __future__ import annotations

import numpy as np

__all__ = ["forward", "objective", "gradients"]


def _csr(X):
    return np.asarray(X.indptr, np.int64), np.asarray(X.indices, np.int64), np.asarray(X.data, np.float64)


def _f64(params: dict) -> dict:
    return {name: np.asarray(a, np.float64) for name, a in params.items()}


def _row(P: dict, fields, idx, val):
    """Everything of one row's pairs: ends r, s, field-pair ends (lo, hi), e, z, a, the pairs' r and q."""
    m = idx.shape[0]
    r, s = np.triu_indices(m, k=1)
    f = np.asarray(fields, np.int64)[idx]
    lo, hi = np.minimum(f[r], f[s]), np.maximum(f[r], f[s])
    V = P["V"]
    e = V[idx[r]] * V[idx[s]] * (val[r] * val[s])[:, None]      # (n, k)
    z = e @ P["W"].T + P["b"]                                    # (n, t)
    score = np.maximum(z, 0.0) @ P["h"]
    if "S" in P:
        score = score + P["S"][lo, hi]
    a = np.exp(score - score.max()) if score.size else score
    a = a / a.sum() if score.size else a
    rw = P["R"][lo, hi] if "R" in P else np.ones(r.shape[0])
    q = (a * rw) @ e if m >= 2 else np.zeros(V.shape[1])
    return r, s, lo, hi, e, z, a, rw, q


def _dropout(mask, n: int, k: int) -> np.ndarray:
    return np.ones((n, k)) if mask is None else np.asarray(mask, np.float64)


def forward(params: dict, fields, X, dropout_mask=None) -> np.ndarray:
    """Model output of every row (float64). params: AFM's seven and R and/or S; fields: each feature's field."""
    P = _f64(params)
    indptr, indices, data = _csr(X)
    n = indptr.shape[0] - 1
    d = _dropout(dropout_mask, n, P["V"].shape[1])
    out = np.empty(n)
    for i in range(n):
        idx, val = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
        q = _row(P, fields, idx, val)[-1]
        out[i] = P["w0"].ravel()[0] + P["w"][idx] @ val + P["p"] @ (d[i] * q)
    return out


def _loss_and_grad(y, t, loss):
    if loss == "squared":
        return 0.5 * (y - t) ** 2, y - t
    z = -t * y
    return np.logaddexp(0.0, z), -t / (1.0 + np.exp(-z))


def _add_sym(G, lo, hi, v):
    """v into the upper entries (lo, hi) and mirrored into the lower ones."""
    np.add.at(G, (lo, hi), v)
    off = lo != hi
    np.add.at(G, (hi[off], lo[off]), v[off])


def objective(params: dict, fields, X, y, loss: str = "squared", **kw) -> float:
    """J(B) of docs/model.md for field-aware AFM (the keywords of `gradients`)."""
    return gradients(params, fields, X, y, loss, **kw)[0]


def gradients(params: dict, fields, X, y, loss: str = "squared", attention_l2: float = 0.0, l2: float = 0.0,
              dropout_mask=None, sample_weight=None, frequency_l2: float = 0.0, feature_counts=None,
              ) -> tuple[float, dict]:
    """J(B) and its gradient by parameter name (w and V dense; R and S in both triangles, where given)."""
    P = _f64(params)
    indptr, indices, data = _csr(X)
    n = indptr.shape[0] - 1
    V, w = P["V"], P["w"]
    k = V.shape[1]
    t = np.asarray(y, np.float64)
    t = np.where(t > 0, 1.0, -1.0) if loss == "logistic" else t
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    d = _dropout(dropout_mask, n, k)
    G = {name: np.zeros_like(a) for name, a in P.items()}
    total = 0.0
    for i in range(n):
        idx, val = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
        r, s, lo, hi, e, z, a, rw, q = _row(P, fields, idx, val)
        y_i = P["w0"].ravel()[0] + w[idx] @ val + P["p"] @ (d[i] * q)
        l_i, g = _loss_and_grad(y_i, t[i], loss)
        total += float(weight[i] * l_i)
        g = float(weight[i] * g)
        G["w0"] += g
        np.add.at(G["w"], idx, g * val)
        G["p"] += g * d[i] * q
        if idx.shape[0] < 2:
            continue
        c = g * P["p"] * d[i]                                    # ∂ℓ/∂q
        gamma = e @ c                                           # ∂ℓ/∂(r e) per pair
        if "R" in P:
            _add_sym(G["R"], lo, hi, a * gamma)
        ds = a * (rw * gamma - c @ q)                           # softmax backward
        if "S" in P:
            _add_sym(G["S"], lo, hi, ds)
        relu = np.maximum(z, 0.0)
        G["h"] += ds @ relu
        delta = ds[:, None] * P["h"] * (z > 0)                  # (n, t)
        G["W"] += delta.T @ e
        G["b"] += delta.sum(axis=0)
        de = delta @ P["W"] + (a * rw)[:, None] * c             # (n, k)
        xx = (val[r] * val[s])[:, None]
        np.add.at(G["V"], idx[r], de * V[idx[s]] * xx)
        np.add.at(G["V"], idx[s], de * V[idx[r]] * xx)
    keep = np.repeat(weight > 0, np.diff(indptr))
    ids = indices[keep]
    touched = np.unique(ids)
    lam = np.full(touched.shape[0], float(l2))
    if frequency_l2 > 0:
        cnt = np.bincount(ids, minlength=w.shape[0])[touched].astype(np.float64)
        nn = np.maximum(np.asarray(feature_counts, np.float64)[touched], cnt)
        lam += float(frequency_l2) * cnt / (nn * nn)
    G["V"][touched] += lam[:, None] * V[touched]
    G["w"][touched] += lam * w[touched]
    G["W"] += attention_l2 * P["W"]
    reg = 0.5 * float(np.sum(lam * (np.sum(V[touched] ** 2, axis=1) + w[touched] ** 2)))
    reg += 0.5 * attention_l2 * float(np.sum(P["W"] ** 2))
    return total + reg, G
