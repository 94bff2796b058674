"""A vocabulary kept as the Arrow array it was sorted in (`SortedStrings`), written to the encoding's JSON
without a Python string per value: `json_array` gives the bytes `json.dumps(list_of_str, separators=(",", ":"))`
gives (ensure_ascii), built with NumPy from the array's buffers when every byte is printable ASCII other than
'"' and '\\' (Criteo's and Avazu's ids), else by json.dumps itself. A million values cost some 65 MB as Python
strings and 0.2 s to make and dump them; this is their bytes (bench/RESULTS.md, issue 23).
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

_QUOTE, _COMMA = 0x22, 0x2C


def json_array(values) -> bytes:
    """The JSON text (bytes) of the list of the string array's values (no missing values)."""
    from .strings import string_buffers

    offsets, data, _, _ = string_buffers(values)
    n = offsets.shape[0] - 1
    if n == 0:
        return b"[]"
    offsets = offsets.astype(np.int64)
    raw = data[int(offsets[0]):int(offsets[-1])]
    plain = bool(np.all((raw >= 0x20) & (raw < 0x7F) & (raw != _QUOTE) & (raw != 0x5C)))
    if not plain:
        return json.dumps(values.to_pylist(), separators=(",", ":")).encode("ascii")
    at = offsets - offsets[0]
    # per value: its opening quote at its start, its closing quote and a comma at its end (none after the last);
    # np.insert keeps the given order of equal positions, so a boundary reads '","'
    where = np.empty(3 * n - 1, dtype=np.int64)
    what = np.empty(3 * n - 1, dtype=np.uint8)
    where[0::3], what[0::3] = at[:-1], _QUOTE
    where[1::3], what[1::3] = at[1:], _QUOTE
    where[2::3], what[2::3] = at[1:-1], _COMMA
    body = np.insert(raw, where, what)
    return b"[" + body.tobytes() + b"]"


class SortedStrings(Sequence):
    """The categories of a vocabulary field as a read-only sequence of str over a pyarrow string array (values
    made on demand); `json()` is their JSON array."""

    def __init__(self, values):
        self.values = values
        self._list: list | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i):
        if self._list is None:
            self._list = self.values.to_pylist()
        return self._list[i]

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, SortedStrings)) else NotImplemented

    def __hash__(self) -> int:
        raise TypeError("SortedStrings is not hashable")

    def json(self) -> bytes:
        return json_array(self.values)

    def __reduce__(self):  # pickled (the Dask workers get the encoding) as its array
        return (SortedStrings, (self.values,))


def dumps(record: dict, lazy: dict) -> bytes:
    """json.dumps(record, sort_keys=True, separators=(",", ":")) as bytes, where record["fields"][f]["categories"]
    is `lazy[f]` (a SortedStrings), written by its json()."""
    import uuid

    token = uuid.uuid4().hex
    fields = [dict(spec, categories=f"{token}:{f}") if f in lazy else spec for f, spec in enumerate(record["fields"])]
    text = json.dumps({**record, "fields": fields}, sort_keys=True, separators=(",", ":")).encode("ascii")
    parts = []
    for f in sorted(lazy):
        mark = f'"{token}:{f}"'.encode("ascii")
        head, text = text.split(mark, 1)
        parts += [head, lazy[f].json()]
    parts.append(text)
    return b"".join(parts)
