"""Input checks and conversions at the Python boundary.

Everything that enters the compiled core passes through here first, so that bad input raises a clear
ValueError/TypeError naming the argument instead of reaching C++. The binding re-checks the structure
(index bounds, indptr) before it releases the GIL; this module checks meaning (finite values, shapes, labels).
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

_INT32_MAX = np.iinfo(np.int32).max


def as_csr(X, name: str = "X", n_features: int | None = None) -> sp.csr_matrix:
    """Return X as a CSR matrix with int64 indptr, int32 indices and float32 finite values.

    Accepts SciPy sparse matrices/arrays (any format; CSR kept as is, so repeated ids in a row stay
    separate non-zeros) and dense 2-D numeric arrays (zeros are skipped).
    """
    if sp.issparse(X):
        X = X.tocsr()
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {X.ndim}-D")
        data = np.asarray(X.data)
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_) or np.iscomplexobj(data):
            raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
        indices = np.asarray(X.indices)
        indptr = np.asarray(X.indptr)
        n_rows, n_cols = X.shape
        if indptr.shape != (n_rows + 1,):
            raise ValueError(f"{name} has a malformed CSR indptr of shape {indptr.shape} for {n_rows} rows")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
            raise ValueError(f"{name} has a malformed CSR indptr (must start at 0, never decrease, end at nnz)")
        if indices.shape[0] != data.shape[0]:
            raise ValueError(f"{name} has {indices.shape[0]} indices but {data.shape[0]} values")
        if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
            raise ValueError(f"{name} has column indices outside [0, {n_cols})")
        values = data.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
        X = sp.csr_matrix(
            (values, indices.astype(np.int32), indptr.astype(np.int64)), shape=(n_rows, n_cols), copy=False
        )
    else:
        if isinstance(X, (str, bytes)) or X is None:
            raise TypeError(f"{name} must be a 2-D array or a SciPy sparse matrix, got {type(X).__name__}")
        arr = np.asarray(X)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_rows, n_features), got shape {arr.shape}")
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
        X = sp.csr_matrix(arr)
        X = sp.csr_matrix(
            (X.data.astype(np.float32), X.indices.astype(np.int32), X.indptr.astype(np.int64)),
            shape=arr.shape,
            copy=False,
        )
    n_rows, n_cols = X.shape
    if n_rows == 0:
        raise ValueError(f"{name} has 0 rows; at least one row is required")
    if n_cols == 0:
        raise ValueError(f"{name} has 0 features; at least one column is required")
    if n_cols > _INT32_MAX:
        raise ValueError(f"{name} has {n_cols} columns; at most {_INT32_MAX} are supported")
    if n_features is not None and n_cols != n_features:
        raise ValueError(f"{name} has {n_cols} features, but the model was fitted with {n_features}")
    return X


def as_targets(y, n_rows: int, name: str = "y") -> np.ndarray:
    """Return y as a finite float32 vector of length n_rows."""
    if y is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} values but X has {n_rows} rows")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinity")
    return out


def check_int(value, name: str, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_float(value, name: str, low: float, high: float | None = None, low_open: bool = False,
                high_open: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    lo_ok = v > low if low_open else v >= low
    hi_ok = True if high is None else (v < high if high_open else v <= high)
    if not (lo_ok and hi_ok):
        lo = "(" if low_open else "["
        hi = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{name} must be in {lo}{low}, {hi}, got {value}")


def csr_arrays(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (indptr int64, indices int32, values float32) arrays the core takes; SciPy may store a small
    matrix's indptr as int32, so the dtypes are fixed here, at the last step."""
    return (
        np.ascontiguousarray(X.indptr, dtype=np.int64),
        np.ascontiguousarray(X.indices, dtype=np.int32),
        np.ascontiguousarray(X.data, dtype=np.float32),
    )
