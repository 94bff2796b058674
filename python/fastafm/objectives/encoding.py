"""labels -> targets as a picklable callable: what a Dask worker's cache rows keep (a plain object, not a
closure, so that Dask can spill or move them)."""
from __future__ import annotations

import numpy as np


class Encoder:
    """`objective.encode(labels, classes)` for one objective and set of classes."""

    def __init__(self, objective, classes) -> None:
        self.objective, self.classes = objective, classes

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        return self.objective.encode(labels, self.classes)
