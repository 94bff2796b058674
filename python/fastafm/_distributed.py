"""Worker-side steps of data-parallel training (used by fastafm.dask; plain NumPy, no dask import).

Each worker holds a `Shard`: the rows of the partitions assigned to it, as one CSR matrix and encoded
targets. Training proceeds in sync rounds: every worker runs the C++ core over its next slice of rows,
starting from the same `State` (parameters and the optimizer's slots, fastafm._optim), and returns an
`Update`; `merge` averages the updates into the next State.

Averaging rule ("sparse-aware parameter averaging"):

* dense parameters (w0, W, b, h, p) and their optimizer slots: the mean of the workers' values, weighted by the
  rows each worker trained in the round;
* rows of the sparse parameters (w, V) and their optimizer slots: for every feature id, the mean over the workers
  that touched it, weighted by how often each saw it. A feature seen by one worker keeps that worker's value
  exactly (plain averaging would shrink its step by the number of workers); a row no worker touched is
  unchanged. An update carries only the touched rows, so its size follows the data, not n_features.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import _core
from ._engine import make_config
from ._validation import as_csr, as_targets, check_class_labels, column_or_1d, csr_arrays

SPARSE = ("w", "V")
DENSE = ("w0", "W", "b", "h", "p")


@dataclass
class Shard:
    """A worker's rows: CSR X (int64 indptr, int32 indices, float32 values) and targets y."""

    X: sp.csr_matrix
    y: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @functools.cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (indptr, indices, values) arrays the core takes, converted once per shard, not per round."""
        return csr_arrays(self.X)


@dataclass
class State:
    """The model between rounds, plus running counters of the current epoch and of the whole fit."""

    params: dict
    slots: dict  # {slot: {name: array}}, the optimizer's state
    epoch_loss: float = 0.0
    epoch_rows: int = 0
    stats: dict = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(a.nbytes for d in _groups(self) for a in d.values())


@dataclass
class Update:
    """One worker's result of one round: the dense parameters, the touched rows of w and V (ids, counts and
    values), both with their optimizer slots, and what the round cost."""

    rows: int
    loss_sum: float
    ids: np.ndarray
    counts: np.ndarray
    params: dict
    slots: dict
    seconds: float

    def nbytes(self) -> int:
        return self.ids.nbytes + self.counts.nbytes + sum(a.nbytes for d in _groups(self) for a in d.values())


def _groups(obj) -> list:
    """The parameter dict and each slot's dict of a State or Update, in a fixed order."""
    return [obj.params] + [obj.slots[s] for s in sorted(obj.slots)]


# ---------------------------------------------------------------------------------------------- shards
def load_shard(x_blocks: list, y_blocks: list, first_block: int, n_features: int, classifier: bool) -> Shard:
    """Concatenate a worker's partitions into one Shard, checking each (X block, y block) pair.

    Regression targets are checked and stored as float32; class labels are kept as given (encode_shard
    turns them into -1/+1 once the classes of all shards are known). Empty partitions are skipped.
    """
    if len(x_blocks) != len(y_blocks):
        raise ValueError(f"X has {len(x_blocks)} partitions but y has {len(y_blocks)}")
    mats, targets = [], []
    for i, (xb, yb) in enumerate(zip(x_blocks, y_blocks)):
        part = first_block + i
        n_x = int(xb.shape[0])
        y_arr = np.asarray(yb)
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = y_arr[:, 0]
        if y_arr.ndim != 1:
            raise ValueError(f"y must be 1-D, got a partition of shape {y_arr.shape}")
        if y_arr.shape[0] != n_x:
            raise ValueError(f"partition {part}: X has {n_x} rows but y has {y_arr.shape[0]}; X and y must be "
                             "partitioned alike (same row chunks / divisions)")
        if n_x == 0:
            continue
        mats.append(as_csr(xb, name=f"X (partition {part})", n_features=n_features, owner="this model"))
        if classifier:
            targets.append(column_or_1d(y_arr, "y"))
        else:
            targets.append(as_targets(y_arr, n_x, name=f"y (partition {part})"))
    if not mats:
        return Shard(as_csr_empty(n_features), np.zeros(0, np.float32))
    X = mats[0] if len(mats) == 1 else sp.vstack(mats, format="csr")
    return Shard(X, np.concatenate(targets))


def load_cache_shard(caches: list, first_file: int, n_features: int, classifier: bool) -> Shard:
    """A Shard from whole cache files (fastafm.CacheFile objects, read here, on the worker). Files written
    separately may have fewer features than the widest; their rows are valid as they are."""
    x_blocks, y_blocks = [], []
    for cache in caches:
        X, y = cache.read_rows(0, cache.n_rows)
        x_blocks.append(sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features), copy=False))
        y_blocks.append(y)
    return load_shard(x_blocks, y_blocks, first_file, n_features, classifier)


def as_csr_empty(n_features: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64)),
                         shape=(0, n_features))


def shard_summary(shard: Shard, classifier: bool) -> dict:
    """Row count and label range (regressor) or the distinct labels (classifier) of a shard."""
    out: dict = {"n_rows": shard.n_rows}
    if shard.n_rows == 0:
        return out
    if classifier:
        check_class_labels(shard.y, fitting=True, classifier="DaskAFMClassifier", regressor="DaskAFMRegressor")
        out["labels"] = np.unique(shard.y)
    else:
        out["y_min"], out["y_max"] = float(shard.y.min()), float(shard.y.max())
    return out


def encode_shard(shard: Shard, positive) -> Shard:
    """Class labels -> float32 +1 (the positive class) / -1."""
    return Shard(shard.X, np.where(shard.y == positive, 1.0, -1.0).astype(np.float32))


def epoch_order(n_rows: int, seed: int) -> np.ndarray:
    """The shuffled order of a shard's rows for one epoch."""
    return np.random.default_rng(seed).permutation(n_rows).astype(np.int64)


# ---------------------------------------------------------------------------------------------- rounds
def train_round(shard: Shard, order: np.ndarray, state: State, lo: int, hi: int, settings: dict, seed: int,
                epoch: int) -> Update:
    """Train rows order[lo:hi] of the shard from `state` (copied: the state may be shared in memory)."""
    rows = order[lo:hi]
    params = {name: a.copy() for name, a in state.params.items()}
    slots = {slot: {name: a.copy() for name, a in d.items()} for slot, d in state.slots.items()}
    start = time.perf_counter()
    res = _core.train_epoch(params, slots, *shard.arrays, shard.y, rows, make_config(settings, seed, epoch))
    seconds = time.perf_counter() - start
    indptr, indices, _ = shard.arrays
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    flat = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(int(lengths.sum()))
    ids, counts = _touched(indices[flat], shard.X.shape[1])
    out_p = {name: params[name][ids] if name in SPARSE else params[name] for name in params}
    out_s = {slot: {name: d[name][ids] if name in SPARSE else d[name] for name in d} for slot, d in slots.items()}
    return Update(int(rows.shape[0]), float(res["loss_sum"]), ids, counts.astype(np.float32), out_p, out_s,
                  seconds)


def _touched(ids: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct feature ids (sorted, int32) among `ids` and how often each occurs. A bincount over all
    features when that is the cheaper pass, a sort otherwise (many more features than occurrences)."""
    if n_features <= 4 * ids.shape[0]:
        counts = np.bincount(ids, minlength=n_features)
        distinct = np.flatnonzero(counts)
        return distinct.astype(np.int32), counts[distinct]
    distinct, counts = np.unique(ids, return_counts=True)
    return distinct.astype(np.int32), counts


def merge(state: State, updates: list, new_epoch: bool, combine: str = "average") -> State:
    """The next State: `updates` combined onto `state` (see the module docstring), and the counters."""
    updates = [u for u in updates if u.rows > 0]
    stats = dict(state.stats)
    start = time.perf_counter()
    params = dict(state.params)
    slots = {slot: dict(d) for slot, d in state.slots.items()}
    # Each (destination, source) pair: the parameters, then every optimizer slot, merged by the same rule.
    pairs = [(params, lambda u: u.params)] + [(slots[s], lambda u, s=s: u.slots[s]) for s in sorted(slots)]
    total = sum(u.rows for u in updates)
    if total:
        for name in DENSE:
            for dst, src in pairs:
                old = np.asarray(dst[name], np.float64)
                if combine == "sum":
                    acc = old + sum(np.asarray(src(u)[name], np.float64) - old for u in updates)
                else:
                    acc = sum(np.asarray(src(u)[name], np.float64) * u.rows for u in updates) / total
                dst[name] = acc.astype(np.float32)
        union = np.unique(np.concatenate([u.ids for u in updates]))
        den = np.zeros(union.shape[0], np.float64)
        positions = [np.searchsorted(union, u.ids) for u in updates]
        for u, pos in zip(updates, positions):
            den[pos] += u.counts
        for name in SPARSE:
            shape = (-1,) + (1,) * (state.params[name].ndim - 1)
            # Each worker's share of a row's weight (exactly 1.0 where it was the only one to touch the row,
            # so such rows keep that worker's values bit for bit).
            weights = [(u.counts / den[pos]).astype(np.float32).reshape(shape) for u, pos in zip(updates, positions)]
            for dst, src in pairs:
                full = dst[name].copy()
                if combine == "sum":  # old + the sum of the workers' changes
                    acc = full[union]
                    old = acc.copy()
                    for u, pos in zip(updates, positions):
                        acc[pos] += src(u)[name] - old[pos]
                else:  # the mean over the workers that touched the row, weighted by their counts
                    acc = np.zeros((union.shape[0],) + full.shape[1:], np.float32)
                    for u, pos, c in zip(updates, positions, weights):
                        acc[pos] += c * src(u)[name]
                full[union] = acc
                dst[name] = full
    stats["rounds"] = stats.get("rounds", 0) + 1
    stats["bytes_up"] = stats.get("bytes_up", 0) + sum(u.nbytes() for u in updates)
    stats["updates"] = stats.get("updates", 0) + len(updates)
    stats["merge_seconds"] = stats.get("merge_seconds", 0.0) + time.perf_counter() - start
    stats["compute_seconds"] = stats.get("compute_seconds", 0.0) + sum(u.seconds for u in updates)
    stats["max_compute_seconds"] = stats.get("max_compute_seconds", 0.0) + max((u.seconds for u in updates),
                                                                               default=0.0)
    loss = sum(u.loss_sum for u in updates)
    rows = sum(u.rows for u in updates)
    if new_epoch:
        return State(params, slots, loss, rows, stats)
    return State(params, slots, state.epoch_loss + loss, state.epoch_rows + rows, stats)


def summarize(state: State) -> dict:
    """What the driver needs after an epoch: the epoch's mean loss, whether the model is finite, counters."""
    finite = all(np.isfinite(np.sum(a, dtype=np.float64)) for d in _groups(state) for a in d.values())
    return {"loss_sum": state.epoch_loss, "rows": state.epoch_rows, "finite": bool(finite),
            "stats": dict(state.stats), "state_bytes": state.nbytes()}


def fetch(state: State) -> tuple:
    """The parameters and optimizer slots (to the driver, once, at the end of fit)."""
    return state.params, state.slots
