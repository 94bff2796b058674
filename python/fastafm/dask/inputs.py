"""Client-side checks of what the Dask estimators take: dask arrays, DataFrames and Series partitioned alike,
lists of cache files; the assignment of partitions to workers; prediction mapped over partitions."""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

import dask.array as da
import distributed

from .._compat import fitted_state
from ..models import registry as _registry


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



def weight_partitions(sample_weight, X, n_parts: int):
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


def partitions(X, y, classifier: bool, what: str = ""):
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
                            f"{bad[:5]}. For a raw log's columns (categories, a label column) give their schema: "
                            "fit(fastafm.dask.RawLog(ddf, folder, label=...)) converts them on the workers "
                            "(fastafm.dask.convert), then trains on the caches")
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


def cache_files(X, y, what: str = "X"):
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
    return [f if isinstance(f, CacheFile) else _open_cache(f, what) for f in X]


def _open_cache(path, what: str):
    """CacheFile(path); a CSV/TSV/Parquet file (a raw log, not a cache) gets the way to convert it."""
    from ..data.cache import CacheFile

    try:
        return CacheFile(path)
    except ValueError as exc:
        if not _looks_raw(path):
            raise
        raise ValueError(f"{what} holds {os.fspath(path)}, a raw log file, not a cache: give raw files with their "
                         "schema, fit(fastafm.dask.RawLog(files, folder, label=...)), which converts them on the "
                         "workers (fastafm.dask.convert) and trains on the caches") from exc


_RAW_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def _looks_raw(path) -> bool:
    """A CSV/TSV/Parquet file by its name (compressed too): what fastafm.dask.convert reads, not a cache."""
    name = os.fspath(path).lower()
    for compressed in (".gz", ".bz2", ".xz"):
        if name.endswith(compressed):
            name = name[: -len(compressed)]
    return name.endswith(_RAW_SUFFIXES)


def _short(chunks) -> str:
    return str(tuple(chunks[:4]))[:-1] + (", ...)" if len(chunks) > 4 else ")")


def assign(n_parts: int, sizes, n_workers: int) -> list:
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



def get_client(client):
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



def map_predict(local, X, method: str, owner: str):
    """`method` of the fitted local model mapped over the blocks of a dask array (-> dask array) or the
    partitions of a dask DataFrame (-> dask Series / DataFrame), lazily."""
    # Prediction reads the parameters only: a model without the optimizer slots goes into the graph.
    kind = _registry.kind(type(local))
    model = kind.build(local.get_params(), dataclasses.replace(fitted_state(local), slots={}))
    n = local.n_features_in_
    if method == "predict" and hasattr(model, "classes_"):
        dtype = model.classes_.dtype
    else:
        dtype = np.dtype(np.float64)
    if isinstance(X, da.Array):
        if X.ndim != 2 or X.shape[1] != n:
            raise ValueError(f"X has shape {X.shape}, but {owner} is expecting {n} features")
        _check_numeric(X.dtype, "X")
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        if method == "predict_proba":
            return X.map_blocks(_predict_part, model, method, chunks=(X.chunks[0], (2,)), dtype=np.float64)
        return X.map_blocks(_predict_part, model, method, drop_axis=1, dtype=dtype)
    if _is_dataframe(X):
        import pandas as pd

        if len(X.columns) != n:
            raise ValueError(f"X has {len(X.columns)} columns, but {owner} is expecting {n} features")
        if method == "predict_proba":
            meta = pd.DataFrame({str(c): pd.Series(dtype=np.float64) for c in model.classes_})
        else:
            meta = pd.Series(dtype=dtype, name=method)
        return X.map_partitions(_predict_part, model, method, meta=meta)
    raise TypeError(f"X must be a dask.array.Array or a dask.dataframe.DataFrame, got {type(X).__name__} (for "
                    "data in memory use .to_local().predict(X))")


def is_dask_collection(obj) -> bool:
    """A dask array or DataFrame (what partitions() takes as X)."""
    return isinstance(obj, da.Array) or _is_dataframe(obj)
