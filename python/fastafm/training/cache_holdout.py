"""Held-out validation rows of cache files (fastafm.training.cache_rows.CacheRows), for early stopping without
an eval_set, and a cache's training rows read into memory.

* One process (`split`): the rows an in-memory fit of the same rows (the files' rows in order) holds out with
  the same generator: fastafm.training.rows.holdout_mask of all the rows, stratified by the encoded labels (read
  from the labels sections, 4 bytes a row) for a classifier. The mask is kept, one byte a row; the split draws
  about 25 bytes a row while it runs.
* A Dask worker (`per_block`): each row held out with probability `fraction`, drawn per block from the seed and
  the block's key, so that no worker reads another's labels and the rows do not depend on which worker holds
  which file.

Either way the held-out rows are read into memory once (an InMemoryEval) and skipped by the epochs.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..data.validation import check_memory
from .evaluation import InMemoryEval
from .rows import InMemoryRows, holdout_mask


def split(source, fraction: float, rng: np.random.Generator, stratify: bool):
    """(rows without the held-out ones, an InMemoryEval of those rows): the rows `InMemoryRows.hold_out` holds
    out of the same rows with the same generator."""
    n_all = sum(int(c.n_rows) for c in source.caches)
    check_memory(25 * n_all, f"the validation split of the {n_all} rows of {source.describe()}")
    strata = encoded_targets(source) if stratify else None
    try:
        mask = holdout_mask(n_all, fraction, rng, strata)
    except ValueError as exc:
        raise ValueError(f"{source.describe()}: {exc}") from None
    del strata
    return _held_out(source, source.with_holdout(mask), fraction, True)


def per_block(source, fraction: float, seed: int, refuse_empty: bool = True):
    """(rows that skip a seeded subset of every block's rows, an InMemoryEval of those rows: features, encoded
    targets, weights or None); `refuse_empty` False: a worker's part may hold out none or all."""
    return _held_out(source, source.with_holdout((float(fraction), int(seed))), fraction, refuse_empty)


def encoded_targets(source) -> np.ndarray:
    """The encoded float32 targets of all the files' rows, in order (their labels sections)."""
    parts = [np.array(source.encode(c.read_labels(0, int(c.n_rows))), dtype=np.float32) for c in source.caches]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def in_memory(rows) -> InMemoryRows:
    """The rows trained (held-out rows excluded) read into an InMemoryRows in the files' order, with their
    weights: what the exact linear stage solves on (fastafm.training.exact_linear, bounded by its MAX_NNZ)."""
    check_memory(int(rows.nnz * 8 * 1.5) + 12 * rows.n_rows, f"the training rows of {rows.describe()}")
    parts, targets, weights = [], [], []
    for b in range(len(rows.blocks)):
        indptr, indices, values, labels, w = rows.read(b)  # views of the block buffer: copied
        parts.append(sp.csr_matrix((values.copy(), indices.copy(), indptr.copy()),
                                   shape=(indptr.shape[0] - 1, rows.n_features)))
        targets.append(np.array(rows.encode(labels), dtype=np.float32))
        if w is not None:
            weights.append(w.copy())
    X = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, rows.n_features), dtype=np.float32)
    y = np.concatenate(targets) if targets else np.zeros(0, np.float32)
    return InMemoryRows(X, y, np.concatenate(weights) if weights else None)


def _held_out(source, rows, fraction: float, refuse_empty: bool):
    n_all = sum(int(c.n_rows) for c in source.caches)
    n_held = n_all - rows.n_rows
    if refuse_empty and (n_held == 0 or rows.n_rows == 0):  # (one process; a Dask worker may keep all)
        raise ValueError(f"validation_fraction={fraction} of the {n_all} rows of {source.describe()} "
                         f"holds out {'no' if n_held == 0 else 'all'} rows; early stopping needs rows on both "
                         "sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
    check_memory(int(source.nnz * fraction * 8 * 1.5) + 16 * n_held,
                 f"the {n_held} held-out validation rows of {source.name_of(0)}")
    parts, targets, weights = _held_out_rows(source, rows)
    w_val = np.concatenate(weights) if weights else None
    if refuse_empty:
        rows.check_weight()
    if refuse_empty and w_val is not None and not np.any(w_val > 0):
        raise ValueError(f"validation_fraction={fraction}: the rows of {source.name_of(0)} held out all have "
                         "weight 0; early stopping needs weight on them (pass an eval_set, or set "
                         "early_stopping=False)")
    if not parts:
        X_val = sp.csr_matrix((0, source.n_features), dtype=np.float32)
        return rows, InMemoryEval(X_val, np.zeros(0, np.float32), None)
    return rows, InMemoryEval(sp.vstack(parts, format="csr"), np.concatenate(targets), w_val)


def _held_out_rows(source, kept) -> tuple:
    """(CSR parts, encoded targets, weights) of the rows `kept` holds out of `source`'s blocks, block by block."""
    parts, targets, weights = [], [], []
    for b in range(len(source.blocks)):
        mask = kept.held_mask(b)
        if mask.any():
            f, start, stop, _, _ = source.blocks[b]
            try:
                X, labels = source.caches[f].read_rows(start, stop)
            except OSError as exc:
                raise OSError(f"{source.name_of(f)}: {exc}") from exc
            X = X[np.flatnonzero(mask)]
            if X.shape[1] < source.n_features:  # a narrower file's rows
                X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], source.n_features))
            parts.append(X)
            targets.append(np.array(source.encode(labels), dtype=np.float32)[mask])
            w = source.block_weights(b, labels)
            if w is not None:
                weights.append(w[mask])
    return parts, targets, weights
