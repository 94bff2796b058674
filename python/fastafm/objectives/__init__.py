"""Objectives: one module per loss, holding everything that depends on it — the targets the core trains on
(from y, a cache's labels or an eval_set), the core's loss, the eval metrics and how they are summed over
parts of the evaluation rows (one part in one process, one per worker under Dask), and the prediction
transform. Adding a loss is one module here plus its kernels (the core's `Loss` enum) and the reference.
"""
from __future__ import annotations

from .logistic import LOGISTIC
from .squared import SQUARED

OBJECTIVES = {o.name: o for o in (SQUARED, LOGISTIC)}


def objective(loss: str):
    """The objective of a loss name ("squared" or "logistic")."""
    try:
        return OBJECTIVES[loss]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(OBJECTIVES)}, got {loss!r}") from None


__all__ = ["OBJECTIVES", "objective"]
