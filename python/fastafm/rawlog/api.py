"""`fastafm.convert`: a libFM/libSVM file or in-memory rows (fastafm.data.convert), or a raw log with a schema
(fastafm.rawlog.pipeline), to a row cache."""
from __future__ import annotations

import os

from ..data.cache import DEFAULT_BLOCK_BYTES, DEFAULT_CHUNK_BYTES
from ..data.convert import convert as convert_libfm
from .pipeline import convert_raw, encode_rows
from .reader import is_raw_path, is_table
from .schema import DEFAULT_MAX_CATEGORIES, RawSchema

__all__ = ["convert", "encode_rows", "is_raw_source"]

_UNSET = object()
RAW_OPTIONS = ("label", "numeric", "categorical", "ignore", "sep", "header", "hash_buckets", "min_frequency",
               "numeric_scaling", "numeric_bins", "numeric_missing", "max_categories")


def is_raw_source(source) -> bool:
    """Whether `source` is a raw log by its form: a DataFrame or table, a .csv/.tsv/.parquet path (possibly
    compressed), a glob pattern, or a list of paths."""
    if is_table(source):
        return True
    if isinstance(source, list):  # of paths or tables (a list of (X, y) pieces is the libFM route's)
        return bool(source) and all(isinstance(s, (str, bytes, os.PathLike)) or is_table(s) for s in source)
    if isinstance(source, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        return is_raw_path(path) or (any(ch in path for ch in "*?[") and not os.path.exists(path))
    return False


def convert(source, dest, *, n_features=None, chunk_bytes: int = DEFAULT_CHUNK_BYTES, chunk_rows: int = 65536,
            block_rows=None, block_bytes: int = DEFAULT_BLOCK_BYTES, weights=None, label=None, numeric=None,
            categorical=None, ignore=None, sep=None, header: bool = True, hash_buckets=None, min_frequency: int = 1,
            numeric_scaling="standard", numeric_bins="auto", numeric_missing="zero",
            max_categories: int = DEFAULT_MAX_CATEGORIES, progress=None):
    """Write a row cache of `source` to `dest` and return it opened as a CacheFile.

    A libFM/libSVM file, an in-memory (X, y) or an iterable of such pieces is converted as before (the
    parameters up to `weights`; see fastafm.data.convert.convert). A raw log -- a CSV or TSV file (plain, .gz,
    .bz2 or .xz), a Parquet file, a glob pattern or list of such files, or a pandas DataFrame / pyarrow Table --
    or any source given with `label=` is read with the schema of the keywords below in two streaming passes
    (statistics, then writing), and the cache also stores the field of every feature and the encoding, which a
    model trained from it keeps for `predict` on raw rows (docs/data.md).

    label : the label column (required for a raw log); numeric : numeric columns; categorical : categorical
        columns (default: every column not named elsewhere); ignore : columns to skip. A column is a header
        name or, with header=False, a 0-based index; lists may also be comma-separated strings.
    sep : the separator (default: ',' for .csv, a tab otherwise); header : whether the first line names the
        columns.
    hash_buckets : hash every categorical value into this many ids per field (FNV-1a, fastafm.rawlog.hashing)
        instead of counting a vocabulary.
    min_frequency, numeric_scaling, numeric_bins, numeric_missing : as FieldEncoder's.
    max_categories : the most distinct values counted exactly over all fields (else a ValueError suggesting
        hash_buckets).
    progress : a progress bar on standard error (None: for inputs of at least 64 MB).
    """
    given = dict(label=label, numeric=numeric, categorical=categorical, ignore=ignore, sep=sep,
                 hash_buckets=hash_buckets)
    raw = any(v is not None for v in given.values()) or header is not True or is_raw_source(source)
    if not raw:
        return convert_libfm(source, dest, n_features=n_features, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows,
                             block_rows=block_rows, block_bytes=block_bytes, weights=weights)
    if n_features is not None:
        raise ValueError("n_features applies to libFM input; a raw log's width is its encoding's")
    schema = RawSchema(label=label, numeric=numeric, categorical=categorical, ignore=ignore, sep=sep, header=header,
                       hash_buckets=hash_buckets, min_frequency=min_frequency, numeric_scaling=numeric_scaling,
                       numeric_bins=numeric_bins, numeric_missing=numeric_missing, max_categories=max_categories)
    return convert_raw(source, dest, schema, weights=weights, block_rows=block_rows, block_bytes=block_bytes,
                       progress=progress)
