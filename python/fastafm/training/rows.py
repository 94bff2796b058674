"""Row sources of an estimator's training epoch: rows in memory, or a cache file streamed block by block.

Each source runs one epoch with `run_epoch(state, trainer, progress) -> loss_sum` (a fastafm._state
TrainingState and the fit's fastafm._engine.CoreTrainer), drawing its shuffling from the state's generator, so
the training engine (divergence rollback, eval_set, early stopping, history) is the same for both.

Streaming (libffm-style): per epoch a seeded permutation of the blocks (runs of `cache.block_rows` rows), and
a permutation of the rows within each block; each block is read into one buffer, allocated once per source
for the largest block, and trained by one call of the fit's core Trainer (whose work memory is reserved
once, not per block). Mini-batches do not span blocks. The
dropout mask of a row is keyed on (seed, epoch, row position in the block), so each block trains with its
own seed derived from the estimator's seed and the block's first row; the block starting at row 0 keeps the
estimator's seed. A cache of one block is therefore trained exactly as the same rows in memory.

Early stopping without an eval_set holds part of the training rows out (`hold_out`): in memory a seeded
split of the rows (stratified by class for classifiers); from a cache a seeded subset of the rows of every
block (each row held out with probability `fraction`, drawn per block from the split seed and the block's
index, so no per-row index of the whole cache is kept), skipped by the training epochs and read into memory
once for evaluation.

Sample weights travel with their rows: an in-memory source holds one per row (or None), a cache's come from
its optional weights section; a held-out part keeps the weights of its rows for the evaluation. `weight_sum`
(the rows' total weight, n_rows unweighted) divides the summed loss into the epoch's mean training loss.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data.validation import check_kernel_memory, check_kernel_memory_sizes, check_memory, csr_arrays
from .weights import weight_sum

_SEED_STRIDE = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1


def block_seed(seed: int, first_row: int) -> int:
    """The dropout seed of the block that starts at `first_row` (the estimator's seed for row 0)."""
    return (int(seed) + int(first_row) * _SEED_STRIDE) & _U64


def holdout_split(n_rows: int, fraction: float, rng: np.random.Generator, strata=None):
    """(train rows, held-out rows), both sorted: round(fraction * n) rows of each stratum (of each distinct
    value of `strata`, e.g. the class; one stratum when None) drawn by `rng`. ValueError when either side
    would be empty."""
    groups = [np.arange(n_rows)] if strata is None else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    held = [rng.permutation(g)[: int(np.floor(fraction * g.shape[0] + 0.5))] for g in groups]
    mask = np.zeros(n_rows, dtype=bool)
    mask[np.concatenate(held)] = True
    n_held = int(np.count_nonzero(mask))
    if n_held == 0 or n_held == n_rows:
        raise ValueError(f"validation_fraction={fraction} of {n_rows} training rows leaves "
                         f"{'no' if n_held == 0 else 'all'} rows for validation; early stopping needs rows on both "
                         "sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def feature_occurrences(indptr, indices, n_features: int, row_mask=None) -> np.ndarray:
    """int64 count of each feature's stored entries in the rows of a CSR block (only rows where `row_mask` is
    True): frequency_l2's n_i. Rows of weight 0 are left out, as the core leaves them out of a batch."""
    if row_mask is not None:
        indices = indices[np.repeat(np.asarray(row_mask, dtype=bool), np.diff(indptr))]
    return np.bincount(indices, minlength=n_features)


class InMemoryRows:
    """Rows held as a CSR matrix: one `train_epoch` call over a permutation of all rows. `weights`: the rows'
    checked float32 sample weights, or None (all 1)."""

    def __init__(self, X, y_enc, weights=None):
        self.n_rows = X.shape[0]
        self._X = X
        self._arrays = csr_arrays(X)
        self._y = y_enc
        self.weights = weights
        self.weight_sum = weight_sum(weights, self.n_rows)
        self.mean_nnz = self._arrays[1].shape[0] / max(self.n_rows, 1)  # learning_rate="auto"'s row_nnz
        self._counts: np.ndarray | None = None  # feature_counts, once computed

    def check_memory(self, spec, settings: dict) -> None:
        check_kernel_memory(self._X, spec.embedding_dim, spec.attention_dim, int(settings["n_threads"]),
                            attention=spec.attention, batch_size=int(settings["batch_size"]))

    def feature_counts(self, n_features: int) -> np.ndarray:
        """Each feature's stored occurrences in these rows of positive weight (float32, frequency_l2's n_i);
        counted once per source (the pretraining FM and the AFM of a fit train the same rows)."""
        if self._counts is None:
            indptr, indices, _ = self._arrays
            mask = None if self.weights is None else self.weights > 0
            self._counts = feature_occurrences(indptr, indices, n_features, mask).astype(np.float32)
        return self._counts

    def run_epoch(self, state, trainer, progress) -> float:
        order = state.rng.permutation(self.n_rows).astype(np.int64)
        res = trainer.run(*self._arrays, self._y, order, state.dropout_seed, progress=progress, weights=self.weights)
        return float(res["loss_sum"])

    @property
    def targets(self) -> np.ndarray:
        """The encoded float32 targets the core trains on."""
        return self._y

    def hold_out(self, fraction: float, rng: np.random.Generator, stratify: bool):
        """(rows of the kept part, held-out CSR X, held-out encoded targets, held-out weights or None):
        `holdout_split` of the rows, stratified by the encoded target when `stratify`; each part keeps its
        rows' weights."""
        keep, held = holdout_split(self.n_rows, fraction, rng, self._y if stratify else None)
        w = self.weights
        if w is not None and not (np.any(w[keep] > 0) and np.any(w[held] > 0)):
            raise ValueError(f"validation_fraction={fraction}: the {'held-out' if np.any(w[keep] > 0) else 'kept'} "
                             "rows all have sample_weight 0; early stopping needs weight on both sides (pass an "
                             "eval_set, or set early_stopping=False)")
        kept = InMemoryRows(self._X[keep], self._y[keep], None if w is None else w[keep])
        return kept, self._X[held], self._y[held], None if w is None else w[held]


class CacheRows:
    """Rows of a CacheFile, streamed in shuffled blocks through one reusable buffer.

    `encode(labels) -> float32 targets` maps the cache's labels to what the core trains on (identity for
    regression, +-1 for classification); `class_weights(labels) -> float64 per-row weights` (or None) the
    classifiers' class_weight, multiplied with the cache's own weights.
    """

    def __init__(self, cache, encode, holdout=None, class_weights=None) -> None:
        self.cache = cache
        self._encode = encode
        self._class_weights = class_weights
        self._holdout = holdout  # None, or (fraction, seed): the rows `held_out` keeps out of training
        rows = int(cache.block_rows)
        self.starts = np.arange(0, cache.n_rows, rows, dtype=np.int64)
        self.stops = np.minimum(self.starts + rows, cache.n_rows)
        self.n_rows = cache.n_rows if holdout is None else sum(
            int(np.count_nonzero(~self.held_mask(b))) for b in range(self.starts.shape[0]))
        self.weight_sum = self._weight_sum()
        self.mean_nnz = cache.nnz / max(cache.n_rows, 1)  # of all the cache's rows (learning_rate="auto")
        bounds = cache.indptr_at(np.append(self.starts, self.n_rows))
        max_block_nnz = int(np.max(np.diff(bounds))) if self.starts.size else 0
        max_rows = int(np.max(self.stops - self.starts)) if self.starts.size else 0
        self._buffer_bytes = 8 * (max_rows + 1) + 8 * max_block_nnz + 20 * max_rows
        self._shape = (max_rows, max_block_nnz)
        self._buffers: dict | None = None
        self._counts: np.ndarray | None = None  # feature_counts, once computed

    def block_weights(self, start: int, stop: int, labels=None, out=None) -> np.ndarray | None:
        """The float32 weights of rows [start, stop): the cache's weights times the class weights of their
        labels (read when not given), None when there are neither."""
        w = self.cache.read_weights(start, stop, out) if self.cache.has_weights else None
        if self._class_weights is None:
            return w
        if labels is None:
            labels = self.cache.read_labels(start, stop)
        cw = self._class_weights(labels)
        return (cw if w is None else cw * w).astype(np.float32)  # one rounding, as in memory

    def _weight_sum(self) -> float:
        """The trained rows' total weight: one pass over the cache's weights (and, with class weights, labels)
        sections; n_rows without either."""
        if not self.cache.has_weights and self._class_weights is None:
            return float(self.n_rows)
        total = 0.0
        for b in range(self.starts.shape[0]):
            w = self.block_weights(int(self.starts[b]), int(self.stops[b]))
            assert w is not None
            total += float(np.sum(w[~self.held_mask(b)], dtype=np.float64))
        if not total > 0:
            raise ValueError(f"{self.cache.path}: the rows trained on all have weight 0")
        return total

    def check_memory(self, spec, settings: dict) -> None:
        check_kernel_memory_sizes(self.cache.max_row_nnz, self._shape[0], self.cache.n_features,
                                  spec.embedding_dim, spec.attention_dim, int(settings["n_threads"]),
                                  batch_size=int(settings["batch_size"]), attention=spec.attention,
                                  extra=self._buffer_bytes)

    def _allocate(self) -> dict:
        if self._buffers is None:
            rows, nnz = self._shape
            self._buffers = {"indptr": np.empty(rows + 1, dtype=np.int64), "indices": np.empty(nnz, dtype=np.int32),
                             "values": np.empty(nnz, dtype=np.float32), "labels": np.empty(rows, dtype=np.float32),
                             "weights": np.empty(rows if self.cache.has_weights else 0, dtype=np.float32)}
        return self._buffers

    def held_mask(self, b: int) -> np.ndarray:
        """The held-out mask of block b's rows (all False without a holdout)."""
        n = int(self.stops[b] - self.starts[b])
        if self._holdout is None:
            return np.zeros(n, dtype=bool)
        fraction, seed = self._holdout
        return np.random.default_rng([int(seed), b]).random(n) < fraction

    def hold_out(self, fraction: float, seed: int):
        """(rows that skip a seeded subset of every block's rows, those rows as CSR X, their cache labels,
        their weights or None)."""
        rows = CacheRows(self.cache, self._encode, (float(fraction), int(seed)), self._class_weights)
        n_held = self.cache.n_rows - rows.n_rows
        if n_held == 0 or rows.n_rows == 0:
            raise ValueError(f"validation_fraction={fraction} of the {self.cache.n_rows} rows of {self.cache.path} "
                             f"holds out {'no' if n_held == 0 else 'all'} rows; early stopping needs rows on both "
                             "sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
        check_memory(int(self.cache.nnz * fraction * 8 * 1.5) + 16 * n_held,
                     f"the {n_held} held-out validation rows of {self.cache.path}")
        parts, labels, weights = [], [], []
        for b in range(self.starts.shape[0]):
            mask = rows.held_mask(b)
            if mask.any():
                X, y = self.cache.read_rows(int(self.starts[b]), int(self.stops[b]))
                parts.append(X[np.flatnonzero(mask)])
                labels.append(y[mask])
                w = self.block_weights(int(self.starts[b]), int(self.stops[b]), y)
                if w is not None:
                    weights.append(w[mask])
        w_val = np.concatenate(weights) if weights else None
        if w_val is not None and not np.any(w_val > 0):
            raise ValueError(f"validation_fraction={fraction}: the rows of {self.cache.path} held out all have "
                             "weight 0; early stopping needs weight on them (pass an eval_set, or set "
                             "early_stopping=False)")
        return rows, sp.vstack(parts, format="csr"), np.concatenate(labels), w_val

    def feature_counts(self, n_features: int) -> np.ndarray:
        """Each feature's stored occurrences in the rows trained (held-out rows and rows of weight 0 excluded):
        one pass over the blocks through the epoch's buffer, once per source (float32, frequency_l2's n_i)."""
        if self._counts is not None:
            return self._counts
        buffers = self._allocate()
        counts = np.zeros(n_features, dtype=np.int64)
        for b in range(self.starts.shape[0]):
            start, stop = int(self.starts[b]), int(self.stops[b])
            indptr, indices, _, labels = self.cache.read_block(start, stop, buffers)
            mask = ~self.held_mask(b)
            w = self.block_weights(start, stop, labels)
            if w is not None:
                mask &= w > 0
            counts += feature_occurrences(indptr, indices, n_features, mask)
        self._counts = counts.astype(np.float32)
        return self._counts

    def block_order(self, rng) -> np.ndarray:
        """This epoch's order of the blocks (no draw from rng for a single block)."""
        n = self.starts.shape[0]
        return rng.permutation(n) if n > 1 else np.arange(n)

    def run_epoch(self, state, trainer, progress) -> float:
        buffers = self._allocate()
        rng = state.rng
        total, done = 0.0, 0
        for b in self.block_order(rng).tolist():
            start, stop = int(self.starts[b]), int(self.stops[b])
            indptr, indices, values, labels = self.cache.read_block(start, stop, buffers)
            w = self.block_weights(start, stop, labels, buffers["weights"])
            y = self._encode(labels)
            if self._holdout is None:
                order = rng.permutation(stop - start).astype(np.int64)
            else:  # the block's kept rows, shuffled
                kept = np.flatnonzero(~self.held_mask(b))
                order = kept[rng.permutation(kept.shape[0])].astype(np.int64)
            hook = None if progress is None else _offset_progress(progress, done)
            res = trainer.run(indptr, indices, values, y, order, block_seed(state.dropout_seed, start), progress=hook,
                              weights=w)
            if res["diverged"]:
                return float("nan")
            total += float(res["loss_sum"])
            done += order.shape[0]
            if progress is not None:  # the core reports by time; a block's end is always reported
                progress(done)
        return total


def _offset_progress(progress, done: int):
    def hook(rows_done):
        return progress(done + rows_done)

    return hook
