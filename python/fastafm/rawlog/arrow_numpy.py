"""Arrow columns as NumPy arrays read from their buffers: pyarrow's own `to_numpy(zero_copy_only=False)` and
`np.asarray(array.is_null())` import pandas on their first call (pyarrow 26: 0.2-0.4 CPU s and some 40 MiB of
peak RSS in a conversion that never needs pandas; bench/RESULTS.md, issue 23)."""
from __future__ import annotations

import numpy as np


def _single(array):
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array


def null_mask(array) -> np.ndarray:
    """bool per value: True where the value is missing."""
    array = _single(array)
    n = len(array)
    validity = array.buffers()[0]
    if validity is None or array.null_count == 0:
        return np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return bits[array.offset:array.offset + n] == 0


def float64_values(array) -> np.ndarray:
    """The values of a float64 column as a float64 array, NaN where missing (a new array when some are missing,
    else possibly a read-only view of the column's buffer)."""
    import pyarrow as pa

    array = _single(array)
    if array.type != pa.float64():
        array = array.cast(pa.float64())
    n = len(array)
    data = array.buffers()[1]
    x = np.frombuffer(data, dtype=np.float64)[array.offset:array.offset + n] if n else np.zeros(0)
    if array.null_count:
        x = x.copy()
        x[null_mask(array)] = np.nan
    return x


def int64_array(x: np.ndarray):
    """A pyarrow int64 array viewing the NumPy integers `x` (pa.array(x) imports pandas; this does not)."""
    import pyarrow as pa

    x = np.ascontiguousarray(x, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), x.shape[0], [None, pa.py_buffer(x)])


def integer_values(array) -> np.ndarray:
    """The values of an integer column without missing values, as a (read-only) NumPy view of its buffer."""
    array = _single(array)
    if array.null_count:
        raise ValueError("integer_values: the column has missing values")
    dtype = np.dtype(array.type.to_pandas_dtype())
    n = len(array)
    return np.frombuffer(array.buffers()[1], dtype=dtype)[array.offset:array.offset + n] if n else np.zeros(0, dtype)
