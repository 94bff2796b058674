"""Weighted sums of per-row terms, and their mean over parts: how one process and the Dask workers compute the
same eval metrics (a single part reproduces np.average, what fastafm.metrics uses)."""
from __future__ import annotations

import numpy as np


def weighted_sum(values: np.ndarray, w) -> float:
    """sum(values * w) (sum(values) without weights), in float64."""
    values = np.asarray(values, np.float64)
    return float(values.sum() if w is None else np.multiply(values, np.asarray(w, np.float64)).sum())


def weighted_mean(parts: list, key: str) -> float:
    """sum over parts of part[key] / sum over parts of part["w"]."""
    return float(sum(p[key] for p in parts) / sum(p["w"] for p in parts))
