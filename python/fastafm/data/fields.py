"""Fields as data: the field of every feature id, which field-aware models (FwFM) need.

Where they come from: `FieldEncoder.fields_` (one field per DataFrame column), `fields_of_ids` (one field per
column of the id matrix `from_fields` takes), a libFFM file (`fastafm.load_libffm`: `label field:feature:value`),
or an explicit array. `field_array` checks any of those forms once and returns the int32 array the core reads.
"""
from __future__ import annotations

import numpy as np

_INT32_MAX = 2**31 - 1


def field_array(fields, n_features: int, name: str = "fields") -> np.ndarray:
    """The field of each of the `n_features` feature ids as a C-contiguous int32 array, from an array-like of
    length n_features (field numbers >= 0), a dict {feature id: field} covering every id, or contiguous
    half-open id ranges [(start, stop), ...] (one per field, together covering [0, n_features))."""
    n = int(n_features)
    if isinstance(fields, dict):
        out = np.full(n, -1, np.int64)
        for fid, f in fields.items():
            if not 0 <= int(fid) < n:
                raise ValueError(f"{name} maps the feature id {fid}, outside [0, {n})")
            out[int(fid)] = int(f)
    else:
        arr = np.asarray(fields)
        if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] != n:  # id ranges, one per field
            out = np.full(n, -1, np.int64)
            for f, (start, stop) in enumerate(arr.astype(np.int64)):
                if not 0 <= start < stop <= n or np.any(out[start:stop] >= 0):
                    raise ValueError(f"{name}: field {f}'s id range ({start}, {stop}) is empty, outside [0, {n}] "
                                     "or overlaps an earlier field")
                out[start:stop] = f
        else:
            if arr.ndim != 1 or arr.shape[0] != n:
                raise ValueError(f"{name} must give the field of each of the {n} features (shape ({n},)), or be "
                                 f"a dict {{id: field}} or (start, stop) id ranges; got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                    raise TypeError(f"{name} must hold integer field numbers, got dtype {arr.dtype}")
            out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        missing = int(np.flatnonzero(out < 0)[0])
        raise ValueError(f"{name} gives feature {missing} no field (field numbers are >= 0; every feature needs one)")
    if out.size and out.max() > 65535:
        raise ValueError(f"{name} has field number {int(out.max())}: at most 65,536 fields (R is n_fields²)")
    return np.ascontiguousarray(out, dtype=np.int32)


def n_fields_of(fields: np.ndarray) -> int:
    """The number of fields of a field array: its largest field number + 1 (at least 1)."""
    return int(fields.max()) + 1 if fields.size else 1


def fields_of_ids(ids, n_features: int | None = None) -> np.ndarray:
    """The field array of the rows `from_fields(ids, n_features)` builds: an id's field is the column of `ids`
    it appears in. An id found in two columns is an error (a feature has one field); an id found in none (a
    gap in the layout, or ids past the last one seen) takes the field of the nearest smaller id that has one
    (0 if none), as when each field's ids are a contiguous block."""
    arr = np.asarray(ids)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"ids must be a non-empty 2-D (n_rows, n_fields) matrix, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"ids contains the negative feature id {int(arr.min())}")
    n = int(arr.max()) + 1 if n_features is None else int(n_features)
    if arr.max() >= n:
        raise ValueError(f"ids contains the feature id {int(arr.max())}, but n_features is {n}")
    out = np.full(n, -1, np.int64)
    for col in range(arr.shape[1]):
        seen = np.unique(arr[:, col])
        clash = seen[(out[seen] >= 0) & (out[seen] != col)]
        if clash.size:
            raise ValueError(f"feature id {int(clash[0])} appears in columns {int(out[clash[0]])} and {col}: a "
                             "feature belongs to one field")
        out[seen] = col
    held = np.maximum.accumulate(np.where(out >= 0, np.arange(n), -1))  # nearest smaller id with a field
    out = np.where(held >= 0, out[np.maximum(held, 0)], 0)
    return np.ascontiguousarray(out, dtype=np.int32)
