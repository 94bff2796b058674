"""Worker-side steps of data-parallel training (used by fastafm.dask.driver; plain NumPy, no dask import).

A worker trains with the same pieces as one process: its rows are a row source of fastafm.training (an
`InMemoryRows` of the partitions assigned to it, or a `CacheRows` of its cache files, streamed block by block
so that it never holds them whole), trained through a `CoreTrainer` (fastafm.training.engine) over its own
`Replica` of the model, in place. Every round it trains its next slice of the epoch's order
(`run_range`) and returns an `Update` of what it touched; the merged model comes back as a `Delta`
(fastafm.dask.merge), after which the replica equals the merged State again, bit for bit.

Evaluation (early stopping) runs where the evaluation rows are: each worker scores its part (an eval_set's
share, in memory or streamed from cache files, or its held-out rows) with its replica and returns the
objective's sums (fastafm.objectives), which the driver combines into the metrics of one process.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .. import _core
from ..data.validation import as_csr, as_targets, check_class_labels, column_or_1d
from ..objectives import objective
from ..training.cache_rows import CacheRows
from ..training.engine import CoreTrainer
from ..training.evaluation import CacheEval, InMemoryEval
from ..training.rows import InMemoryRows
from ..training.weights import (cache_class_counts, cache_class_weights, check_sample_weight, class_row_weights,
                                combine)
from .merge import SPARSE, Delta, State, Update, groups, touched_ids


@dataclass
class Shard:
    """A worker's partitions as loaded, before the classes of all shards are known: CSR X, the targets
    (regression, float32) or labels as given (classification), float32 sample weights (None: all 1)."""

    X: sp.csr_matrix
    y: np.ndarray
    w: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


@dataclass
class CacheShard:
    """A worker's cache files (opened on the worker; only their headers read), in the fit's file order."""

    caches: list
    first_file: int
    n_features: int

    @property
    def n_rows(self) -> int:
        return sum(int(c.n_rows) for c in self.caches)


@dataclass
class Replica:
    """A worker's own copy of the model, trained in place (through `trainer`, made at its first round and kept
    for the fit) and brought back to the merged State by each Delta."""

    params: dict
    slots: dict
    version: int
    trainer: Optional[CoreTrainer] = None
    fields: Optional[np.ndarray] = None  # FwFM: the field of every feature (fixed: never sent again)

    def core_params(self) -> dict:
        """The parameters as the core takes them (FwFM's with the field array)."""
        return self.params if self.fields is None else {**self.params, "field": self.fields}

    def apply(self, delta: Optional[Delta]) -> None:
        """Copy a delta in (once: a delta of a version already applied is skipped)."""
        if delta is None or delta.version <= self.version:
            return
        if delta.version != self.version + 1:
            raise RuntimeError(f"replica at round {self.version} got the delta of round {delta.version}")
        for dst, src in zip(groups(self), groups(delta)):
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


def new_replica(state: State, key: str, fields: Optional[np.ndarray] = None) -> str:
    """Make this worker's replica of `state` (copies: the replica is trained in place), with FwFM's `fields`;
    returns its key."""
    _REPLICAS[key] = Replica({k: a.copy() for k, a in state.params.items()},
                             {s: {k: a.copy() for k, a in d.items()} for s, d in state.slots.items()},
                             state.version, fields=fields)
    return key


def replica(key: str) -> Replica:
    try:
        return _REPLICAS[key]
    except KeyError:
        raise RuntimeError(f"the model replica {key} is gone from this worker (did the worker restart during "
                           "fit?); fit again") from None


def drop_replica(key: str) -> None:
    _REPLICAS.pop(key, None)


# ---------------------------------------------------------------------------------------------- shards
def load_shard(x_blocks: list, y_blocks: list, first_block: int, n_features: int, classifier: bool,
               w_blocks: list | None = None) -> Shard:
    """Concatenate a worker's partitions into one Shard, checking each (X block, y block[, weight block]).

    Regression targets are checked and stored as float32; class labels are kept as given (training_rows
    encodes them once the classes of all shards are known). Empty partitions are skipped.
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



def load_cache_shard(refs: list, first_file: int, n_features: int) -> CacheShard:
    """The CacheShard of a worker's cache files (cache_ref tuples or CacheFiles); only their headers are read."""
    return CacheShard(open_caches(refs, first_file), first_file, n_features)


def as_csr_empty(n_features: int) -> sp.csr_matrix:
    return sp.csr_matrix((np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64)),
                         shape=(0, n_features))


def shard_summary(shard, loss: str) -> dict:
    """Row count, stored non-zeros, total weight, and label range (regression) or the distinct labels
    (classification) of a shard."""
    classifier = objective(loss).classifier
    if isinstance(shard, CacheShard):
        nnz, weight = sum(int(c.nnz) for c in shard.caches), _cache_weight(shard)
    else:
        nnz = int(shard.X.nnz)
        weight = float(shard.n_rows) if shard.w is None else float(np.sum(shard.w, dtype=np.float64))
    out: dict = {"n_rows": shard.n_rows, "nnz": nnz, "weight_sum": weight}
    if shard.n_rows == 0:
        return out
    if isinstance(shard, CacheShard):
        return {**out, **_cache_labels(shard, classifier)}
    if classifier:
        check_class_labels(shard.y, fitting=True, classifier="DaskAFMClassifier", regressor="DaskAFMRegressor")
        out["labels"] = np.unique(shard.y)
    else:
        out["y_min"], out["y_max"] = float(shard.y.min()), float(shard.y.max())
    return out


def _cache_weight(shard: CacheShard) -> float:
    total = 0.0
    for cache in shard.caches:
        if not cache.has_weights:
            total += float(cache.n_rows)
            continue
        for start in range(0, int(cache.n_rows), int(cache.block_rows)):
            stop = min(start + int(cache.block_rows), int(cache.n_rows))
            total += float(np.sum(cache.read_weights(start, stop), dtype=np.float64))
    return total


def _cache_labels(shard: CacheShard, classifier: bool) -> dict:
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


def _partition_names(shard: CacheShard) -> list:
    return [f"partition {shard.first_file + i} ({c.path})" for i, c in enumerate(shard.caches)]


def class_counts(shard, classes) -> np.ndarray:
    """How many rows of the shard hold each of `classes` (class_weight="balanced" over all the workers)."""
    classes = np.asarray(classes)
    if not isinstance(shard, CacheShard):
        return np.array([np.count_nonzero(shard.y == c) for c in classes], dtype=np.float64)
    return np.sum([cache_class_counts(cache, classes) for cache in shard.caches] or [np.zeros(classes.shape[0])],
                  axis=0)


def training_rows(shard, loss: str, classes, class_weight: Optional[dict] = None):
    """The worker's row source, its targets encoded by the objective once the classes are known, each row's
    weight times its class's (`class_weight`: a dict {label: weight}, "balanced" resolved by the driver)."""
    obj = objective(loss)
    if isinstance(shard, CacheShard):
        n = len(shard.caches)
        weights = None if class_weight is None else cache_class_weights(class_weight, None, classes)
        return CacheRows(shard.caches, obj.encoder(classes), class_weights=weights,
                         file_keys=list(range(shard.first_file, shard.first_file + n)),
                         names=_partition_names(shard), n_features=shard.n_features)
    w = shard.w
    if class_weight is not None and shard.n_rows:
        w = combine(shard.w, class_row_weights(class_weight, shard.y, classes))
    return InMemoryRows(shard.X, obj.encode(shard.y, classes), w)


def rows_n(rows) -> int:
    return int(rows.n_rows)


def target_sums(rows) -> tuple:
    return rows.target_sums()


def rows_weight(rows) -> float:
    return float(rows.weight_sum)


def hold_out(rows, fraction: float, seed: int, stratify: bool) -> tuple:
    """(the rows without their held-out part, an evaluation part of it) for early stopping without an
    eval_set, as one process holds out (seeded with `seed`); a worker's rows too few to split keep them all
    (the driver checks the totals)."""
    if isinstance(rows, CacheRows):
        return rows.hold_out(fraction, seed, refuse_empty=False)
    try:
        return rows.hold_out(fraction, np.random.default_rng(seed), stratify)
    except ValueError:
        return rows, InMemoryEval(as_csr_empty(rows.n_features), np.zeros(0, np.float32))


# ---------------------------------------------------------------------------------------------- evaluation
def eval_part_of_blocks(x_blocks: list, y_blocks: list, first_block: int, n_features: int, loss: str, classes,
                        w_blocks: list | None = None) -> InMemoryEval:
    """A worker's part of a dask-collection eval_set: its rows, targets encoded (labels the model was not
    fitted on refused) and weights."""
    obj = objective(loss)
    shard = load_shard(x_blocks, y_blocks, first_block, n_features, obj.classifier, w_blocks)
    y = shard.y
    if obj.classifier:
        unknown = np.setdiff1d(np.unique(y), np.asarray(classes))
        if unknown.size:
            raise ValueError(f"eval_set y contains labels not seen in fit: {unknown[:5].tolist()} (the model's "
                             f"classes are {np.asarray(classes).tolist()})")
        y = obj.encode(y, classes)
    return InMemoryEval(shard.X, y, shard.w)


def eval_part_of_caches(refs: list, first_file: int, n_features: int, loss: str, classes) -> CacheEval:
    """A worker's eval_set cache files, streamed block by block at every evaluation (never read whole)."""
    obj = objective(loss)
    caches = open_caches(refs, first_file, "eval_set partition")
    for cache in caches:
        if cache.n_features > n_features:
            raise ValueError(f"eval_set {cache.path} has {cache.n_features} features, but the model has {n_features}")
        obj.cache_targets(cache, False, None, classes, "the model")  # its labels must be the model's
    names = [f"partition {first_file + i} ({c.path})" for i, c in enumerate(caches)]
    return CacheEval(caches, obj.encoder(classes), n_features, names)


def evaluate_part(key: str, delta: Optional[Delta], part, loss: str, attention: bool, n_threads: int,
                  label_range, after=None) -> list:
    """The objective's sums of one worker's eval rows scored by its replica (after the epoch's last delta)."""
    model = replica(key)
    model.apply(delta)
    if part is None:
        return []

    def score(indptr, indices, values):
        return _core.predict(model.core_params(), indptr, indices, values, attention,
                             int(n_threads)).astype(np.float64)

    return part.partials(objective(loss), score, label_range)


# ---------------------------------------------------------------------------------------------- rounds
def epoch_order(rows, seed: int):
    """The shuffled order of a worker's rows for one epoch, from one seed."""
    if isinstance(rows, CacheRows):
        return rows.seeded_order(seed)
    return rows.epoch_order(np.random.default_rng(seed))


def sync_replica(key: str, delta: Optional[Delta], after=None) -> None:
    """Apply a round's delta to the replica of a worker that trains no rows in the round (its next delta
    only covers the next round's changes). `after`: the worker's previous task, so that its tasks on the
    replica run in order."""
    replica(key).apply(delta)


def train_round(rows, order, key: str, delta: Optional[Delta], lo: int, hi: int, settings: dict, seed: int,
                epoch: int, after=None) -> Update:
    """Train positions [lo, hi) of the epoch's order of the worker's rows on its replica, in place, after
    applying the previous round's delta to it (`after`: the worker's previous task, as for sync_replica)."""
    model = replica(key)
    model.apply(delta)
    params, slots = model.params, model.slots
    n_features = params["w"].shape[0]
    if model.trainer is None:  # one core Trainer per worker and fit, its work memory kept across rounds
        counts = rows.feature_counts(n_features) if float(settings["frequency_l2"]) > 0.0 else None
        model.trainer = CoreTrainer(model.core_params(), slots, settings, counts)  # trains params in place
    start = time.perf_counter()
    touched: list = []
    loss = rows.run_range(model.trainer, order, lo, hi, seed, epoch, touched=touched)
    seconds = time.perf_counter() - start
    ids, counts = touched_ids(np.concatenate(touched) if touched else np.zeros(0, np.int32), n_features)
    # copies: the replica's arrays change in the next round
    out_p = {name: params[name][ids] if name in SPARSE else params[name].copy() for name in params}
    out_s = {slot: {name: d[name][ids] if name in SPARSE else d[name].copy() for name in d}
             for slot, d in slots.items()}
    return Update(int(hi - lo), loss, ids, counts.astype(np.float32), out_p, out_s, seconds)
