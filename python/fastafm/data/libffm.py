"""Reading libFFM text files (the libffm / xLearn format: `label field:feature:value ...`), with the fields.

A line's tokens are parsed in Python and the rows assembled with NumPy: simple and strict, not the C++ speed of
`load_libfm` (extending the C++ parser is left for later). Every malformed line is an error naming the file and
line, never skipped; so is a feature given two fields, or a field id beyond a given `n_fields`.
"""
from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

__all__ = ["load_libffm"]

_INT32_MAX = 2**31 - 1


def load_libffm(path, n_features=None, n_fields=None):
    """Load a libFFM file into (X, y, fields).

    Parameters
    ----------
    path : str or os.PathLike
    n_features : int, optional
        Columns of X (default: the largest feature id + 1); at least that.
    n_fields : int, optional
        When given, every field id must be below it (a field id out of range is an error naming the line).

    Returns
    -------
    X : csr_matrix (n_rows, n_features), float32, each row's non-zeros in file order (repeats kept)
    y : ndarray (n_rows,), float32
    fields : ndarray (n_features,), int32: the field of every feature id, for FwFMRegressor/FwFMClassifier
        (`fields=`). Ids the file never names take the field of the nearest smaller id that has one (0 if none).

    Raises
    ------
    ValueError "{path}:{line}: ..." for a malformed line, a negative or too large id, a field id out of range,
    or a feature that appears under two fields (both lines named).
    """
    name = os.fsdecode(os.fspath(path))
    labels: list = []
    fld: list = []
    ids: list = []
    vals: list = []
    indptr = [0]
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.split(b"#", 1)[0].strip()
            if not line:
                continue
            tokens = line.split()
            try:
                labels.append(float(tokens[0]))
            except ValueError:
                raise ValueError(f"{name}:{lineno}: the label {tokens[0].decode(errors='replace')!r} is not a "
                                 "number") from None
            for tok in tokens[1:]:
                parts = tok.split(b":")
                try:
                    if len(parts) != 3:
                        raise ValueError
                    f, i, v = int(parts[0]), int(parts[1]), float(parts[2])
                except ValueError:
                    raise ValueError(f"{name}:{lineno}: {tok.decode(errors='replace')!r} is not field:feature:value "
                                     "(integers, then a number)") from None
                if f < 0 or i < 0 or i > _INT32_MAX - 1 or f > 65535:
                    raise ValueError(f"{name}:{lineno}: field {f} or feature {i} is out of range (ids are >= 0; "
                                     "features < 2^31 - 1, fields < 65,536)")
                if n_fields is not None and f >= n_fields:
                    raise ValueError(f"{name}:{lineno}: field id {f} is out of range: n_fields is {n_fields}")
                if not np.isfinite(v):
                    raise ValueError(f"{name}:{lineno}: the value of {tok.decode(errors='replace')!r} is not finite")
                fld.append(f)
                ids.append(i)
                vals.append(v)
            indptr.append(len(ids))
    id_arr = np.asarray(ids, np.int64)
    f_arr = np.asarray(fld, np.int64)
    width = int(id_arr.max()) + 1 if id_arr.size else 0
    if n_features is not None:
        if isinstance(n_features, bool) or int(n_features) != n_features or n_features < max(width, 1):
            raise ValueError(f"n_features must be an integer >= {max(width, 1)} (the largest id + 1), got {n_features!r}")
        width = int(n_features)
    fields = _fields(name, id_arr, f_arr, np.asarray(indptr, np.int64), width)
    X = sp.csr_matrix((np.asarray(vals, np.float32), id_arr.astype(np.int32), np.asarray(indptr, np.int64)),
                      shape=(len(labels), width))
    return X, np.asarray(labels, np.float32), fields


def _fields(name: str, ids: np.ndarray, flds: np.ndarray, indptr: np.ndarray, width: int) -> np.ndarray:
    """The field of every id; a feature given two fields is an error naming both lines."""
    out = np.full(width, -1, np.int64)
    if ids.size:
        first = np.full(width, -1, np.int64)
        order = np.arange(ids.size)[::-1]  # the first occurrence wins the assignment below
        first[ids[order]] = order
        out[ids] = flds[first[ids]]
        bad = np.flatnonzero(out[ids] != flds)
        if bad.size:
            j = int(bad[0])
            k = int(first[ids[j]])
            line_of = _line_numbers(name, indptr)
            raise ValueError(f"{name}:{line_of(j)}: feature {int(ids[j])} is in field {int(flds[j])}, but "
                             f"{name}:{line_of(k)} put it in field {int(flds[k])}: a feature belongs to one field")
    held = np.maximum.accumulate(np.where(out >= 0, np.arange(width), -1)) if width else out
    out = np.where(held >= 0, out[np.maximum(held, 0)], 0) if width else out
    return np.ascontiguousarray(out, dtype=np.int32)


def _line_numbers(name: str, indptr: np.ndarray):
    """Line number (1-based, comments and blank lines counted) of the non-zero at position j."""
    def line_of(j: int) -> int:
        row = int(np.searchsorted(indptr, j, side="right")) - 1
        seen = -1
        with open(name, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if raw.split(b"#", 1)[0].strip():
                    seen += 1
                    if seen == row:
                        return lineno
        return row + 1
    return line_of
