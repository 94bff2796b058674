"""Rate targets (aggregated rows): y in [0, 1] is a row's positive rate (clicks / impressions) and its
sample_weight the number of rows it stands for (impressions). The loss is the logistic one of the expanded
0/1 rows, -(y log s(z) + (1 - y) log(1 - s(z))) with gradient s(z) - y, so a row of rate y and weight n
trains as n rows with n y positives would in one batch (docs/model.md). The core's logistic loss takes it as
t = 2y - 1 (+1 and -1 are the classes, bit for bit as before). `AFMRegressor(loss="logistic")` and
`FMRegressor(loss="logistic")`: eval log loss and normalized entropy, predict = the probability s(z)."""
from __future__ import annotations

import numpy as np

from ..data.validation import as_targets
from .encoding import Encoder
from .logistic import LOGISTIC, normalized, probabilities
from .sums import weighted_mean, weighted_sum


def check_rates(y: np.ndarray, name: str = "y") -> None:
    """Rates must lie in [0, 1] (a ValueError naming `name` and the first offending value)."""
    bad = np.flatnonzero((y < 0) | (y > 1))
    if bad.size:
        raise ValueError(f"{name} must hold rates in [0, 1] for loss='logistic' (clicks / impressions); "
                         f"{name}[{int(bad[0])}] = {float(y[bad[0]])!r}")


def check_rate_weights(weights, name: str = "sample_weight") -> None:
    """A rate row stands for `weight` rows: a weight of 0 leaves its rate undefined (no impressions)."""
    if weights is None:
        return
    zero = np.flatnonzero(np.asarray(weights) == 0)
    if zero.size:
        raise ValueError(f"{name}[{int(zero[0])}] is 0: with loss='logistic' each row's weight is the number of "
                         f"impressions its rate y was measured on, so it must be > 0 (drop rows without any)")


class Rate:
    name = "rate"
    classifier = False
    metrics = ("logloss", "ne")
    label_fact = "label_range"
    core_loss = "logistic"
    check_weights = staticmethod(check_rate_weights)

    def fit_targets(self, y, n_rows: int, fitting: bool, classes, fitted, owner: str):
        if classes is not None:
            raise ValueError(f"classes is only for classifiers, not {owner}")
        y = as_targets(y, n_rows)
        check_rates(y)
        return self.encode(y, None), ({"label_range": (0.0, 1.0)} if fitting else {})

    def cache_targets(self, cache, fitting: bool, classes, fitted, owner: str):
        if classes is not None:
            raise ValueError(f"classes is only for classifiers, not {owner}")
        check_rates(np.array([cache.label_min, cache.label_max]), f"{cache.path}: labels")
        return self.encoder(None), ({"label_range": (0.0, 1.0)} if fitting else {})

    def eval_targets(self, y, n_rows: int, classes) -> np.ndarray:
        y = as_targets(y, n_rows, name="eval_set y")
        check_rates(y, "eval_set y")
        return self.encode(y, None)

    def encode(self, labels: np.ndarray, classes) -> np.ndarray:
        """Rates -> the core's logistic targets 2y - 1 (computed in float64: 0 and 1 give exactly -1 and +1)."""
        return (2.0 * np.asarray(labels, np.float64) - 1.0).astype(np.float32)

    def encoder(self, classes) -> Encoder:
        return Encoder(self, classes)

    def facts(self, labels: np.ndarray) -> dict:
        return {"label_range": (0.0, 1.0)}

    def partial(self, z: np.ndarray, y: np.ndarray, w, label_range) -> dict:
        c = 0.5 * (1.0 + np.asarray(y, np.float64))  # back from the core's targets
        p = np.clip(probabilities(np.asarray(z, np.float64))[:, 1], 1e-12, 1.0 - 1e-12)
        losses = c * np.log(p) + (1.0 - c) * np.log1p(-p)
        return {"n": int(c.shape[0]), "w": weighted_sum(np.ones_like(c), w), "ll": weighted_sum(losses, w),
                "pos": weighted_sum(c, w)}

    def combine(self, parts: list) -> dict:
        parts = [p for p in parts if p["n"]]
        logloss = -weighted_mean(parts, "ll")
        return {"eval_logloss": logloss, "eval_ne": normalized(logloss, weighted_mean(parts, "pos"))}

    def initial_bias(self, mean_target: float) -> float:
        """w0 before training: the logit of the (weighted) mean rate, as the classifiers start (the targets are
        the logistic ones, 2y - 1)."""
        return LOGISTIC.initial_bias(mean_target)

    def predict(self, z: np.ndarray, classes) -> np.ndarray:
        """The probability s(z)."""
        return probabilities(np.asarray(z, np.float64))[:, 1]


RATE = Rate()
