"""Reading libFFM text files (the libffm / xLearn format: `label field:feature:value ...`), with the fields.

The core's libFM parser reads them (its libFFM mode: the same strict grammar, numbers and errors as libFM
files, `fastafm.load_libfm`), regular files and pipes alike. What is libFFM's own is checked here: a feature
given two fields (both lines named) and a field id beyond a given `n_fields`.
"""
from __future__ import annotations

import numpy as np

from .files import PIPE, display, input_kind
from .libfm import assemble, check_path_and_width, parse_stream, read_text

__all__ = ["load_libffm"]


def load_libffm(path, n_features=None, n_fields=None):
    """Load a libFFM file into (X, y, fields).

    Parameters
    ----------
    path : str, bytes or os.PathLike
        A regular file or a pipe, as for `load_libfm`.
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
    ValueError "{path}:{line}: ..." for a malformed line (the grammar of `load_libfm`, each feature token
    `field:feature:value` with a field id below 65,536), a field id out of range, or a feature that appears
    under two fields (both lines named); TypeError/ValueError for a bad `n_features` or `n_fields`.
    """
    path, n_features = check_path_and_width(path, n_features)
    if n_fields is not None:
        if isinstance(n_fields, (bool, np.bool_)) or not isinstance(n_fields, (int, np.integer)) or n_fields < 1:
            raise ValueError(f"n_fields must be a positive integer or None, got {n_fields!r}")
    parsed = read_text(path, "libffm")
    X, y = assemble(path, parsed, n_features)
    nz_fields = parsed[5]
    lines = _Lines(path, parsed[0])
    if n_fields is not None and int(parsed[6]) >= n_fields:
        j = int(np.flatnonzero(nz_fields >= n_fields)[0])
        raise ValueError(f"{lines.name}:{lines.of(j)}: field id {int(nz_fields[j])} is out of range: n_fields is "
                         f"{n_fields}")
    return X, y, _fields(lines, X.indices.astype(np.int64), nz_fields.astype(np.int64), X.shape[1])


class _Lines:
    """File line (1-based, blank and comment lines counted) of the non-zero at position j, for messages: the
    file is read again (only on that error path); a pipe, read once, is named by row instead."""

    def __init__(self, path: str, indptr: np.ndarray):
        self.path = path
        self.name = display(path)
        self.indptr = indptr

    def of(self, j: int) -> str:
        return line_of_row(self.path, int(np.searchsorted(self.indptr, j, side="right")) - 1)


def line_of_row(path: str, row: int) -> str:
    """The file line (1-based, as text) of data row `row` (0-based; blank and comment lines are no rows) of the
    text file `path`, read again for it (error paths only); "row N" for a pipe, read once, or a path gone."""
    try:
        if input_kind(path, "a libFFM file", pipes=True) == PIPE:
            return f"row {row + 1}"
        seen = -1
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if raw.split(b"#", 1)[0].strip(b" \t\r\n"):
                    seen += 1
                    if seen == row:
                        return str(lineno)
    except (OSError, ValueError):
        pass
    return f"row {row + 1}"


def _fields(lines: _Lines, ids: np.ndarray, flds: np.ndarray, width: int) -> np.ndarray:
    """The field of every id (ids never named take the field of the nearest smaller named id, 0 before the
    first); a feature given two fields is an error naming both lines. Memory: O(non-zeros), plus the int32
    result (checked first: a file naming id 2^31 - 1 asks for 8 GiB of it)."""
    from .validation import check_memory

    check_memory(4 * width, f"the field array of {lines.name} (n_features={width})")
    named, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    named_fields = flds[first]
    bad = np.flatnonzero(named_fields[inverse.reshape(-1)] != flds)
    if bad.size:
        j = int(bad[0])
        k = int(first[inverse.reshape(-1)[j]])
        raise ValueError(f"{lines.name}:{lines.of(j)}: feature {int(ids[j])} is in field {int(flds[j])}, but "
                         f"{lines.name}:{lines.of(k)} put it in field {int(flds[k])}: a feature belongs to one field")
    # runs: [0, first named id) -> 0, then each named id's field up to the next named id
    runs = np.diff(np.concatenate([[0], named, [width]]))
    return np.repeat(np.concatenate([[0], named_fields]).astype(np.int32), runs)


def load_libffm_stream(fh, name: str, n_features=None, prefix: bytes = b""):
    """load_libffm on an open binary stream (a pipe the CLI sniffed: `prefix` holds the bytes already read from
    it); a feature in two fields is named by rows (a pipe is read once)."""
    parsed = parse_stream(fh, name, prefix, fmt="libffm")
    X, y = assemble(name, parsed, n_features)
    lines = _Lines(name, parsed[0])
    return X, y, _fields(lines, X.indices.astype(np.int64), parsed[5].astype(np.int64), X.shape[1])
