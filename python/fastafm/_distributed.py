"""Worker-side steps of data-parallel training (used by fastafm.dask; plain NumPy, no dask import).

Each worker holds a `Shard`: the rows of the partitions assigned to it, as one CSR matrix and encoded
targets, or, for cache files, a `StreamShard`: the files themselves, read one block at a time into one reusable
buffer, so a worker never holds its whole shard (memory: one block + the model and its optimizer state). Training proceeds in sync rounds: every worker runs the C++ core over its next slice of rows,
starting from the same `State` (parameters and the optimizer's slots, fastafm._optim), and returns an
`Update`; `merge` averages the updates into the next State.

Averaging rule ("sparse-aware parameter averaging"):

* dense parameters (w0, W, b, h, p) and their optimizer slots: the mean of the workers' values, weighted by the
  rows each worker trained in the round;
* rows of the sparse parameters (w, V) and their optimizer slots: for every feature id, the mean over the workers
  that touched it, weighted by how often each saw it. A feature seen by one worker keeps that worker's value
  exactly (plain averaging would shrink its step by the number of workers); a row no worker touched is
  unchanged. An update carries only the touched rows, so its size follows the data, not n_features.
  Adam's step counts follow the same rules: slot step's w (a count per row) like the rows, its w0 (the dense
  parameters' count) like the dense parameters, so a count may become a non-integer mean.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import _core
from ._engine import make_config
from ._streaming import block_seed
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


class StreamShard:
    """A worker's cache files (fastafm.CacheFile, reopened and validated on the worker), streamed in blocks of
    each file's `block_rows` rows through one buffer sized for the largest block. Files written separately may
    have fewer features than the widest; their rows are valid as they are. `positive` is the label trained as
    +1 (classifiers, set by encode_shard); regression labels are trained as they are."""

    def __init__(self, caches: list, first_file: int, n_features: int, classifier: bool, positive=None):
        self.caches = list(caches)
        self.first_file = first_file
        self.n_features = n_features
        self.classifier = classifier
        self.positive = positive
        # (file, first row, stop row, first row in the shard) of every block, files in order
        self.blocks: list = []
        offset = 0
        for i, cache in enumerate(self.caches):
            for start in range(0, cache.n_rows, int(cache.block_rows)):
                stop = min(start + int(cache.block_rows), cache.n_rows)
                self.blocks.append((i, start, stop, offset + start))
            offset += cache.n_rows
        self.n_rows = offset
        self._buffers: dict | None = None
        self._loaded: tuple | None = None  # (block index, arrays)

    def __getstate__(self) -> dict:
        # What Dask spills or moves: the files and the block layout, never the block buffer (re-read on use).
        return {**self.__dict__, "_buffers": None, "_loaded": None}

    def nbytes_buffer(self) -> int:
        return 0 if self._buffers is None else sum(a.nbytes for a in self._buffers.values())

    def _allocate(self) -> dict:
        if self._buffers is None:
            rows = max((stop - start for _, start, stop, _ in self.blocks), default=0)
            nnz = max((int(np.diff(self.caches[f].indptr_at([start, stop]))[0])
                       for f, start, stop, _ in self.blocks), default=0)
            self._buffers = {"indptr": np.empty(rows + 1, np.int64), "indices": np.empty(nnz, np.int32),
                             "values": np.empty(nnz, np.float32), "labels": np.empty(rows, np.float32)}
        return self._buffers

    def block(self, b: int) -> tuple:
        """(indptr, indices, values, y) of block b, as the core trains them (read unless it is loaded)."""
        if self._loaded is None or self._loaded[0] != b:
            f, start, stop, _ = self.blocks[b]
            try:
                indptr, indices, values, labels = self.caches[f].read_block(start, stop, self._allocate())
            except OSError as exc:  # a file removed or unreadable after the fit started
                raise OSError(f"partition {self.first_file + f} ({self.caches[f].path}): {exc}") from exc
            if self.classifier:
                y = np.where(labels == self.positive, 1.0, -1.0).astype(np.float32)
            else:
                y = labels
            self._loaded = (b, (indptr, indices, values, y))
        return self._loaded[1]


def load_cache_shard(caches: list, first_file: int, n_features: int, classifier: bool) -> StreamShard:
    """The StreamShard of a worker's cache files; nothing but their headers is read here."""
    return StreamShard(caches, first_file, n_features, classifier)


def as_csr_empty(n_features: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64)),
                         shape=(0, n_features))


def shard_summary(shard, classifier: bool) -> dict:
    """Row count and label range (regressor) or the distinct labels (classifier) of a shard."""
    out: dict = {"n_rows": shard.n_rows}
    if shard.n_rows == 0:
        return out
    if isinstance(shard, StreamShard):
        return {**out, **_stream_labels(shard, classifier)}
    if classifier:
        check_class_labels(shard.y, fitting=True, classifier="DaskAFMClassifier", regressor="DaskAFMRegressor")
        out["labels"] = np.unique(shard.y)
    else:
        out["y_min"], out["y_max"] = float(shard.y.min()), float(shard.y.max())
    return out


def _stream_labels(shard: StreamShard, classifier: bool) -> dict:
    """The label facts of cache files from their headers (label range, and up to 2 distinct values)."""
    used = [c for c in shard.caches if c.n_rows]
    if not classifier:
        return {"y_min": min(c.label_min for c in used), "y_max": max(c.label_max for c in used)}
    labels = set()
    for c in used:
        if c.n_label_values > 2:
            raise ValueError(f"{c.path} holds more than two distinct labels; a classifier needs two classes")
        labels.update({c.label_min, c.label_max})
    values = np.array(sorted(labels), dtype=np.float32)
    check_class_labels(values, fitting=True, classifier="DaskAFMClassifier", regressor="DaskAFMRegressor")
    return {"labels": values}


def encode_shard(shard, positive):
    """Class labels -> float32 +1 (the positive class) / -1 (a StreamShard encodes each block as it reads it)."""
    if isinstance(shard, StreamShard):
        return StreamShard(shard.caches, shard.first_file, shard.n_features, shard.classifier, positive)
    return Shard(shard.X, np.where(shard.y == positive, 1.0, -1.0).astype(np.float32))


@dataclass
class StreamOrder:
    """One epoch's order over a StreamShard: the blocks in `blocks` order, each in the permutation drawn from
    its seed. A shard of one block is ordered exactly as the same rows in memory (epoch_order of the seed)."""

    blocks: np.ndarray
    seeds: np.ndarray
    sizes: np.ndarray  # rows of each block, in epoch order
    # The last block's permutation: consecutive rounds train consecutive parts of one block, so it is drawn
    # once per block, not once per round.
    _last: tuple | None = field(default=None, repr=False, compare=False)

    def rows(self, i: int) -> np.ndarray:
        if self._last is None or self._last[0] != i:
            perm = np.random.default_rng(int(self.seeds[i])).permutation(int(self.sizes[i])).astype(np.int64)
            self._last = (i, perm)
        return self._last[1]


def epoch_order(shard, seed: int):
    """The shuffled order of a shard's rows for one epoch (a StreamOrder for a StreamShard)."""
    if not isinstance(shard, StreamShard):
        return np.random.default_rng(seed).permutation(shard.n_rows).astype(np.int64)
    n = len(shard.blocks)
    if n == 1:
        blocks, seeds = np.zeros(1, np.int64), np.array([seed], np.int64)
    else:
        rng = np.random.default_rng(seed)
        blocks, seeds = rng.permutation(n), rng.integers(0, 2**63 - 1, n)
    sizes = np.array([shard.blocks[b][2] - shard.blocks[b][1] for b in blocks.tolist()], np.int64)
    return StreamOrder(blocks, seeds, sizes)


# ---------------------------------------------------------------------------------------------- rounds
def train_round(shard: Shard | StreamShard, order, state: State, lo: int, hi: int, settings: dict, seed: int, epoch: int) -> Update:
    """Train rows [lo, hi) of the epoch's order of the shard from `state` (copied: the state may be shared in
    memory). A StreamShard trains the part of each block the range covers with one core call per block (the
    dropout seed of a block derives from its first row, as in the single-process streaming fit)."""
    params = {name: a.copy() for name, a in state.params.items()}
    slots = {slot: {name: a.copy() for name, a in d.items()} for slot, d in state.slots.items()}
    start = time.perf_counter()
    loss, touched = 0.0, []
    if isinstance(shard, StreamShard):
        ends = np.cumsum(order.sizes)
        for i in range(int(np.searchsorted(ends, lo, side="right")), len(ends)):
            first = int(ends[i] - order.sizes[i])
            if first >= hi:
                break
            b = int(order.blocks[i])
            indptr, indices, values, y = shard.block(b)
            rows = order.rows(i)[max(lo - first, 0):hi - first]
            cfg = make_config(settings, block_seed(seed, shard.blocks[b][3]), epoch)
            loss += float(_core.train_epoch(params, slots, indptr, indices, values, y, rows, cfg)["loss_sum"])
            touched.append(_row_ids(indptr, indices, rows))
        n_rows = hi - lo
    else:
        rows = order[lo:hi]
        res = _core.train_epoch(params, slots, *shard.arrays, shard.y, rows, make_config(settings, seed, epoch))
        loss = float(res["loss_sum"])
        indptr, indices, _ = shard.arrays
        touched.append(_row_ids(indptr, indices, rows))
        n_rows = int(rows.shape[0])
    seconds = time.perf_counter() - start
    n_features = shard.n_features if isinstance(shard, StreamShard) else shard.X.shape[1]
    ids, counts = _touched(np.concatenate(touched), n_features)
    out_p = {name: params[name][ids] if name in SPARSE else params[name] for name in params}
    out_s = {slot: {name: d[name][ids] if name in SPARSE else d[name] for name in d} for slot, d in slots.items()}
    return Update(int(n_rows), loss, ids, counts.astype(np.float32), out_p, out_s, seconds)


def _row_ids(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The feature ids of the given rows (with repeats), as one flat array."""
    starts, stops = indptr[rows], indptr[rows + 1]
    lengths = stops - starts
    flat = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(int(lengths.sum()))
    return indices[flat]


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
                if name not in dst:  # a slot that covers only some parameters (adam's step counts)
                    continue
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
                if name not in dst:
                    continue
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
