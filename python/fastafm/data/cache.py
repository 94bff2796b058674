"""Binary row caches for out-of-core training: `convert` writes one, `CacheFile` reads row ranges of it.

A cache holds a CSR data set and its labels in flat little-endian sections behind a fixed header, so that any
range of rows is three contiguous reads (docs/cache.md has the byte layout). `convert` writes it in one
streaming pass over a libFM/libSVM file (or an in-memory (X, y)) with memory bounded by the chunk size, and
`fit(CacheFile(path))` trains from it block by block (fastafm._streaming) without loading it.
"""
from __future__ import annotations

import math
import numbers
import os
import shutil
import struct
import sys
import tempfile
import zlib
from typing import BinaryIO, Iterator

import numpy as np
import scipy.sparse as sp

from .files import display as _display  # the path as text that can cross into C++
from .files import input_kind, open_input, same_file
from .libfm import libfm_chunks

__all__ = ["CacheFile", "convert", "read_weights_file"]

MAGIC = b"FAFMCACH"
VERSION = 1           # a cache without sample weights (written as version 1, so older fastafm reads it)
WEIGHTS_VERSION = 2   # version 1 plus a fifth section, the per-row sample weights
HEADER_SIZE = 4096  # reserved for the header; sections start at multiples of ALIGN after it
ALIGN = 4096
DTYPES = b"<i8 <i4 <f4 <f4"  # indptr, indices, values, labels
SECTIONS = ("indptr", "indices", "values", "labels")
WEIGHT_SECTIONS = SECTIONS + ("weights",)  # version 2
_SECTION_DTYPES: dict[str, np.dtype] = {"indptr": np.dtype("<i8"), "indices": np.dtype("<i4"),
                                        "values": np.dtype("<f4"), "labels": np.dtype("<f4"),
                                        "weights": np.dtype("<f4")}
# magic, version, header_size, dtypes, n_rows, n_features, nnz, max_row_nnz, label_min, label_max,
# n_label_values (distinct labels, 3 meaning "3 or more"), then (offset, nbytes, crc32) per section.
_FIXED = struct.Struct("<8sII16sQQQQddI")
_SECTION = struct.Struct("<QQI")
_CRC = struct.Struct("<I")
HEADER_BYTES = _FIXED.size + len(SECTIONS) * _SECTION.size + _CRC.size
WEIGHTS_HEADER_BYTES = _FIXED.size + len(WEIGHT_SECTIONS) * _SECTION.size + _CRC.size


def _sections(version: int) -> tuple:
    return WEIGHT_SECTIONS if version == WEIGHTS_VERSION else SECTIONS


def _header_bytes(version: int) -> int:
    return WEIGHTS_HEADER_BYTES if version == WEIGHTS_VERSION else HEADER_BYTES

DEFAULT_BLOCK_BYTES = 64 << 20
DEFAULT_CHUNK_BYTES = 16 << 20
_INT32_MAX = 2**31 - 1
_BIG_ENDIAN = sys.byteorder == "big"


def _align(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def _fspath(path, what: str) -> str:
    if isinstance(path, (str, bytes, os.PathLike)):
        return os.fsdecode(os.fspath(path))
    raise TypeError(f"{what} must be a str, bytes or os.PathLike, got {type(path).__name__}")


# ---------------------------------------------------------------------------------------------- reading
class CacheFile:
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
    labels; 3 means three or more), block_rows, has_weights (a version 2 cache with per-row sample weights).
    `read_rows(start, stop)` reads a row range, `read_weights(start, stop)` its weights; nothing else is
    held in memory. The object pickles as its path (and block setting), so it can be sent to other processes.
    """

    def __init__(self, path, *, block_rows: int | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES):
        self.path = _fspath(path, "path")
        # A regular file only (it is read at offsets, once per block): a FIFO or /dev/zero is refused here.
        fh, _ = open_input(self.path, "a cache", pipes=False)
        with fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(WEIGHTS_HEADER_BYTES)  # the longer header; a version 1 one is its first HEADER_BYTES
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
        if len(head) < WEIGHTS_HEADER_BYTES or size < HEADER_SIZE:
            self._corrupt(f"truncated header ({size} bytes; a header takes {HEADER_SIZE})")
        (_, version, header_size, dtypes, n_rows, n_features, nnz, max_row_nnz, label_min, label_max,
         n_label_values) = _FIXED.unpack_from(head, 0)
        if version not in (VERSION, WEIGHTS_VERSION):
            raise ValueError(f"{self.path}: cache format version {version} is not supported (this fastafm reads "
                             f"versions {VERSION} and {WEIGHTS_VERSION}); convert the data again with this version")
        self.version = int(version)
        sections, header_bytes = _sections(version), _header_bytes(version)
        (crc,) = _CRC.unpack_from(head, header_bytes - _CRC.size)
        if zlib.crc32(head[:header_bytes - _CRC.size]) != crc:
            self._corrupt("header checksum mismatch (the header is damaged)")
        if header_size != HEADER_SIZE or dtypes.rstrip(b"\0") != DTYPES:
            self._corrupt(f"unexpected header size {header_size} or dtypes {dtypes!r}")
        if (n_features > _INT32_MAX or max_row_nnz > nnz or (n_rows == 0 and nnz) or (nnz and not max_row_nnz)
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
                    "weights": 4 * n_rows}
        self._offsets: dict[str, int] = {}
        self._crcs: dict[str, int] = {}
        self.has_weights = version == WEIGHTS_VERSION
        end = HEADER_SIZE
        for i, name in enumerate(sections):
            offset, nbytes, section_crc = _SECTION.unpack_from(head, _FIXED.size + i * _SECTION.size)
            if nbytes != expected[name] or offset != _align(end):
                self._corrupt(f"section {name} at offset {offset} with {nbytes} bytes, expected "
                              f"{expected[name]} bytes at {_align(end)}")
            self._offsets[name], self._crcs[name] = int(offset), int(section_crc)
            end = offset + nbytes
        if size != end:
            what = "truncated" if size < end else "has trailing bytes"
            self._corrupt(f"the file {what}: {size} bytes, the header says {end}")

    def _resolve_block_rows(self, block_rows, block_bytes) -> int:
        if block_rows is not None:
            _check_positive_int(block_rows, "block_rows")
            return int(block_rows)
        _check_positive_int(block_bytes, "block_bytes")
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
        dtype = _SECTION_DTYPES[section]
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
        return indptr, indices, values, labels

    # -- public reads
    def read_rows(self, start: int, stop: int):
        """Rows [start, stop) as (scipy.sparse.csr_matrix float32 with int32 indices, labels float32), reading
        only that range of the file."""
        start, stop = self._check_range(start, stop)
        indptr, indices, values, labels = self.read_block(start, stop)
        if indptr[-1] <= _INT32_MAX:
            indptr = indptr.astype(np.int32)
        X = sp.csr_matrix((values, indices, indptr), shape=(stop - start, self.n_features), copy=False)
        return X, labels

    def verify(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        """Read the whole file once (in chunks) and check each section's CRC32 and every block's contents;
        ValueError naming the problem when the file is damaged."""
        _check_positive_int(chunk_bytes, "chunk_bytes")
        with self._open() as fh:
            for name in _sections(self.version):
                nbytes = (self.n_rows + 1) * 8 if name == "indptr" else (
                    self.n_rows * 4 if name in ("labels", "weights") else self.nnz * 4)
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


def _check_positive_int(value, name: str) -> None:
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


# ---------------------------------------------------------------------------------------------- writing
class _Writer:
    """Streams chunks of rows into temporary section files (in dest's folder), then assembles the cache: four
    sections (version 1), five with sample weights (version 2)."""

    def __init__(self, dest: str, tmpdir: str, weighted: bool = False):
        self.dest = dest
        self.version = WEIGHTS_VERSION if weighted else VERSION
        self.sections = _sections(self.version)
        self.files = {name: open(os.path.join(tmpdir, name), "w+b") for name in self.sections}
        self.crcs = dict.fromkeys(self.sections, 0)
        self.weight_total = 0.0
        self.n_rows = self.nnz = self.max_row_nnz = 0
        self.max_feature_id = -1
        self.label_min, self.label_max = float("inf"), float("-inf")
        self.labels_seen: set = set()
        self._write("indptr", np.zeros(1, dtype=np.int64))

    def _write(self, name: str, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr, dtype=_SECTION_DTYPES[name])
        raw = data.data.cast("B")
        self.files[name].write(raw)
        self.crcs[name] = zlib.crc32(raw, self.crcs[name])

    def add(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, labels: np.ndarray,
            max_feature_id: int, weights: np.ndarray | None = None) -> None:
        if labels.shape[0] == 0:
            return
        counts = np.diff(indptr)
        if weights is not None:  # checked by the caller: finite, >= 0, one per row
            self._write("weights", weights)
            self.weight_total += float(np.sum(weights, dtype=np.float64))
        self._write("indptr", indptr[1:].astype(np.int64) + self.nnz)
        self._write("indices", indices)
        self._write("values", values)
        self._write("labels", labels)
        self.n_rows += labels.shape[0]
        self.nnz += int(indptr[-1])
        self.max_row_nnz = max(self.max_row_nnz, int(counts.max()))
        self.max_feature_id = max(self.max_feature_id, int(max_feature_id))
        self.label_min = min(self.label_min, float(labels.min()))
        self.label_max = max(self.label_max, float(labels.max()))
        if len(self.labels_seen) < 3:
            self.labels_seen.update(np.unique(labels)[:3].tolist())

    def finish(self, n_features: int, out_path: str) -> None:
        offsets, end = {}, HEADER_SIZE
        sizes = {name: fh.tell() for name, fh in self.files.items()}
        for name in self.sections:
            offsets[name] = _align(end)
            end = offsets[name] + sizes[name]
        head = bytearray(_FIXED.pack(MAGIC, self.version, HEADER_SIZE, DTYPES, self.n_rows, n_features, self.nnz,
                                     self.max_row_nnz, self.label_min if self.n_rows else 0.0,
                                     self.label_max if self.n_rows else 0.0, min(len(self.labels_seen), 3)))
        for name in self.sections:
            head += _SECTION.pack(offsets[name], sizes[name], self.crcs[name])
        head += _CRC.pack(zlib.crc32(bytes(head)))
        with open(out_path, "wb") as out:
            out.write(bytes(head))
            for name in self.sections:
                out.write(b"\0" * (offsets[name] - out.tell()))
                src = self.files[name]
                src.seek(0)
                shutil.copyfileobj(src, out, 4 << 20)
            out.flush()
            os.fsync(out.fileno())

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def _check_n_features(n_features) -> int | None:
    if n_features is None:
        return None
    if isinstance(n_features, (bool, np.bool_)) or not isinstance(n_features, numbers.Integral):
        raise TypeError(f"n_features must be a positive integer or None, got {n_features!r}")
    if not 0 < int(n_features) <= _INT32_MAX:
        raise ValueError(f"n_features must be a positive integer <= {_INT32_MAX} or None, got {n_features}")
    return int(n_features)


def convert(source, dest, *, n_features: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
            chunk_rows: int = 65536, block_rows: int | None = None,
            block_bytes: int = DEFAULT_BLOCK_BYTES, weights=None) -> CacheFile:
    """Write a cache of `source` to `dest` in one streaming pass and return it opened as a CacheFile.

    Parameters
    ----------
    source : str, bytes or os.PathLike, tuple (X, y), or an iterable of (X, y) tuples
        A libFM/libSVM text file (the format of `fastafm.load_libfm`; read once and parsed in chunks of about
        `chunk_bytes`, errors name the file's true line; a regular file or a pipe such as ``<(zcat f.gz)``,
        anything else, e.g. /dev/zero, is a ValueError), an in-memory X (SciPy sparse or 2-D array) with
        its labels y (written in chunks of `chunk_rows` rows), or an iterable (e.g. a generator) yielding
        such (X, y) pieces in row order, all of the same width: data produced piece by piece never has to
        be held whole. A tuple (X, y, w) (or pieces (X, y, w)) carries per-row sample weights w.
    dest : str or os.PathLike
        The cache file to write. It is written under a temporary name in the same folder and renamed into
        place when complete, so `dest` is never left half-written. A `dest` that is the source file itself
        (the same inode: the same path, a hard link or a symbolic link to it) is a ValueError.
    n_features : int, optional
        Width of the data; default the largest feature id plus one (X's width for an in-memory X). A given
        value must be at least that.
    block_rows, block_bytes : passed to the returned CacheFile.
    weights : array-like of shape (n_rows,), str or os.PathLike, optional
        Per-row sample weights (finite, >= 0, not all 0), stored in a weights section (a version 2 cache;
        without weights the cache is version 1): an array, or a text file with one weight per line, line i
        for row i of the data (read in step with the data, in chunks). `fit(CacheFile(path))` then trains
        each row's loss times its weight.

    Memory: a chunk of text and its parsed arrays (a few times `chunk_bytes`), whatever the size of the file.
    The sections are streamed to temporary files next to `dest` and then copied behind the header (see
    docs/cache.md), so the folder needs about twice the cache's size free while converting.
    """
    n_features = _check_n_features(n_features)
    _check_positive_int(chunk_bytes, "chunk_bytes")
    _check_positive_int(chunk_rows, "chunk_rows")
    dest = _fspath(dest, "dest")
    if isinstance(source, tuple):
        if len(source) not in (2, 3):
            raise ValueError("source must be a file path or a tuple (X, y) or (X, y, w)")
        if len(source) == 3 and weights is not None:
            raise ValueError("give the sample weights once: in the tuple (X, y, w) or as weights=, not both")
        chunks, name = _array_chunks([source], chunk_rows, n_features), "X"
    elif not isinstance(source, (str, bytes, os.PathLike)) and hasattr(source, "__iter__"):
        chunks, name = _array_chunks(source, chunk_rows, n_features), "X"
    else:
        path = _fspath(source, "source")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        input_kind(path, "a libFM file", pipes=True)  # a regular file or a pipe (read once), nothing else
        _refuse_overwrite(path, dest)
        name = _display(path)
        chunks = _parsed_libfm_chunks(path, name, chunk_bytes)
        if weights is not None and not isinstance(weights, (str, bytes, os.PathLike)):
            weights = _as_weights(weights, None, "weights")
    if weights is not None:
        if isinstance(weights, (str, bytes, os.PathLike)):
            _refuse_overwrite(_fspath(weights, "weights"), dest)
        chunks = _with_weights(chunks, weights)
    return _write_cache(chunks, name, dest, n_features, block_rows, block_bytes)


def _as_weights(w, n_rows, name: str) -> np.ndarray:
    from ..training.weights import check_sample_weight

    if n_rows is None:  # the length is checked against the data's rows as they are read
        if isinstance(w, (str, bytes)) or np.ndim(w) != 1:
            raise ValueError(f"{name} must be a 1-D array of weights (one per row) or the path of a weights file")
        n_rows = np.shape(w)[0]
    out = check_sample_weight(w, n_rows, name)
    assert out is not None
    return out


def _with_weights(chunks, weights):
    """The parsed chunks with their rows' weights appended, from an array or from a text file of one weight per
    line read in step with the chunks; ValueError when the counts differ or a line is not a weight."""
    if isinstance(weights, (str, bytes, os.PathLike)):
        reader = _WeightFile(_fspath(weights, "weights"))
    else:
        reader = _WeightArray(_as_weights(weights, None, "weights"))
    with reader:
        total = 0.0
        for parsed in chunks:
            if len(parsed) == 6:
                raise ValueError("give the sample weights once: in the (X, y, w) pieces or as weights=, not both")
            w = reader.take(parsed[3].shape[0])
            total += float(np.sum(w, dtype=np.float64))
            yield (*parsed, w)
        reader.finish()
        if not total > 0:
            raise ValueError(f"{reader.name} is all zero: at least one row must have a positive weight")


class _WeightArray:
    def __init__(self, w: np.ndarray):
        self.w, self.pos, self.name = w, 0, "weights"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > self.w.shape[0]:
            raise ValueError(f"weights has {self.w.shape[0]} values but the data has more rows")
        out = self.w[self.pos:self.pos + n]
        self.pos += n
        return out

    def finish(self) -> None:
        if self.pos != self.w.shape[0]:
            raise ValueError(f"weights has {self.w.shape[0]} values but the data has {self.pos} rows")


class _WeightFile:
    """One weight per line of a text file, read as the data's rows arrive (errors name file and line)."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such weights file")
        self.name = _display(path)
        self.fh = open(path, "rb")
        self.line = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False

    def take(self, n: int) -> np.ndarray:
        from ..training.weights import check_sample_weight

        out = np.empty(n, dtype=np.float64)
        for i in range(n):
            text = self.fh.readline()
            self.line += 1
            if not text:
                raise ValueError(f"{self.name}: the weights file has {self.line - 1} lines, fewer than the data's rows")
            try:
                out[i] = float(text.strip())
            except ValueError:
                shown = text.strip()[:40].decode("utf-8", "replace")
                raise ValueError(f"{self.name}:{self.line}: {shown!r} is not a number "
                                 "(one sample weight per line)") from None
        try:
            checked = check_sample_weight(out, n, "weights")
        except ValueError as exc:
            if "all zero" in str(exc):  # a chunk of zeros is fine; the whole file is checked at the end
                return out.astype(np.float32)
            bad = int(np.flatnonzero(~np.isfinite(out.astype(np.float32)) | (out < 0))[0])
            raise ValueError(f"{self.name}:{self.line - n + 1 + bad}: weight {float(out[bad])!r}: sample weights must be "
                             "finite and >= 0") from None
        assert checked is not None
        return checked

    def finish(self) -> None:
        rest = self.fh.readline()
        while rest and not rest.strip():  # a trailing blank line (or several) is not a row
            rest = self.fh.readline()
        if rest:
            raise ValueError(f"{self.name}: the weights file has more lines than the data has rows ({self.line})")


def _refuse_overwrite(source: str, dest: str) -> None:
    if same_file(source, dest):
        raise ValueError(f"{_display(dest)} is the source file {_display(source)}: writing the cache there would "
                         "destroy the data; give the cache another name")


def _convert_stream(fh, name: str, dest, prefix: bytes = b"", *, n_features: int | None = None,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES, block_bytes: int = DEFAULT_BLOCK_BYTES,
                    weights=None) -> CacheFile:
    """convert() of libFM text read once from the open stream `fh` (after `prefix`, bytes already read from
    it), e.g. a pipe the CLI sniffed for a cache's magic bytes; `weights` as for convert."""
    n_features = _check_n_features(n_features)
    dest = _fspath(dest, "dest")
    try:
        if os.path.samestat(os.fstat(fh.fileno()), os.stat(dest)):
            _refuse_overwrite(name, dest)
    except OSError:
        pass
    chunks = _parsed_chunks(libfm_chunks(fh, chunk_bytes, prefix, name), name)
    if weights is not None:
        chunks = _with_weights(chunks, weights)
    return _write_cache(chunks, name, dest, n_features, None, block_bytes)


def read_weights_file(path, n_rows: int) -> np.ndarray:
    """The float32 sample weights of a text file with one weight per line, exactly `n_rows` of them (finite,
    >= 0, not all 0); ValueError naming the file and line otherwise."""
    reader = _WeightFile(_fspath(path, "path"))
    with reader:
        w = reader.take(int(n_rows))
        reader.finish()
    return _as_weights(w, int(n_rows), reader.name)


def _write_cache(chunks, name: str, dest: str, n_features, block_rows, block_bytes) -> CacheFile:
    folder = os.path.dirname(os.path.abspath(dest))
    if os.path.isdir(dest):
        raise IsADirectoryError(f"cannot write the cache {dest}: it is a directory")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fastafm-convert-") as tmpdir:
        writer = None
        try:
            for parsed in chunks:
                if writer is None:  # the first chunk says whether the rows carry weights
                    writer = _Writer(dest, tmpdir, weighted=len(parsed) == 6)
                elif (len(parsed) == 6) != (writer.version == WEIGHTS_VERSION):
                    raise ValueError(f"{name}: either every piece carries sample weights (X, y, w) or none does")
                writer.add(*parsed)
            if writer is None:
                writer = _Writer(dest, tmpdir)
            if writer.version == WEIGHTS_VERSION and writer.n_rows and not writer.weight_total > 0:
                raise ValueError(f"{name}: the sample weights are all zero: at least one row must have a positive "
                                 "weight")
            width = writer.max_feature_id + 1
            if n_features is not None:
                if writer.max_feature_id >= n_features:
                    raise ValueError(f"{name}: feature id {writer.max_feature_id} does not fit n_features="
                                     f"{n_features} (ids must be < n_features)")
                width = n_features
            out_path = os.path.join(tmpdir, "cache")
            writer.finish(width, out_path)
        finally:
            if writer is not None:
                writer.close()
        os.replace(out_path, dest)
    return CacheFile(dest, block_rows=block_rows, block_bytes=block_bytes)


def _parsed_libfm_chunks(path: str, name: str, chunk_bytes: int):
    fh, _ = open_input(path, "a libFM file", pipes=True)  # opened when the first chunk is asked for
    with fh:
        yield from _parsed_chunks(libfm_chunks(fh, chunk_bytes, name=name), name)


def _parsed_chunks(chunks, name: str):
    from .. import _core

    for chunk, first_line in chunks:
        yield _core.parse_libfm_buffer(chunk, name, first_line)


def _array_chunks(pieces, chunk_rows: int, n_features: int | None):
    from .validation import as_csr, as_targets

    width = None
    for i, piece in enumerate(pieces):
        if not isinstance(piece, tuple) or len(piece) not in (2, 3):
            raise ValueError(f"source piece {i} is not a tuple (X, y) or (X, y, w)")
        X = as_csr(piece[0])
        y = as_targets(piece[1], X.shape[0])
        w = None if len(piece) == 2 else _piece_weights(piece[2], X.shape[0], i)
        if width is not None and X.shape[1] != width:
            raise ValueError(f"source piece {i} has {X.shape[1]} columns, the pieces before it {width}")
        width = X.shape[1]
        if n_features is not None and n_features < width:
            raise ValueError(f"n_features={n_features} is less than X's {width} columns")
        yield from _csr_pieces(X, y, chunk_rows, w)


def _piece_weights(w, n_rows: int, i: int) -> np.ndarray:
    from ..training.weights import check_sample_weight

    try:
        out = check_sample_weight(w, n_rows, f"the weights of source piece {i}")
    except ValueError as exc:
        if "all zero" not in str(exc):
            raise
        out = np.zeros(n_rows, dtype=np.float32)  # one piece of zeros is fine; all of them are checked at the end
    assert out is not None
    return out


def _csr_pieces(X, y, chunk_rows: int, w=None):
    # The width is recorded as max id + 1 by the writer; X's own width wins when it is wider (its last
    # columns may be empty), hence the sentinel max_feature_id of X.shape[1] - 1.
    for start in range(0, X.shape[0], chunk_rows):
        stop = min(start + chunk_rows, X.shape[0])
        lo, hi = int(X.indptr[start]), int(X.indptr[stop])
        indptr = np.asarray(X.indptr[start:stop + 1], dtype=np.int64) - lo
        if w is None:
            yield indptr, X.indices[lo:hi], X.data[lo:hi], y[start:stop], X.shape[1] - 1
        else:
            yield indptr, X.indices[lo:hi], X.data[lo:hi], y[start:stop], X.shape[1] - 1, w[start:stop]
