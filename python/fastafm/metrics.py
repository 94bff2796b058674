"""Evaluation metrics (NumPy/SciPy only, so the package works without scikit-learn).

Each takes an optional `sample_weight` (one finite weight >= 0 per row, not all 0): the weighted mean (RMSE,
MAE, log loss) or the weighted Mann-Whitney statistic (AUC), as scikit-learn's metrics weigh rows.
"""
from __future__ import annotations

import numpy as np

from .training.weights import check_sample_weight


def _weights(sample_weight, n: int) -> np.ndarray | None:
    w = check_sample_weight(sample_weight, n)
    return None if w is None else w.astype(np.float64)


def rmse(y_true, y_pred, clip: tuple[float, float] | None = None, sample_weight=None) -> float:
    """Root mean squared error; with `clip=(lo, hi)` predictions are clipped first, as the AFM paper's code
    clips to the training label range."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if clip is not None:
        y_pred = np.clip(y_pred, clip[0], clip[1])
    return float(np.sqrt(np.average((y_true - y_pred) ** 2, weights=_weights(sample_weight, y_true.shape[0]))))


def mae(y_true, y_pred, sample_weight=None) -> float:
    """Mean absolute error."""
    err = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))
    return float(np.average(err, weights=_weights(sample_weight, err.shape[0])))


def log_loss(y_true01, proba, eps: float = 1e-12, sample_weight=None) -> float:
    """Mean binary cross-entropy; y_true01 in {0, 1}, proba = P(y = 1)."""
    y = np.asarray(y_true01, dtype=np.float64)
    p = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0 - eps)
    return float(-np.average(y * np.log(p) + (1.0 - y) * np.log1p(-p), weights=_weights(sample_weight, y.shape[0])))


def roc_auc(y_true01, score, sample_weight=None) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half; with weights each pair of a
    positive and a negative row counts the product of their weights); NaN with a single class (or no weight on
    one)."""
    y = np.asarray(y_true01).astype(bool)
    w = _weights(sample_weight, y.shape[0])
    if w is None:
        n_pos = int(y.sum())
        n_neg = y.size - n_pos
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        from scipy.stats import rankdata  # here, not at import: scipy.stats costs ~0.5 s to import

        ranks = rankdata(np.asarray(score, dtype=np.float64))
        return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    s = np.asarray(score, dtype=np.float64)
    w_pos, w_neg = np.where(y, w, 0.0), np.where(y, 0.0, w)
    total_pos, total_neg = float(w_pos.sum()), float(w_neg.sum())
    if total_pos == 0 or total_neg == 0:
        return float("nan")
    # Per distinct score (ascending): positives there beat the negative weight below and tie half of its own.
    _, group = np.unique(s, return_inverse=True)
    pos_g = np.bincount(group, weights=w_pos)
    neg_g = np.bincount(group, weights=w_neg)
    neg_below = np.cumsum(neg_g) - neg_g
    return float(np.sum(pos_g * (neg_below + 0.5 * neg_g)) / (total_pos * total_neg))
