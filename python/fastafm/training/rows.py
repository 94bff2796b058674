"""Row sources of a training epoch, for one process and for each Dask worker alike: rows in memory
(`InMemoryRows`, here) or cache files streamed block by block (`CacheRows`, fastafm.training.cache_rows).

A source draws an epoch's order with `epoch_order(rng)` and trains any range [lo, hi) of that order with
`run_range(trainer, order, lo, hi, seed, epoch)` (a core Trainer, fastafm.training.engine.CoreTrainer): one
process trains the whole range, a Dask worker one round's slice of it. `run_epoch(state, trainer, progress)`
is the whole epoch from the training state's generator and dropout seed.

Early stopping without an eval_set holds part of the training rows out (`hold_out`): a seeded split of the
rows (`holdout_split`, stratified by class for classifiers), the same rows in memory and from a cache in one
process (fastafm.training.cache_rows); a Dask worker's cache a seeded subset of the rows of every block.

Sample weights travel with their rows: an in-memory source holds one per row (or None), a cache's come from
its optional weights section; a held-out part keeps the weights of its rows for the evaluation. `weight_sum`
(the rows' total weight, n_rows unweighted) divides the summed loss into the epoch's mean training loss.
"""
from __future__ import annotations

import numpy as np

from ..data.limits import check_rows
from ..data.validation import check_kernel_memory, csr_arrays
from .evaluation import InMemoryEval
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
    mask = holdout_mask(n_rows, fraction, rng, strata)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def holdout_mask(n_rows: int, fraction: float, rng: np.random.Generator, strata=None) -> np.ndarray:
    """The held-out rows of `holdout_split` as a bool per row (what a cache keeps of the split: one byte a row,
    no index arrays); the same draws from `rng`, so both give the same rows."""
    groups = [np.arange(n_rows)] if strata is None else [np.flatnonzero(strata == v) for v in np.unique(strata)]
    mask = np.zeros(n_rows, dtype=bool)
    for g in groups:
        mask[rng.permutation(g)[: int(np.floor(fraction * g.shape[0] + 0.5))]] = True
    n_held = int(np.count_nonzero(mask))
    if n_held == 0 or n_held == n_rows:
        raise ValueError(f"validation_fraction={fraction} of {n_rows} training rows leaves "
                         f"{'no' if n_held == 0 else 'all'} rows for validation; early stopping needs rows on both "
                         "sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
    return mask


def feature_occurrences(indptr, indices, n_features: int, row_mask=None) -> np.ndarray:
    """int64 count of each feature's stored entries in the rows of a CSR block (only rows where `row_mask` is
    True): frequency_l2's n_i. Rows of weight 0 are left out, as the core leaves them out of a batch."""
    if row_mask is not None:
        indices = indices[np.repeat(np.asarray(row_mask, dtype=bool), np.diff(indptr))]
    return np.bincount(indices, minlength=n_features)


def row_ids(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The feature ids of the given rows (with repeats), as one flat array (what a Dask round touched)."""
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    flat = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(int(lengths.sum()))
    return indices[flat]


class InMemoryRows:
    """Rows held as a CSR matrix: one core call over a range of a permutation of all rows. `weights`: the rows'
    checked float32 sample weights, or None (all 1)."""

    def __init__(self, X, y_enc, weights=None):
        self.n_rows = X.shape[0]
        self.n_features = X.shape[1]
        self._X = X
        self._arrays = csr_arrays(X)
        self._y = y_enc
        self.weights = weights
        self.weight_sum = weight_sum(weights, self.n_rows)
        self.nnz = int(self._arrays[1].shape[0])
        self.mean_nnz = self.nnz / max(self.n_rows, 1)  # learning_rate="auto"'s row_nnz
        self._counts: np.ndarray | None = None  # feature_counts, once computed

    def check_pairs(self) -> None:
        """The limit on pairs per row (fastafm.data.limits), before a fit with attention starts."""
        check_rows(self._X.indptr, "X")

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

    def epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.n_rows).astype(np.int64)

    def run_range(self, trainer, order, lo: int, hi: int, seed: int, epoch: int, progress=None,
                  touched=None) -> float:
        """Train rows order[lo:hi] in one core call; appends their feature ids to `touched` (a list) if given."""
        rows = order[lo:hi]
        res = trainer.run(*self._arrays, self._y, rows, seed, epoch, progress=progress, weights=self.weights)
        if touched is not None:
            touched.append(row_ids(self._arrays[0], self._arrays[1], rows))
        return float(res["loss_sum"])

    def run_epoch(self, state, trainer, progress) -> float:
        order = self.epoch_order(state.rng)
        return self.run_range(trainer, order, 0, self.n_rows, state.dropout_seed, state.n_epochs_done, progress)

    def target_sums(self) -> tuple:
        """(sum of weight x target, sum of weight) of the rows trained, in float64 (w0's starting value)."""
        y = self._y.astype(np.float64)
        if self.weights is None:
            return float(y.sum()), float(self.n_rows)
        w = self.weights.astype(np.float64)
        return float(np.dot(w, y)), float(w.sum())

    def target_range(self) -> tuple:
        """(min, max) of the encoded targets trained on (a regressor's eval clipping range)."""
        return float(self._y.min()), float(self._y.max())

    @property
    def csr(self):
        """The rows as the CSR matrix they were given as."""
        return self._X

    @property
    def targets(self) -> np.ndarray:
        """The encoded float32 targets the core trains on."""
        return self._y

    def hold_out(self, fraction: float, rng: np.random.Generator, stratify: bool):
        """(rows of the kept part, an InMemoryEval of the held-out rows): `holdout_split` of the rows, stratified
        by the encoded target when `stratify`; each part keeps its rows' weights."""
        keep, held = holdout_split(self.n_rows, fraction, rng, self._y if stratify else None)
        w = self.weights
        if w is not None and not (np.any(w[keep] > 0) and np.any(w[held] > 0)):
            raise ValueError(f"validation_fraction={fraction}: the {'held-out' if np.any(w[keep] > 0) else 'kept'} "
                             "rows all have sample_weight 0; early stopping needs weight on both sides (pass an "
                             "eval_set, or set early_stopping=False)")
        kept = InMemoryRows(self._X[keep], self._y[keep], None if w is None else w[keep])
        return kept, InMemoryEval(self._X[held], self._y[held], None if w is None else w[held])
