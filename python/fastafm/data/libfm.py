"""Reading libFM / libSVM (svmlight) text files with the C++ parser of the core."""

from __future__ import annotations

import numbers
import os
from typing import BinaryIO, Iterator

import numpy as np
import scipy.sparse as sp

from .files import PIPE, display, input_kind, open_input

__all__ = ["load_libfm"]

DEFAULT_CHUNK_BYTES = 16 << 20
MAX_LINE_BYTES = 1 << 28  # one line (row) of text at most; longer is an error, not an unbounded read


def load_libfm(path, n_features=None):
    """Load a libFM / libSVM text file into a CSR matrix and a label vector.

    The file is read and parsed in C++ in one go (several times faster than
    :func:`sklearn.datasets.load_svmlight_file`), and the parser is strict: any
    malformed line is an error rather than being skipped or guessed at.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The file to read: a regular file, or a pipe (a FIFO, ``/dev/stdin``, a shell's ``<(zcat f.gz)``), which
        is read once, in chunks, with a memory check before each (MemoryError naming the stream when the data
        outgrows the memory available). Anything else, e.g. a character device such as ``/dev/zero``, is
        refused (ValueError) before it is read.
    n_features : int, optional
        Number of columns of ``X``. By default the largest feature id plus one
        (0 when the file has no feature at all). A given value must be a
        positive integer at least the largest id plus one; use it to give the
        train and test files of one data set the same width.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_rows, n_features), float32
        The features. Each row keeps its ``id:value`` pairs in file order:
        ids are neither sorted nor merged (a repeated id is stored twice, as
        the model treats each stored entry as its own non-zero), and explicit
        zero values are kept. ``X.indices`` and ``X.indptr`` have the dtype
        scipy chooses for the shape: int32 unless ``n_features`` or the number
        of non-zeros exceeds the int32 range.
    y : numpy.ndarray of shape (n_rows,), float32
        The labels.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a folder.
    ValueError
        If ``path`` is neither a regular file nor a pipe, if a line read from a pipe is longer than 256 MiB
        (``MAX_LINE_BYTES``), if a line is malformed (the message reads ``"{path}:{line}: {what}"``,
        with the 1-based line number), or if ``n_features`` is too small or
        not positive.
    TypeError
        If ``n_features`` is not an integer.
    OSError
        If the file cannot be read.

    Notes
    -----
    The format, one row per line::

        label id:value id:value ...   # optional comment

    * Tokens are separated by any run of spaces and/or tabs; lines end with LF
      or CRLF; the last line needs no newline.
    * ``#`` starts a comment running to the end of the line. Lines that are
      empty or hold only blanks and/or a comment are skipped and give no row
      (as in :func:`sklearn.datasets.load_svmlight_file`); a line holding only
      a label is a row with no features.
    * ``label``: a finite decimal number (``1``, ``+1``, ``-1``, ``0``,
      ``1.0``, ``3.5e-1``). For classification the model reads labels as
      signs.
    * ``id``: a zero-based feature index, a non-negative base-10 integer no
      larger than 2147483647 (digits only).
    * ``value``: a finite decimal number.

    Numbers are read as float64 with correct rounding and then rounded to
    float32 (what ``numpy.float32(float(s))`` gives). Rejected, each with its
    line number: a label or value that is not a number, NaN or infinity, or
    beyond the float32 range; a token without ``:``; an empty id or value
    (``:1``, ``3:``); a negative id; an id beyond int32; trailing junk in an
    id or value (``3x:1``, ``3:1.0abc``); ``qid:`` tokens (query ids are not
    supported); NUL bytes; a carriage return not followed by a line feed; a
    UTF-8 byte-order mark.

    Examples
    --------
    >>> X, y = load_libfm("train.libfm")                    # doctest: +SKIP
    >>> X_test, y_test = load_libfm("test.libfm", n_features=X.shape[1])  # doctest: +SKIP
    """
    path, n_features = check_path_and_width(path, n_features)
    return assemble(path, read_text(path, "libfm"), n_features)


def check_path_and_width(path, n_features):
    """(path as str, n_features as int or None), or the TypeError/ValueError of a bad argument."""
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(path))
    else:
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    if n_features is not None:
        if isinstance(n_features, (bool, np.bool_)) or not isinstance(n_features, numbers.Integral):
            raise TypeError(f"n_features must be a positive integer or None, got {n_features!r}")
        n_features = int(n_features)
        if n_features <= 0:
            raise ValueError(f"n_features must be a positive integer or None, got {n_features}")
    return path, n_features


def read_text(path: str, fmt: str):
    """The core parser's arrays of a libFM ("libfm") or libFFM ("libffm") file or pipe (docs/reliability.md)."""
    what = "a libFFM file" if fmt == "libffm" else "a libFM file"
    if input_kind(path, what, pipes=True) == PIPE:
        with open_input(path, what, pipes=True)[0] as fh:
            return parse_stream(fh, display(path), fmt=fmt)
    return _parse(path, fmt)


def load_libfm_stream(fh, name: str, n_features=None, prefix: bytes = b""):
    """load_libfm on an open binary stream whose first bytes, `prefix`, were already read from it (the CLI
    sniffs a pipe for a cache's magic bytes, then parses the same stream)."""
    return assemble(name, parse_stream(fh, name, prefix), n_features)


def assemble(path: str, parsed, n_features):
    indptr, indices, values, labels, max_feature_id = parsed[:5]
    max_feature_id = int(max_feature_id)
    if n_features is None:
        n_features = max_feature_id + 1
    elif max_feature_id >= n_features:
        raise ValueError(
            f"{path}: feature id {max_feature_id} does not fit n_features={n_features} "
            f"(ids must be < n_features; the file needs n_features >= {max_feature_id + 1})"
        )
    n_rows = len(labels)
    # (data, indices, indptr) with copy=False: scipy neither sorts the indices nor sums duplicates; it
    # only picks the index dtype for the shape (indptr usually becomes int32).
    X = sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_features), copy=False)
    return X, np.asarray(labels, dtype=np.float32)


def _parse(path: str, fmt: str = "libfm"):
    """The core's parser on `path` (`fmt`: "libfm", or "libffm" with the fields). A file name that is not valid UTF-8 (POSIX bytes that os.fsdecode turned
    into surrogates) cannot cross pybind11 as a std::string: the core then reads the file through an open
    descriptor (/dev/fd/N), and messages name the file with its odd bytes escaped."""
    from fastafm import _core

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        fd = os.open(path, os.O_RDONLY)
        try:
            proxy = f"/dev/fd/{fd}"
            try:
                return _core.parse_libfm_file(proxy, format=fmt)
            except ValueError as exc:
                message = str(exc)
                if message.startswith(proxy):
                    message = shown + message[len(proxy):]
                raise ValueError(message) from None
        finally:
            os.close(fd)
    return _core.parse_libfm_file(path, format=fmt)


def libfm_chunks(fh: BinaryIO, chunk_bytes: int = DEFAULT_CHUNK_BYTES, prefix: bytes = b"",
                 name: str = "<stream>") -> Iterator[tuple[bytes, int]]:
    """Chunks of whole lines of libFM text read once from `fh` (after `prefix`, bytes already read from it),
    with the file line number each starts at. A chunk is cut just before the newline ("\\n" or "\\r\\n") that
    ends its last line, so the next chunk starts with that newline: an empty first line that the parser skips,
    which keeps line numbers exact and a byte-order-mark check confined to the file's true first line.

    Memory is bounded: a line longer than MAX_LINE_BYTES is a ValueError, and a line that holds a NUL byte is
    reported (by the parser) as soon as it is seen, so a stream of zeros or of one endless line ends quickly."""
    line = 1
    carry = b""
    pending = prefix
    while True:
        data = pending + fh.read(chunk_bytes)
        pending = b""
        if not data:
            if carry:
                yield carry, line
            return
        buf = carry + data
        cut = buf.rfind(b"\n", 1)
        if cut > 0 and buf[cut - 1:cut] == b"\r":
            cut -= 1
        if cut <= 0:  # no complete line yet (a line longer than chunk_bytes): read on, within limits
            if b"\0" in data:
                yield buf, line  # the parser reports the NUL byte (its first check of a line)
            if len(buf) > MAX_LINE_BYTES or b"\0" in data:
                raise ValueError(f"{name}:{line}: the line is longer than {MAX_LINE_BYTES} bytes "
                                 "(not libFM text?)")
            carry = buf
            continue
        chunk = buf[:cut]
        yield chunk, line
        line += chunk.count(b"\n")
        carry = buf[cut:]


def parse_stream(fh: BinaryIO, name: str, prefix: bytes = b"", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                  fmt: str = "libfm"):
    """The parser over a stream read once in chunks, with a memory check before each chunk and before the
    parts are joined (MemoryError naming the stream instead of unbounded growth). Returns what the core's
    parser returns for the whole text (libFFM: with the fields of the non-zeros and the largest field id)."""
    from fastafm import _core

    from .validation import check_memory

    parts = []
    held = 0
    for chunk, first_line in libfm_chunks(fh, chunk_bytes, prefix, name):
        part = _core.parse_libfm_buffer(chunk, name, first_line, format=fmt)
        parts.append(part)
        held += sum(a.nbytes for a in part if isinstance(a, np.ndarray))
        # the next chunk (text and its parse) and, at the end, one joined copy of everything parsed
        check_memory(held + 4 * chunk_bytes, f"reading {name} ({held} bytes parsed so far)")
    if not parts:
        empty = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32), -1)
        return empty + ((np.zeros(0, np.int32), -1) if fmt == "libffm" else ())
    offsets = np.cumsum([0] + [int(p[0][-1]) for p in parts])
    indptr = np.concatenate([np.zeros(1, np.int64)] + [p[0][1:] + off for p, off in zip(parts, offsets)])
    joined: tuple = (indptr, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
              np.concatenate([p[3] for p in parts]), max(int(p[4]) for p in parts))
    if fmt == "libffm":
        joined += (np.concatenate([p[5] for p in parts]), max(int(p[6]) for p in parts))
    return joined
