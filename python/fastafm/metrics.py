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


def binary_entropy(rate: float) -> float:
    """H(c) = -(c log c + (1-c) log(1-c)) in nats: the log loss of always predicting the rate c itself."""
    c = float(rate)
    return 0.0 if c <= 0.0 or c >= 1.0 else float(-(c * np.log(c) + (1.0 - c) * np.log1p(-c)))


def normalized_entropy(y_true, proba, eps: float = 1e-12, sample_weight=None) -> float:
    """Normalized entropy (He et al., "Practical lessons from predicting clicks on ads at Facebook", 2014): the
    log loss over the entropy of the base rate, i.e. over the log loss of a constant prediction of the
    (weighted) mean of y. Below 1: better than the base rate; lower is better. y_true in {0, 1}, or rates in
    [0, 1] (clicks / impressions, weighted by impressions); infinite when the base rate is 0 or 1."""
    y = np.asarray(y_true, dtype=np.float64)
    base = float(np.average(y, weights=_weights(sample_weight, y.shape[0])))
    h = binary_entropy(base)
    loss = log_loss(y, proba, eps=eps, sample_weight=sample_weight)
    return float(loss / h) if h > 0 else float("inf")


def calibration_bins(y_true, proba, n_bins: int = 10, sample_weight=None):
    """(mean predicted probability, observed rate, total weight) of each of `n_bins` equal-width probability
    bins [0, 1/n), ..., [(n-1)/n, 1]; NaN means for empty bins. What expected_calibration_error and
    fastafm.plot.calibration use."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(proba, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"proba has {p.shape[0]} values but y_true has {y.shape[0]}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError("proba must hold probabilities in [0, 1]")
    w = _weights(sample_weight, y.shape[0])
    w = np.ones_like(y) if w is None else w
    b = np.minimum((p * n_bins).astype(np.int64), int(n_bins) - 1)
    total = np.bincount(b, weights=w, minlength=int(n_bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=w * p, minlength=int(n_bins)) / total
        rate = np.bincount(b, weights=w * y, minlength=int(n_bins)) / total
    return mean_p, rate, total


def expected_calibration_error(y_true, proba, n_bins: int = 10, sample_weight=None) -> float:
    """Expected calibration error: over `n_bins` equal-width bins of the predicted probability, the
    (weighted) share of rows in each bin times |observed rate - mean predicted probability| there, summed.
    0 for a perfectly calibrated model. y_true in {0, 1} or rates in [0, 1]."""
    mean_p, rate, total = calibration_bins(y_true, proba, n_bins, sample_weight)
    full = total > 0
    return float(np.sum(total[full] * np.abs(rate[full] - mean_p[full])) / np.sum(total[full]))
