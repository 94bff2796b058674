"""Float64 pure-NumPy reference implementation of the AFM model.

This module implements ``docs/model.md`` literally: the forward pass, the
mini-batch objective ``J(B)``, its analytic gradients and the Adagrad / SGD /
lazy Adam steps.  It is written to be read and checked, not to be fast: rows are
processed one at a time, with the pair computations of a row vectorised.  It
is the test oracle for the C++ core and the baseline of the benchmarks.

Only NumPy (and the package's parameter names and initialisation, fastafm.models.params) is imported.  Inputs ``X`` may be any CSR-like object exposing
``indptr``, ``indices``, ``data`` and ``shape`` (e.g.
``scipy.sparse.csr_matrix`` or ``csr_array``).  Every stored entry is its own
non-zero: indices need not be sorted or unique within a row, and explicit
zeros are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import numpy as np

__all__ = ["Params", "PARAM_NAMES", "ADAGRAD_INITIAL_ACCUMULATOR", "init_params", "init_accumulators", "forward",
           "pair_attention", "pair_contributions", "objective", "gradients", "touched_features", "touched_l2",
           "adagrad_step", "sgd_step", "ADAM_BETA1", "ADAM_BETA2", "ADAM_EPS", "AdamState", "init_adam_state",
           "adam_step"]

# The names, constants and initialisation live with the package's model definition; the oracle re-exports them.
from .models.params import (ADAGRAD_INITIAL_ACCUMULATOR, ADAM_BETA1, ADAM_BETA2, ADAM_EPS,  # noqa: E402
                            PARAM_NAMES, init_arrays)

_LOSSES = ("squared", "logistic", "rate")


# --------------------------------------------------------------------------- #
# Parameters
# --------------------------------------------------------------------------- #
@dataclass
class Params:
    """AFM parameters (or gradients / accumulators of the same shapes).

    Attributes
    ----------
    w0 : float
        Global bias.
    w : ndarray of shape (n_features,)
        Linear weights.
    V : ndarray of shape (n_features, k)
        Feature embeddings.
    W : ndarray of shape (t, k)
        Attention network weights.
    b : ndarray of shape (t,)
        Attention network bias.
    h : ndarray of shape (t,)
        Attention projection vector.
    p : ndarray of shape (k,)
        Prediction-layer weights.
    """

    w0: float
    w: np.ndarray
    V: np.ndarray
    W: np.ndarray
    b: np.ndarray
    h: np.ndarray
    p: np.ndarray

    def __post_init__(self):
        # Normalise to float64 so that every computation here is float64.
        self.w0 = float(self.w0)
        for name in PARAM_NAMES[1:]:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))

    @property
    def n_features(self) -> int:
        return self.V.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.V.shape[1]

    @property
    def attention_dim(self) -> int:
        return self.W.shape[0]

    def copy(self) -> "Params":
        """Deep copy (arrays are copied)."""
        return Params(self.w0, *(getattr(self, n).copy() for n in PARAM_NAMES[1:]))

    def items(self) -> Iterator[Tuple[str, Union[float, np.ndarray]]]:
        """Iterate over ``(name, value)`` in ``PARAM_NAMES`` order."""
        for name in PARAM_NAMES:
            yield name, getattr(self, name)

    def to_flat(self) -> np.ndarray:
        """All parameters concatenated into one float64 vector (``PARAM_NAMES`` order)."""
        return np.concatenate(
            [np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel() for _, v in self.items()]
        )

    def from_flat(self, flat: np.ndarray) -> "Params":
        """New ``Params`` with the shapes of ``self`` and the values of ``flat``."""
        flat = np.asarray(flat, dtype=np.float64)
        out = {}
        pos = 0
        for name, value in self.items():
            shape = np.shape(value)
            size = int(np.prod(shape)) if shape else 1
            chunk = flat[pos:pos + size]
            out[name] = float(chunk[0]) if name == "w0" else chunk.reshape(shape).copy()
            pos += size
        if pos != flat.size:
            raise ValueError(f"flat vector has {flat.size} entries, expected {pos}")
        return Params(**out)


def init_params(n_features, embedding_dim, attention_dim, init_std=0.01, rng=None) -> Params:
    """Initialise parameters as in ``docs/model.md`` (the authors' code).

    Parameters
    ----------
    n_features : int
        Number of feature ids.
    embedding_dim : int
        ``k``.
    attention_dim : int
        ``t``.
    init_std : float, default=0.01
        Standard deviation of the embeddings ``V``.
    rng : numpy.random.Generator, int or None
        Random generator or seed.

    Returns
    -------
    Params
        ``w0 = 0``, ``w = 0``, ``V ~ N(0, init_std²)``, ``W, b ~ N(0, 2/(t+k))``,
        ``h ~ N(0, 1)``, ``p = 1``.
    """
    arrays = init_arrays(n_features, embedding_dim, attention_dim, init_std, rng)
    return Params(0.0, *(arrays[name] for name in PARAM_NAMES[1:]))


def init_accumulators(params: Params) -> Params:
    """Adagrad accumulators of the shapes of ``params``, all ``ADAGRAD_INITIAL_ACCUMULATOR``."""
    return Params(
        ADAGRAD_INITIAL_ACCUMULATOR,
        *(np.full(getattr(params, n).shape, ADAGRAD_INITIAL_ACCUMULATOR) for n in PARAM_NAMES[1:]),
    )


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _csr_arrays(X, params: Optional[Params] = None):
    """Return ``(indptr int64, indices int64, data float64, n_rows)`` of a CSR-like ``X``."""
    if not all(hasattr(X, a) for a in ("indptr", "indices", "data", "shape")):
        raise TypeError("X must be CSR-like (attributes indptr, indices, data, shape)")
    indptr = np.asarray(X.indptr, dtype=np.int64)
    indices = np.asarray(X.indices, dtype=np.int64)
    data = np.asarray(X.data, dtype=np.float64)
    n_rows = int(X.shape[0])
    if indptr.shape != (n_rows + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError("X.indptr is not a valid CSR indptr")
    nnz = int(indptr[-1])
    # Only the first indptr[-1] entries are part of the matrix.
    indices, data = indices[:nnz], data[:nnz]
    if indices.shape[0] != nnz or data.shape[0] != nnz:
        raise ValueError("X.indices / X.data are shorter than indptr[-1]")
    if params is not None and nnz and (indices.min() < 0 or indices.max() >= params.n_features):
        raise ValueError("X contains feature ids outside [0, n_features)")
    return indptr, indices, data, n_rows


def _dropout_rows(dropout_mask, n_rows: int, k: int) -> np.ndarray:
    """``(n_rows, k)`` float64 mask; ``None`` means no dropout (all ones)."""
    if dropout_mask is None:
        return np.ones((n_rows, k))
    d = np.asarray(dropout_mask, dtype=np.float64)
    if d.shape != (n_rows, k):
        raise ValueError(f"dropout_mask must have shape {(n_rows, k)}, got {d.shape}")
    return d


def _targets(y, n_rows: int, loss: str) -> np.ndarray:
    """Labels as float64; for the logistic loss mapped to {-1, +1} (0 -> -1)."""
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if t.shape[0] != n_rows:
        raise ValueError(f"y has {t.shape[0]} entries, X has {n_rows} rows")
    if loss == "rate":  # aggregated rows: the positive rate c in [0, 1] (clicks / impressions)
        if not np.all((t >= 0) & (t <= 1)):
            raise ValueError("the rate loss needs targets in [0, 1]")
    elif loss == "logistic":
        if not np.all((t == -1) | (t == 0) | (t == 1)):
            raise ValueError("logistic loss needs labels in {-1, 0, +1} (0 is read as -1)")
        t = np.where(t > 0, 1.0, -1.0)
    return t


# --------------------------------------------------------------------------- #
# Numerics
# --------------------------------------------------------------------------- #
def _sigmoid(x):
    """Numerically stable logistic sigmoid (never evaluates exp of a positive number)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _loss_and_grad(y_pred, t, loss):
    """Per-row loss ``ℓ(y, t)`` and ``g = ∂ℓ/∂y``."""
    if loss == "squared":
        r = y_pred - t
        return 0.5 * r * r, r
    if loss == "rate":  # -(c log σ(y) + (1-c) log(1-σ(y))) = softplus(y) - c y; g = σ(y) - c
        return np.logaddexp(0.0, y_pred) - t * y_pred, _sigmoid(y_pred) - t
    # log(1 + exp(-t y)) without overflow; g = -t σ(-t y).
    m = -t * y_pred
    return np.logaddexp(0.0, m), -t * _sigmoid(m)


# --------------------------------------------------------------------------- #
# One row
# --------------------------------------------------------------------------- #
class _Row:
    """Forward quantities of one row, kept for the backward pass.

    ``r, s`` are the pair positions (``r < s``, storage order), ``E`` the
    pair-wise interactions ``e_rs`` (P, k), ``Z`` the attention
    pre-activations (P, t), ``U = ReLU(Z)``, ``a`` the pair weights and ``q``
    the pooled interaction (k,).
    """

    def __init__(self, params: Params, idx, val, attention: bool):
        m = idx.shape[0]
        k, t = params.embedding_dim, params.attention_dim
        self.idx, self.val = idx, val
        # triu_indices enumerates (0,1), (0,2), ..., (1,2), ...: all r < s in storage order.
        self.r, self.s = np.triu_indices(m, k=1)
        self.xx = val[self.r] * val[self.s]                                   # x_r x_s   (P,)
        self.E = params.V[idx[self.r]] * params.V[idx[self.s]] * self.xx[:, None]   # (P, k)
        n_pairs = self.E.shape[0]
        if attention and n_pairs:
            self.Z = self.E @ params.W.T + params.b                           # (P, t)
            self.U = np.maximum(self.Z, 0.0)
            scores = self.U @ params.h                                        # (P,)
            # Max-subtracted softmax: exp never overflows, the largest term is exp(0) = 1.
            ex = np.exp(scores - scores.max())
            self.a = ex / ex.sum()
        else:
            # No pairs, or uniform (FM-like) pooling with a_rs = 1.
            self.Z = np.zeros((n_pairs, t))
            self.U = np.zeros((n_pairs, t))
            self.a = np.ones(n_pairs)
        # For rows with < 2 non-zeros this is an empty sum: q = 0 exactly, no NaN.
        self.q = self.a @ self.E if n_pairs else np.zeros(k)


def _rows(params: Params, X, attention: bool):
    """Yield ``(row_index, _Row)`` for every row of ``X``."""
    indptr, indices, data, n_rows = _csr_arrays(X, params)
    for i in range(n_rows):
        lo, hi = indptr[i], indptr[i + 1]
        yield i, _Row(params, indices[lo:hi], data[lo:hi], attention)


def _predict_row(params: Params, row: _Row, d_row: np.ndarray) -> float:
    """``y = w0 + Σ_r w[i_r] x_r + p · (d ⊙ q)``."""
    return params.w0 + float(params.w[row.idx] @ row.val) + float(params.p @ (d_row * row.q))


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def forward(params: Params, X, attention: bool = True, dropout_mask=None) -> np.ndarray:
    """Predictions ``y`` of every row of ``X``.

    Parameters
    ----------
    params : Params
    X : CSR-like, shape (n_rows, n_features)
    attention : bool, default=True
        If False, pool the pairs uniformly (``a_rs = 1``).
    dropout_mask : ndarray of shape (n_rows, k) or None
        Factors ``d`` (0 or ``1/(1-rho)``) applied to the pooled interaction;
        None means no dropout (``d = 1``, prediction).

    Returns
    -------
    ndarray of shape (n_rows,), float64
    """
    n_rows = int(X.shape[0])
    d = _dropout_rows(dropout_mask, n_rows, params.embedding_dim)
    out = np.empty(n_rows)
    for i, row in _rows(params, X, attention):
        out[i] = _predict_row(params, row, d[i])
    return out


def pair_attention(params: Params, X, attention: bool = True):
    """Attention weights ``a_rs`` of every pair of every row.

    Parameters
    ----------
    params : Params
    X : CSR-like, shape (n_rows, n_features)
    attention : bool, default=True
        If False every weight is 1 (uniform pooling).

    Returns
    -------
    pair_indptr : ndarray of shape (n_rows + 1,), int64
        Pairs of row ``i`` are ``pair_indptr[i]:pair_indptr[i+1]``.
    pair_positions : ndarray of shape (total_pairs, 2), int64
        ``(r, s)``, ``r < s``, positions *within the row* in storage order.
    weights : ndarray of shape (total_pairs,), float64
        ``a_rs``; they sum to 1 over a row with at least two non-zeros
        (when ``attention`` is True).
    """
    n_rows = int(X.shape[0])
    pair_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    positions, weights = [], []
    for i, row in _rows(params, X, attention):
        pair_indptr[i + 1] = pair_indptr[i] + row.a.shape[0]
        positions.append(np.stack([row.r, row.s], axis=1).astype(np.int64))
        weights.append(row.a)
    if positions:
        pos = np.concatenate(positions).reshape(-1, 2)
        wts = np.concatenate(weights).astype(np.float64)
    else:
        pos, wts = np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return pair_indptr, pos, wts


def pair_contributions(params: Params, X, attention: bool = True):
    """Each pair's additive term of the output, ``a_rs · p·e_rs`` (their sum over a row is ``p·q``), as
    ``pair_attention``'s ``(pair_indptr, pair_positions, contributions)``: the exact explanation's pair part."""
    n_rows = int(X.shape[0])
    pair_indptr, positions, _ = pair_attention(params, X, attention)
    out = [row.a * (row.E @ params.p) for _, row in _rows(params, X, attention)]
    return pair_indptr, positions, np.concatenate(out) if n_rows else np.zeros(0)


def touched_features(X, sample_weight=None) -> np.ndarray:
    """``T(B)``: the sorted distinct feature ids stored in ``X`` (explicit zeros included), in the rows of
    positive weight when ``sample_weight`` is given (a row of weight 0 touches nothing)."""
    indptr, indices, _, n_rows = _csr_arrays(X)
    if sample_weight is not None:
        keep = np.repeat(_weights(sample_weight, n_rows) > 0, np.diff(indptr))
        indices = indices[keep]
    return np.unique(indices).astype(np.int64)


def _weights(sample_weight, n_rows: int) -> np.ndarray:
    """Per-row weights as float64 (all ones for None); finite and >= 0."""
    if sample_weight is None:
        return np.ones(n_rows)
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n_rows:
        raise ValueError(f"sample_weight has {w.shape[0]} entries, X has {n_rows} rows")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and >= 0")
    return w


def touched_l2(X, touched, l2: float, frequency_l2: float = 0.0, feature_counts=None,
               sample_weight=None) -> np.ndarray:
    """The L2 strength of each id of ``touched`` (= T(B)) in this batch: ``l2 + frequency_l2·c_iB / n_i²``,
    ``c_iB`` the id's stored occurrences in X (in rows of positive weight), ``n_i = max(feature_counts[i], c_iB)``
    (docs/model.md)."""
    lam = np.full(touched.shape[0], float(l2))
    if frequency_l2 > 0.0:
        if feature_counts is None:
            raise ValueError("frequency_l2 > 0 needs feature_counts")
        indptr, indices, _, n_rows = _csr_arrays(X)
        if sample_weight is not None:  # a row of weight 0 touches nothing (touched_features)
            indices = indices[np.repeat(_weights(sample_weight, n_rows) > 0, np.diff(indptr))]
        c = np.bincount(indices, minlength=int(X.shape[1]))[touched].astype(np.float64)
        n = np.maximum(np.asarray(feature_counts, dtype=np.float64)[touched], c)
        lam += float(frequency_l2) * c / (n * n)
    return lam


def _regularizer(params: Params, touched, attention_l2: float, lam) -> float:
    """``(attention_l2/2)·||W||² + Σ_{i∈T(B)} (lam_i/2)·(||V[i]||² + w[i]²)``, lam from `touched_l2`."""
    reg = 0.5 * attention_l2 * float(np.sum(params.W * params.W))
    reg += 0.5 * float(np.sum(lam * (np.sum(params.V[touched] ** 2, axis=1) + params.w[touched] ** 2)))
    return reg


def objective(params: Params, X, y, loss: str = "squared", attention: bool = True,
              attention_l2: float = 0.0, l2: float = 0.0, dropout_mask=None, sample_weight=None,
              frequency_l2: float = 0.0, feature_counts=None) -> float:
    """Mini-batch objective ``J(B)`` of ``docs/model.md``.

    The loss is summed (not averaged) over rows, each row's times its weight;
    the attention L2 term is added once; the embedding/linear L2 term covers
    only the touched features ``T(B)`` (of the rows with positive weight).

    Parameters
    ----------
    params : Params
    X : CSR-like, shape (n_rows, n_features)
    y : array-like of shape (n_rows,)
        Targets; for ``loss="logistic"`` labels in {-1, +1} (0 is read as -1).
    loss : {"squared", "logistic", "rate"}
        "rate": targets are rates c in [0, 1], the loss the expanded 0/1 rows' (docs/model.md).
    attention : bool, default=True
    attention_l2 : float, default=0.0
        ``λ`` on ``W``.
    l2 : float, default=0.0
        L2 on ``w`` and ``V`` rows in ``T(B)``.
    dropout_mask : ndarray of shape (n_rows, k) or None
    sample_weight : array-like of shape (n_rows,) or None
        Weight of each row's loss (finite, >= 0); None: all 1.
    frequency_l2 : float, default=0.0
        L2 on the rows in ``T(B)`` scaled by ``c_iB / n_i²`` (see `touched_l2`).
    feature_counts : array of shape (n_features,) or None
        ``n_i``: each feature's occurrences in the rows of the fit; needed when ``frequency_l2 > 0``.

    Returns
    -------
    float
    """
    n_rows = int(X.shape[0])
    t = _targets(y, n_rows, loss)
    w = _weights(sample_weight, n_rows)
    y_pred = forward(params, X, attention=attention, dropout_mask=dropout_mask)
    losses, _ = _loss_and_grad(y_pred, t, loss)
    touched = touched_features(X, None if sample_weight is None else w)
    lam = touched_l2(X, touched, l2, frequency_l2, feature_counts, sample_weight)
    return float(np.sum(w * losses)) + _regularizer(params, touched, attention_l2, lam)


def gradients(params: Params, X, y, loss: str = "squared", attention: bool = True,
              attention_l2: float = 0.0, l2: float = 0.0, dropout_mask=None, sample_weight=None,
              frequency_l2: float = 0.0, feature_counts=None):
    """Objective ``J(B)`` and its analytic gradient with respect to every parameter.

    Parameters are as for :func:`objective`.

    Returns
    -------
    J : float
    grads : Params
        Same shapes as ``params`` (``w0`` a float).  ``w`` and ``V`` are dense,
        with zeros in the rows not in ``T(B)``.
    """
    n_rows = int(X.shape[0])
    k = params.embedding_dim
    t = _targets(y, n_rows, loss)
    weight = _weights(sample_weight, n_rows)
    d = _dropout_rows(dropout_mask, n_rows, k)
    W, h, p, V = params.W, params.h, params.p, params.V

    G = Params(0.0, np.zeros_like(params.w), np.zeros_like(V), np.zeros_like(W),
               np.zeros_like(params.b), np.zeros_like(h), np.zeros_like(p))
    total_loss = 0.0
    for i, row in _rows(params, X, attention):
        y_hat = _predict_row(params, row, d[i])
        l_i, g = _loss_and_grad(np.float64(y_hat), t[i], loss)
        # The row's loss times its weight: every gradient below scales with g, so it carries the weight.
        total_loss += float(weight[i] * l_i)
        g = float(weight[i] * g)

        # Output layer and linear part.  np.add.at so repeated ids accumulate.
        c = g * p * d[i]                                   # ∂ℓ/∂q   (k,)
        G.p += g * d[i] * row.q
        G.w0 += g
        np.add.at(G.w, row.idx, g * row.val)

        if row.E.shape[0] == 0:
            continue                                       # no pairs: nothing reaches V, W, b, h

        if attention:
            # Softmax backward: ∂ℓ/∂a_rs = c·e_rs, ds_rs = a_rs (γ_rs − Σ a γ) and Σ a γ = c·q.
            gamma = row.E @ c                              # (P,)
            ds = row.a * (gamma - c @ row.q)
            G.h += row.U.T @ ds
            delta = ds[:, None] * h * (row.Z > 0)          # (P, t); ReLU'(0) taken as 0
            G.W += delta.T @ row.E
            G.b += delta.sum(axis=0)
            dE = delta @ W + row.a[:, None] * c            # (P, k)
        else:
            # a_rs = 1 is constant: the attention network receives no gradient.
            dE = np.broadcast_to(c, row.E.shape)

        # e_rs = V[i_r] ⊙ V[i_s] x_r x_s; both ends get their share (also when i_r == i_s).
        ir, is_ = row.idx[row.r], row.idx[row.s]
        np.add.at(G.V, ir, dE * V[is_] * row.xx[:, None])
        np.add.at(G.V, is_, dE * V[ir] * row.xx[:, None])

    touched = touched_features(X, sample_weight)
    lam = touched_l2(X, touched, l2, frequency_l2, feature_counts, sample_weight)
    G.W += attention_l2 * W
    G.V[touched] += lam[:, None] * V[touched]
    G.w[touched] += lam * params.w[touched]
    J = total_loss + _regularizer(params, touched, attention_l2, lam)
    return J, G


def _row_rule(name: str, touched):
    """Index to update: rows ``touched`` for the sparse ``w``/``V``, everything otherwise."""
    # np.unique: a touched row gets exactly one update even if listed twice.
    return np.unique(np.asarray(touched, dtype=np.int64)) if name in ("w", "V") else slice(None)


def adagrad_step(params: Params, accumulators: Params, grads: Params, touched, learning_rate) -> None:
    """One Adagrad step, in place on ``params`` and ``accumulators``.

    ``G ← G + g²;  θ ← θ − lr · g / sqrt(G)`` per coordinate.  Dense parameters
    are always updated; ``w`` and ``V`` only in the rows ``touched`` (``T(B)``).
    """
    lr = float(learning_rate)
    acc = accumulators.w0 + grads.w0 ** 2
    accumulators.w0 = acc
    params.w0 = params.w0 - lr * grads.w0 / np.sqrt(acc)
    for name in PARAM_NAMES[1:]:
        sel = _row_rule(name, touched)
        theta, A, g = getattr(params, name), getattr(accumulators, name), getattr(grads, name)
        A[sel] += g[sel] ** 2
        theta[sel] -= lr * g[sel] / np.sqrt(A[sel])
    params.w0 = float(params.w0)
    accumulators.w0 = float(accumulators.w0)


def sgd_step(params: Params, grads: Params, touched, learning_rate) -> None:
    """One SGD step ``θ ← θ − lr · g``, in place; ``w``/``V`` only in the rows ``touched``."""
    lr = float(learning_rate)
    params.w0 = float(params.w0 - lr * grads.w0)
    for name in PARAM_NAMES[1:]:
        sel = _row_rule(name, touched)
        theta, g = getattr(params, name), getattr(grads, name)
        theta[sel] -= lr * g[sel]


@dataclass
class AdamState:
    """Lazy Adam's state: first and second moments of every parameter (``Params`` of the same shapes), the
    step count of every row of ``V``/``w`` (``row_steps``, one per feature: a row of V and its w are always
    updated together) and the step count of the dense parameters (``step``)."""

    m: Params
    v: Params
    row_steps: np.ndarray
    step: int = 0


def init_adam_state(params: Params) -> AdamState:
    """Zero moments and step counts for ``params``."""
    zeros = Params(0.0, *(np.zeros(getattr(params, n).shape) for n in PARAM_NAMES[1:]))
    return AdamState(zeros, zeros.copy(), np.zeros(params.n_features), 0)


def _adam_update(theta, m, v, g, t, lr):
    """Adam on arrays of one step count ``t`` (a scalar or one per leading row), in place; returns the new
    (theta, m, v) for scalars."""
    m = ADAM_BETA1 * m + (1 - ADAM_BETA1) * g
    v = ADAM_BETA2 * v + (1 - ADAM_BETA2) * g ** 2
    m_hat = m / (1 - ADAM_BETA1 ** t)
    v_hat = v / (1 - ADAM_BETA2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + ADAM_EPS), m, v


def adam_step(params: Params, state: AdamState, grads: Params, touched, learning_rate) -> None:
    """One lazy Adam step, in place on ``params`` and ``state``.

    Dense parameters (w0, W, b, h, p): the batch's step count ``state.step`` advances by one and
    ``m ← β1 m + (1-β1) g;  v ← β2 v + (1-β2) g²;  θ ← θ − lr · m̂ / (sqrt(v̂) + ε)`` with
    ``m̂ = m / (1-β1^t)``, ``v̂ = v / (1-β2^t)``. Rows ``touched`` of ``w``/``V`` (``T(B)``): the same with
    each row's own count ``t_i = row_steps[i] + 1``; untouched rows, their moments and counts do not change
    (their moments are not decayed either: lazy, as TensorFlow's LazyAdam and PyTorch's SparseAdam).
    """
    lr = float(learning_rate)
    state.step += 1
    t = state.step
    w0, m0, v0 = _adam_update(params.w0, state.m.w0, state.v.w0, grads.w0, t, lr)
    params.w0, state.m.w0, state.v.w0 = float(w0), float(m0), float(v0)
    for name in ("W", "b", "h", "p"):
        theta, m, v = _adam_update(getattr(params, name), getattr(state.m, name), getattr(state.v, name),
                                   getattr(grads, name), t, lr)
        getattr(params, name)[...] = theta
        getattr(state.m, name)[...] = m
        getattr(state.v, name)[...] = v
    rows = _row_rule("V", touched)
    state.row_steps[rows] += 1
    t_rows = state.row_steps[rows]
    for name, t_sel in (("w", t_rows), ("V", t_rows[:, None])):
        theta, m, v = getattr(params, name), getattr(state.m, name), getattr(state.v, name)
        theta[rows], m[rows], v[rows] = _adam_update(theta[rows], m[rows], v[rows], getattr(grads, name)[rows],
                                                     t_sel, lr)
