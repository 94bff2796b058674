"""Data-parallel training of AFM models across the workers of a dask.distributed cluster.

    from dask.distributed import Client, LocalCluster
    from fastafm.dask import DaskAFMRegressor

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    model = DaskAFMRegressor(embedding_dim=64, n_epochs=10, random_state=0).fit(X, y)  # dask collections
    pred = model.predict(X_test)          # a dask array / Series, computed on the workers
    local = model.to_local()              # the equivalent fitted AFMRegressor (save, pair_attention, ...)

How it trains (see docs/distributed.md for the design and its measured costs):

1. The partitions of X and y are assigned to the workers in order, in contiguous runs of about equal rows,
   and each worker loads its run into one resident shard (CSR rows and targets); the data never passes
   through the client. Cache files are not loaded: each worker streams its files in blocks of their
   `block_rows` rows through one reusable buffer (fastafm.CacheFile(path, block_rows=...) sets the block), so
   it holds one block, the model and its optimizer state, never its whole shard.
2. Every epoch, each worker shuffles its shard (cache files: the order of the blocks, then the rows within
   each block, as the single-process streaming fit). Then, in sync rounds, every worker runs the C++ core over its
   next `sync_rows` rows starting from the same model, and the workers' models are averaged (parameters and
   optimizer slots; rows of w and V over the workers that touched them, weighted by how often,
   everything else weighted by rows; fastafm._distributed). The average is computed on the first worker;
   every worker trains its own replica of the model in place and fetches only what the merge changed (the
   dense parameters and the rows of w and V touched in the round): the client only schedules tasks and
   reads a few numbers per epoch.
3. Early stopping as in the in-memory estimators: after every epoch each worker scores its share of the
   evaluation rows (an eval_set, or validation_fraction of its own rows held out) with its replica; the
   client combines the sums into the metrics, and keeps the best epoch's merged model (a future on the first
   worker) to restore. `partial_fit` runs one epoch, continuing the model, optimizer and shuffling.
4. `predict` maps the fitted model over the partitions of its input (map_blocks / map_partitions).

The result is deterministic for a fixed random_state, the same partitioning and the same number of workers.
Needs the optional dependencies: pip install fastafm[dask].
"""
from __future__ import annotations

import copy
import dataclasses
import math
import operator
import os
import time
import uuid
import warnings
from dataclasses import dataclass

import numpy as np

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test without dask on sys.path
    raise ImportError(
        "fastafm.dask needs the optional dependencies dask and distributed: pip install fastafm[dask]"
    ) from exc

from . import worker as dist
from ..models import registry as _registry
from ..training.callbacks import EarlyStopping, Evaluation, History, best_of, check_metric
from .._compat import BaseEstimator, ClassifierMixin, RegressorMixin, fitted_state
from ..models.hyperparams import SIGNATURES, core_settings, store, validate
from ..training.state import init_state
from ..objectives.labels import eval_targets
from ..data.validation import as_csr
from ..models.estimators import AUTO_EARLY_STOPPING_ROWS, AFMClassifier, AFMRegressor, _split_generator

__all__ = ["DaskAFMClassifier", "DaskAFMRegressor"]

_DASK_ONLY = ("sync_rows", "combine", "client")
_HYPERPARAMETERS = tuple(n for n in SIGNATURES["dask"].names if n not in _DASK_ONLY)  # the local model's


def _dd():
    """dask.dataframe, imported only for dataframe input (it imports pandas)."""
    import dask.dataframe as dd

    return dd


def _is_dataframe(obj) -> bool:
    return type(obj).__module__.startswith("dask.dataframe") and isinstance(obj, _dd().DataFrame)


def _is_series(obj) -> bool:
    return type(obj).__module__.startswith("dask.dataframe") and isinstance(obj, _dd().Series)


def _is_numeric(dtype) -> bool:
    """Real numbers or booleans (NumPy dtypes, and pandas extension dtypes such as Int64 or string)."""
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:  # a pandas extension dtype
        import pandas as pd

        return bool(pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def _check_numeric(dtype, what: str, allow_labels: bool = False) -> None:
    if _is_numeric(dtype) or allow_labels:
        return
    raise TypeError(f"{what} must hold real numbers, got dtype {dtype}")


def _rows_of(shard) -> int:
    return shard.n_rows


def _weight_of(shard) -> float:
    return dist.shard_weight_sum(shard)


def _weight_partitions(sample_weight, X, n_parts: int):
    """The delayed blocks of sample_weight (a 1-D dask array or Series partitioned like X), or None."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, da.Array):
        if sample_weight.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D, got a dask array of shape {sample_weight.shape}")
        if isinstance(X, da.Array) and sample_weight.chunks[0] != X.chunks[0]:
            raise ValueError(f"X and sample_weight have different row chunks ({_short(X.chunks[0])} vs "
                             f"{_short(sample_weight.chunks[0])}); rechunk sample_weight alike")
        blocks = list(sample_weight.to_delayed())
    elif _is_series(sample_weight):
        blocks = list(sample_weight.to_delayed())
    else:
        raise TypeError(f"sample_weight must be a dask array or Series partitioned like X, got "
                        f"{type(sample_weight).__name__}")
    if len(blocks) != n_parts:
        raise ValueError(f"X has {n_parts} partitions but sample_weight has {len(blocks)}; they must be "
                         "partitioned alike")
    return blocks


def _partitions(X, y, classifier: bool, what: str = ""):
    """(X blocks, y blocks, n_features, rows per partition or None) of dask collections X and y, checked;
    `what` prefixes the names in the errors ("eval_set ")."""
    if y is None:
        raise ValueError(f"{what}y is None: fit requires the targets {what}y, as a dask array or Series "
                         f"partitioned like {what}X")
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"{what}X must be 2-D (n_rows, n_features), got a {X.ndim}-D dask array")
        if any(math.isnan(s) for s in X.shape):
            raise ValueError(f"{what}X has unknown chunk sizes; call X.compute_chunk_sizes() first")
        _check_numeric(X.dtype, "X")
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        x_blocks = list(X.to_delayed()[:, 0])
        sizes = [int(c) for c in X.chunks[0]]
        n_features = int(X.shape[1])
    elif _is_dataframe(X):
        bad = [str(c) for c, t in X.dtypes.items() if not _is_numeric(t)]
        if bad:
            raise TypeError(f"X must have numeric columns only (each column is one dense feature); not numeric: "
                            f"{bad[:5]}")
        x_blocks = list(X.to_delayed())
        sizes = None
        n_features = len(X.columns)
    else:
        raise TypeError(f"X must be a dask.array.Array, a dask.dataframe.DataFrame or a list of cache files, got "
                        f"{type(X).__name__} (for data in memory use fastafm.AFMRegressor / AFMClassifier)")
    if n_features == 0:
        raise ValueError("X has 0 features (columns)")
    if isinstance(y, da.Array):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got a dask array of shape {y.shape}")
        _check_numeric(y.dtype, "y", allow_labels=classifier)
        if isinstance(X, da.Array) and y.chunks[0] != X.chunks[0]:
            raise ValueError(f"X and y have different row chunks ({_short(X.chunks[0])} vs {_short(y.chunks[0])}); "
                             "rechunk y alike: y = y.rechunk({0: X.chunks[0]})")
        y_blocks = list(y.to_delayed())
    elif _is_series(y) or _is_dataframe(y):
        if _is_dataframe(y):
            if len(y.columns) != 1:
                raise ValueError(f"y must be one column, got a DataFrame of {len(y.columns)} columns")
            y = y[y.columns[0]]
        _check_numeric(y.dtype, "y", allow_labels=classifier)
        y_blocks = list(y.to_delayed())
    else:
        raise TypeError(f"y must be a dask array or a dask Series partitioned like X, got {type(y).__name__}")
    if len(y_blocks) != len(x_blocks):
        raise ValueError(f"X has {len(x_blocks)} partitions but y has {len(y_blocks)}; X and y must be "
                         "partitioned alike")
    return x_blocks, y_blocks, n_features, sizes


def _cache_files(X, y, what: str = "X"):
    """X as a list of fastafm.CacheFile (from paths or CacheFile objects), or None when X is not a list of
    cache files. The files are opened here to read their headers (row and feature counts); the workers read
    the rows, so every worker must see the files at the same paths (a shared file system, or copies)."""
    if not isinstance(X, (list, tuple)):
        return None
    from ..data.cache import CacheFile

    if not X:
        raise ValueError(f"{what} is an empty list; pass a list of cache files (fastafm.convert writes them)")
    if not all(isinstance(f, (str, os.PathLike, CacheFile)) for f in X):
        raise TypeError(f"{what} as a list must hold cache file paths or fastafm.CacheFile objects, got "
                        f"{sorted({type(f).__name__ for f in X})}")
    if y is not None:
        raise ValueError(f"y must be None when {what} is a list of cache files: the labels are in the files")
    return [f if isinstance(f, CacheFile) else CacheFile(f) for f in X]


def _short(chunks) -> str:
    return str(tuple(chunks[:4]))[:-1] + (", ...)" if len(chunks) > 4 else ")")


def _assign(n_parts: int, sizes, n_workers: int) -> list:
    """Contiguous runs of partitions, one per worker, of about equal rows (equal counts when sizes are
    unknown): [(first, stop), ...]."""
    weights = np.ones(n_parts) if sizes is None else np.asarray(sizes, np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)])
    cuts = [0]
    for w in range(1, n_workers):
        cut = int(np.argmin(np.abs(edges - edges[-1] * w / n_workers)))
        cuts.append(max(cut, cuts[-1]))
    cuts.append(n_parts)
    return list(zip(cuts[:-1], cuts[1:]))


def _round_bounds(n: int, r: int, n_rounds: int, batch_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of a worker's epoch order that round r trains: equal shares, cut at multiples of the batch
    size so that a round never splits a mini-batch (one worker then trains exactly as one process would)."""
    def cut(i: int) -> int:
        return min(n, -(-(n * i // n_rounds) // batch_size) * batch_size)

    return cut(r), cut(r + 1)


def _get_client(client):
    if client is not None:
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise ValueError("no dask.distributed client: pass client=... or create one first, e.g. "
                         "Client(LocalCluster(n_workers=2, threads_per_worker=1))") from None


def _predict_part(part, model, method: str):
    """model.<method> on one block or partition (numpy array, scipy.sparse matrix or pandas DataFrame)."""
    n = int(part.shape[0])
    if n == 0:
        width = (2,) if method == "predict_proba" else ()
        dtype = model.classes_.dtype if method == "predict" and hasattr(model, "classes_") else np.float64
        out = np.zeros((0,) + width, dtype=dtype)
    else:
        values = part.to_numpy() if hasattr(part, "to_numpy") else part
        out = getattr(model, method)(values)
    if hasattr(part, "index"):  # pandas: keep the partition's index
        import pandas as pd

        if out.ndim == 2:
            return pd.DataFrame(out, index=part.index, columns=[str(c) for c in model.classes_])
        return pd.Series(out, index=part.index, name=method)
    return out


class _Cluster:
    """What the engine's callbacks (fastafm._callbacks) see of a Dask fit: the history of the local training
    state, and snapshot/restore of the merged model on the first worker. A merged State is never changed in
    place, so keeping its future is the snapshot (no copy, and nothing reaches the client)."""

    def __init__(self, local) -> None:
        self.local = local
        self.master = None  # the future of the current merged State

    @property
    def history(self) -> list:
        return self.local.history

    def snapshot(self, into=None):
        return self.master

    def restore(self, snap, rng: bool = True) -> None:
        self.master = snap


@dataclass
class _Data:
    """The training rows as the workers hold them, and what the client knows of them."""

    shards: list
    workers: list
    nthreads: dict
    n_local: list
    n_features: int
    summaries: list
    weight_total: float = 0.0  # the trained rows' total sample weight (their count when unweighted)
    row_nnz: float = 0.0  # mean stored non-zeros a row of all the rows given (learning_rate="auto")


class _DaskAFMBase(BaseEstimator):
    """Shared code of DaskAFMRegressor / DaskAFMClassifier; see DaskAFMRegressor for the parameters."""

    _local_class: type = AFMRegressor
    #: Send the whole model to every worker each round instead of the touched rows (the behaviour before the
    #: rows were tracked; the same values, more bytes): for the tests and bench/dask_scaling.py's comparison.
    _full_sync = False

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        sync_rows=16384,
        combine="average",
        client=None,
    ):
        store(self, locals())

    def __sklearn_clone__(self):
        """sklearn.base.clone: an unfitted copy sharing the same client (a Client cannot be deep-copied)."""
        params = self.get_params(deep=False)
        client = params.pop("client")
        return type(self)(**copy.deepcopy(params), client=client)

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None, sample_weight=None, eval_set=None):
        """Train for at most `n_epochs` epochs (fewer with early stopping). Returns self.

        X, y: dask collections: X a dask array (numpy or scipy.sparse chunks) or a dask DataFrame of numeric
        columns (one dense feature each), y a dask array or Series with the same partitions as X. Or X a list
        of cache files (paths or fastafm.CacheFile, written by fastafm.convert; each file is one partition,
        read by the worker it is assigned to, so the paths must be valid on the workers) and y None.
        sample_weight: a dask array or Series of one weight per row, partitioned like X (each row's loss times
        its weight, docs/model.md); with cache files None, their weights sections are used.

        eval_set: (X_eval, y_eval) or a list of one such tuple, evaluated after every epoch (history_) and
        watched by early stopping as in the in-memory estimators. X_eval, y_eval: data in the client (NumPy,
        SciPy; sent once to the first worker), dask collections (each worker loads its share of the
        partitions), or X_eval a list of cache files and y_eval None (each worker reads its share of the files
        into memory). Without an eval_set, early stopping holds out `validation_fraction` of the training rows
        (docs/distributed.md: which ones).
        """
        kind, local_values = self._checked()
        metric = check_metric(self.early_stopping_metric, kind.metrics, type(self).__name__)
        client = _get_client(self.client)
        data = self._load(client, X, y, kind.classifier, sample_weight=sample_weight)
        state = init_state(kind.spec(local_values, data.n_features), self.optimizer, self.init_std,
                           self.random_state)
        state.row_nnz = data.row_nnz
        self._labels(client, data, state, kind.classifier, None)
        stopping = (sum(data.n_local) >= AUTO_EARLY_STOPPING_ROWS or eval_set is not None
                    if isinstance(self.early_stopping, str) else bool(self.early_stopping))
        parts = None
        if eval_set is not None:
            parts = self._eval_parts(client, eval_set, data, state, kind.classifier)
        elif stopping:
            parts = self._hold_out(client, data, kind.classifier)
        stopper = self._train(client, kind, local_values, state, data, int(self.n_epochs), parts,
                              metric if stopping else None)
        self._fitted(kind, local_values, state, data)
        self.do_early_stopping_ = stopping
        for name in ("best_epoch_", "best_score_", "validation_score_"):  # an earlier fit's
            self.__dict__.pop(name, None)
        if parts is not None:
            self.best_epoch_, self.best_score_ = stopper.result() if stopper is not None else best_of(
                state.history, metric)
            self.validation_score_ = np.array([r[f"eval_{metric}"] for r in state.history], dtype=np.float64)
        return self

    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """One more epoch over (X, y) (the same inputs as `fit`), continuing from the current parameters,
        optimizer state, shuffling and dropout streams; on an unfitted model, one epoch from a fresh one.
        `classes` (classifier, optional): the two labels, for a first batch that may hold only one of them.
        Never stops early and never evaluates."""
        kind, local_values = self._checked()
        client = _get_client(self.client)
        fitted = hasattr(self, "_local_")
        data = self._load(client, X, y, kind.classifier, self.n_features_in_ if fitted else None, sample_weight)
        if fitted:
            state = fitted_state(self._local_)
        else:
            state = init_state(kind.spec(local_values, data.n_features), self.optimizer, self.init_std,
                               self.random_state)
            state.row_nnz = data.row_nnz
        self._labels(client, data, state, kind.classifier, classes)
        self._train(client, kind, local_values, state, data, 1, None, None)
        self._fitted(kind, local_values, state, data)
        return self

    # ------------------------------------------------------------------ fitting, step by step
    def _checked(self):
        """(the Kind of the local model, its hyperparameters), validated against the table."""
        kind = _registry.kind(self._local_class)
        values = {name: getattr(self, name) for name in SIGNATURES["dask"].names}
        validate(values, SIGNATURES["dask"].names)
        return kind, {name: values[name] for name in _HYPERPARAMETERS}

    def _load(self, client, X, y, classifier: bool, n_features=None, sample_weight=None) -> _Data:
        """The training rows loaded (or, for cache files, opened) on the workers, one shard each; n_features:
        the fitted model's width that X must have (partial_fit), None when fitting."""
        caches = _cache_files(X, y)
        w_blocks = None
        if caches is None:
            x_blocks, y_blocks, width, sizes = _partitions(X, y, classifier)
            w_blocks = _weight_partitions(sample_weight, X, len(x_blocks))
            if n_features is not None and width != n_features:
                raise ValueError(f"X has {width} features, but {type(self).__name__} is expecting {n_features} "
                                 "features as input")
        else:
            if sample_weight is not None:
                raise ValueError("sample_weight must be None when X is a list of cache files: their weights are "
                                 "stored in them (fastafm.convert(..., weights=...))")
            x_blocks, y_blocks = caches, caches
            width, sizes = max(c.n_features for c in caches), [c.n_rows for c in caches]
            if n_features is not None and width > n_features:
                raise ValueError(f"the cache files have {width} features, but {type(self).__name__} is expecting "
                                 f"{n_features} features as input")
        width = width if n_features is None else n_features
        nthreads = client.nthreads()
        workers = sorted(nthreads)
        if not workers:
            raise ValueError("the dask cluster has no workers")
        runs = _assign(len(x_blocks), sizes, len(workers))
        if any(stop == start for start, stop in runs):
            warnings.warn(f"X has {len(x_blocks)} partitions for {len(workers)} workers: some workers get no rows "
                          "and idle; repartition X into at least as many partitions as workers", UserWarning,
                          stacklevel=3)
        shards = []
        for addr, (start, stop) in zip(workers, runs):
            if caches is None:
                task = dask.delayed(dist.load_shard, pure=True)(x_blocks[start:stop], y_blocks[start:stop], start,
                                                                width, classifier,
                                                                None if w_blocks is None else w_blocks[start:stop])
                shards.append(client.compute(task, workers=[addr], allow_other_workers=False))
            else:
                shards.append(client.submit(dist.load_cache_shard, [dist.cache_ref(c) for c in caches[start:stop]],
                                            start, width,
                                            classifier, workers=[addr], allow_other_workers=False, pure=False))
        summaries = client.gather([client.submit(dist.shard_summary, s, classifier, workers=[a], pure=False)
                                   for s, a in zip(shards, workers)])
        n_local = [int(s["n_rows"]) for s in summaries]
        if sum(n_local) == 0:
            raise ValueError("X has 0 rows; at least one row is required")
        weight_total = sum(float(s["weight_sum"]) for s in summaries)
        if not weight_total > 0:
            raise ValueError("sample_weight is all zero: at least one row must have a positive weight")
        row_nnz = sum(int(s["nnz"]) for s in summaries) / sum(n_local)
        return _Data(shards, workers, nthreads, n_local, width, summaries, weight_total, row_nnz)

    def _labels(self, client, data: _Data, state, classifier: bool, classes) -> None:
        """The classes (classifier: the shards' labels encoded as +-1) or the label range of the state; on a
        fitted state, the data's labels are checked against the model's classes."""
        if not classifier:
            lo = min(s["y_min"] for s in data.summaries if "y_min" in s)
            hi = max(s["y_max"] for s in data.summaries if "y_max" in s)
            if state.label_range is None:
                state.label_range = (lo, hi)
            return
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
                raise ValueError(f"DaskAFMClassifier needs two classes in y, got {found.shape[0]}: {found[:5]}")
            state.classes = found
        data.shards = [client.submit(dist.encode_shard, s, state.classes[1], workers=[a], pure=False)
                       for s, a in zip(data.shards, data.workers)]

    def _hold_out(self, client, data: _Data, classifier: bool) -> list:
        """validation_fraction of every worker's rows held out (seeded per worker from random_state's split
        stream, as the in-memory estimators draw theirs); the shards keep the rest. Returns the eval parts."""
        rng = _split_generator(self.random_state)
        seed = int(rng.integers(0, 2**63 - 1))
        fraction = float(self.validation_fraction)
        split = [client.submit(dist.hold_out_shard, s, fraction, (seed + w * 0x9E3779B97F4A7C15) % (2**63 - 1),
                               classifier, workers=[a], allow_other_workers=False, pure=False)
                 for w, (s, a) in enumerate(zip(data.shards, data.workers))]
        data.shards = [client.submit(operator.getitem, f, 0, workers=[a], pure=False)
                       for f, a in zip(split, data.workers)]
        parts = [client.submit(operator.getitem, f, 1, workers=[a], pure=False) for f, a in zip(split, data.workers)]
        data.n_local = [int(n) for n in client.gather(
            [client.submit(_rows_of, s, workers=[a], pure=False) for s, a in zip(data.shards, data.workers)])]
        data.weight_total = sum(float(v) for v in client.gather(
            [client.submit(_weight_of, s, workers=[a], pure=False) for s, a in zip(data.shards, data.workers)]))
        n_total = sum(s["n_rows"] for s in data.summaries)
        n_held = n_total - sum(data.n_local)
        if n_held == 0 or sum(data.n_local) == 0:
            raise ValueError(f"validation_fraction={fraction} of {n_total} training rows leaves "
                             f"{'no' if n_held == 0 else 'all'} rows for validation; early stopping needs rows on "
                             "both sides (pass an eval_set, change validation_fraction, or set early_stopping=False)")
        return parts

    def _eval_parts(self, client, eval_set, data: _Data, state, classifier: bool) -> list:
        """The eval_set as one EvalPart per worker (None where a worker has none)."""
        if isinstance(eval_set, list) and len(eval_set) == 1 and isinstance(eval_set[0], tuple):
            eval_set = eval_set[0]
        if not isinstance(eval_set, tuple) or len(eval_set) != 2:
            raise ValueError("eval_set must be a tuple (X_eval, y_eval) or a list holding one")
        X_eval, y_eval = eval_set
        classes = state.classes if classifier else None
        n = data.n_features
        caches = _cache_files(X_eval, y_eval, what="eval_set X")
        if caches is not None:
            runs = _assign(len(caches), [c.n_rows for c in caches], len(data.workers))
            return [client.submit(dist.eval_part_of_caches, [dist.cache_ref(c) for c in caches[lo:hi]], lo, n,
                                  classes, workers=[a],
                                  allow_other_workers=False, pure=False) if hi > lo else None
                    for a, (lo, hi) in zip(data.workers, runs)]
        if isinstance(X_eval, da.Array) or _is_dataframe(X_eval):
            x_blocks, y_blocks, width, sizes = _partitions(X_eval, y_eval, classifier, what="eval_set ")
            if width != n:
                raise ValueError(f"eval_set X has {width} features, but {type(self).__name__} is expecting {n} "
                                 "features as input")
            runs = _assign(len(x_blocks), sizes, len(data.workers))
            out: list = []
            for a, (lo, hi) in zip(data.workers, runs):
                if hi == lo:
                    out.append(None)
                    continue
                task = dask.delayed(dist.eval_part_of_blocks, pure=True)(x_blocks[lo:hi], y_blocks[lo:hi], lo, n,
                                                                         classes)
                out.append(client.compute(task, workers=[a], allow_other_workers=False))
            return out
        # data in the client: checked as the in-memory estimators check it, then sent to the first worker once
        X_csr = as_csr(X_eval, name="eval_set X", n_features=n, owner=type(self).__name__)
        y_checked = eval_targets(y_eval, X_csr.shape[0], classes)
        if classes is None:
            y_enc = np.asarray(y_checked, np.float32)
        else:
            y_enc = np.where(y_checked == classes[1], 1.0, -1.0).astype(np.float32)
        home = client.scatter(dist.EvalPart(X_csr, y_enc), workers=[data.workers[0]])
        return [home] + [None] * (len(data.workers) - 1)

    def _fitted(self, kind, local_values, state, data: _Data) -> None:
        self.n_features_in_ = data.n_features
        self.n_workers_ = len(data.workers)
        self._local_ = kind.build(local_values, state)
        self.learning_rate_ = self._local_.learning_rate_  # "auto" resolved for the optimizer
        if state.classes is not None:
            self.classes_ = state.classes
        if state.label_range is not None:
            self.label_range_ = state.label_range
        self.history_ = state.history
        self.n_epochs_done_ = state.n_epochs_done

    def to_local(self):
        """The fitted model as an in-memory AFMRegressor / AFMClassifier (a copy): save, pair_attention,
        predict on NumPy/SciPy data, partial_fit ... all work on it."""
        self._check_fitted()
        return copy.deepcopy(self._local_)

    def predict(self, X):
        """Predictions for a dask array (-> dask array) or dask DataFrame (-> dask Series), lazily."""
        return self._map(X, "predict")

    def decision_function(self, X):
        """Raw model output (the logit for the classifier) as a dask array / Series, lazily."""
        return self._map(X, "decision_function")

    # ------------------------------------------------------------------ internals
    def _check_fitted(self):
        if not hasattr(self, "_local_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:  # pragma: no cover
                NotFittedError = AttributeError  # noqa: N806
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit first.")

    def _map(self, X, method: str):
        self._check_fitted()
        local = self._local_
        # Prediction reads the parameters only: a model without the optimizer slots goes into the graph.
        kind = _registry.kind(type(local))
        model = kind.build(local.get_params(), dataclasses.replace(fitted_state(local), slots={}))
        n = self.n_features_in_
        if method == "predict" and hasattr(model, "classes_"):
            dtype = model.classes_.dtype
        else:
            dtype = np.dtype(np.float64)
        if isinstance(X, da.Array):
            if X.ndim != 2 or X.shape[1] != n:
                raise ValueError(f"X has shape {X.shape}, but {type(self).__name__} is expecting {n} features")
            _check_numeric(X.dtype, "X")
            if X.numblocks[1] > 1:
                X = X.rechunk({1: -1})
            if method == "predict_proba":
                return X.map_blocks(_predict_part, model, method, chunks=(X.chunks[0], (2,)), dtype=np.float64)
            return X.map_blocks(_predict_part, model, method, drop_axis=1, dtype=dtype)
        if _is_dataframe(X):
            import pandas as pd

            if len(X.columns) != n:
                raise ValueError(f"X has {len(X.columns)} columns, but {type(self).__name__} is expecting {n} "
                                 "features")
            if method == "predict_proba":
                meta = pd.DataFrame({str(c): pd.Series(dtype=np.float64) for c in model.classes_})
            else:
                meta = pd.Series(dtype=dtype, name=method)
            return X.map_partitions(_predict_part, model, method, meta=meta)
        raise TypeError(f"X must be a dask.array.Array or a dask.dataframe.DataFrame, got {type(X).__name__} (for "
                        "data in memory use .to_local().predict(X))")

    def _train(self, client, kind, values, local, data: _Data, n_epochs: int, parts, metric):
        """`n_epochs` epochs of sync rounds: train_round on every worker's replica, a merge on the first worker,
        the merge's delta to every replica; with eval parts, the metrics after every epoch, and with a metric,
        early stopping (restoring the best epoch's merged State). `local` is the training state of the local
        model (fastafm._state), updated at the end. Returns the EarlyStopping callback or None."""
        spec = local.spec
        workers, shards, n_local = data.workers, data.shards, data.n_local
        settings = [core_settings(kind.values(values), spec.loss, spec.attention, spec.learn_projection,
                                  n_threads=int(self.n_threads) or int(data.nthreads[a]), row_nnz=local.row_nnz)
                    for a in workers]
        seeds = [(local.dropout_seed + w * 0x9E3779B97F4A7C15) % (2**63 - 1) for w in range(len(workers))]
        home = workers[0]
        cluster = _Cluster(local)
        cluster.master = client.scatter(dist.State(local.params, local.slots), workers=[home])
        # Each worker's own copy of the model, made once per fit (the only time the whole model moves).
        fit_key = uuid.uuid4().hex
        replicas = [client.submit(dist.new_replica, cluster.master, f"{fit_key}-{w}", workers=[a],
                                  allow_other_workers=False, pure=False) for w, a in enumerate(workers)]
        try:
            return self._epochs(client, kind, local, data, n_epochs, parts, metric, settings, seeds, cluster,
                                replicas)
        finally:
            client.gather([client.submit(dist.drop_replica, f"{fit_key}-{w}", workers=[a], allow_other_workers=False,
                                         pure=False) for w, a in enumerate(workers)])

    def _epochs(self, client, kind, local, data, n_epochs, parts, metric, settings, seeds, cluster, replicas):
        spec = local.spec
        workers, shards, n_local = data.workers, data.shards, data.n_local
        home = workers[0]
        delta = None
        # Every task on a replica takes the worker's previous one as `after`: they run in order, and every
        # worker gets every round's delta (an idle one through sync_replica).
        last = list(replicas)
        callbacks: list = []

        def evaluate() -> dict:
            for w, (a, part) in enumerate(zip(workers, parts)):
                last[w] = client.submit(dist.evaluate_part, replicas[w], delta, part, spec.attention,
                                        settings[w]["n_threads"], local.label_range, kind.classifier, after=last[w],
                                        workers=[a], allow_other_workers=False, pure=False)
            return dist.combine_eval(client.gather(last), kind.classifier)

        if parts is not None:
            callbacks.append(Evaluation(evaluate))
        callbacks.append(History(self.verbose))
        stopper = None
        if metric is not None:
            stopper = EarlyStopping(metric, self.n_iter_no_change, self.tol, self.verbose)
            callbacks.append(stopper)
        n_rounds = max(1, max(-(-n // int(self.sync_rows)) for n in n_local))
        start = time.perf_counter()
        summary: dict = {}
        for _ in range(n_epochs):
            epoch = local.n_epochs_done
            epoch_start = time.perf_counter()
            orders = [client.submit(dist.epoch_order, s, int(local.rng.integers(0, 2**63 - 1)), workers=[a],
                                    pure=False) for s, a in zip(shards, workers)]
            for r in range(n_rounds):
                updates = []
                for w, addr in enumerate(workers):
                    lo, hi = _round_bounds(n_local[w], r, n_rounds, int(self.batch_size))
                    if hi > lo:
                        last[w] = client.submit(dist.train_round, shards[w], orders[w], replicas[w], delta, lo, hi,
                                                settings[w], seeds[w], epoch, after=last[w], workers=[addr],
                                                allow_other_workers=False, pure=False)
                        updates.append(last[w])
                    else:
                        last[w] = client.submit(dist.sync_replica, replicas[w], delta, after=last[w], workers=[addr],
                                                allow_other_workers=False, pure=False)
                cluster.master = client.submit(dist.merge, cluster.master, updates, r == 0, self.combine,
                                               self._full_sync, workers=[home], allow_other_workers=False,
                                               pure=False)
                delta = client.submit(dist.delta_of, cluster.master, workers=[home], pure=False)
            summary = client.submit(dist.summarize, cluster.master, workers=[home], pure=False).result()
            if not summary["finite"] or not np.isfinite(summary["loss_sum"]):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}: the loss or a parameter became NaN or infinite. "
                    f"Try a smaller learning_rate (now {settings[0]['learning_rate']}), or scale the feature values "
                    "down")
            # The mean loss per unit of weight (an epoch trains every row: their total weight is weight_total).
            record = {"epoch": epoch + 1, "train_loss": summary["loss_sum"] / max(data.weight_total, 1e-300),
                      "seconds": time.perf_counter() - epoch_start}
            stop = False
            for callback in callbacks:  # as the engine (fastafm._engine.train) runs them
                stop = callback.on_epoch_end(cluster, record) or stop
            local.n_epochs_done += 1
            if stop:
                break
        for callback in callbacks:
            callback.on_train_end(cluster)  # early stopping: cluster.master is the best epoch's State again
        wall = time.perf_counter() - start
        params, slots = client.submit(dist.fetch, cluster.master, workers=[home], pure=False).result()
        local.params = {k: np.array(a, dtype=np.float32) for k, a in params.items()}
        local.slots = {s: {k: np.array(a, dtype=np.float32) for k, a in d.items()} for s, d in slots.items()}
        self.sync_stats_ = self._sync_stats(summary, wall, len(workers))
        return stopper

    @staticmethod
    def _sync_stats(summary: dict, wall: float, n_workers: int) -> dict:
        stats = summary.get("stats", {})
        rounds = max(int(stats.get("rounds", 0)), 1)
        state_bytes = int(summary.get("state_bytes", 0))
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


class DaskAFMRegressor(RegressorMixin, _DaskAFMBase):
    """AFMRegressor trained data-parallel on a dask.distributed cluster.

    Parameters
    ----------
    embedding_dim, attention_dim, dropout, attention_l2, l2, learning_rate, optimizer, batch_size, n_epochs,
    init_std, attention, random_state, verbose, early_stopping, validation_fraction, n_iter_no_change, tol,
    early_stopping_metric
        As in fastafm.AFMRegressor ("auto" early stopping: on with an eval_set or at least 10,000 training
        rows). Without an eval_set, each worker holds out validation_fraction of its rows: a seeded split of
        an in-memory shard (stratified for the classifier), and from cache files each row with probability
        validation_fraction, drawn per block from (seed, file index, block index); the held-out rows are
        read into the worker's memory once. There is no `pretrain` (train an FM first and use its w, V via
        to_local() if needed).
    n_threads : int, default 0
        Threads of the core in each worker's task; 0 uses the worker's thread count (threads_per_worker).
    sync_rows : int, default 16384
        Rows each worker trains between two synchronisations (the largest worker's share; the others scale
        theirs so that all finish an epoch in the same number of rounds). Smaller: closer to single-process
        training, more rounds; see docs/distributed.md for the measured trade-off.
    client : dask.distributed.Client or None
        The cluster to train on; None uses the current client (distributed.get_client()).

    Attributes
    ----------
    n_features_in_, history_ (one dict per epoch: train_loss, seconds, eval_* with evaluation rows),
    n_epochs_done_, label_range_, learning_rate_ (the learning rate used: `learning_rate`, or "auto" resolved
    for the optimizer)
    best_epoch_, best_score_, validation_score_, do_early_stopping_ : as in AFMRegressor
    n_workers_ : workers that trained
    sync_stats_ : dict, what synchronisation cost in the last fit/partial_fit: rounds, rows_per_round,
        state_bytes (parameters + optimizer slots), bytes_up_per_round (all workers' updates),
        bytes_down_per_round (the merges' deltas to the other workers), bytes_down_full_per_round (what
        sending the whole model would cost), bytes_initial (the model to the other workers once per fit),
        wall_seconds, compute_seconds_per_worker, merge_seconds, sync_share (share of the wall time not
        spent in the slowest worker's core)
    """

    _local_class = AFMRegressor


class DaskAFMClassifier(ClassifierMixin, _DaskAFMBase):
    """AFMClassifier trained data-parallel on a dask.distributed cluster; see DaskAFMRegressor. Labels may be
    any two values; `classes_[1]` is the positive class."""

    _local_class = AFMClassifier

    def predict_proba(self, X):
        """Class probabilities, (n_rows, 2) as a dask array, or a dask DataFrame with one column per class."""
        return self._map(X, "predict_proba")
