"""Binary row caches for out-of-core training: the format, and `CacheFile`, which reads row ranges of one
(fastafm.data.convert writes them).

A cache holds a CSR data set and its labels in flat little-endian sections behind a fixed header, so that any
range of rows is three contiguous reads (docs/cache.md has the byte layout). `convert` writes it in one
streaming pass over a libFM/libSVM file (or an in-memory (X, y)) with memory bounded by the chunk size, and
`fit(CacheFile(path))` trains from it block by block (fastafm.training.cache_rows) without loading it.
"""
from __future__ import annotations

import math
import numbers
import os
import struct
import sys
import zlib
from typing import BinaryIO

import numpy as np
import scipy.sparse as sp

from .cache_sections import EncodedSections
from .files import input_kind, open_input

__all__ = ["CacheFile", "as_cache"]

MAGIC = b"FAFMCACH"
VERSION = 1           # a cache without sample weights (written as version 1, so older fastafm reads it)
WEIGHTS_VERSION = 2   # version 1 plus a fifth section, the per-row sample weights
ENCODED_VERSION = 3   # a raw log's cache: weights (possibly empty), the field of every feature, the encoding
FIELDS_VERSION = 4    # a libFFM file's cache, or convert(fields=...): weights (possibly empty), fields
HEADER_SIZE = 4096  # reserved for the header; sections start at multiples of ALIGN after it
ALIGN = 4096
DTYPES = b"<i8 <i4 <f4 <f4"  # indptr, indices, values, labels
SECTIONS = ("indptr", "indices", "values", "labels")
WEIGHT_SECTIONS = SECTIONS + ("weights",)  # version 2
ENCODED_SECTIONS = WEIGHT_SECTIONS + ("fields", "encoding")  # version 3
FIELD_SECTIONS = WEIGHT_SECTIONS + ("fields",)  # version 4
MAX_FIELD = 65535  # field numbers are < 65,536 (the libFFM parser's limit and field_array's)
SECTION_DTYPES: dict[str, np.dtype] = {"indptr": np.dtype("<i8"), "indices": np.dtype("<i4"),
                                        "values": np.dtype("<f4"), "labels": np.dtype("<f4"),
                                        "weights": np.dtype("<f4"), "fields": np.dtype("<i4"),
                                        "encoding": np.dtype("u1")}
MAX_ENCODING = MAX_ENCODING_BYTES = 4 << 30
# magic, version, header_size, dtypes, n_rows, n_features, nnz, max_row_nnz, label_min, label_max,
# n_label_values (distinct labels, 3 meaning "3 or more"), then (offset, nbytes, crc32) per section.
FIXED = struct.Struct("<8sII16sQQQQddI")
SECTION = struct.Struct("<QQI")
CRC = struct.Struct("<I")
HEADER_BYTES = FIXED.size + len(SECTIONS) * SECTION.size + CRC.size
WEIGHTS_HEADER_BYTES = FIXED.size + len(WEIGHT_SECTIONS) * SECTION.size + CRC.size
ENCODED_HEADER_BYTES = FIXED.size + len(ENCODED_SECTIONS) * SECTION.size + CRC.size
FIELDS_HEADER_BYTES = FIXED.size + len(FIELD_SECTIONS) * SECTION.size + CRC.size
VERSIONS = (VERSION, WEIGHTS_VERSION, ENCODED_VERSION, FIELDS_VERSION)


def section_names(version: int) -> tuple:
    return {WEIGHTS_VERSION: WEIGHT_SECTIONS, ENCODED_VERSION: ENCODED_SECTIONS,
            FIELDS_VERSION: FIELD_SECTIONS}.get(version, SECTIONS)


def _header_bytes(version: int) -> int:
    return FIXED.size + len(section_names(version)) * SECTION.size + CRC.size

DEFAULT_BLOCK_BYTES = 64 << 20
DEFAULT_CHUNK_BYTES = 16 << 20
INT32_MAX = 2**31 - 1
_BIG_ENDIAN = sys.byteorder == "big"


def align(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def fspath(path, what: str) -> str:
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(path))
    raise TypeError(f"{what} must be a str, bytes or os.PathLike, got {type(path).__name__}")


# ---------------------------------------------------------------------------------------------- reading
class CacheFile(EncodedSections):
    """A cache written by `convert`, opened and validated (header, checksum of the header, section sizes).

    Parameters
    ----------
    path : str or os.PathLike
    block_rows : int, optional
        Rows per block when `fit` streams this cache (the unit of shuffling and of the reusable buffer).
        Default: as many rows as hold about `block_bytes` of data on average.
    block_bytes : int, default 64 MiB
        Used when block_rows is not given.

    Attributes: path, n_rows, n_features, nnz, max_row_nnz, label_min, label_max, n_label_values (distinct
    labels; 3 means three or more), block_rows, has_weights, has_fields (versions 3 and 4), has_encoding (3).
    `read_rows(start, stop)` reads a row range, `read_weights(start, stop)` its weights; nothing else is
    held in memory. The object pickles as its path (and block setting), so it can be sent to other processes.
    """

    def __init__(self, path, *, block_rows: int | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.path = fspath(path, "path")
        # A regular file only (it is read at offsets, once per block): a FIFO or /dev/zero is refused here.
        fh, _ = open_input(self.path, "a cache", pipes=False)
        with fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(ENCODED_HEADER_BYTES)  # the longest header; an older one is its first bytes
            self._parse_header(head, size)
            self._size = size
            first = int(self._read_at(fh, self._offsets["indptr"], 1, "indptr")[0])
            last = int(self._read_at(fh, self._offsets["indptr"] + 8 * self.n_rows, 1, "indptr")[0])
        if first != 0 or last != self.nnz:
            self._corrupt(f"indptr runs from {first} to {last}, expected 0 to nnz={self.nnz}")
        self._block_setting = (block_rows, block_bytes)
        self.block_rows = self._resolve_block_rows(block_rows, block_bytes)

    # -- header
    def _corrupt(self, what: str):
        raise ValueError(f"{self.path}: not a valid fastafm cache: {what}")

    def _parse_header(self, head: bytes, size: int) -> None:
        if len(head) < 8 or head[:8] != MAGIC:
            self._corrupt(f"wrong magic bytes {head[:8]!r} (expected {MAGIC!r}); write caches with fastafm.convert")
        if len(head) < ENCODED_HEADER_BYTES or size < HEADER_SIZE:
            self._corrupt(f"truncated header ({size} bytes; a header takes {HEADER_SIZE})")
        (_, version, header_size, dtypes, n_rows, n_features, nnz, max_row_nnz, label_min, label_max,
         n_label_values) = FIXED.unpack_from(head, 0)
        if version not in VERSIONS:
            raise ValueError(f"{self.path}: cache format version {version} is not supported (this fastafm reads "
                             f"versions {VERSION} to {FIELDS_VERSION}); convert the data again with this version")
        self.version = int(version)
        sections, header_bytes = section_names(version), _header_bytes(version)
        (crc,) = CRC.unpack_from(head, header_bytes - CRC.size)
        if zlib.crc32(head[:header_bytes - CRC.size]) != crc:
            self._corrupt("header checksum mismatch (the header is damaged)")
        if header_size != HEADER_SIZE or dtypes.rstrip(b"\0") != DTYPES:
            self._corrupt(f"unexpected header size {header_size} or dtypes {dtypes!r}")
        if (n_features > INT32_MAX or max_row_nnz > nnz or (n_rows == 0 and nnz) or (nnz and not max_row_nnz)
                or max_row_nnz * n_rows < nnz):
            self._corrupt(f"inconsistent counts: n_rows={n_rows}, n_features={n_features}, nnz={nnz}, "
                          f"max_row_nnz={max_row_nnz}")
        # The label summary decides the classes of a classifier: it must describe some labels.
        if not (math.isfinite(label_min) and math.isfinite(label_max) and label_min <= label_max):
            self._corrupt(f"the label range [{label_min}, {label_max}] is not two finite numbers lo <= hi")
        if (n_label_values > 3 or (n_rows == 0) != (n_label_values == 0)
                or (n_rows > 0 and (n_label_values == 1) != (label_min == label_max))):
            self._corrupt(f"the label summary (n_label_values={n_label_values}, labels from {label_min} to "
                          f"{label_max}) does not fit {n_rows} rows")
        self.n_rows, self.n_features, self.nnz = int(n_rows), int(n_features), int(nnz)
        self.max_row_nnz = int(max_row_nnz)
        self.label_min, self.label_max, self.n_label_values = float(label_min), float(label_max), int(n_label_values)
        expected = {"indptr": 8 * (n_rows + 1), "indices": 4 * nnz, "values": 4 * nnz, "labels": 4 * n_rows,
                    "weights": 4 * n_rows, "fields": 4 * n_features, "encoding": -1}
        self._offsets: dict[str, int] = {}
        self._crcs: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        end = HEADER_SIZE
        for i, name in enumerate(sections):
            offset, nbytes, section_crc = SECTION.unpack_from(head, FIXED.size + i * SECTION.size)
            if version >= 3 and (name == "weights" and not nbytes or name == "encoding" and nbytes <= MAX_ENCODING):
                expected[name] = nbytes if nbytes or name == "weights" else -1  # v3, v4: weights may be empty
            if nbytes != expected[name] or offset != align(end):
                self._corrupt(f"section {name} at offset {offset} with {nbytes} bytes, expected "
                              f"{expected[name]} bytes at {align(end)}")
            self._offsets[name], self._crcs[name], self._sizes[name] = int(offset), int(section_crc), int(nbytes)
            end = offset + nbytes
        self.has_encoding, self.has_fields = version == ENCODED_VERSION, version in (ENCODED_VERSION, FIELDS_VERSION)
        self.has_weights = version == WEIGHTS_VERSION or self._sizes.get("weights", 0) > 0
        if size != end:
            what = "truncated" if size < end else "has trailing bytes"
            self._corrupt(f"the file {what}: {size} bytes, the header says {end}")

    def _resolve_block_rows(self, block_rows, block_bytes) -> int:
        if block_rows is not None:
            check_positive_int(block_rows, "block_rows")
            return int(block_rows)
        check_positive_int(block_bytes, "block_bytes")
        per_row = (8 * self.nnz + 12 * self.n_rows) / max(self.n_rows, 1)
        return max(1, min(self.n_rows, int(block_bytes // max(per_row, 1.0))))

    def __reduce__(self):
        return (_reopen, (self.path, *self._block_setting))

    def __repr__(self) -> str:
        return (f"CacheFile({self.path!r}: {self.n_rows} rows, {self.n_features} features, {self.nnz} non-zeros, "
                f"blocks of {self.block_rows} rows)")

    # -- raw reads
    def _open(self) -> BinaryIO:
        input_kind(self.path, "a cache", pipes=False)  # still a regular file (never open a FIFO put in its place)
        fh = open(self.path, "rb", buffering=0)
        size = os.fstat(fh.fileno()).st_size
        if size != self._size:
            fh.close()
            self._corrupt(f"the file changed size since it was opened ({self._size} -> {size} bytes)")
        return fh  # type: ignore[return-value]

    def _read_at(self, fh, offset: int, count: int, section: str, out: np.ndarray | None = None) -> np.ndarray:
        dtype = SECTION_DTYPES[section]
        if out is None:
            out = np.empty(count, dtype=dtype.newbyteorder("="))
        elif out.shape[0] < count:  # buffers sized from indptr_at's (checked) values: the file changed
            self._corrupt(f"section {section}: {count} values to read at offset {offset}, more than the block's "
                          f"buffer of {out.shape[0]} holds")
        view = out[:count].data.cast("B")
        fh.seek(offset)
        got = 0
        while got < len(view):
            n = fh.readinto(view[got:])
            if not n:
                self._corrupt(f"unexpected end of file in section {section}")
            got += n
        if _BIG_ENDIAN:
            out[:count].byteswap(inplace=True)
        return out[:count]

    def _check_range(self, start, stop) -> tuple[int, int]:
        for value, name in ((start, "start"), (stop, "stop")):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.n_rows:
            raise ValueError(f"rows [{start}, {stop}) are not a range of the cache's {self.n_rows} rows "
                             "(need 0 <= start <= stop <= n_rows)")
        return start, stop

    def indptr_at(self, rows) -> np.ndarray:
        """indptr values at the given row positions (each in [0, n_rows]): one small read per position."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(rows.shape[0], dtype=np.int64)
        with self._open() as fh:
            for i, r in enumerate(rows.tolist()):
                if not 0 <= r <= self.n_rows:
                    raise ValueError(f"row position {r} is outside [0, {self.n_rows}]")
                self._read_at(fh, self._offsets["indptr"] + 8 * r, 1, "indptr", out[i:i + 1])
        # What callers size buffers from must be checked first (a damaged value must not become an allocation):
        # within [0, nnz], 0 at row 0 and nnz at row n_rows, and between two positions non-decreasing and at
        # most max_row_nnz per row.
        bad = (out < 0) | (out > self.nnz) | ((rows == 0) & (out != 0)) | ((rows == self.n_rows) & (out != self.nnz))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            self._corrupt(f"indptr at row {int(rows[i])} is {int(out[i])}, outside [0, nnz={self.nnz}] or not "
                          "where it must be")
        order = np.argsort(rows, kind="stable")
        r_sorted, v_sorted = rows[order], out[order]
        d_rows, d_vals = np.diff(r_sorted), np.diff(v_sorted)
        bad_step = (d_vals < 0) | (d_vals > d_rows * self.max_row_nnz)
        if np.any(bad_step):
            i = int(np.flatnonzero(bad_step)[0])
            self._corrupt(f"indptr goes from {int(v_sorted[i])} at row {int(r_sorted[i])} to {int(v_sorted[i + 1])} "
                          f"at row {int(r_sorted[i + 1])}: not non-decreasing by at most max_row_nnz="
                          f"{self.max_row_nnz} per row")
        return out

    def read_weights(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """The float32 sample weights of rows [start, stop) (into `out` when given); ValueError for a cache
        without weights, or weights that are not finite and >= 0 (a damaged file)."""
        start, stop = self._check_range(start, stop)
        if not self.has_weights:
            raise ValueError(f"{self.path} holds no sample weights (convert it with weights=... to add them)")
        with self._open() as fh:
            w = self._read_at(fh, self._offsets["weights"] + 4 * start, stop - start, "weights", out)
        if not (np.isfinite(w).all() and (w >= 0).all()):
            self._corrupt(f"rows [{start}, {stop}) hold sample weights that are NaN, infinite or negative")
        return w

    def read_labels(self, start: int, stop: int) -> np.ndarray:
        """The float32 labels of rows [start, stop) (only the labels section is read); checked finite."""
        start, stop = self._check_range(start, stop)
        with self._open() as fh:
            labels = self._read_at(fh, self._offsets["labels"] + 4 * start, stop - start, "labels")
        if not np.isfinite(labels).all():
            self._corrupt(f"rows [{start}, {stop}) hold NaN or infinite labels")
        _check_labels(self, labels, start)
        return labels

    def read_block(self, start: int, stop: int, buffers: dict | None = None):
        """(indptr int64 from 0, indices int32, values float32, labels float32) of rows [start, stop), read
        into `buffers` (arrays large enough, reused across calls) or new arrays; checked for corruption."""
        n = stop - start
        bufs = buffers or {}
        with self._open() as fh:
            indptr = self._read_at(fh, self._offsets["indptr"] + 8 * start, n + 1, "indptr", bufs.get("indptr"))
            lo, hi = int(indptr[0]), int(indptr[-1])
            if not 0 <= lo <= hi <= self.nnz or (n and np.any(indptr[1:] < indptr[:-1])):
                self._corrupt(f"indptr of rows [{start}, {stop}) is not non-decreasing within [0, {self.nnz}]")
            if n and int(np.max(indptr[1:] - indptr[:-1])) > self.max_row_nnz:
                self._corrupt(f"a row of rows [{start}, {stop}) holds more than max_row_nnz={self.max_row_nnz} "
                              "non-zeros")
            indices = self._read_at(fh, self._offsets["indices"] + 4 * lo, hi - lo, "indices", bufs.get("indices"))
            values = self._read_at(fh, self._offsets["values"] + 4 * lo, hi - lo, "values", bufs.get("values"))
            labels = self._read_at(fh, self._offsets["labels"] + 4 * start, n, "labels", bufs.get("labels"))
        indptr -= lo
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= self.n_features):
            self._corrupt(f"rows [{start}, {stop}) hold feature ids outside [0, {self.n_features})")
        if not (np.isfinite(values).all() and np.isfinite(labels).all()):
            self._corrupt(f"rows [{start}, {stop}) hold NaN or infinite values or labels")
        _check_labels(self, labels, start)
        return indptr, indices, values, labels

    # -- public reads
    def read_rows(self, start: int, stop: int):
        """Rows [start, stop) as (scipy.sparse.csr_matrix float32 with int32 indices, labels float32), reading
        only that range of the file."""
        start, stop = self._check_range(start, stop)
        indptr, indices, values, labels = self.read_block(start, stop)
        if indptr[-1] <= INT32_MAX:
            indptr = indptr.astype(np.int32)
        X = sp.csr_matrix((values, indices, indptr), shape=(stop - start, self.n_features), copy=False)
        return X, labels

    def verify(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        """Read the whole file once (in chunks) and check each section's CRC32 and every block's contents;
        ValueError naming the problem when the file is damaged."""
        check_positive_int(chunk_bytes, "chunk_bytes")
        with self._open() as fh:
            for name in section_names(self.version):
                nbytes = self._sizes[name]
                fh.seek(self._offsets[name])
                crc, left = 0, nbytes
                while left:
                    piece = fh.read(min(left, chunk_bytes))
                    if not piece:
                        self._corrupt(f"unexpected end of file in section {name}")
                    crc, left = zlib.crc32(piece, crc), left - len(piece)
                if crc != self._crcs[name]:
                    self._corrupt(f"checksum mismatch in section {name} (the data is damaged)")
        rows = max(1, chunk_bytes // max(1, (8 * self.nnz + 12 * self.n_rows) // max(self.n_rows, 1)))
        for start in range(0, self.n_rows, rows):
            self.read_block(start, min(start + rows, self.n_rows))
            if self.has_weights:
                self.read_weights(start, min(start + rows, self.n_rows))


def _reopen(path, block_rows, block_bytes) -> CacheFile:
    return CacheFile(path, block_rows=block_rows, block_bytes=block_bytes)


def check_positive_int(value, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def as_cache(X) -> CacheFile | None:
    """X as a CacheFile when it is one or an os.PathLike naming one (a plain str is not taken as a path: it
    is never valid data either, and fit reports it as such); None for anything else."""
    if isinstance(X, CacheFile):
        return X
    if isinstance(X, os.PathLike):
        return CacheFile(X)
    return None


def _check_labels(cache: CacheFile, labels: np.ndarray, start: int) -> None:
    """Every label agrees with the header's summary, which decides a classifier's classes: within
    [label_min, label_max], and with at most two distinct labels one of those two (a third label in a
    classifier's cache used to train silently as the negative class)."""
    lo, hi = np.float32(cache.label_min), np.float32(cache.label_max)
    if cache.n_label_values <= 2:
        bad = np.flatnonzero((labels != lo) & (labels != hi))
        listed = f"lists only {{{lo:g}, {hi:g}}}" if lo != hi else f"lists only {lo:g}"
    else:
        bad = np.flatnonzero((labels < lo) | (labels > hi))
        listed = f"lists labels from {lo:g} to {hi:g}"
    if bad.size:
        raise ValueError(f"{cache.path}: not a valid fastafm cache: row {start + int(bad[0])} has the label "
                         f"{float(labels[bad[0]]):g}, but the header {listed} ({bad.size} such row(s) in rows "
                         f"[{start}, {start + labels.shape[0]}))")
