"""Evaluation metrics (NumPy/SciPy only, so the package works without scikit-learn)."""
from __future__ import annotations

import numpy as np


def rmse(y_true, y_pred, clip: tuple[float, float] | None = None) -> float:
    """Root mean squared error; with `clip=(lo, hi)` predictions are clipped first, as the AFM paper's code
    clips to the training label range."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if clip is not None:
        y_pred = np.clip(y_pred, clip[0], clip[1])
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))))


def log_loss(y_true01, proba, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy; y_true01 in {0, 1}, proba = P(y = 1)."""
    y = np.asarray(y_true01, dtype=np.float64)
    p = np.clip(np.asarray(proba, dtype=np.float64), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def roc_auc(y_true01, score) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted half); NaN with a single class."""
    y = np.asarray(y_true01).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata  # here, not at import: scipy.stats costs ~0.5 s to import

    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
