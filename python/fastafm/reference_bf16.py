"""Float64 NumPy reference of AFM trained in precision="bf16", the oracle of the core's bf16 kernels.

bf16 mode changes one thing in docs/model.md's AFM: the inputs of the attention network's three GEMMs are
rounded to bfloat16 (round to nearest even of their float32 values, as vcvtneps2bf16 does), and the products
are summed in float32 by the core (here: exactly, in float64):

    Z  = bf(E) bf(W)ᵀ + b            (forward, E the pair products)
    dW = bf(δ)ᵀ bf(E)                (δ = dloss/dZ)
    dE = bf(δ) bf(W) + a c           (into the V gradients)

Everything else is float64 as in fastafm.reference. E is formed in float32 as the core forms it (g = v x per
non-zero, then e = g_r g_s, each one float32 multiply), so that bf(E) is bit for bit the core's GEMM input; δ is
float64 here, rounded to float32 before bf, and may round to the neighbouring bfloat16 where the core's float32 δ
lies on the other side of a rounding boundary (tests/test_bf16.py: the tolerance this leaves). Only squared and
logistic losses, attention pooling, no dropout, no L2 on V and w: what the kernel tests exercise. Like
fastafm.reference, only NumPy is imported.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

__all__ = ["bf16", "forward", "gradients"]


def bf16(x) -> np.ndarray:
    """float32(x) rounded to nearest even bfloat16 (NaN kept quiet), as float64."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    r = np.where(nan, u | 0x00400000, r) & 0xFFFF0000
    return r.astype(np.uint32).view(np.float32).astype(np.float64)


def _rows(params: dict, X):
    indptr, indices, data = (np.asarray(X.indptr, np.int64), np.asarray(X.indices, np.int64),
                             np.asarray(X.data, np.float32))
    V32 = np.asarray(params["V"], np.float32)
    W = np.asarray(params["W"], np.float64)
    Wb = bf16(params["W"])
    b, h = np.asarray(params["b"], np.float64), np.asarray(params["h"], np.float64)
    for i in range(len(indptr) - 1):
        idx, val = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
        r, s = np.triu_indices(idx.shape[0], k=1)
        g = V32[idx] * val[:, None]                       # float32, as gather_rows
        E = (g[r] * g[s]).astype(np.float64)              # float32 products, as build_pairs
        row = {"idx": idx, "val": val.astype(np.float64), "r": r, "s": s, "E": E}
        if E.shape[0]:
            Eb = bf16(E)
            Z = Eb @ Wb.T + b
            sc = np.maximum(Z, 0.0) @ h
            ex = np.exp(sc - sc.max())
            a = ex / ex.sum()
            row.update(Eb=Eb, Z=Z, a=a, q=a @ E)
        else:
            row["q"] = np.zeros(V32.shape[1])
        yield i, row, W, Wb


def _output(params: dict, row: dict) -> float:
    w = np.asarray(params["w"], np.float64)
    return (float(np.asarray(params["w0"], np.float64).reshape(-1)[0]) + float(w[row["idx"]] @ row["val"])
            + float(np.asarray(params["p"], np.float64) @ row["q"]))


def forward(params: dict, X) -> np.ndarray:
    """y of every row of X (CSR) for the parameter dict `params` (the core's names: w0, w, V, W, b, h, p)."""
    out = np.empty(X.shape[0])
    for i, row, _, _ in _rows(params, X):
        out[i] = _output(params, row)
    return out


def _loss_grad(y_hat: float, y: float, loss: str):
    if loss == "squared":
        return 0.5 * (y_hat - y) ** 2, y_hat - y
    t = 1.0 if y > 0 else -1.0                            # labels as the core takes them: -1 / +1
    z = -t * y_hat
    return float(np.logaddexp(0.0, z)), float(-t / (1.0 + np.exp(-z)))


def gradients(params: dict, X, y, loss: str = "squared", attention_l2: float = 0.0):
    """(J, grads): the batch objective over all rows of X (summed loss + attention_l2/2 ‖W‖²) and its gradient,
    a dict of the parameters' names, V and w dense (zero outside the rows' features)."""
    V = np.asarray(params["V"], np.float64)
    p, h = np.asarray(params["p"], np.float64), np.asarray(params["h"], np.float64)
    G: Dict[str, Any] = {"w0": 0.0, "w": np.zeros(V.shape[0]), "V": np.zeros_like(V), "W": np.zeros(np.shape(params["W"])),
         "b": np.zeros(h.shape), "h": np.zeros(h.shape), "p": np.zeros(p.shape)}
    J = 0.0
    W = np.asarray(params["W"], np.float64)
    for i, row, _, Wb in _rows(params, X):
        l_i, g = _loss_grad(_output(params, row), float(y[i]), loss)
        J += l_i
        c = g * p
        G["w0"] += g
        G["p"] += g * row["q"]
        np.add.at(G["w"], row["idx"], g * row["val"])
        if not row["E"].shape[0]:
            continue
        E, a, Z = row["E"], row["a"], row["Z"]
        ds = a * (E @ c - c @ row["q"])
        G["h"] += np.maximum(Z, 0.0).T @ ds
        delta = ds[:, None] * h * (Z > 0)
        db = bf16(delta)
        G["W"] += db.T @ row["Eb"]
        G["b"] += delta.sum(axis=0)
        dE = db @ Wb + a[:, None] * c
        ir, is_ = row["idx"][row["r"]], row["idx"][row["s"]]
        xx = row["val"][row["r"]] * row["val"][row["s"]]
        np.add.at(G["V"], ir, dE * V[is_] * xx[:, None])
        np.add.at(G["V"], is_, dE * V[ir] * xx[:, None])
    G["W"] += attention_l2 * W
    return J + 0.5 * attention_l2 * float(np.sum(W * W)), G
