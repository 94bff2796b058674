"""Reading libFM / libSVM (svmlight) text files with the C++ parser of the core."""

from __future__ import annotations

import errno
import numbers
import os

import numpy as np
import scipy.sparse as sp

__all__ = ["load_libfm"]


def load_libfm(path, n_features=None):
    """Load a libFM / libSVM text file into a CSR matrix and a label vector.

    The file is read and parsed in C++ in one go (several times faster than
    :func:`sklearn.datasets.load_svmlight_file`), and the parser is strict: any
    malformed line is an error rather than being skipped or guessed at.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The file to read.
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
    ValueError
        If a line is malformed (the message reads ``"{path}:{line}: {what}"``,
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
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)

    indptr, indices, values, labels, max_feature_id = _parse(path)
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


def _parse(path: str):
    """The core's parser on `path`. A file name that is not valid UTF-8 (POSIX bytes that os.fsdecode turned
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
                return _core.parse_libfm_file(proxy)
            except ValueError as exc:
                message = str(exc)
                if message.startswith(proxy):
                    message = shown + message[len(proxy):]
                raise ValueError(message) from None
        finally:
            os.close(fd)
    return _core.parse_libfm_file(path)
