"""Writing row caches: `convert` streams a libFM/libSVM file (or an in-memory (X, y)) into the binary format of
fastafm.data.cache in one pass, with memory bounded by the chunk size; optional per-row sample weights go to a
fifth section."""
from __future__ import annotations

import numbers
import os
import shutil
import tempfile
import zlib

import numpy as np

from .cache import (CRC, DEFAULT_BLOCK_BYTES, DEFAULT_CHUNK_BYTES, DTYPES, ENCODED_VERSION, FIELDS_VERSION, FIXED,
                    HEADER_SIZE, INT32_MAX, MAGIC, SECTION, SECTION_DTYPES, VERSION, WEIGHTS_VERSION, CacheFile,
                    align, check_positive_int, fspath, section_names)
from .files import display as _display  # the path as text that can cross into C++
from .files import input_kind, open_input, same_file
from .libfm import libfm_chunks
from .text_fields import TextFields, check_format, explicit_fields

__all__ = ["convert", "read_weights_file"]


# ---------------------------------------------------------------------------------------------- writing
class _Writer:
    """Streams chunks of rows into temporary section files (in dest's folder), then assembles the cache: four
    sections (version 1), five with sample weights (version 2), a raw log's seven (version 3), or six with the
    field of every feature and no encoding (version 4, `add_fields` before `finish`)."""

    def __init__(self, dest: str, tmpdir: str, weighted: bool = False, extra: dict | None = None,
                 known: dict | None = None):
        self.dest = dest
        self.weighted = weighted
        self.tmpdir = tmpdir
        self.version = ENCODED_VERSION if extra is not None else WEIGHTS_VERSION if weighted else VERSION
        self.sections = section_names(self.version)
        self.out_path = os.path.join(tmpdir, "cache")
        self.expected: dict | None = None
        if known is None:  # weights always has a file (empty without weights: version 4 may still come)
            names = self.sections if extra is not None else section_names(WEIGHTS_VERSION)
            self.files = {name: open(os.path.join(tmpdir, name), "w+b") for name in names}
            self.starts = dict.fromkeys(names, 0)
        else:  # every section's size is known: written in place in the cache file, no copy at the end
            self.expected = _section_sizes(self.sections, known, weighted)
            self.starts, end = _layout(self.sections, self.expected)
            with open(self.out_path, "wb") as fh:
                fh.truncate(end)
            self.files = {}
            for name in self.sections:
                self.files[name] = open(self.out_path, "r+b")
                self.files[name].seek(self.starts[name])
        self.crcs = dict.fromkeys(self.files, 0)
        self.weight_total = 0.0
        self.n_rows = self.nnz = self.max_row_nnz = 0
        self.max_feature_id = -1
        self.label_min, self.label_max = float("inf"), float("-inf")
        self.labels_seen: set = set()
        self._write("indptr", np.zeros(1, dtype=np.int64))
        for name, pieces in (extra or {}).items():  # a raw log's fields and encoding (version 3), piece by piece
            for arr in pieces:
                self._write(name, arr)

    def add_fields(self, fields: np.ndarray) -> None:
        """The field of every feature (checked by the caller): the cache becomes version 4."""
        if self.expected is not None or self.version == ENCODED_VERSION:
            raise ValueError("fields are added to a version 1 or 2 cache being written, not to a raw log's")
        self.files["fields"] = open(os.path.join(self.tmpdir, "fields"), "w+b")
        self.starts["fields"], self.crcs["fields"] = 0, 0
        self._write("fields", fields)
        self.version = FIELDS_VERSION
        self.sections = section_names(FIELDS_VERSION)

    def _write(self, name: str, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr, dtype=SECTION_DTYPES[name])
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
        sizes = {name: self.files[name].tell() - self.starts[name] for name in self.sections}
        if self.expected is not None and sizes != self.expected:
            raise RuntimeError(f"{self.dest}: the sections written ({sizes}) differ from the sizes announced "
                               f"({self.expected})")
        offsets, _ = _layout(self.sections, sizes)
        head = bytearray(FIXED.pack(MAGIC, self.version, HEADER_SIZE, DTYPES, self.n_rows, n_features, self.nnz,
                                     self.max_row_nnz, self.label_min if self.n_rows else 0.0,
                                     self.label_max if self.n_rows else 0.0, min(len(self.labels_seen), 3)))
        for name in self.sections:
            head += SECTION.pack(offsets[name], sizes[name], self.crcs[name])
        head += CRC.pack(zlib.crc32(bytes(head)))
        if self.expected is not None:  # the sections are in place: the header, then to disk
            for fh in self.files.values():
                fh.flush()
            if out_path != self.out_path:
                raise ValueError("a writer of known sizes finishes into its own file")
            with open(out_path, "r+b") as out:
                out.write(bytes(head))
                out.flush()
                os.fsync(out.fileno())
            return
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


def _layout(sections: tuple, sizes: dict) -> tuple:
    """({section: its offset in the cache file}, the file's size): the header, then each section aligned."""
    offsets, end = {}, HEADER_SIZE
    for name in sections:
        offsets[name] = align(end)
        end = offsets[name] + sizes[name]
    return offsets, end


def _section_sizes(sections: tuple, known: dict, weighted: bool) -> dict:
    """The bytes of each section of a cache of known["rows"] rows, known["nnz"] non-zeros and (version 3)
    known["fields"] feature fields and known["encoding"] bytes of encoding."""
    rows, nnz = int(known["rows"]), int(known["nnz"])
    counts = {"indptr": rows + 1, "indices": nnz, "values": nnz, "labels": rows, "weights": rows if weighted else 0,
              "fields": int(known.get("fields", 0)), "encoding": int(known.get("encoding", 0))}
    return {name: counts[name] * SECTION_DTYPES[name].itemsize for name in sections}


def _check_n_features(n_features) -> int | None:
    if n_features is None:
        return None
    if isinstance(n_features, (bool, np.bool_)) or not isinstance(n_features, numbers.Integral):
        raise TypeError(f"n_features must be a positive integer or None, got {n_features!r}")
    if not 0 < int(n_features) <= INT32_MAX:
        raise ValueError(f"n_features must be a positive integer <= {INT32_MAX} or None, got {n_features}")
    return int(n_features)


def convert(source, dest, *, n_features: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
            chunk_rows: int = 65536, block_rows: int | None = None,
            block_bytes: int = DEFAULT_BLOCK_BYTES, weights=None, format: str = "auto", fields=None) -> CacheFile:
    """Write a cache of `source` to `dest` in one streaming pass and return it opened as a CacheFile.

    Parameters
    ----------
    source : str, bytes or os.PathLike, tuple (X, y), or an iterable of (X, y) tuples
        A libFM/libSVM text file (the format of `fastafm.load_libfm`) or a libFFM one (`label
        field:feature:value ...`, the format of `fastafm.load_libffm`; see `format`) (read once and parsed in
        chunks of about `chunk_bytes`, errors name the file's true line; a regular file or a pipe such as
        ``<(zcat f.gz)``, anything else, e.g. /dev/zero, is a ValueError), an in-memory X (SciPy sparse or 2-D array) with
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
    check_positive_int(chunk_bytes, "chunk_bytes")
    check_positive_int(chunk_rows, "chunk_rows")
    dest = fspath(dest, "dest")
    text_fields = TextFields("", "X", check_format(format), fields)
    if fields is not None and n_features is not None:
        explicit_fields(fields, n_features)  # before any row is read
    if isinstance(source, tuple):
        if format != "auto":
            raise ValueError(f"format={format!r} applies to a text source; source is (X, y)")
        if len(source) not in (2, 3):
            raise ValueError("source must be a file path or a tuple (X, y) or (X, y, w)")
        if len(source) == 3 and weights is not None:
            raise ValueError("give the sample weights once: in the tuple (X, y, w) or as weights=, not both")
        chunks, name = _array_chunks([source], chunk_rows, n_features, fields), "X"
    elif not isinstance(source, (str, bytes, os.PathLike)) and hasattr(source, "__iter__"):
        if format != "auto":
            raise ValueError(f"format={format!r} applies to a text source; source is an iterable of (X, y) pieces")
        chunks, name = _array_chunks(source, chunk_rows, n_features, fields), "X"
    else:
        path = fspath(source, "source")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        input_kind(path, "a libFM file", pipes=True)  # a regular file or a pipe (read once), nothing else
        refuse_overwrite(path, dest)
        name = _display(path)
        text_fields = TextFields(path, name, format, fields)
        chunks = _parsed_libfm_chunks(path, name, chunk_bytes, text_fields)
        if weights is not None and not isinstance(weights, (str, bytes, os.PathLike)):
            weights = _as_weights(weights, None, "weights")
    if weights is not None:
        if isinstance(weights, (str, bytes, os.PathLike)):
            refuse_overwrite(fspath(weights, "weights"), dest)
        chunks = with_weights(chunks, weights)
    return write_cache(chunks, name, dest, n_features, block_rows, block_bytes, fields=text_fields.fields)


def _as_weights(w, n_rows, name: str) -> np.ndarray:
    from ..training.weights import check_sample_weight

    if n_rows is None:  # the length is checked against the data's rows as they are read
        if isinstance(w, (str, bytes)) or np.ndim(w) != 1:
            raise ValueError(f"{name} must be a 1-D array of weights (one per row) or the path of a weights file")
        n_rows = np.shape(w)[0]
    out = check_sample_weight(w, n_rows, name)
    assert out is not None
    return out


def with_weights(chunks, weights):
    """The parsed chunks with their rows' weights appended, from an array or from a text file of one weight per
    line read in step with the chunks; ValueError when the counts differ or a line is not a weight."""
    if isinstance(weights, (str, bytes, os.PathLike)):
        reader = _WeightFile(fspath(weights, "weights"))
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


def refuse_overwrite(source: str, dest: str) -> None:
    if same_file(source, dest):
        raise ValueError(f"{_display(dest)} is the source file {_display(source)}: writing the cache there would "
                         "destroy the data; give the cache another name")


def convert_stream(fh, name: str, dest, prefix: bytes = b"", *, n_features: int | None = None,
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES, block_bytes: int = DEFAULT_BLOCK_BYTES,
                    weights=None, format: str = "auto") -> CacheFile:
    """convert() of libFM/libFFM text read once from the open stream `fh` (after `prefix`, bytes already read
    from it), e.g. a pipe the CLI sniffed for a cache's magic bytes; `weights` and `format` as for convert."""
    n_features = _check_n_features(n_features)
    dest = fspath(dest, "dest")
    try:
        if os.path.samestat(os.fstat(fh.fileno()), os.stat(dest)):
            refuse_overwrite(name, dest)
    except OSError:
        pass
    text_fields = TextFields(name, name, format)
    chunks = text_fields.parse(libfm_chunks(fh, chunk_bytes, prefix, name))
    if weights is not None:
        chunks = with_weights(chunks, weights)
    return write_cache(chunks, name, dest, n_features, None, block_bytes, fields=text_fields.fields)


def read_weights_file(path, n_rows: int) -> np.ndarray:
    """The float32 sample weights of a text file with one weight per line, exactly `n_rows` of them (finite,
    >= 0, not all 0); ValueError naming the file and line otherwise."""
    reader = _WeightFile(fspath(path, "path"))
    with reader:
        w = reader.take(int(n_rows))
        reader.finish()
    return _as_weights(w, int(n_rows), reader.name)


def write_cache(chunks, name: str, dest: str, n_features, block_rows, block_bytes, extra=None,
                known=None, fields=None) -> CacheFile:
    """The cache `dest` of the parsed chunks. `known`: {"rows", "nnz"(, "fields", "encoding")} when the sizes are
    known before the rows (a raw log's second pass): the sections are then written in place, not copied.
    `fields`: a function of the cache's width giving the field of every feature (a version 4 cache) or None."""
    folder = os.path.dirname(os.path.abspath(dest))
    if os.path.isdir(dest):
        raise IsADirectoryError(f"cannot write the cache {dest}: it is a directory")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fastafm-convert-") as tmpdir:
        writer = None
        try:
            for parsed in chunks:
                if writer is None:  # the first chunk says whether the rows carry weights
                    writer = _Writer(dest, tmpdir, weighted=len(parsed) == 6, extra=extra, known=known)
                elif (len(parsed) == 6) != writer.weighted:
                    raise ValueError(f"{name}: either every piece carries sample weights (X, y, w) or none does")
                writer.add(*parsed)
            if writer is None:
                writer = _Writer(dest, tmpdir, extra=extra)
            if writer.weighted and writer.n_rows and not writer.weight_total > 0:
                raise ValueError(f"{name}: the sample weights are all zero: at least one row must have a positive "
                                 "weight")
            width = writer.max_feature_id + 1
            if n_features is not None:
                if writer.max_feature_id >= n_features:
                    raise ValueError(f"{name}: feature id {writer.max_feature_id} does not fit n_features="
                                     f"{n_features} (ids must be < n_features)")
                width = n_features
            field_of = None if fields is None else fields(width)
            if field_of is not None:
                writer.add_fields(field_of)
            out_path = os.path.join(tmpdir, "cache")
            writer.finish(width, out_path)
        finally:
            if writer is not None:
                writer.close()
        os.replace(out_path, dest)
    return CacheFile(dest, block_rows=block_rows, block_bytes=block_bytes)


def _parsed_libfm_chunks(path: str, name: str, chunk_bytes: int, text_fields: TextFields):
    fh, _ = open_input(path, "a libFM file", pipes=True)  # opened when the first chunk is asked for
    with fh:
        yield from text_fields.parse(libfm_chunks(fh, chunk_bytes, name=name))


def _array_chunks(pieces, chunk_rows: int, n_features: int | None, fields=None):
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
        if fields is not None and i == 0:
            explicit_fields(fields, width if n_features is None else n_features)  # before any row is written
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
