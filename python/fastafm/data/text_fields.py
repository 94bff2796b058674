"""The fields of text that `convert` streams: libFM or libFFM (`label field:feature:value`, the libffm/xLearn
format), told apart by the first feature token, and the field of every feature collected chunk by chunk with
load_libffm's rules (a feature in two fields names both lines; ids never named take the field of the nearest
smaller named id, 0 before the first). Also the explicit per-feature field array of `convert(fields=...)`."""
from __future__ import annotations

import re

import numpy as np

from .libffm import line_of_row

FORMATS = ("auto", "libfm", "libffm")


def check_format(fmt) -> str:
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {fmt!r}")
    return fmt


def sniff(chunk: bytes, first_line: int):
    """(format, token, line) from the first feature token of the text `chunk` (whose first line is the file's
    `first_line`): "libffm" when it has two ':' (field:feature:value), "libfm" otherwise; None when no line of
    the chunk holds a feature token (label-only rows read the same in both formats)."""
    pos, line = 0, first_line
    while pos < len(chunk):
        end = chunk.find(b"\n", pos)
        end = len(chunk) if end < 0 else end
        tokens = chunk[pos:end].split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            token = tokens[1]
            return ("libffm" if token.count(b":") == 2 else "libfm"), token[:40].decode("utf-8", "replace"), line
        pos, line = end + 1, line + 1
    return None


def _other_form(message: str, fmt: str) -> bool:
    """Whether the parser's error is about a token of the other format (a file mixing libFM and libFFM)."""
    if fmt == "libffm":
        return "(1 ':')" in message
    return re.search(r"value '[^']*:[^']*' of feature", message) is not None


class TextFields:
    """Parses chunks of libFM/libFFM text (`format`: "auto", "libfm" or "libffm") into the 5-tuples the cache
    writer takes, keeping the field of every feature of libFFM text; `fields(width)` gives them at the end."""

    def __init__(self, path: str, name: str, fmt: str = "auto", explicit=None):
        self.path, self.name = path, name
        self.fmt = None if check_format(fmt) == "auto" else fmt
        self.auto = self.fmt is None
        # why the format was chosen, for the parse error of a token of the other format
        shown = "libFFM" if fmt == "libffm" else "libFM"
        self.detected = "" if fmt == "auto" else f" (read as {shown} text, as format={fmt!r} asks)"
        self.explicit = explicit
        if fmt == "libffm" and explicit is not None:
            raise ValueError("format='libffm' text carries the field of every feature: give fields= only for a "
                             "source without them")
        self.field_of = np.full(0, -1, np.int32)  # the field of every id seen (-1: not seen)
        self.first_row = np.zeros(0, np.int64)    # the row it was first seen in
        self.rows = 0

    def parse(self, chunks):
        from .. import _core

        for chunk, first_line in chunks:
            if self.fmt is None:
                found = sniff(chunk, first_line)
                if found is not None:
                    self.fmt = found[0]
                    self.detected = (f" (read as {'libFFM' if found[0] == 'libffm' else 'libFM'} text: its first "
                                     f"feature token, {found[1]!r} at line {found[2]}, is "
                                     f"{'field:feature:value' if found[0] == 'libffm' else 'feature:value'}; a "
                                     "file holds one format)")
                    if self.fmt == "libffm" and self.explicit is not None:
                        raise ValueError(f"{self.name} is libFFM text, which carries the field of every feature: "
                                         "give fields= only for a source without them")
            fmt = self.fmt or "libfm"
            try:
                parsed = _core.parse_libfm_buffer(chunk, self.name, first_line, format=fmt)
            except ValueError as exc:
                raise ValueError(f"{exc}{self.detected if _other_form(str(exc), fmt) else ''}") from None
            if fmt == "libffm":
                self._collect(parsed)
            self.rows += parsed[3].shape[0]
            yield parsed[:5]

    def _collect(self, parsed) -> None:
        from .validation import check_memory

        indptr, indices, _, _, max_id, flds, _ = parsed
        if not indices.size:
            return
        need = int(max_id) + 1
        if need > self.field_of.size:
            size = max(need, 2 * self.field_of.size)
            check_memory(12 * size, f"the fields of {self.name} (feature ids up to {need - 1})")
            grown = np.full(size, -1, np.int32)
            grown[:self.field_of.size] = self.field_of
            rows = np.zeros(size, np.int64)
            rows[:self.first_row.size] = self.first_row
            self.field_of, self.first_row = grown, rows
        # ids not seen before: the first occurrence of each in this chunk (no sort: first_row holds, for them,
        # the smallest position in the chunk until it is turned into the row)
        unseen = np.flatnonzero(self.field_of[indices] < 0)
        if unseen.size:
            ids = indices[unseen]
            self.first_row[ids] = np.iinfo(np.int64).max
            np.minimum.at(self.first_row, ids, unseen)
            first = unseen[self.first_row[ids] == unseen]  # one position per new id
            named = indices[first]
            self.field_of[named] = flds[first]
            self.first_row[named] = np.searchsorted(indptr, first, side="right") - 1 + self.rows
        bad = np.flatnonzero(self.field_of[indices] != flds)
        if bad.size:
            j = int(bad[0])
            fid = int(indices[j])
            row = int(np.searchsorted(indptr, j, side="right")) - 1 + self.rows
            raise ValueError(f"{self.name}:{line_of_row(self.path, row)}: feature {fid} is in field {int(flds[j])}, "
                             f"but {self.name}:{line_of_row(self.path, int(self.first_row[fid]))} put it in field "
                             f"{int(self.field_of[fid])}: a feature belongs to one field")

    def fields(self, width: int):
        """The field of each of `width` features (int32): the explicit array's, or libFFM text's (ids never
        named take the field of the nearest smaller named id, 0 before the first); None for libFM text."""
        if self.explicit is not None:
            return explicit_fields(self.explicit, width)
        if self.fmt != "libffm":
            return None
        from .validation import check_memory

        check_memory(8 * width, f"the field array of {self.name} (n_features={width})")
        seen = self.field_of[:width]
        named = np.flatnonzero(seen >= 0)
        runs = np.diff(np.concatenate([[0], named, [width]]))
        return np.repeat(np.concatenate([[0], seen[named]]).astype(np.int32), runs)


def explicit_fields(fields, width: int) -> np.ndarray:
    """`convert(fields=...)` checked against the cache's width: the field of each feature, as FwFM's `fields=`
    takes it (an array of n_features integer field numbers in [0, 65536), a dict {id: field} covering every id,
    or (start, stop) id ranges); ValueError/TypeError naming the problem."""
    from .fields import field_array

    if isinstance(fields, (str, bytes)):
        raise TypeError(f"fields must be an array of the field of every feature, got {type(fields).__name__}")
    arr = np.asarray(fields) if not isinstance(fields, dict) else None
    if arr is not None and arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.number) and arr.min() < 0:
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"fields gives feature {i} the negative field number {arr[i]} (field numbers are in "
                         "[0, 65536))")
    if arr is not None and arr.ndim == 1 and arr.shape[0] != width:
        raise ValueError(f"fields has {arr.shape[0]} entries but the cache has {width} features (n_features): give "
                         "the field of every feature")
    return field_array(fields, width, "fields")
