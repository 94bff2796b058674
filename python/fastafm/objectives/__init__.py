"""Objectives: one module per loss, holding everything that depends on it — the targets the core trains on
(from y, a cache's labels or an eval_set), the core's loss, the eval metrics and how they are summed over
parts of the evaluation rows (one part in one process, one per worker under Dask), and the prediction
transform. Adding a loss is one module here plus its kernels (the core's `Loss` enum) and the reference.
"""
from __future__ import annotations

from .logistic import LOGISTIC
from .rate import RATE
from .squared import SQUARED

OBJECTIVES = {o.name: o for o in (SQUARED, LOGISTIC, RATE)}

#: The regressors' `loss` hyperparameter -> their objective ("logistic": rate targets in [0, 1]).
REGRESSION_LOSSES = {"squared": "squared", "logistic": "rate"}


def objective(loss: str):
    """The objective of a loss name ("squared", "logistic" or "rate")."""
    try:
        return OBJECTIVES[loss]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(OBJECTIVES)}, got {loss!r}") from None


__all__ = ["OBJECTIVES", "REGRESSION_LOSSES", "objective"]
