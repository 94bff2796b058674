"""Input checks and conversions at the Python boundary.

Everything that enters the compiled core passes through here first, so that bad input raises a clear
ValueError/TypeError naming the argument instead of reaching C++. The binding re-checks the structure
(index bounds, indptr) before it releases the GIL; this module checks meaning (finite values, shapes, labels).

Rows are kept exactly as stored: the column indices of a CSR row need not be sorted and may repeat. That is
valid AFM input, not a malformed matrix: each stored entry is its own non-zero, and the storage order of a
row defines the order of its feature pairs (r < s) in `attention_weights`.
"""
from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp

from .limits import check_rows

_INT32_MAX = int(np.iinfo(np.int32).max)
# The range of n_threads in the hyperparameter table (fastafm.models.hyperparams, which imports this module, so the
# bound is repeated here; tests/test_hostile_inputs.py checks that the two agree).
MAX_THREADS = 4096

try:  # the warning scikit-learn's checks expect for a column-vector y; a plain UserWarning without sklearn
    from sklearn.exceptions import DataConversionWarning
except ImportError:  # pragma: no cover
    class DataConversionWarning(UserWarning):  # type: ignore[no-redef]
        pass


def _as_float32(arr: np.ndarray, name: str) -> np.ndarray:
    """arr as float32, and an error (not a RuntimeWarning) when a value is NaN/inf or beyond float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32, copy=False)  # no second copy of data that is float32 already
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
    return out


def _numeric_array(X, name: str) -> np.ndarray:
    """np.asarray(X) that names the argument when X is ragged, complex or not numeric. Object arrays of
    numbers are converted (as scikit-learn does); objects that are not numbers are a TypeError."""
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} is not a rectangular numeric array: {exc}") from None
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real numbers: Complex data not supported (dtype {arr.dtype})")
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold real numbers, got dtype object holding a non-number: {exc}") from None
    elif not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def as_csr(X, name: str = "X", n_features: int | None = None, owner: str = "the model") -> sp.csr_matrix:
    """Return X as a CSR matrix with int32 indices, float32 finite values and an int32 or int64 indptr
    (csr_arrays gives the core int64). A CSR matrix that already has these dtypes is returned as it is.

    Accepts SciPy sparse matrices/arrays (any format; CSR kept as is, so repeated and unsorted ids in a row
    stay separate non-zeros in their order) and dense 2-D numeric arrays (zeros are skipped).
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {X.ndim}-D")
        n_rows, n_cols = X.shape
        if n_cols > _INT32_MAX:
            raise ValueError(f"{name} has {n_cols} columns; at most {_INT32_MAX} are supported")
        try:
            X = X.tocsr()
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"{name} is a malformed sparse matrix: {exc}") from None
        data = np.asarray(X.data)
        if data.dtype.kind == "c":
            raise ValueError(f"{name} must hold real numbers: Complex data not supported (dtype {data.dtype})")
        if data.dtype.kind not in "biuf":  # dtype kinds, not np.issubdtype: this runs on every predict call
            raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
        indices = np.asarray(X.indices)
        indptr = np.asarray(X.indptr)
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise TypeError(f"{name} has non-integer CSR index arrays ({indices.dtype}, {indptr.dtype})")
        if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
            raise ValueError(f"{name} has malformed CSR arrays (indptr, indices and data must be 1-D)")
        if indptr.shape != (n_rows + 1,):
            raise ValueError(f"{name} has a malformed CSR indptr of shape {indptr.shape} for {n_rows} rows")
        if indices.shape[0] != data.shape[0]:
            raise ValueError(f"{name} has {indices.shape[0]} indices but {data.shape[0]} values")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
            raise ValueError(f"{name} has a malformed CSR indptr (must start at 0, never decrease, end at nnz)")
        if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
            raise ValueError(f"{name} has column indices outside [0, {n_cols})")
        values = _as_float32(data, name)
        if not (values is data and indices.dtype == np.int32 and indptr.dtype in (np.int32, np.int64)
                and isinstance(X, sp.csr_matrix)):  # else X is already what the core takes: no new matrix
            X = sp.csr_matrix(
                (values, indices.astype(np.int32, copy=False), indptr.astype(np.int64, copy=False)),
                shape=(n_rows, n_cols), copy=False
            )
    else:
        if isinstance(X, (str, bytes)) or X is None:
            raise TypeError(f"{name} must be a 2-D array or a SciPy sparse matrix, got {type(X).__name__}")
        arr = _numeric_array(X, name)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_rows, n_features), got shape {arr.shape}. Reshape your data either using "
                "array.reshape(-1, 1) if it has a single feature or array.reshape(1, -1) if it holds a single row."
            )
        arr = _as_float32(arr, name)
        rows, cols = np.nonzero(arr)  # row-major: each row's non-zeros in column order
        indptr = np.zeros(arr.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=arr.shape[0]), out=indptr[1:])
        X = sp.csr_matrix((arr[rows, cols], cols.astype(np.int32), indptr), shape=arr.shape, copy=False)
    n_rows, n_cols = X.shape
    if n_rows == 0:
        raise ValueError(f"{name} has 0 rows (0 sample(s), shape={X.shape}); at least one row is required")
    if n_cols == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if n_cols > _INT32_MAX:
        raise ValueError(f"{name} has {n_cols} columns; at most {_INT32_MAX} are supported")
    if n_features is not None and n_cols != n_features:
        raise ValueError(f"{name} has {n_cols} features, but {owner} is expecting {n_features} features as input")
    return X


def as_targets(y, n_rows: int, name: str = "y") -> np.ndarray:
    """Return y as a finite float32 vector of length n_rows."""
    if y is None:
        raise ValueError(f"{name} is None: the estimator requires y to be passed, but the target y is None")
    arr = _numeric_array(y, name)
    arr = column_or_1d(arr, name)
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} values but X has {n_rows} rows")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinity (or values too large for float32)")
    return out


def column_or_1d(arr: np.ndarray, name: str = "y") -> np.ndarray:
    """A 1-D view of arr; an (n, 1) column is accepted with a DataConversionWarning, as in scikit-learn."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected. Please change the shape of {name} "
            f"to (n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=4,
        )
        return arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def check_int(value, name: str, minimum: int, allow_none: bool = False, maximum: int | None = None) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and int(value) > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")


def check_float(value, name: str, low: float, high: float | None = None, low_open: bool = False,
                high_open: bool = True) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
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


# ---------------------------------------------------------------------------------------------- memory
# Sizes the core cannot allocate must raise MemoryError *before* anything is touched: numpy and C++ raise
# MemoryError/bad_alloc for an impossible request, but a request below the virtual memory limit succeeds and
# the first write to it then wakes the OOM killer, which kills the process without a Python exception.

def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still use without swapping or meeting the OOM killer: MemAvailable of
    /proc/meminfo, capped by the cgroup (v2 or v1) memory limit minus its usage; None where unknown."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            room = max(limit - usage, 0)
            avail = room if avail is None else min(avail, room)
    return avail


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


#: Requests below this are not checked: reading /proc and the cgroup files costs more than predicting a few
#: rows, and an allocation this small that fails raises an ordinary MemoryError (or fails anywhere in Python).
SMALL_REQUEST_BYTES = 64 * 2**20


def check_memory(nbytes: int, what: str) -> None:
    """MemoryError naming `what` when `nbytes` is more than the memory available now."""
    if nbytes < SMALL_REQUEST_BYTES or os.environ.get("FASTAFM_SKIP_MEMORY_CHECK"):
        return
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs about {_gib(nbytes)} of memory, but only {_gib(avail)} is available")


def _max_row_nnz(X) -> int:
    return int(np.max(np.diff(X.indptr))) if X.shape[0] else 0


def check_model_memory(n_features: int, k: int, t: int, slots: int = 1) -> None:
    """Before initialising a model: float64 initial values, float32 parameters and `slots` optimizer slots of
    their size (Adagrad 1, Adam 2 plus its step counts, one float per feature), and the start-of-epoch snapshot
    of all of them that lets a diverged epoch be rolled back."""
    n, k, t = int(n_features), int(k), int(t)
    per_copy = 4 * (n * (k + 1) + t * k + 2 * t + k + 1)
    init = 8 * (n * (k + 1) + t * k + 2 * t + k)
    check_memory(2 * (1 + int(slots)) * per_copy + init,
                 f"a model with n_features={n}, embedding_dim={k}, attention_dim={t}")


def check_threads(n_threads) -> None:
    """Every kernel call (fit, partial_fit, predict, attention) passes here, through the memory checks: n_threads
    set after fit (set_params, or an attribute) is range-checked by the hyperparameter table's rule before it
    reaches the core (where an int beyond int64 was a pybind11 signature dump)."""
    check_int(n_threads, "n_threads", 0, maximum=MAX_THREADS)


def check_kernel_memory(X, k: int, t: int, n_threads: int, batch_size: int | None = None,
                        attention: bool = True, name: str = "X") -> None:
    """Before training (batch_size given) or predicting on X: the block kernels' scratch (pair tiles of a bounded
    size, and buffers linear in the longest row's non-zero count: longer rows are streamed through the tiles),
    plus the per-batch sparse gradient buffers. With attention, first the limit on pairs per row
    (fastafm.data.limits): the work, not the memory, of a row is quadratic in its non-zeros."""
    check_threads(n_threads)
    if attention:
        check_rows(X.indptr, name)
    if batch_size is None:  # predicting: no row is longer than all the non-zeros, often a quick all-clear
        from .. import _core

        threads = _core.resolve_threads(int(n_threads))
        if _core.scratch_bytes(int(X.nnz), int(k), int(t), threads, bool(attention)) < SMALL_REQUEST_BYTES:
            return
    check_kernel_memory_sizes(_max_row_nnz(X), X.shape[0], X.shape[1], k, t, n_threads, batch_size, attention)


def check_kernel_memory_sizes(m: int, n_rows: int, n_features: int, k: int, t: int, n_threads: int,
                              batch_size: int | None = None, attention: bool = True, extra: int = 0) -> None:
    """check_kernel_memory from the sizes alone (longest row m, rows, width), plus `extra` bytes (e.g. the
    block buffer of out-of-core training)."""
    from .. import _core

    check_threads(n_threads)
    threads = _core.resolve_threads(int(n_threads))
    # The block kernels' scratch, as the core sizes it (pair tiles of the largest block, at most 8 MiB per thread
    # whatever the row length, and per-non-zero rows of the longest row).
    need = int(_core.scratch_bytes(int(m), int(k), int(t), threads, bool(attention))) + int(extra)
    if batch_size is not None:
        need += min(int(batch_size), n_rows) * m * (int(k) + 8) * 4 + 4 * n_features
        need += 4 * threads * (int(t) * int(k) + 2 * int(t) + int(k)) * 4  # the chunks' dense gradient buffers
    check_memory(need, f"a row of {m} non-zeros ({m * (m - 1) // 2} feature pairs) with embedding_dim={k}, "
                       f"attention_dim={t} on {threads} thread(s)")


def check_class_labels(y: np.ndarray, fitting: bool, classifier: str = "AFMClassifier",
                       regressor: str = "AFMRegressor", name: str = "y") -> None:
    """Class labels a classifier can use: no complex numbers, NaN, infinity or None; when fitting, no
    continuous values (the names say which estimator to use instead)."""
    if y.dtype.kind == "c":
        raise ValueError(f"{name} must hold class labels: Complex data not supported")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinity")
    if y.dtype == object and any(v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v))
                                 for v in y):
        raise ValueError(f"{name} contains missing labels (None or NaN)")
    if fitting and y.dtype.kind == "f" and np.any(y != np.round(y)):
        raise ValueError(f"Unknown label type: continuous values in {name}; {classifier} needs two class "
                         f"labels (use {regressor} for real-valued targets)")
