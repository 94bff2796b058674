"""Rows of one or more cache files (fastafm.CacheFile), streamed libffm-style in blocks of each file's
`block_rows` rows through one buffer sized for the largest block: a fit holds one block, never the files.

An epoch visits the blocks in a permutation and the rows of each block in a permutation of their own; each
block is trained by one call of the fit's core Trainer (mini-batches do not span blocks). The dropout mask of
a row is keyed on (seed, epoch, row position in the block), so each block trains with its own seed derived from
the fit's seed and the block's first row (`block_seed`); the block starting at row 0 keeps the fit's seed.

Early stopping without an eval_set holds rows out (fastafm.training.cache_holdout): in one process the rows
the same fit of the same rows in memory holds out; in a Dask worker a seeded subset of every block. The
held-out rows are skipped by the epochs: a block's kept rows are packed to the front of the buffer when it is
read, so that a kept row's position (its dropout key) is its rank among the block's kept rows, as in memory,
where the kept rows are a matrix of their own. With one block and the same random_state a cache therefore
trains exactly the model the same rows train in memory, with or without early stopping.
"""
from __future__ import annotations

import numpy as np

from ..data.limits import check_longest
from ..data.validation import check_kernel_memory_sizes
from . import cache_holdout
from .rows import block_seed, feature_occurrences, row_ids


class BlockOrder:
    """One epoch's order over a CacheRows: the blocks in `blocks` order, each in a permutation of its trained
    rows drawn on first use (one process: from the training state's generator `rng`, block after block; a Dask
    worker: from a generator of the block's own seed in `seeds`, so that any round can start mid-epoch)."""

    def __init__(self, source: "CacheRows", blocks: np.ndarray, rng=None, seeds=None) -> None:
        self.source, self.blocks, self._rng, self._seeds = source, blocks, rng, seeds
        self.sizes = np.array([source.kept_rows(int(b)) for b in blocks.tolist()], np.int64)
        self._last: tuple | None = None  # consecutive rounds train consecutive parts of one block

    def rows(self, i: int) -> np.ndarray:
        if self._last is None or self._last[0] != i:
            rng = self._rng if self._seeds is None else np.random.default_rng(int(self._seeds[i]))
            # positions among the block's kept rows (`CacheRows.read` packs them to the front of the buffer)
            self._last = (i, rng.permutation(int(self.sizes[i])).astype(np.int64, copy=False))
        return self._last[1]


class CacheRows:
    """Rows of `caches`, streamed in shuffled blocks.

    `encode(labels) -> float32 targets` maps the stored labels to what the core trains on (fastafm.objectives);
    `class_weights(labels) -> float64 per-row weights` (or None) the classifiers' class_weight, multiplied with
    the files' own weights. `file_keys`: the files' keys in the held-out draw (None: one process's cache,
    keyed by block index); `names[i]` names file i in errors; `n_features`: the model's width (default: the
    widest file's).
    """

    def __init__(self, caches: list, encode, holdout=None, class_weights=None, file_keys=None, names=None,
                 n_features=None):
        self.caches = list(caches)
        self.encode = encode
        self._class_weights = class_weights
        # the rows `held_mask` keeps out of training: None, a bool per row of the files in order (one process's
        # split), or (fraction, seed) (a Dask worker's per-block draw)
        self.holdout = holdout
        self.file_keys = file_keys
        self._names = list(names) if names is not None else [str(c.path) for c in self.caches]
        widest = max((int(c.n_features) for c in self.caches), default=0)
        self.n_features = widest if n_features is None else int(n_features)
        # (file, first row, stop row, first row in the source, held-out key) of every block, files in order
        self.blocks: list = []
        offset = 0
        for f, cache in enumerate(self.caches):
            rows = int(cache.block_rows)
            for j, start in enumerate(range(0, int(cache.n_rows), rows)):
                key = (len(self.blocks),) if file_keys is None else (int(file_keys[f]), j)
                self.blocks.append((f, start, min(start + rows, int(cache.n_rows)), offset + start, key))
            offset += int(cache.n_rows)
        self.n_rows = sum(self.kept_rows(b) for b in range(len(self.blocks)))
        self.nnz = sum(int(c.nnz) for c in self.caches)
        self.mean_nnz = self.nnz / max(offset, 1)  # of all the files' rows (learning_rate="auto")
        self.weight_sum = self._weight_sum()
        self._shape = self._largest_block()
        self.buffer_bytes = 8 * (self._shape[0] + 1) + 8 * self._shape[1] + 20 * self._shape[0]  # the block buffer
        self._buffers: dict | None = None
        self._loaded: tuple | None = None  # (block index, its arrays in the buffer): Dask rounds share blocks
        self._counts: np.ndarray | None = None  # feature_counts, once computed

    def name_of(self, i: int) -> str:
        return self._names[i]

    def __getstate__(self) -> dict:  # what Dask spills or moves: the files and layout, never the buffers
        return {**self.__dict__, "_buffers": None, "_loaded": None}

    def _largest_block(self) -> tuple:
        rows = nnz = 0
        for cache in self.caches:
            starts = np.arange(0, cache.n_rows, int(cache.block_rows), dtype=np.int64)
            if starts.size:
                bounds = cache.indptr_at(np.append(starts, cache.n_rows))
                nnz = max(nnz, int(np.max(np.diff(bounds))))
                rows = max(rows, int(np.max(np.minimum(starts + int(cache.block_rows), cache.n_rows) - starts)))
        return rows, nnz

    # ------------------------------------------------------------------ layout and held-out rows
    def held_mask(self, b: int) -> np.ndarray:
        """The held-out mask of block b's rows (all False without a holdout)."""
        _, start, stop, first, key = self.blocks[b]
        if self.holdout is None:
            return np.zeros(stop - start, dtype=bool)
        if isinstance(self.holdout, np.ndarray):
            return self.holdout[first:first + stop - start]
        fraction, seed = self.holdout
        return np.random.default_rng([int(seed), *key]).random(stop - start) < fraction

    def kept_rows(self, b: int) -> int:
        _, start, stop, _, _ = self.blocks[b]
        return stop - start if self.holdout is None else int(np.count_nonzero(~self.held_mask(b)))

    def with_holdout(self, holdout) -> "CacheRows":
        """These rows without `holdout` (a bool per row, or (fraction, seed): see held_mask)."""
        return CacheRows(self.caches, self.encode, holdout, self._class_weights, self.file_keys, self._names,
                         self.n_features)

    def describe(self) -> str:
        """The files, as errors name them."""
        return self.name_of(0) if len(self.caches) == 1 else f"{len(self.caches)} cache files"

    def hold_out_split(self, fraction: float, rng: np.random.Generator, stratify: bool):
        """One process's hold-out: the rows held out in memory (fastafm.training.cache_holdout.split)."""
        return cache_holdout.split(self, fraction, rng, stratify)

    def hold_out(self, fraction: float, seed: int, refuse_empty: bool = True):
        """A Dask worker's hold-out: a seeded subset of every block (fastafm.training.cache_holdout.per_block)."""
        return cache_holdout.per_block(self, fraction, seed, refuse_empty)

    def target_range(self) -> tuple:
        """(min, max) of the encoded targets of the rows trained (held-out rows excluded)."""
        lo, hi = np.inf, -np.inf
        for b in range(len(self.blocks)):
            f, start, stop, _, _ = self.blocks[b]
            y = np.asarray(self.encode(self.caches[f].read_labels(start, stop)))[~self.held_mask(b)]
            if y.size:
                lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
        return lo, hi

    # ------------------------------------------------------------------ reading
    def _allocate(self) -> dict:
        if self._buffers is None:
            rows, nnz = self._shape
            weighted = any(c.has_weights for c in self.caches)
            self._buffers = {"indptr": np.empty(rows + 1, dtype=np.int64), "indices": np.empty(nnz, dtype=np.int32),
                             "values": np.empty(nnz, dtype=np.float32), "labels": np.empty(rows, dtype=np.float32),
                             "weights": np.empty(rows if weighted else 0, dtype=np.float32)}
        return self._buffers

    def nbytes_buffer(self) -> int:
        """Bytes of the block buffer (0 until the first block is read)."""
        return 0 if self._buffers is None else sum(a.nbytes for a in self._buffers.values())

    def read(self, b: int) -> tuple:
        """(indptr, indices, values, labels, weights or None) of block b's rows trained (without its held-out
        rows, packed to the front, so that a kept row's position, the key of its dropout mask, is its rank
        among the kept rows, as in memory), in the source's buffer (read unless it is there: a Dask worker's
        consecutive rounds train parts of one block)."""
        if self._loaded is not None and self._loaded[0] == b:
            return self._loaded[1]
        f, start, stop, _, _ = self.blocks[b]
        self._loaded = None
        buffers = self._allocate()
        try:
            indptr, indices, values, labels = self.caches[f].read_block(start, stop, buffers)
        except OSError as exc:  # a file removed or unreadable after the fit started
            raise OSError(f"{self.name_of(f)}: {exc}") from exc
        w = self.block_weights(b, labels, buffers["weights"])
        held = self.held_mask(b)
        arrays = (indptr, indices, values, labels, w)
        if held.any():
            arrays = _pack_rows(~held, *arrays)
        self._loaded = (b, arrays)
        return arrays

    def block_weights(self, b: int, labels=None, out=None) -> np.ndarray | None:
        """The float32 weights of block b's rows: the file's weights times the class weights of their labels
        (read when not given), None when there are neither."""
        f, start, stop, _, _ = self.blocks[b]
        cache = self.caches[f]
        w = cache.read_weights(start, stop, out) if cache.has_weights else None
        if self._class_weights is None:
            return w
        if labels is None:
            labels = cache.read_labels(start, stop)
        cw = self._class_weights(labels)
        return (cw if w is None else cw * w).astype(np.float32)  # one rounding, as in memory

    def _weight_sum(self) -> float:
        """The trained rows' total weight: one pass over the weights (and, with class weights, labels)
        sections; n_rows without either."""
        if not any(c.has_weights for c in self.caches) and self._class_weights is None:
            return float(self.n_rows)
        total = 0.0
        for b in range(len(self.blocks)):
            w = self.block_weights(b)
            kept = ~self.held_mask(b)
            total += float(np.count_nonzero(kept)) if w is None else float(np.sum(w[kept], dtype=np.float64))
        return total

    def check_weight(self) -> None:
        """ValueError when the trained rows all have weight 0 (one process; a Dask worker's part may)."""
        if not self.weight_sum > 0:
            raise ValueError(f"{self.name_of(0)}: the rows trained on all have weight 0")

    def check_pairs(self) -> None:  # the limit on pairs per row (fastafm.data.limits) from the headers
        _check_pairs(self.caches)

    def check_memory(self, spec, settings: dict) -> None:
        check_kernel_memory_sizes(max((int(c.max_row_nnz) for c in self.caches), default=0), self._shape[0],
                                  self.n_features, spec.embedding_dim, spec.attention_dim, int(settings["n_threads"]),
                                  batch_size=int(settings["batch_size"]), attention=spec.attention,
                                  extra=self.buffer_bytes)

    def feature_counts(self, n_features: int) -> np.ndarray:
        """Each feature's stored occurrences in the rows trained (held-out rows and rows of weight 0 excluded):
        one pass over the blocks through the epoch's buffer, once per source (float32, frequency_l2's n_i)."""
        if self._counts is None:
            counts = np.zeros(n_features, dtype=np.int64)
            for b in range(len(self.blocks)):
                indptr, indices, _, _, w = self.read(b)
                # every row counted: no mask (a masked count copies the block's indices)
                mask = None if w is None or bool(np.all(w > 0)) else w > 0
                counts += feature_occurrences(indptr, indices, n_features, mask)
            self._counts = counts.astype(np.float32)
        return self._counts

    def target_sums(self) -> tuple:
        """(sum of weight x target, sum of weight) of the rows trained (held-out rows excluded): one pass over
        the labels (and weights) sections."""
        total = weight = 0.0
        for b in range(len(self.blocks)):
            f, start, stop, _, _ = self.blocks[b]
            labels = self.caches[f].read_labels(start, stop)
            y = np.asarray(self.encode(labels), dtype=np.float64)
            kept = ~self.held_mask(b)
            w = self.block_weights(b, labels)
            w = np.ones(stop - start) if w is None else w.astype(np.float64)
            total += float(np.dot(w[kept], y[kept]))
            weight += float(w[kept].sum())
        return total, weight

    # ------------------------------------------------------------------ training
    def epoch_order(self, rng: np.random.Generator) -> BlockOrder:
        """One process's order: the blocks permuted by `rng` (no draw for a single block), each block's rows
        drawn from `rng` when the epoch reaches it."""
        n = len(self.blocks)
        return BlockOrder(self, rng.permutation(n) if n > 1 else np.arange(n), rng=rng)

    def seeded_order(self, seed: int) -> BlockOrder:
        """A Dask worker's order from one seed: the block permutation and a seed per block (a single block's
        rows are permuted by `seed` itself, as the same rows in memory)."""
        n = len(self.blocks)
        if n == 1:
            blocks, seeds = np.zeros(1, np.int64), np.array([seed], np.int64)
        else:
            rng = np.random.default_rng(seed)
            blocks, seeds = rng.permutation(n), rng.integers(0, 2**63 - 1, n)
        return BlockOrder(self, blocks, seeds=seeds)

    def run_range(self, trainer, order: BlockOrder, lo: int, hi: int, seed: int, epoch: int, progress=None,
                  touched=None) -> float:
        """Train positions [lo, hi) of the epoch's order, one core call per block they cover; NaN as soon as a
        block diverges. Appends the trained rows' feature ids to `touched` (a list) if given."""
        total, done = 0.0, 0
        ends = np.cumsum(order.sizes)
        for i in range(int(np.searchsorted(ends, lo, side="right")), len(ends)):
            first = int(ends[i] - order.sizes[i])
            if first >= hi:
                break
            b = int(order.blocks[i])
            indptr, indices, values, labels, w = self.read(b)
            rows = order.rows(i)[max(lo - first, 0):hi - first]
            hook = None if progress is None else _offset_progress(progress, done)
            res = trainer.run(indptr, indices, values, self.encode(labels), rows, block_seed(seed, self.blocks[b][3]),
                              epoch, progress=hook, weights=w)
            if res["diverged"]:
                return float("nan")
            total += float(res["loss_sum"])
            done += rows.shape[0]
            if touched is not None:
                touched.append(row_ids(indptr, indices, rows))
            if progress is not None:  # the core reports by time; a block's end is always reported
                progress(done)
        return total

    def run_epoch(self, state, trainer, progress) -> float:
        order = self.epoch_order(state.rng)
        return self.run_range(trainer, order, 0, self.n_rows, state.dropout_seed, state.n_epochs_done, progress)

def _pack_rows(kept: np.ndarray, indptr, indices, values, labels, w) -> tuple:
    """The `kept` rows of a block's arrays moved, in order, to the front of the same arrays (views of them)."""
    lengths = np.diff(indptr)
    entries = np.repeat(kept, lengths)
    nnz = int(np.count_nonzero(entries))
    indices[:nnz] = indices[: entries.shape[0]][entries]
    values[:nnz] = values[: entries.shape[0]][entries]
    n = int(np.count_nonzero(kept))
    labels[:n] = labels[kept]
    np.cumsum(lengths[kept], out=indptr[1:n + 1])
    indptr[0] = 0
    out_w = None
    if w is not None:
        w[:n] = w[kept]
        out_w = w[:n]
    return indptr[:n + 1], indices[:nnz], values[:nnz], labels[:n], out_w


def _offset_progress(progress, done: int):
    def hook(rows_done):
        return progress(done + rows_done)

    return hook


def _check_pairs(caches: list) -> None:
    for c in caches:
        check_longest(int(c.max_row_nnz), str(c.path))
