"""The documented, stable hash of categorical values for `hash_buckets`: 64-bit FNV-1a over the UTF-8 bytes of
the value (offset basis 0xcbf29ce484222325, prime 0x100000001b3), the id within the field being
``hash % hash_buckets``. It depends on nothing but the bytes, so it is the same in every process, on every
machine and in every version of fastafm (tests pin a vector of expected values).

Computed over a pyarrow string array's offsets and data buffers with NumPy: one vectorised step per byte
position (a value of length L takes part in the first L steps), never a Python loop over rows.
"""
from __future__ import annotations

import numpy as np

from .arrow_numpy import null_mask
from .strings import string_buffers

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def fnv1a64(array) -> np.ndarray:
    """uint64 FNV-1a hashes of the values of a pyarrow string (or large_string) array; 0 where null (callers map
    nulls to the unknown id before using the hash)."""
    offsets, data, _, _ = string_buffers(array)
    n = offsets.shape[0] - 1
    out = np.full(n, FNV_OFFSET, dtype=np.uint64)
    if n == 0:
        return out
    offsets = offsets.astype(np.int64)
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    shortest = int(lengths.min())
    longest = int(lengths.max())
    for j in range(shortest):  # every value has a byte here: no mask
        out ^= data[starts + j]
        out *= FNV_PRIME
    if longest > shortest:
        for j in range(shortest, longest):
            rows = np.flatnonzero(lengths > j)
            h = out[rows]
            h ^= data[starts[rows] + j]
            h *= FNV_PRIME
            out[rows] = h
    if array.null_count:
        out[null_mask(array)] = 0
    return out


def fnv1a64_bytes(value: bytes) -> int:
    """The hash of one value, in plain Python (the definition the vectorised version is tested against)."""
    h = 0xCBF29CE484222325
    for byte in value:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h
