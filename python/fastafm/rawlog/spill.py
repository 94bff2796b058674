"""The one-pass conversion's spill: the statistics pass writes each batch's encoded columns (a vocabulary
field's first-seen ids, a hashed field's ids, a numeric field's float64 values) and labels to a temporary file
next to the cache, so the text is parsed once; once the encoding is known, `replay` reads them back a group of
rows at a time and maps them to the final feature ids (docs/data.md, "Memory and speed").

Memory: one group of rows (GROUP_ROWS) is held on each side; the file holds 4 bytes per categorical and label
value and 8 per numeric value.
"""
from __future__ import annotations

import tempfile

import numpy as np

from .encoding import RawEncoding, encode_numeric

GROUP_ROWS = 32768  # rows written (and read back) together


class Spill:
    """The columns of the batches, in order; `dtypes[f]` is field f's (int32 or float64)."""

    def __init__(self, folder: str, dtypes: list):
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".fastafm-spill-")
        self.groups: list = []   # per group: (rows, [(name, first_line, rows), ...])
        self._pending: list = []  # (batch name, first line, labels, columns)
        self._rows = 0

    def add(self, name: str, first_line: int, labels: np.ndarray, columns: list) -> None:
        self._pending.append((name, first_line, labels, columns))
        self._rows += labels.shape[0]
        if self._rows >= GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, rows, self._rows = self._pending, [], self._rows, 0
        self.file.write(np.concatenate([p[2] for p in pending]).astype(np.float32, copy=False).tobytes())
        for f, dtype in enumerate(self.dtypes):
            self.file.write(np.concatenate([p[3][f] for p in pending]).astype(dtype, copy=False).tobytes())
        self.groups.append((rows, [(p[0], p[1], p[2].shape[0]) for p in pending]))

    def groups_read(self):
        """(labels, columns, segments) of every group, in order."""
        self.flush()
        self.file.flush()
        self.file.seek(0)
        for rows, segments in self.groups:
            labels = _read(self.file, np.dtype(np.float32), rows)
            yield labels, [_read(self.file, d, rows) for d in self.dtypes], segments

    def close(self) -> None:
        self.file.close()


def _read(fh, dtype, n: int) -> np.ndarray:
    data = fh.read(dtype.itemsize * n)
    if len(data) != dtype.itemsize * n:  # the temporary file was truncated under us
        raise OSError(f"the conversion's temporary file ended early ({len(data)} of {dtype.itemsize * n} bytes)")
    return np.frombuffer(data, dtype=dtype)


def replay(spill: Spill, encoding: RawEncoding, maps: dict, progress=None):
    """The cache's chunks (indptr, ids, values, labels, max id) from the spilled groups: vocabulary fields
    through `maps` (column -> first-seen id to vocabulary id, unknown last), hashed ids offset, numeric values
    encoded as RawEncoding.encode encodes them."""
    n_fields = len(encoding.fields)
    tables = {}
    for f, spec in enumerate(encoding.fields):
        if spec["kind"] == "category":  # the feature id of every first-seen id (and of -1, missing: unknown)
            tables[f] = (maps[spec["column"]] + np.int32(encoding.field_offsets[f])).astype(np.int32)
    for labels, columns, segments in spill.groups_read():
        n = labels.shape[0]
        ids = np.empty((n, n_fields), dtype=np.int32)
        vals = np.ones((n, n_fields), dtype=np.float32)
        for f, spec in enumerate(encoding.fields):
            start, stop = int(encoding.field_offsets[f]), int(encoding.field_offsets[f + 1])
            kind = spec["kind"]
            if kind == "category":
                ids[:, f] = tables[f][columns[f]]
            elif kind == "hash":
                ids[:, f] = columns[f] + np.int32(start)
            else:
                encode_numeric(spec, columns[f], start, stop, ids[:, f], vals[:, f], _where(segments))
        if progress is not None:
            progress(n)
        indptr = np.arange(0, n * n_fields + 1, n_fields, dtype=np.int64)
        yield indptr, ids.reshape(-1), vals.reshape(-1), labels, encoding.n_features - 1


def _where(segments: list):
    def where(row: int) -> str:
        for name, first_line, rows in segments:
            if row < rows:
                return f"{name}:{first_line + row}"
            row -= rows
        return "?"
    return where

