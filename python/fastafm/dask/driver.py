"""The Dask driver: the training rows loaded on the workers (`load`, `hold_out`, `eval_parts`), and
`DaskEpochs`, the Dask way to run an epoch for the training engine (fastafm.training.engine.train), which does
everything else exactly as in one process (callbacks, divergence rollback, early stopping, history).

An epoch: each worker draws its epoch order; then, in sync rounds, every worker trains its next slice of that
order on its replica of the model (fastafm.dask.worker.train_round) and the first worker merges the updates
(fastafm.dask.merge). The merged State is never changed in place, so keeping its future is the snapshot the
engine and early stopping take (no copy, and nothing reaches the client).
"""
from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

import dask

from ..data.validation import as_csr
from ..training.evaluation import InMemoryEval
from ..training.session import split_generator
from ..training.weights import check_sample_weight, class_row_weights
from . import merge as mg
from . import worker as wk
from .inputs import assign, cache_files, is_dask_collection, partitions, weight_partitions


@dataclass
class Data:
    """The training rows as the workers hold them (futures of their row sources), and what the client knows of
    them."""

    shards: list
    workers: list
    nthreads: dict
    n_local: list
    n_features: int
    summaries: list
    weight_total: float = 0.0  # the trained rows' total sample weight (their count when unweighted)
    encoding: Any = None  # the raw-log encoding the cache files carry (fastafm.rawlog), which the model keeps
    fields: Any = None  # with it, the field of every feature (FwFM's fields=None)
    row_nnz: float = 0.0  # mean stored non-zeros a row of all the rows given (learning_rate="auto")

    def submit_each(self, client, fn, *args):
        """fn(shard, *args) on every worker's shard, as futures on that worker."""
        return [client.submit(fn, s, *args, workers=[a], allow_other_workers=False, pure=False)
                for s, a in zip(self.shards, self.workers)]


def load(client, X, y, loss: str, owner: str, n_features=None, sample_weight=None) -> Data:
    """The training rows loaded (or, for cache files, opened) on the workers, one shard each; n_features:
    the fitted model's width that X must have (partial_fit), None when fitting."""
    classifier = loss == "logistic"
    caches = cache_files(X, y)
    w_blocks = None
    if caches is None:
        x_blocks, y_blocks, width, sizes = partitions(X, y, classifier)
        w_blocks = weight_partitions(sample_weight, X, len(x_blocks))
        if n_features is not None and width != n_features:
            raise ValueError(f"X has {width} features, but {owner} is expecting {n_features} features as input")
    else:
        if sample_weight is not None:
            raise ValueError("sample_weight must be None when X is a list of cache files: their weights are "
                             "stored in them (fastafm.convert(..., weights=...))")
        x_blocks, y_blocks = caches, caches
        width, sizes = max(c.n_features for c in caches), [c.n_rows for c in caches]
        encoding, fields = _raw_encoding(caches)
        if n_features is not None and width > n_features:
            raise ValueError(f"the cache files have {width} features, but {owner} is expecting {n_features} features "
                             "as input")
    width = width if n_features is None else n_features
    nthreads = client.nthreads()
    workers = sorted(nthreads)
    if not workers:
        raise ValueError("the dask cluster has no workers")
    runs = assign(len(x_blocks), sizes, len(workers))
    if any(stop == start for start, stop in runs):
        warnings.warn(f"X has {len(x_blocks)} partitions for {len(workers)} workers: some workers get no rows "
                      "and idle; repartition X into at least as many partitions as workers", UserWarning,
                      stacklevel=4)
    shards = []
    for addr, (start, stop) in zip(workers, runs):
        if caches is None:
            task = dask.delayed(wk.load_shard, pure=True)(x_blocks[start:stop], y_blocks[start:stop], start, width,
                                                          classifier, None if w_blocks is None else w_blocks[start:stop])
            shards.append(client.compute(task, workers=[addr], allow_other_workers=False))
        else:
            shards.append(client.submit(wk.load_cache_shard, [wk.cache_ref(c) for c in caches[start:stop]], start,
                                        width, workers=[addr], allow_other_workers=False, pure=False))
    data = Data(shards, workers, nthreads, [], width, [])
    if caches is not None:
        data.encoding, data.fields = encoding, fields
    data.summaries = client.gather(data.submit_each(client, wk.shard_summary, loss))
    data.n_local = [int(s["n_rows"]) for s in data.summaries]
    if sum(data.n_local) == 0:
        raise ValueError("X has 0 rows; at least one row is required")
    data.weight_total = sum(float(s["weight_sum"]) for s in data.summaries)
    if not data.weight_total > 0:
        raise ValueError("sample_weight is all zero: at least one row must have a positive weight")
    data.row_nnz = sum(int(s["nnz"]) for s in data.summaries) / sum(data.n_local)
    return data


def _raw_encoding(caches: list) -> tuple:
    """(encoding, fields) of cache files written from one raw log (fastafm.dask.convert), (None, fields) for
    caches that carry fields without an encoding (libFFM files' caches, or convert(fields=...)), or (None, None)
    for caches without fields; ValueError when only some carry them, or different ones."""
    carried = [c.has_fields for c in caches]
    if not any(carried):
        return None, None
    if not all(carried) or len({c.has_encoding for c in caches}) > 1:
        raise ValueError("some of the cache files carry fields (or a raw-log encoding) and some do not: train on "
                         "caches of one kind")
    encoding = caches[0].read_encoding()
    for c in caches[1:]:
        if c.read_encoding() != encoding:
            raise ValueError(f"{c.path}: its raw-log encoding differs from {caches[0].path}'s: the caches of one "
                             "model must come from one conversion (fastafm.dask.convert)")
    fields = caches[0].read_fields()
    for c in caches[1:]:
        if encoding is None and not np.array_equal(c.read_fields(), fields):
            raise ValueError(f"{c.path}: its fields differ from {caches[0].path}'s: every cache of one model must "
                             "give each feature the same field")
    return encoding, fields


def labels(client, data: Data, state, loss: str, classes, class_weight=None, partial: bool = False) -> None:
    """The classes (classification) or the label range (regression) of the state from the shards' summaries;
    on a fitted state, the data's labels are checked against the model's classes. Then every worker's shard
    becomes its row source, targets encoded, each row weighted by its class's `class_weight` ("balanced":
    n_rows / (2 count(c)) over all the workers' rows, as one process counts them)."""
    per_class = None
    if loss != "logistic":
        lo = min(s["y_min"] for s in data.summaries if "y_min" in s)
        hi = max(s["y_max"] for s in data.summaries if "y_max" in s)
        if state.label_range is None:
            state.label_range = (lo, hi)
    else:
        _classes(data, state, classes)
        per_class = _class_weights(client, data, state.classes, class_weight, partial)
    data.shards = data.submit_each(client, wk.training_rows, loss, state.classes, per_class)
    if per_class is not None:
        data.weight_total = sum(float(v) for v in client.gather(data.submit_each(client, wk.rows_weight)))
        if not data.weight_total > 0:
            raise ValueError("the class weights (class_weight) leave no row with a positive weight")


def _class_weights(client, data: Data, classes, class_weight, partial: bool):
    """class_weight as a dict {label: weight} of the classes, checked ("balanced" counted over the shards)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        class_row_weights(class_weight, classes[:0], classes, partial=partial)  # partial_fit refuses "balanced"
        counts = np.sum(client.gather(data.submit_each(client, wk.class_counts, classes)), axis=0)
        n_rows = float(np.sum(counts))
        return {c: n_rows / (len(classes) * n) if n else 0.0 for c, n in zip(classes.tolist(), counts.tolist())}
    class_row_weights(class_weight, classes[:0], classes)  # a label that is not a class: refused here
    return dict(class_weight)


def _classes(data: Data, state, classes) -> None:
    try:
        found = np.unique(np.concatenate([s["labels"] for s in data.summaries if "labels" in s]))
    except TypeError as exc:
        raise TypeError(f"y must hold labels of one type: {exc}") from None
    if state.classes is None and classes is not None:
        state.classes = np.unique(np.asarray(classes))
        if state.classes.shape[0] != 2:
            raise ValueError(f"classes must hold two labels, got {state.classes.shape[0]}: {state.classes[:5]}")
    if state.classes is not None:
        strings = (found.dtype.kind in "US", state.classes.dtype.kind in "US")
        try:
            unknown = found if strings[0] != strings[1] else np.setdiff1d(found, state.classes)
        except TypeError:  # labels of another type than the model's
            unknown = found
        if unknown.size:
            raise ValueError(f"y contains labels not in classes: {unknown[:5].tolist()} (the model's classes "
                             f"are {state.classes.tolist()})")
    else:
        if found.shape[0] != 2:
            raise ValueError(f"a classifier needs two classes in y, got {found.shape[0]}: {found[:5]}")
        state.classes = found


def hold_out(client, data: Data, fraction: float, random_state, stratify: bool) -> list:
    """validation_fraction of every worker's rows held out (seeded per worker from random_state's split
    stream, as one process draws its split); the shards keep the rest. Returns the eval parts."""
    seed = int(split_generator(random_state).integers(0, 2**63 - 1))
    split = [client.submit(wk.hold_out, s, fraction, (seed + w * 0x9E3779B97F4A7C15) % (2**63 - 1), stratify,
                           workers=[a], allow_other_workers=False, pure=False)
             for w, (s, a) in enumerate(zip(data.shards, data.workers))]
    data.shards = [client.submit(_item, f, 0, workers=[a], pure=False) for f, a in zip(split, data.workers)]
    parts = [client.submit(_item, f, 1, workers=[a], pure=False) for f, a in zip(split, data.workers)]
    data.n_local = [int(n) for n in client.gather(data.submit_each(client, wk.rows_n))]
    data.weight_total = sum(float(v) for v in client.gather(data.submit_each(client, wk.rows_weight)))
    n_total = sum(s["n_rows"] for s in data.summaries)
    n_held = n_total - sum(data.n_local)
    if n_held == 0 or sum(data.n_local) == 0:
        raise ValueError(f"validation_fraction={fraction} of {n_total} training rows leaves "
                         f"{'no' if n_held == 0 else 'all'} rows for validation; early stopping needs rows on "
                         "both sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
    if not data.weight_total > 0:
        raise ValueError(f"validation_fraction={fraction}: the rows kept for training all have sample_weight 0")
    return parts


def start_from_the_average(client, data: Data, state, objective) -> None:
    """w0 of a new model: the objective's output for the mean target of the rows the workers train (as one
    process starts, fastafm.models.fitting)."""
    sums = client.gather(data.submit_each(client, wk.target_sums))
    weight = sum(w for _, w in sums)
    if weight > 0:
        state.params["w0"][0] = objective.initial_bias(sum(t for t, _ in sums) / weight)


def _item(pair, i: int):
    return pair[i]


def eval_parts(client, eval_set: tuple, data: Data, state, loss: str, owner: str, objective) -> list:
    """The eval_set (X, y, sample_weight or None) as one evaluation part per worker (None where a worker has
    none): cache files and dask collections are shared out as the training partitions are, data in the client
    is checked here and sent to the first worker once."""
    X_eval, y_eval, w_eval = eval_set
    n = data.n_features
    caches = cache_files(X_eval, y_eval, what="eval_set X")
    if caches is not None:
        if w_eval is not None:
            raise ValueError("eval_set sample_weight must be None when X is a list of cache files: their weights "
                             "are stored in them")
        runs = assign(len(caches), [c.n_rows for c in caches], len(data.workers))
        return [client.submit(wk.eval_part_of_caches, [wk.cache_ref(c) for c in caches[lo:hi]], lo, n, loss,
                              state.classes, workers=[a], allow_other_workers=False, pure=False) if hi > lo else None
                for a, (lo, hi) in zip(data.workers, runs)]
    if is_dask_collection(X_eval):
        x_blocks, y_blocks, width, sizes = partitions(X_eval, y_eval, objective.classifier, what="eval_set ")
        w_blocks = weight_partitions(w_eval, X_eval, len(x_blocks))
        if width != n:
            raise ValueError(f"eval_set X has {width} features, but {owner} is expecting {n} features as input")
        out: list = []
        for a, (lo, hi) in zip(data.workers, assign(len(x_blocks), sizes, len(data.workers))):
            if hi == lo:
                out.append(None)
                continue
            task = dask.delayed(wk.eval_part_of_blocks, pure=True)(
                x_blocks[lo:hi], y_blocks[lo:hi], lo, n, loss, state.classes,
                None if w_blocks is None else w_blocks[lo:hi])
            out.append(client.compute(task, workers=[a], allow_other_workers=False))
        return out
    X_csr = as_csr(X_eval, name="eval_set X", n_features=n, owner=owner)
    y_enc = objective.eval_targets(y_eval, X_csr.shape[0], state.classes)
    w = None if w_eval is None else check_sample_weight(w_eval, X_csr.shape[0], name="eval_set sample_weight")
    home = client.scatter(InMemoryEval(X_csr, y_enc, w), workers=[data.workers[0]])
    return [home] + [None] * (len(data.workers) - 1)


def round_bounds(n: int, r: int, n_rounds: int, batch_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of a worker's epoch order that round r trains: equal shares, cut at multiples of the batch
    size so that a round never splits a mini-batch (one worker then trains exactly as one process would)."""
    def cut(i: int) -> int:
        return min(n, -(-(n * i // n_rounds) // batch_size) * batch_size)

    return cut(r), cut(r + 1)


class DaskEpochs:
    """Epochs of sync rounds across the workers, for the training engine; a context manager that makes each
    worker's replica of the model on entry and drops them on exit. `state` is the driver's training state
    (epoch count, history, shuffling generator); its parameters are refreshed by `fetch` at the end."""

    def __init__(self, client, data: Data, state, settings: list, estimator, full_sync: bool = False) -> None:
        self.client, self.data, self.state, self.worker_settings = client, data, state, settings
        self.settings = settings[0]
        self.weight_sum = max(data.weight_total, 1e-300)
        self.sync_rows, self.batch_size = int(estimator.sync_rows), int(estimator.batch_size)
        self.combine, self.full_sync = estimator.combine, full_sync
        self.seeds = [(state.dropout_seed + w * 0x9E3779B97F4A7C15) % (2**63 - 1) for w in range(len(data.workers))]
        self.master = None  # the future of the current merged State
        self.delta = None
        self.summary: dict = {}

    def __enter__(self) -> "DaskEpochs":
        client, workers = self.client, self.data.workers
        self.master = client.scatter(mg.State(self.state.params, self.state.slots), workers=[workers[0]])
        # Each worker's own copy of the model, made once per fit (the only time the whole model moves).
        self._fit_key = uuid.uuid4().hex
        fields = None if self.state.fields is None else client.scatter(self.state.fields, broadcast=True)
        self.replicas = [client.submit(wk.new_replica, self.master, f"{self._fit_key}-{w}", fields, workers=[a],
                                       allow_other_workers=False, pure=False) for w, a in enumerate(workers)]
        # Every task on a replica takes the worker's previous one as `after`: they run in order, and every
        # worker gets every round's delta (an idle one through sync_replica).
        self.last = list(self.replicas)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.client.gather([self.client.submit(wk.drop_replica, f"{self._fit_key}-{w}", workers=[a],
                                               allow_other_workers=False, pure=False)
                            for w, a in enumerate(self.data.workers)])

    # ------------------------------------------------------------------ what the engine uses
    history = property(lambda self: self.state.history)

    def start(self) -> None:
        return None

    def run_epoch(self, epoch: int) -> float:
        client, data = self.client, self.data
        workers, home = data.workers, data.workers[0]
        orders = [client.submit(wk.epoch_order, s, int(self.state.rng.integers(0, 2**63 - 1)), workers=[a],
                                pure=False) for s, a in zip(data.shards, workers)]
        n_rounds = max(1, max(-(-n // self.sync_rows) for n in data.n_local))
        for r in range(n_rounds):
            updates = []
            for w, addr in enumerate(workers):
                lo, hi = round_bounds(data.n_local[w], r, n_rounds, self.batch_size)
                if hi > lo:
                    self.last[w] = client.submit(wk.train_round, data.shards[w], orders[w], self.replicas[w],
                                                 self.delta, lo, hi, self.worker_settings[w], self.seeds[w], epoch - 1,
                                                 after=self.last[w], workers=[addr], allow_other_workers=False,
                                                 pure=False)
                    updates.append(self.last[w])
                else:
                    self.last[w] = client.submit(wk.sync_replica, self.replicas[w], self.delta, after=self.last[w],
                                                 workers=[addr], allow_other_workers=False, pure=False)
            self.master = client.submit(mg.merge, self.master, updates, r == 0, self.combine, self.full_sync,
                                        workers=[home], allow_other_workers=False, pure=False)
            self.delta = client.submit(mg.delta_of, self.master, workers=[home], pure=False)
        self.summary = client.submit(mg.summarize, self.master, workers=[home], pure=False).result()
        return float(self.summary["loss_sum"])

    def snapshot(self, into=None):
        return self.master

    def restore(self, snap, rng: bool = True) -> None:
        self.master = snap

    def finite(self) -> bool:
        return bool(self.summary.get("finite", True))

    # ------------------------------------------------------------------ evaluation and results
    def evaluate(self, parts: list, objective) -> dict:
        """The eval metrics of every worker's part, scored by its replica after the epoch's last delta."""
        spec = self.state.spec
        for w, (a, part) in enumerate(zip(self.data.workers, parts)):
            self.last[w] = self.client.submit(wk.evaluate_part, self.replicas[w], self.delta, part, spec.loss,
                                              spec.attention, self.worker_settings[w]["n_threads"],
                                              self.state.label_range, after=self.last[w], workers=[a],
                                              allow_other_workers=False, pure=False)
        partials: list = []
        for found in self.client.gather(self.last):
            partials.extend(found)
        return objective.combine(partials)

    def fetch(self) -> None:
        """The merged model (the best epoch's after early stopping) into the driver's state."""
        home = self.data.workers[0]
        params, slots = self.client.submit(mg.fetch, self.master, workers=[home], pure=False).result()
        self.state.params = {k: np.array(a, dtype=np.float32) for k, a in params.items()}
        self.state.slots = {s: {k: np.array(a, dtype=np.float32) for k, a in d.items()} for s, d in slots.items()}

    def sync_stats(self) -> dict:
        """What synchronisation cost in this fit (DaskAFMRegressor.sync_stats_)."""
        stats = self.summary.get("stats", {})
        n_workers = len(self.data.workers)
        wall = time.perf_counter() - self._start
        rounds = max(int(stats.get("rounds", 0)), 1)
        state_bytes = int(self.summary.get("state_bytes", 0))
        return {
            "rounds": int(stats.get("rounds", 0)),
            "rows_per_round": stats.get("rows", 0) / rounds,
            "state_bytes": state_bytes,
            "bytes_up_per_round": stats.get("bytes_up", 0) / rounds,
            "bytes_down_per_round": stats.get("bytes_delta", 0) / rounds * (n_workers - 1),
            "bytes_down_full_per_round": state_bytes * (n_workers - 1),
            "bytes_initial": state_bytes * (n_workers - 1),
            "wall_seconds": wall,
            "compute_seconds_per_worker": stats.get("compute_seconds", 0.0) / n_workers,
            "merge_seconds": stats.get("merge_seconds", 0.0),
            "sync_share": 1.0 - (stats.get("max_compute_seconds", 0.0) / wall if wall > 0 else 0.0),
        }
