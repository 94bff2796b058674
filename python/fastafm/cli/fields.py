"""The command line's fields (FwFM, field-aware AFM): TRAIN and --valid read as libFFM text (`label
field:feature:value`) from a file or a pipe, or TRAIN a cache that carries the field of every feature (a libFFM
file's, or a raw log's: `fastafm convert`); a cache without fields is refused."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..data.files import display
from .parser import EXIT_DATA, CliError


def describe(exc: BaseException) -> str:
    """An exception as one line of the CLI's messages."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip() or type(exc).__name__
    if "incompatible function arguments" in text:  # pybind11 lists every overload: keep its first sentence
        text = text.split(". ", 1)[0]
    return " ".join(text.split())


def guarded(path: str, prefix: str, call, n_features=None):
    """call() with the CLI's errors: a CliError whose message starts with `prefix` ("cannot read data file X")
    unless the error already names `path`; out of memory said so; with `n_features` (a model's width) the hint to
    train wider when an id does not fit."""
    try:
        return call()
    except MemoryError as exc:
        raise CliError(f"{prefix}: out of memory ({describe(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError) as exc:
        message = describe(exc)
        if isinstance(exc, OSError) or not message.startswith(path):
            message = f"{prefix}: {message}"
        if n_features is not None and "does not fit n_features" in message:
            message += f"; the model has {n_features} features (train with --n-features to make room for more ids)"
        raise CliError(message, EXIT_DATA) from exc


def read_rows(path: str, n_features, stream, load, load_stream, what: str):
    """`load(path, n_features=...)`, or with `stream` = (open pipe, its first bytes already read) `load_stream(fh,
    name, n_features, prefix)` (a pipe is read once: the CLI sniffs it and parses what it sniffed), `guarded`."""
    if stream is not None:
        return guarded(path, f"cannot read {what} {path}",
                       lambda: load_stream(stream[0], display(path), n_features, stream[1]), n_features)
    return guarded(path, f"cannot read {what} {path}", lambda: load(path, n_features=n_features), n_features)


def fielded(args, model) -> bool:
    """Whether TRAIN must carry fields: FwFM, or AFM with --field-aware set (auto takes them where they are)."""
    return args.model_type == "fwfm" or getattr(model, "field_aware", None) not in (None, "auto")


def _what(args) -> str:
    return "--model-type fwfm" if args.model_type == "fwfm" else "--field-aware"


def load_ffm(path: str, n_features: Optional[int] = None, stream=None):
    """(X, y, fields) of a libFFM file, or with `stream` = (open pipe, its first bytes already read) of that pipe."""
    from ..data.libffm import load_libffm, load_libffm_stream

    return read_rows(path, n_features, stream, load_libffm, load_libffm_stream, "libFFM file")


def text_format(path: str, stream=None) -> tuple:
    """("libffm" or "libfm", stream): the format of the text DATA `path` from its first feature token (two ':'
    make libFFM, as `fastafm convert` decides), so that a libFFM file trains and predicts any model; with
    `stream` = (open pipe, its first bytes) the bytes read for it are handed back in front of the rest. Text it
    cannot read or without a feature token is libFM (its loader then reports what is wrong)."""
    from ..data.text_fields import sniff

    try:
        if stream is None:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        else:
            head = stream[1] + stream[0].read(1 << 16)
            stream = (stream[0], head)
    except (OSError, ValueError):
        return "libfm", stream
    found = sniff(head, 1)
    return ("libfm" if found is None else found[0]), stream


def train_ffm(args, stream=None):
    """(X, y, fields, eval_set) of a libFFM TRAIN (a file, or the pipe `stream`) and --valid, the fields the
    model's (the training file's where both name an id)."""
    X, y, fields = load_ffm(args.train, args.n_features, stream)
    if args.valid is None:
        return X, y, fields, None
    X_val, y_val, f_val = load_ffm(args.valid, args.n_features)
    width = max(X.shape[1], X_val.shape[1])
    fields = np.concatenate([fields, f_val[fields.shape[0]:]]) if width > fields.shape[0] else fields
    return widen(X, width), y, fields, (widen(X_val, width), y_val)


def widen(X, n_features: int):
    import scipy.sparse as sp

    return sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features), copy=False)


def check_cache_fields(args, cache) -> None:
    """A cache FwFM / field-aware AFM trains from must carry the field of every feature."""
    if not cache.has_fields:
        raise CliError(f"{_what(args)} needs the field of every feature, and the cache {cache.path} carries none "
                       "(it was converted from libFM text or arrays without fields): convert a libFFM file "
                       "(`fastafm convert train.ffm train.cache`) or a raw log, or train on the libFFM file",
                       EXIT_DATA)


def cache_valid(cache, path: str):
    """(X, y) of --valid for a model trained from the cache with fields `cache` (no raw encoding): libFFM text,
    whose fields are the cache's (ids must fit its width)."""
    X, y, _ = load_ffm(path, cache.n_features)
    return X, y
