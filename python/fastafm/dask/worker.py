"""Worker-side steps of data-parallel training (used by fastafm.dask; plain NumPy, no dask import).

Each worker holds a `Shard`: the rows of the partitions assigned to it, as one CSR matrix and encoded
targets, or, for cache files, a `StreamShard`: the files themselves, read one block at a time into one reusable
buffer, so a worker never holds its whole shard (memory: one block + the model and its optimizer state). Training proceeds in sync rounds: every worker runs the C++ core over its next slice of rows,
starting from the same model, and returns an `Update`; `merge` (on the first worker) averages the updates
into the next `State` (parameters and the optimizer's slots, fastafm._optim). Every worker keeps its own
`Replica` of the model and trains it in place; what reaches it each round is the `Delta` of the merge: the
dense parameters and only the rows of w and V that some worker touched in the round (the only rows a merge
changes), so after applying it the replica equals the merged State again, bit for bit.

Averaging rule ("sparse-aware parameter averaging"):

* dense parameters (w0, W, b, h, p) and their optimizer slots: the mean of the workers' values, weighted by the
  rows each worker trained in the round;
* rows of the sparse parameters (w, V) and their optimizer slots: for every feature id, the mean over the workers
  that touched it, weighted by how often each saw it. A feature seen by one worker keeps that worker's value
  exactly (plain averaging would shrink its step by the number of workers); a row no worker touched is
  unchanged. An update carries only the touched rows, and so does a delta (their union over the workers), so
  both sizes follow the data, not n_features.
  Adam's step counts follow the same rules: slot step's w (a count per row) like the rows, its w0 (the dense
  parameters' count) like the dense parameters, so a count may become a non-integer mean.

Evaluation (early stopping) runs where the evaluation rows are: each worker scores its `EvalPart` with its
replica at the end of an epoch and returns sums (squared and absolute errors, log loss) and, for AUC, the
scores; the driver combines them into the metrics of the in-memory estimators.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .. import _core
from ..training.engine import make_config
from ..training.rows import block_seed, feature_occurrences
from ..data.validation import as_csr, as_targets, check_class_labels, column_or_1d, csr_arrays
from ..training.weights import check_sample_weight

SPARSE = ("w", "V")
DENSE = ("w0", "W", "b", "h", "p")


@dataclass
class Shard:
    """A worker's rows: CSR X (int64 indptr, int32 indices, float32 values), targets y and float32 sample
    weights w (None: all 1)."""

    X: sp.csr_matrix
    y: np.ndarray
    w: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @functools.cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (indptr, indices, values) arrays the core takes, converted once per shard, not per round."""
        return csr_arrays(self.X)

    @functools.cached_property
    def feature_counts(self) -> np.ndarray:
        """frequency_l2's n_i over the shard's rows of positive weight (each worker regularises by its own shard's
        counts)."""
        indptr, indices, _ = self.arrays
        mask = None if self.w is None else self.w > 0
        return feature_occurrences(indptr, indices, self.X.shape[1], mask).astype(np.float32)


@dataclass
class State:
    """The merged model between rounds (never modified in place: a merge makes the next one, so an earlier
    State can be kept as the best epoch's), its round number, the Delta that made it from the previous one,
    and running counters of the current epoch and of the whole fit."""

    params: dict
    slots: dict  # {slot: {name: array}}, the optimizer's state
    epoch_loss: float = 0.0
    epoch_rows: int = 0
    stats: dict = field(default_factory=dict)
    version: int = 0
    delta: Optional["Delta"] = None

    def nbytes(self) -> int:
        return sum(a.nbytes for d in _groups(self) for a in d.values())


@dataclass
class Delta:
    """What a merge changed, sent to every worker's replica instead of the whole State: the rows `ids` of w
    and V (and of their slots), and every dense parameter and slot. `version` is the State it leads to."""

    version: int
    ids: np.ndarray
    params: dict  # name -> the rows `ids` (w, V) or the whole array (dense)
    slots: dict

    def nbytes(self) -> int:
        return self.ids.nbytes + sum(a.nbytes for d in _groups(self) for a in d.values())


@dataclass
class Replica:
    """A worker's own copy of the model, trained in place and brought back to the merged State by each Delta."""

    params: dict
    slots: dict
    version: int

    def apply(self, delta: Optional[Delta]) -> None:
        """Copy a delta in (once: a delta of a version already applied is skipped)."""
        if delta is None or delta.version <= self.version:
            return
        if delta.version != self.version + 1:
            raise RuntimeError(f"replica at round {self.version} got the delta of round {delta.version}")
        for dst, src in zip(_groups(self), _groups(delta)):
            for name, arr in src.items():
                if name in SPARSE:
                    dst[name][delta.ids] = arr
                else:
                    np.copyto(dst[name], arr)
        self.version = delta.version


# The replicas of the fits in progress, by key, outside Dask's managed memory: Dask may spill what it manages
# and, for a value larger than its spill target, hand a task a fresh copy from disk, which would lose the
# in-place training. A worker that restarts loses them, and the fit says so (replica()).
_REPLICAS: dict = {}


def new_replica(state: State, key: str) -> str:
    """Make this worker's replica of `state` (copies: the replica is trained in place); returns its key."""
    _REPLICAS[key] = Replica({k: a.copy() for k, a in state.params.items()},
                             {s: {k: a.copy() for k, a in d.items()} for s, d in state.slots.items()},
                             state.version)
    return key


def replica(key: str) -> Replica:
    try:
        return _REPLICAS[key]
    except KeyError:
        raise RuntimeError(f"the model replica {key} is gone from this worker (did the worker restart during "
                           "fit?); fit again") from None


def drop_replica(key: str) -> None:
    _REPLICAS.pop(key, None)


def delta_of(state: State) -> Optional[Delta]:
    """The delta a merge attached to its State (what the replicas fetch each round)."""
    return state.delta


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
def load_shard(x_blocks: list, y_blocks: list, first_block: int, n_features: int, classifier: bool,
               w_blocks: list | None = None) -> Shard:
    """Concatenate a worker's partitions into one Shard, checking each (X block, y block[, weight block]).

    Regression targets are checked and stored as float32; class labels are kept as given (encode_shard
    turns them into -1/+1 once the classes of all shards are known). Empty partitions are skipped.
    """
    if len(x_blocks) != len(y_blocks):
        raise ValueError(f"X has {len(x_blocks)} partitions but y has {len(y_blocks)}")
    mats, targets, weights = [], [], []
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
        if w_blocks is not None:  # all zero is fine here: the driver checks the total weight
            w = check_sample_weight(np.asarray(w_blocks[i]), n_x, f"sample_weight (partition {part})",
                                    positive_sum=False)
            assert w is not None
            weights.append(w)
        mats.append(as_csr(xb, name=f"X (partition {part})", n_features=n_features, owner="this model"))
        if classifier:
            targets.append(column_or_1d(y_arr, "y"))
        else:
            targets.append(as_targets(y_arr, n_x, name=f"y (partition {part})"))
    if not mats:
        return Shard(as_csr_empty(n_features), np.zeros(0, np.float32), None if w_blocks is None else
                     np.zeros(0, np.float32))
    X = mats[0] if len(mats) == 1 else sp.vstack(mats, format="csr")
    return Shard(X, np.concatenate(targets), np.concatenate(weights) if weights else None)


class StreamShard:
    """A worker's cache files (fastafm.CacheFile, reopened and validated on the worker), streamed in blocks of
    each file's `block_rows` rows through one buffer sized for the largest block. Files written separately may
    have fewer features than the widest; their rows are valid as they are. `positive` is the label trained as
    +1 (classifiers, set by encode_shard); regression labels are trained as they are."""

    def __init__(self, caches: list, first_file: int, n_features: int, classifier: bool, positive=None,
                 holdout: Optional[tuple] = None):
        self.caches = list(caches)
        self.first_file = first_file
        self.n_features = n_features
        self.classifier = classifier
        self.positive = positive
        self.holdout = holdout  # None, or (fraction, seed): the rows held_mask keeps out of training
        # (file, first row, stop row, first row in the shard) of every block, files in order
        self.blocks: list = []
        offset = 0
        for i, cache in enumerate(self.caches):
            for start in range(0, cache.n_rows, int(cache.block_rows)):
                stop = min(start + int(cache.block_rows), cache.n_rows)
                self.blocks.append((i, start, stop, offset + start))
            offset += cache.n_rows
        self.n_rows = offset if holdout is None else sum(
            int(np.count_nonzero(~self.held_mask(b))) for b in range(len(self.blocks)))
        self._buffers: dict | None = None
        self._loaded: tuple | None = None  # (block index, arrays)

    def __getstate__(self) -> dict:
        # What Dask spills or moves: the files and the block layout, never the block buffer (re-read on use).
        return {**self.__dict__, "_buffers": None, "_loaded": None}

    def held_mask(self, b: int) -> np.ndarray:
        """Which rows of block b are held out for validation: each with probability `fraction`, drawn from
        (seed, the file's index in the fit's file list, the block's index in its file), so the held-out rows
        do not depend on how the files are assigned to the workers. All False without a holdout."""
        f, start, stop, _ = self.blocks[b]
        if self.holdout is None:
            return np.zeros(stop - start, dtype=bool)
        fraction, seed = self.holdout
        key = [int(seed), self.first_file + f, start // int(self.caches[f].block_rows)]
        return np.random.default_rng(key).random(stop - start) < fraction

    def with_labels(self, positive=None, holdout: Optional[tuple] = None) -> "StreamShard":
        """The same files with another positive class and/or holdout (the others kept)."""
        return StreamShard(self.caches, self.first_file, self.n_features, self.classifier,
                           self.positive if positive is None else positive,
                           self.holdout if holdout is None else holdout)

    @functools.cached_property
    def feature_counts(self) -> np.ndarray:
        """frequency_l2's n_i over the shard's trained rows (held-out rows and rows of weight 0 excluded): one
        pass over its blocks, once per worker."""
        counts = np.zeros(self.n_features, dtype=np.int64)
        for b in range(len(self.blocks)):
            indptr, indices = self.block(b)[:2]
            mask = ~self.held_mask(b)
            w = block_weights(self, b)
            if w is not None:
                mask &= w > 0
            counts += feature_occurrences(indptr, indices, self.n_features, mask)
        return counts.astype(np.float32)

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


def block_weights(shard: StreamShard, b: int) -> np.ndarray | None:
    """The sample weights of block b of a StreamShard (None when its file has no weights section)."""
    f, start, stop, _ = shard.blocks[b]
    cache = shard.caches[f]
    return cache.read_weights(start, stop) if cache.has_weights else None


def cache_ref(cache) -> tuple:
    """What a task sends for a CacheFile: (path, block_rows). The worker opens the file inside the task, so a
    file missing or damaged on the worker is an error naming it, not a failure to unpickle the task."""
    return (cache.path, int(cache.block_rows))


def open_caches(refs: list, first_file: int, what: str = "partition") -> list:
    """CacheFiles from cache_ref tuples (or CacheFile objects, kept), errors naming the partition and file."""
    from ..data.cache import CacheFile

    out = []
    for i, ref in enumerate(refs):
        if isinstance(ref, CacheFile):
            out.append(ref)
            continue
        path, block_rows = ref
        try:
            out.append(CacheFile(path, block_rows=block_rows))
        except (OSError, ValueError) as exc:
            where = f"{what} {first_file + i} ({path}) on this worker"
            if isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(f"{where}: the cache file is missing (every worker must see the files "
                                        f"at the same paths): {exc}") from exc
            raise type(exc)(f"{where}: {exc}") from exc
    return out


def load_cache_shard(caches: list, first_file: int, n_features: int, classifier: bool) -> StreamShard:
    """The StreamShard of a worker's cache files (cache_ref tuples or CacheFiles); only their headers are read."""
    return StreamShard(open_caches(caches, first_file), first_file, n_features, classifier)


def as_csr_empty(n_features: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64)),
                         shape=(0, n_features))


def shard_summary(shard, classifier: bool) -> dict:
    """Row count, stored non-zeros, and label range (regressor) or the distinct labels (classifier) of a
    shard (loaded before any hold-out)."""
    nnz = (sum(c.nnz for c in shard.caches) if isinstance(shard, StreamShard) else int(shard.X.nnz))
    out: dict = {"n_rows": shard.n_rows, "nnz": nnz, "weight_sum": shard_weight_sum(shard)}
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


def shard_weight_sum(shard) -> float:
    """The shard's total sample weight (its row count when unweighted; a cache's weights read once)."""
    if isinstance(shard, StreamShard):  # held-out rows (early stopping without an eval_set) are not trained
        total = 0.0
        for b in range(len(shard.blocks)):
            kept = ~shard.held_mask(b)
            w = block_weights(shard, b)
            total += float(np.count_nonzero(kept)) if w is None else float(np.sum(w[kept], dtype=np.float64))
        return total
    return float(shard.n_rows) if shard.w is None else float(np.sum(shard.w, dtype=np.float64))


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
        return shard.with_labels(positive=positive)
    return Shard(shard.X, np.where(shard.y == positive, 1.0, -1.0).astype(np.float32), shard.w)


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalPart:
    """Evaluation rows held by one worker: CSR X and the targets as the core trains them (+-1 for classes)."""

    X: sp.csr_matrix
    y: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


def hold_out_shard(shard, fraction: float, seed: int, classifier: bool) -> tuple:
    """(the shard without its held-out rows, an EvalPart of them) for early stopping without an eval_set.
    In memory: holdout_split of the shard's rows (stratified by class for a classifier) with `seed`; a shard
    too small to split keeps all its rows (the driver checks the totals). A StreamShard: a seeded subset of
    every block (StreamShard.held_mask), read into memory once here, skipped by the epochs."""
    from ..training.rows import holdout_split

    if isinstance(shard, StreamShard):
        kept = shard.with_labels(holdout=(float(fraction), int(seed)))
        parts, labels = [], []
        for b in range(len(kept.blocks)):
            mask = kept.held_mask(b)
            if mask.any():
                f, start, stop, _ = kept.blocks[b]
                try:
                    X, y = kept.caches[f].read_rows(start, stop)
                except OSError as exc:
                    raise OSError(f"partition {kept.first_file + f} ({kept.caches[f].path}): {exc}") from exc
                parts.append(X[np.flatnonzero(mask)])
                labels.append(y[mask])
        if not parts:
            return kept, EvalPart(as_csr_empty(shard.n_features), np.zeros(0, np.float32))
        y = np.concatenate(labels)
        if classifier:
            y = np.where(y == shard.positive, 1.0, -1.0).astype(np.float32)
        return kept, EvalPart(sp.vstack(parts, format="csr"), y)
    n = shard.n_rows
    try:
        keep, held = holdout_split(n, fraction, np.random.default_rng(seed), shard.y if classifier else None)
    except ValueError:  # too few rows on this worker to split: it keeps them all
        keep, held = np.arange(n), np.zeros(0, np.int64)
    w = None if shard.w is None else shard.w[keep]  # the held-out rows are scored unweighted (docs/distributed.md)
    return Shard(shard.X[keep], shard.y[keep], w), EvalPart(shard.X[held], shard.y[held])


def _encode_eval(y: np.ndarray, classes) -> np.ndarray:
    """Eval labels of a classifier -> +-1, refusing labels the model was not fitted on."""
    unknown = np.setdiff1d(np.unique(y), np.asarray(classes))
    if unknown.size:
        raise ValueError(f"eval_set y contains labels not seen in fit: {unknown[:5].tolist()} (the model's classes "
                         f"are {np.asarray(classes).tolist()})")
    return np.where(y == classes[1], 1.0, -1.0).astype(np.float32)


def eval_part_of_blocks(x_blocks: list, y_blocks: list, first_block: int, n_features: int, classes) -> EvalPart:
    """A worker's part of a dask-collection eval_set (classes: None for regression)."""
    shard = load_shard(x_blocks, y_blocks, first_block, n_features, classes is not None)
    y = shard.y if classes is None else _encode_eval(shard.y, classes)
    return EvalPart(shard.X, y)


def eval_part_of_caches(caches: list, first_file: int, n_features: int, classes) -> EvalPart:
    """A worker's eval_set cache files, read whole into memory (the eval rows are scored every epoch)."""
    mats, labels = [], []
    for i, cache in enumerate(open_caches(caches, first_file, "eval_set partition")):
        if cache.n_features > n_features:
            raise ValueError(f"eval_set {cache.path} has {cache.n_features} features, but the model has {n_features}")
        try:
            X, y = cache.read_rows(0, cache.n_rows)
        except OSError as exc:
            raise OSError(f"eval_set partition {first_file + i} ({cache.path}): {exc}") from exc
        mats.append(sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features)))
        labels.append(y)
    if not mats:
        return EvalPart(as_csr_empty(n_features), np.zeros(0, np.float32))
    y = np.concatenate(labels)
    return EvalPart(sp.vstack(mats, format="csr"), y if classes is None else _encode_eval(y, classes))


def evaluate_part(key: str, delta: Optional[Delta], part: Optional[EvalPart], attention: bool, n_threads: int,
                  label_range, classifier: bool, after=None) -> dict:
    """The sums the driver's metrics need, of one worker's eval rows scored by its replica (after the epoch's
    last delta): rows, squared error of the clipped prediction and absolute error (regression); log-loss sum,
    the scores and the 0/1 labels (classification: AUC needs them all in one place)."""
    from .. import metrics

    model = replica(key)
    model.apply(delta)
    if part is None or part.n_rows == 0:
        return {"n": 0}
    z = _core.predict(model.params, *csr_arrays(part.X), attention, int(n_threads)).astype(np.float64)
    y = part.y.astype(np.float64)
    n = part.n_rows
    if classifier:
        y01 = (y > 0).astype(np.float64)
        p1 = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
        return {"n": n, "logloss_sum": n * metrics.log_loss(y01, p1), "z": z, "y01": y01}
    clipped = np.clip(z, label_range[0], label_range[1])
    return {"n": n, "sq": float(np.sum((y - clipped) ** 2)), "abs": float(np.sum(np.abs(y - z)))}


def combine_eval(results: list, classifier: bool) -> dict:
    """The eval_* metrics of the in-memory estimators from every worker's evaluate_part sums."""
    from .. import metrics

    parts = [r for r in results if r["n"]]
    n = sum(r["n"] for r in parts)
    if classifier:
        z = np.concatenate([r["z"] for r in parts])
        y01 = np.concatenate([r["y01"] for r in parts])
        return {"eval_logloss": sum(r["logloss_sum"] for r in parts) / n, "eval_auc": metrics.roc_auc(y01, z)}
    return {"eval_rmse": float(np.sqrt(sum(r["sq"] for r in parts) / n)), "eval_mae": sum(r["abs"] for r in parts) / n}


@dataclass
class StreamOrder:
    """One epoch's order over a StreamShard: the blocks in `blocks` order, each in the permutation drawn from
    its seed. A shard of one block is ordered exactly as the same rows in memory (epoch_order of the seed)."""

    blocks: np.ndarray
    seeds: np.ndarray
    sizes: np.ndarray  # rows of each block trained (the kept rows with a holdout), in epoch order
    shard: Optional[StreamShard] = field(default=None, repr=False, compare=False)  # with a holdout: its masks
    # The last block's permutation: consecutive rounds train consecutive parts of one block, so it is drawn
    # once per block, not once per round.
    _last: tuple | None = field(default=None, repr=False, compare=False)

    def rows(self, i: int) -> np.ndarray:
        if self._last is None or self._last[0] != i:
            perm = np.random.default_rng(int(self.seeds[i])).permutation(int(self.sizes[i])).astype(np.int64)
            if self.shard is not None:  # the block's kept rows, shuffled
                perm = np.flatnonzero(~self.shard.held_mask(int(self.blocks[i])))[perm].astype(np.int64)
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
    if shard.holdout is None:
        sizes = np.array([shard.blocks[b][2] - shard.blocks[b][1] for b in blocks.tolist()], np.int64)
        return StreamOrder(blocks, seeds, sizes)
    sizes = np.array([np.count_nonzero(~shard.held_mask(b)) for b in blocks.tolist()], np.int64)
    return StreamOrder(blocks, seeds, sizes, shard)


# ---------------------------------------------------------------------------------------------- rounds
def sync_replica(key: str, delta: Optional[Delta], after=None) -> None:
    """Apply a round's delta to the replica of a worker that trains no rows in the round (its next delta
    only covers the next round's changes). `after`: the worker's previous task, so that its tasks on the
    replica run in order."""
    replica(key).apply(delta)


def train_round(shard: Shard | StreamShard, order, key: str, delta: Optional[Delta], lo: int, hi: int,
                settings: dict, seed: int, epoch: int, after=None) -> Update:
    """Train rows [lo, hi) of the epoch's order of the shard on the worker's replica, in place, after applying
    the previous round's delta to it (`after`: the worker's previous task, as for sync_replica). A StreamShard trains the part of each block the range covers with one
    core call per block (the dropout seed of a block derives from its first row, as in the single-process
    streaming fit)."""
    model = replica(key)
    model.apply(delta)
    params, slots = model.params, model.slots
    start = time.perf_counter()
    loss, touched = 0.0, []
    counts = shard.feature_counts if float(settings["frequency_l2"]) > 0.0 else None
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
            loss += float(_core.train_epoch(params, slots, indptr, indices, values, y, rows, cfg,
                                            weights=block_weights(shard, b), feature_counts=counts)["loss_sum"])
            touched.append(_row_ids(indptr, indices, rows))
        n_rows = hi - lo
    else:
        rows = order[lo:hi]
        res = _core.train_epoch(params, slots, *shard.arrays, shard.y, rows, make_config(settings, seed, epoch),
                                weights=shard.w, feature_counts=counts)
        loss = float(res["loss_sum"])
        indptr, indices, _ = shard.arrays
        touched.append(_row_ids(indptr, indices, rows))
        n_rows = int(rows.shape[0])
    seconds = time.perf_counter() - start
    n_features = shard.n_features if isinstance(shard, StreamShard) else shard.X.shape[1]
    ids, counts = _touched(np.concatenate(touched), n_features)
    # copies: the replica's arrays change in the next round
    out_p = {name: params[name][ids] if name in SPARSE else params[name].copy() for name in params}
    out_s = {slot: {name: d[name][ids] if name in SPARSE else d[name].copy() for name in d}
             for slot, d in slots.items()}
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


def merge(state: State, updates: list, new_epoch: bool, combine: str = "average", full_delta: bool = False) -> State:
    """The next State: `updates` combined onto `state` (see the module docstring), the counters, and the Delta
    the replicas need: the union of the touched rows (every row with `full_delta`, the whole model as before
    rows were tracked: the same values, more bytes)."""
    updates = [u for u in updates if u.rows > 0]
    stats = dict(state.stats)
    start = time.perf_counter()
    params = dict(state.params)
    slots = {slot: dict(d) for slot, d in state.slots.items()}
    # Each (destination, source) pair: the parameters, then every optimizer slot, merged by the same rule.
    pairs = [(params, lambda u: u.params)] + [(slots[s], lambda u, s=s: u.slots[s]) for s in sorted(slots)]
    total = sum(u.rows for u in updates)
    union = np.zeros(0, np.int32)
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
    n_features = state.params["w"].shape[0]
    ids = np.arange(n_features, dtype=np.int32) if full_delta else union.astype(np.int32)
    delta = Delta(state.version + 1, ids,
                  {name: params[name][ids] if name in SPARSE else params[name] for name in params},
                  {slot: {name: d[name][ids] if name in SPARSE else d[name] for name in d} for slot, d in slots.items()})
    stats["rounds"] = stats.get("rounds", 0) + 1
    stats["bytes_delta"] = stats.get("bytes_delta", 0) + delta.nbytes()
    stats["bytes_up"] = stats.get("bytes_up", 0) + sum(u.nbytes() for u in updates)
    stats["updates"] = stats.get("updates", 0) + len(updates)
    stats["rows"] = stats.get("rows", 0) + sum(u.rows for u in updates)
    stats["merge_seconds"] = stats.get("merge_seconds", 0.0) + time.perf_counter() - start
    stats["compute_seconds"] = stats.get("compute_seconds", 0.0) + sum(u.seconds for u in updates)
    stats["max_compute_seconds"] = stats.get("max_compute_seconds", 0.0) + max((u.seconds for u in updates),
                                                                               default=0.0)
    loss = sum(u.loss_sum for u in updates)
    rows = sum(u.rows for u in updates)
    if new_epoch:
        return State(params, slots, loss, rows, stats, delta.version, delta)
    return State(params, slots, state.epoch_loss + loss, state.epoch_rows + rows, stats, delta.version, delta)


def summarize(state: State) -> dict:
    """What the driver needs after an epoch: the epoch's mean loss, whether the model is finite, counters."""
    finite = all(np.isfinite(np.sum(a, dtype=np.float64)) for d in _groups(state) for a in d.values())
    return {"loss_sum": state.epoch_loss, "rows": state.epoch_rows, "finite": bool(finite),
            "stats": dict(state.stats), "state_bytes": state.nbytes()}


def fetch(state: State) -> tuple:
    """The parameters and optimizer slots (to the driver, once, at the end of fit)."""
    return state.params, state.slots
