"""Evaluation rows (an eval_set, or the rows held out for early stopping) and how they are scored.

A part of the evaluation rows is held in memory (`InMemoryEval`) or streamed from cache files block by block
at every evaluation (`CacheEval`: eval rows on disk never sit whole in memory; blocks of at most
EVAL_BLOCK_ROWS rows). `partials(objective, score, label_range)` scores a part with `score(indptr, indices,
values) -> float64 outputs` (CSR arrays as the core takes them, never copied) and returns the objective's sums;
the metrics are `objective.combine` of the partials of every part: one part in one process, one per worker
under Dask.
"""
from __future__ import annotations

import numpy as np

from ..data.limits import check_longest, check_rows
from ..data.validation import csr_arrays

#: Rows of one streamed evaluation block: the eval buffer stays small beside a training block.
EVAL_BLOCK_ROWS = 65536


class InMemoryEval:
    """Evaluation rows in memory: CSR X, targets as the core trains them (+-1 for classes), weights or None."""

    def __init__(self, X, y: np.ndarray, w: np.ndarray | None = None) -> None:
        self.X, self.y, self.w = X, y, w
        self.arrays = csr_arrays(X)  # the core's dtypes, converted once

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def check_pairs(self) -> None:
        """The limit on pairs per row (fastafm.data.limits), before a fit with attention starts."""
        check_rows(self.X.indptr, "eval_set X")

    def partials(self, objective, score, label_range) -> list:
        if self.n_rows == 0:
            return []
        return [objective.partial(score(*self.arrays), self.y, self.w, label_range)]


class CacheEval:
    """Evaluation rows of cache files, read one block at a time through one reusable buffer at each
    evaluation; `encode(labels) -> targets` as for training, the files' weights sections (if any) weigh the
    rows. `names[i]` names file i in errors (a Dask partition, or the path)."""

    def __init__(self, caches: list, encode, n_features: int, names=None) -> None:
        self.caches = list(caches)
        self._encode = encode
        self.n_features = int(n_features)
        self._names = list(names) if names is not None else [str(c.path) for c in self.caches]
        self._buffers: dict | None = None

    def _name(self, i: int) -> str:
        return self._names[i]

    def check_pairs(self) -> None:
        for i, cache in enumerate(self.caches):
            check_longest(int(cache.max_row_nnz), f"eval_set {self._name(i)}")

    def __getstate__(self) -> dict:  # what Dask moves: the files, never the buffer
        return {**self.__dict__, "_buffers": None}

    @property
    def n_rows(self) -> int:
        return sum(int(c.n_rows) for c in self.caches)

    def _allocate(self) -> dict:
        if self._buffers is None:
            rows = max((min(self._block_rows(c), int(c.n_rows)) for c in self.caches), default=0)
            nnz = 0
            for c in self.caches:
                starts = np.arange(0, c.n_rows, self._block_rows(c), dtype=np.int64)
                if starts.size:
                    nnz = max(nnz, int(np.max(np.diff(c.indptr_at(np.append(starts, c.n_rows))))))
            self._buffers = {"indptr": np.empty(rows + 1, np.int64), "indices": np.empty(nnz, np.int32),
                             "values": np.empty(nnz, np.float32), "labels": np.empty(rows, np.float32)}
        return self._buffers

    @staticmethod
    def _block_rows(cache) -> int:
        return max(1, min(int(cache.block_rows), EVAL_BLOCK_ROWS))

    def partials(self, objective, score, label_range) -> list:
        out = []
        for i, cache in enumerate(self.caches):
            for start in range(0, int(cache.n_rows), self._block_rows(cache)):
                stop = min(start + self._block_rows(cache), int(cache.n_rows))
                try:
                    indptr, indices, values, labels = cache.read_block(start, stop, self._allocate())
                    w = cache.read_weights(start, stop) if cache.has_weights else None
                except OSError as exc:  # a file removed or unreadable after the fit started
                    raise OSError(f"eval_set {self._name(i)}: {exc}") from exc
                out.append(objective.partial(score(indptr, indices, values), self._encode(labels), w, label_range))
        return out


def evaluate(objective, parts: list, score, label_range=None) -> dict:
    """The eval_* metrics of the evaluation parts scored in this process (`label_range`: the training label
    range that clips regression outputs for RMSE)."""
    partials: list = []
    for part in parts:
        partials.extend(part.partials(objective, score, label_range))
    return objective.combine(partials)
