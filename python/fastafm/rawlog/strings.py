"""Arrow string columns handed to the core's string kernels (fastafm._core.fnv1a64_strings and ValueTable,
cpp/include/afm/value_table.hpp) as their buffers, without a copy; and `ValueCounts`, the exact count of every
value of a column that the statistics pass keeps (one C++ hash table per column)."""
from __future__ import annotations

import numpy as np

_EMPTY = np.zeros(0, dtype=np.uint8)


def string_buffers(array) -> tuple:
    """(offsets int32/int64 of n + 1 entries, data uint8, validity uint8 or None, bit offset) of a pyarrow string
    or large_string array (a chunked array is combined first)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    off_dtype: type
    if pa.types.is_string(array.type):
        off_dtype = np.int32
    elif pa.types.is_large_string(array.type):
        off_dtype = np.int64
    else:
        raise TypeError(f"expected a string array, got {array.type}")
    n = len(array)
    validity, offsets, data = array.buffers()[:3]
    off = np.frombuffer(offsets, dtype=off_dtype)[array.offset:array.offset + n + 1] if n else \
        np.zeros(1, dtype=off_dtype)
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else _EMPTY
    bits = np.frombuffer(validity, dtype=np.uint8) if (validity is not None and array.null_count) else None
    return off, raw, bits, array.offset


def hash_strings(array) -> np.ndarray:
    """uint64 FNV-1a 64 of every value (0 where missing), in C++: fastafm.rawlog.hashing.fnv1a64's values."""
    from .. import _core

    return _core.fnv1a64_strings(*string_buffers(array))


def count_columns(counts: list, columns: list, n_threads: int = 0) -> list:
    """`counts[j].add(columns[j])` for every j in one call into the core, the columns on up to n_threads threads
    (0: all cores; each column's table is one thread's): the int32 ids of each column."""
    from .. import _core

    return _core.ValueTable.add_columns([c.table for c in counts], [string_buffers(col) for col in columns],
                                        int(n_threads))


class ValueCounts:
    """The exact count of every distinct value of one column: strings (`add`) or float64 values (`add_floats`,
    NaN missing), numbered in first-seen order; `add` returns the batch's ids (-1 where missing), which the
    one-pass conversion spills and maps to the vocabulary's ids at the end."""

    def __init__(self):
        from .. import _core

        self.table = _core.ValueTable()

    def add(self, column) -> np.ndarray:
        return self.table.add(*string_buffers(column))

    def add_floats(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        return self.table.add_keys(x.view(np.uint64), np.isnan(x).view(np.uint8))

    def size(self) -> int:
        return len(self.table)

    def strings(self):
        """(the values as a pyarrow large_string array, counts int64), by id."""
        import pyarrow as pa

        offsets, data = self.table.values()
        values = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
        return values, self.table.counts()

    def floats(self) -> tuple:
        """(the values float64, counts int64), by id."""
        _, data = self.table.values()
        return data.view(np.float64).copy(), self.table.counts()
