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
   everything else weighted by rows; fastafm._distributed). The average is computed on the first worker
   and fetched from there by the others: the client only schedules tasks and reads a few numbers per epoch.
3. `predict` maps the fitted model over the partitions of its input (map_blocks / map_partitions).

The result is deterministic for a fixed random_state, the same partitioning and the same number of workers.
Needs the optional dependencies: pip install fastafm[dask].
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import warnings

import numpy as np

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test without dask on sys.path
    raise ImportError(
        "fastafm.dask needs the optional dependencies dask and distributed: pip install fastafm[dask]"
    ) from exc

from . import _distributed as dist
from . import _registry
from ._compat import BaseEstimator, ClassifierMixin, RegressorMixin, fitted_state
from ._hyperparams import SIGNATURES, core_settings, store, validate
from ._state import init_state
from .estimators import AFMClassifier, AFMRegressor

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


def _partitions(X, y, classifier: bool):
    """(X blocks, y blocks, n_features, rows per partition or None) of dask collections X and y, checked."""
    if y is None:
        raise ValueError("y is None: fit requires the targets y, as a dask array or Series partitioned like X")
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_rows, n_features), got a {X.ndim}-D dask array")
        if any(math.isnan(s) for s in X.shape):
            raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes() first")
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


def _cache_files(X, y):
    """X as a list of fastafm.CacheFile (from paths or CacheFile objects), or None when X is not a list of
    cache files. The files are opened here to read their headers (row and feature counts); the workers read
    the rows, so every worker must see the files at the same paths (a shared file system, or copies)."""
    if not isinstance(X, (list, tuple)):
        return None
    from .cache import CacheFile

    if not X:
        raise ValueError("X is an empty list; pass a list of cache files (fastafm.convert writes them)")
    if not all(isinstance(f, (str, os.PathLike, CacheFile)) for f in X):
        raise TypeError("X as a list must hold cache file paths or fastafm.CacheFile objects, got "
                        f"{sorted({type(f).__name__ for f in X})}")
    if y is not None:
        raise ValueError("y must be None when X is a list of cache files: the labels are in the files")
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


class _DaskAFMBase(BaseEstimator):
    """Shared code of DaskAFMRegressor / DaskAFMClassifier; see DaskAFMRegressor for the parameters."""

    _local_class: type = AFMRegressor

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
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
    def fit(self, X, y=None):
        """Train for `n_epochs` epochs. Returns self.

        X, y: dask collections: X a dask array (numpy or scipy.sparse chunks) or a dask DataFrame of numeric
        columns (one dense feature each), y a dask array or Series with the same partitions as X. Or X a list
        of cache files (paths or fastafm.CacheFile, written by fastafm.convert; each file is one partition,
        read by the worker it is assigned to, so the paths must be valid on the workers) and y None.
        """
        kind = _registry.kind(self._local_class)
        values = {name: getattr(self, name) for name in SIGNATURES["dask"].names}
        validate(values, SIGNATURES["dask"].names)
        local_values = {name: values[name] for name in _HYPERPARAMETERS}
        classifier = kind.classifier
        caches = _cache_files(X, y)
        if caches is None:
            x_blocks, y_blocks, n_features, sizes = _partitions(X, y, classifier)
        else:
            x_blocks, y_blocks = caches, caches
            n_features, sizes = max(c.n_features for c in caches), [c.n_rows for c in caches]
        client = _get_client(self.client)
        nthreads = client.nthreads()
        workers = sorted(nthreads)
        if not workers:
            raise ValueError("the dask cluster has no workers")
        runs = _assign(len(x_blocks), sizes, len(workers))
        if any(stop == start for start, stop in runs):
            warnings.warn(f"X has {len(x_blocks)} partitions for {len(workers)} workers: some workers get no rows "
                          "and idle; repartition X into at least as many partitions as workers", UserWarning,
                          stacklevel=2)
        shards = []
        for addr, (start, stop) in zip(workers, runs):
            if caches is None:
                task = dask.delayed(dist.load_shard, pure=True)(x_blocks[start:stop], y_blocks[start:stop], start,
                                                                n_features, classifier)
                shards.append(client.compute(task, workers=[addr], allow_other_workers=False))
            else:
                shards.append(client.submit(dist.load_cache_shard, caches[start:stop], start, n_features,
                                            classifier, workers=[addr], allow_other_workers=False, pure=False))
        summaries = client.gather([client.submit(dist.shard_summary, s, classifier, workers=[a], pure=False)
                                   for s, a in zip(shards, workers)])
        n_local = [int(s["n_rows"]) for s in summaries]
        if sum(n_local) == 0:
            raise ValueError("X has 0 rows; at least one row is required")
        state = init_state(kind.spec(local_values, n_features), self.optimizer, self.init_std, self.random_state)
        if classifier:
            try:
                classes = np.unique(np.concatenate([s["labels"] for s in summaries if "labels" in s]))
            except TypeError as exc:
                raise TypeError(f"y must hold labels of one type: {exc}") from None
            if classes.shape[0] != 2:
                raise ValueError(f"DaskAFMClassifier needs two classes in y, got {classes.shape[0]}: {classes[:5]}")
            state.classes = classes
            shards = [client.submit(dist.encode_shard, s, classes[1], workers=[a], pure=False)
                      for s, a in zip(shards, workers)]
        else:
            state.label_range = (min(s["y_min"] for s in summaries if "y_min" in s),
                                 max(s["y_max"] for s in summaries if "y_max" in s))
        self._train(client, kind, local_values, state, shards, workers, n_local, nthreads)
        self.n_features_in_ = n_features
        self.n_workers_ = len(workers)
        self._local_ = kind.build(local_values, state)
        if state.classes is not None:
            self.classes_ = state.classes
        if state.label_range is not None:
            self.label_range_ = state.label_range
        self.history_ = state.history
        self.n_epochs_done_ = state.n_epochs_done
        self.learning_rate_ = self._local_.learning_rate_  # "auto" resolved for the optimizer
        return self

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

    def _train(self, client, kind, values, local, shards, workers, n_local, nthreads):
        """The epochs: sync rounds of train_round on every worker and a merge on the first worker. `local` is
        the training state of the local model (fastafm._state), updated at the end."""
        spec = local.spec
        settings = [core_settings(kind.values(values), spec.loss, spec.attention, spec.learn_projection,
                                  n_threads=int(self.n_threads) or int(nthreads[a])) for a in workers]
        seeds = [(local.dropout_seed + w * 0x9E3779B97F4A7C15) % (2**63 - 1) for w in range(len(workers))]
        home = workers[0]
        state = client.scatter(dist.State(local.params, local.slots), workers=[home])
        n_rounds = max(1, max(-(-n // int(self.sync_rows)) for n in n_local))
        start = time.perf_counter()
        summary: dict = {}
        for _ in range(int(self.n_epochs)):
            epoch = local.n_epochs_done
            epoch_start = time.perf_counter()
            orders = [client.submit(dist.epoch_order, s, int(local.rng.integers(0, 2**63 - 1)), workers=[a],
                                    pure=False) for s, a in zip(shards, workers)]
            before = state
            for r in range(n_rounds):
                updates = []
                for w, addr in enumerate(workers):
                    lo, hi = _round_bounds(n_local[w], r, n_rounds, int(self.batch_size))
                    if hi > lo:
                        updates.append(client.submit(dist.train_round, shards[w], orders[w], state, lo, hi,
                                                     settings[w], seeds[w], epoch, workers=[addr],
                                                     allow_other_workers=False, pure=False))
                state = client.submit(dist.merge, state, updates, r == 0, self.combine, workers=[home],
                                      allow_other_workers=False, pure=False)
            summary = client.submit(dist.summarize, state, workers=[home], pure=False).result()
            if not summary["finite"] or not np.isfinite(summary["loss_sum"]):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}: the loss or a parameter became NaN or infinite. "
                    f"Try a smaller learning_rate (now {settings[0]['learning_rate']}), or scale the feature values "
                    "down")
            del before
            record = {"epoch": epoch + 1, "train_loss": summary["loss_sum"] / max(summary["rows"], 1),
                      "seconds": time.perf_counter() - epoch_start}
            local.history.append(record)
            local.n_epochs_done += 1
            if self.verbose:
                print(f"epoch {record['epoch']:3d}  train_loss={record['train_loss']:.5f}  "
                      f"{record['seconds']:.2f}s", flush=True)
        wall = time.perf_counter() - start
        params, slots = client.submit(dist.fetch, state, workers=[home], pure=False).result()
        local.params = {k: np.array(a, dtype=np.float32) for k, a in params.items()}
        local.slots = {s: {k: np.array(a, dtype=np.float32) for k, a in d.items()} for s, d in slots.items()}
        self.sync_stats_ = self._sync_stats(summary, wall, len(workers), sum(n_local) * int(self.n_epochs))

    @staticmethod
    def _sync_stats(summary: dict, wall: float, n_workers: int, rows_trained: int) -> dict:
        stats = summary.get("stats", {})
        rounds = max(int(stats.get("rounds", 0)), 1)
        state_bytes = int(summary.get("state_bytes", 0))
        return {
            "rounds": int(stats.get("rounds", 0)),
            "rows_per_round": rows_trained / rounds,
            "state_bytes": state_bytes,
            "bytes_up_per_round": stats.get("bytes_up", 0) / rounds,
            "bytes_down_per_round": state_bytes * (n_workers - 1),
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
    init_std, attention, random_state, verbose
        As in fastafm.AFMRegressor.
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
    n_features_in_, history_ (one dict per epoch: train_loss, seconds), n_epochs_done_, label_range_,
    learning_rate_ (the learning rate used: `learning_rate`, or "auto" resolved for the optimizer)
    n_workers_ : workers that trained
    sync_stats_ : dict, what synchronisation cost: rounds, state_bytes (parameters + optimizer slots),
        bytes_up_per_round (all workers' updates), bytes_down_per_round (the averaged state to the other
        workers), wall_seconds, compute_seconds_per_worker, merge_seconds, sync_share (share of the wall
        time not spent in the slowest worker's core)
    """

    _local_class = AFMRegressor


class DaskAFMClassifier(ClassifierMixin, _DaskAFMBase):
    """AFMClassifier trained data-parallel on a dask.distributed cluster; see DaskAFMRegressor. Labels may be
    any two values; `classes_[1]` is the positive class."""

    _local_class = AFMClassifier

    def predict_proba(self, X):
        """Class probabilities, (n_rows, 2) as a dask array, or a dask DataFrame with one column per class."""
        return self._map(X, "predict_proba")
