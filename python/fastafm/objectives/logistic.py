"""Logistic loss (binary classification): two labels of any type, trained as -1/+1 (classes[1] the positive
one), eval log loss, AUC and normalized entropy (log loss over the entropy of the eval rows' base rate),
predict = the class of the sign, predict_proba = the sigmoid."""
from __future__ import annotations

import numpy as np

from .. import metrics
from .encoding import Encoder
from .labels import class_cache_targets, class_targets, eval_targets
from .sums import weighted_mean, weighted_sum


def positive_probability(z: np.ndarray) -> np.ndarray:
    """sigmoid(z) without overflow (the serving predictor's kind "proba": probabilities' second column)."""
    p1 = np.empty_like(z)
    pos = z >= 0
    p1[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    p1[~pos] = ez / (1.0 + ez)
    return p1


def probabilities(z: np.ndarray) -> np.ndarray:
    """(1 - sigmoid(z), sigmoid(z)) without overflow."""
    p1 = positive_probability(z)
    return np.column_stack([1.0 - p1, p1])


def normalized(logloss: float, base_rate: float) -> float:
    """Normalized entropy from a log loss and the base rate of its rows (metrics.normalized_entropy)."""
    h = metrics.binary_entropy(base_rate)
    return float(logloss / h) if h > 0 else float("inf")


class Logistic:
    name = "logistic"
    classifier = True
    metrics = ("logloss", "auc", "ne")
    label_fact = "classes"
    core_loss = "logistic"

    def fit_targets(self, y, n_rows: int, fitting: bool, classes, fitted, owner: str):
        return class_targets(y, n_rows, fitting, classes, fitted, owner)

    def cache_targets(self, cache, fitting: bool, classes, fitted, owner: str):
        return class_cache_targets(cache, fitting, classes, fitted, owner)

    def eval_targets(self, y, n_rows: int, classes) -> np.ndarray:
        """+-1 targets of an eval_set's labels, refusing labels the model was not fitted on."""
        return self.encode(eval_targets(y, n_rows, classes), classes)

    def encode(self, labels: np.ndarray, classes) -> np.ndarray:
        return np.where(np.asarray(labels) == classes[1], 1.0, -1.0).astype(np.float32)

    def encoder(self, classes) -> Encoder:
        return Encoder(self, classes)

    def facts(self, labels: np.ndarray) -> dict:
        return {"classes": np.unique(labels)}

    def partial(self, z: np.ndarray, y: np.ndarray, w, label_range) -> dict:
        y01 = (np.asarray(y) > 0).astype(np.float64)
        p = np.clip(probabilities(z)[:, 1], 1e-12, 1.0 - 1e-12)  # as metrics.log_loss
        losses = y01 * np.log(p) + (1.0 - y01) * np.log1p(-p)
        return {"n": int(y01.shape[0]), "w": weighted_sum(np.ones_like(y01), w), "ll": weighted_sum(losses, w),
                "pos": weighted_sum(y01, w), "z": z, "y01": y01, "weights": w}

    def combine(self, parts: list) -> dict:
        """Log loss from the parts' sums; AUC from all their scores (one part gives metrics.log_loss and
        metrics.roc_auc exactly)."""
        parts = [p for p in parts if p["n"]]
        z = np.concatenate([p["z"] for p in parts])
        y01 = np.concatenate([p["y01"] for p in parts])
        weights = None
        if any(p["weights"] is not None for p in parts):
            weights = np.concatenate([np.ones(p["n"]) if p["weights"] is None else p["weights"] for p in parts])
        logloss = -weighted_mean(parts, "ll")
        return {"eval_logloss": logloss, "eval_auc": metrics.roc_auc(y01, z, sample_weight=weights),
                "eval_ne": normalized(logloss, weighted_mean(parts, "pos"))}

    def initial_bias(self, mean_target: float) -> float:
        """w0 before training: the logit of the (weighted) share of positives (targets +-1: (mean + 1) / 2). On
        rare positives (iPinYou: 1%) a model started at p = 0.5 ended above the base rate's log loss."""
        p = min(max((float(mean_target) + 1.0) / 2.0, 1e-6), 1.0 - 1e-6)
        return float(np.log(p / (1.0 - p)))

    def predict(self, z: np.ndarray, classes) -> np.ndarray:
        return np.asarray(classes)[(z > 0).astype(int)]


LOGISTIC = Logistic()
