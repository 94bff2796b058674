"""Squared loss (regression): real targets trained as they are, eval RMSE (predictions clipped to the training
label range, as the AFM paper's code) and MAE, predict = the model's output."""
from __future__ import annotations

import numpy as np

from .labels import eval_targets, regression_cache_targets, regression_targets
from .encoding import Encoder
from .sums import weighted_mean, weighted_sum


class Squared:
    name = "squared"
    classifier = False
    metrics = ("rmse", "mae")       # the eval metrics; the first is what early stopping watches by default
    label_fact = "label_range"       # what the training state keeps of the labels
    core_loss = "squared"            # the core's Loss the model trains with

    def fit_targets(self, y, n_rows: int, fitting: bool, classes, fitted, owner: str):
        """(float32 targets, label facts when fitting) of y."""
        return regression_targets(y, n_rows, fitting, classes, owner)

    def cache_targets(self, cache, fitting: bool, classes, fitted, owner: str):
        """(labels -> targets of a cache's blocks, label facts when fitting)."""
        return regression_cache_targets(cache, fitting, classes, owner)

    def eval_targets(self, y, n_rows: int, classes) -> np.ndarray:
        """The checked targets of an eval_set, as the core trains them."""
        return eval_targets(y, n_rows, None)

    def encode(self, labels: np.ndarray, classes) -> np.ndarray:
        """Stored labels (a cache's, a Dask shard's) -> what the core trains on."""
        return np.asarray(labels, dtype=np.float32)

    def encoder(self, classes) -> Encoder:
        """encode(labels, classes) as a picklable callable (what a Dask worker's cache rows keep)."""
        return Encoder(self, classes)

    def facts(self, labels: np.ndarray) -> dict:
        """The label facts of a non-empty set of targets."""
        return {"label_range": (float(np.min(labels)), float(np.max(labels)))}

    def partial(self, z: np.ndarray, y: np.ndarray, w, label_range) -> dict:
        """The sums behind the metrics of one part of the evaluation rows (scores z, targets y, weights w or
        None), to be combined with the other parts' by `combine`."""
        y = np.asarray(y, np.float64)
        lo, hi = label_range
        return {"n": int(y.shape[0]), "w": weighted_sum(np.ones_like(y), w),
                "sq": weighted_sum((y - np.clip(z, lo, hi)) ** 2, w), "abs": weighted_sum(np.abs(y - z), w)}

    def combine(self, parts: list) -> dict:
        """The eval_* metrics from the parts' sums (one part gives metrics.rmse/mae exactly)."""
        parts = [p for p in parts if p["n"]]
        return {"eval_rmse": float(np.sqrt(weighted_mean(parts, "sq"))), "eval_mae": weighted_mean(parts, "abs")}

    def initial_bias(self, mean_target: float) -> float:
        """w0 before training: the output that fits the (weighted) mean target, as gradient boosting starts
        from the average (with w0 = 0 the first epochs only learn the offset)."""
        return float(mean_target)

    def predict(self, z: np.ndarray, classes) -> np.ndarray:
        return z


SQUARED = Squared()
