"""The command line's fields (FwFM, field-aware AFM): TRAIN and --valid read as libFFM text (`label
field:feature:value`) from a file or a pipe, or TRAIN a cache that carries the field of every feature (a libFFM
file's, or a raw log's: `fastafm convert`); a cache without fields is refused."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..data.files import display
from .parser import EXIT_DATA, CliError


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return " ".join((str(exc).strip() or type(exc).__name__).split())


def fielded(args, model) -> bool:
    """Whether TRAIN must carry fields: FwFM, or AFM with --field-aware set (auto takes them where they are)."""
    return args.model_type == "fwfm" or getattr(model, "field_aware", None) not in (None, "auto")


def _what(args) -> str:
    return "--model-type fwfm" if args.model_type == "fwfm" else "--field-aware"


def load_ffm(path: str, n_features: Optional[int] = None, stream=None):
    """(X, y, fields) of a libFFM file, or with `stream` = (open pipe, its first bytes already read) of that pipe."""
    from ..data.libffm import load_libffm, load_libffm_stream

    try:
        if stream is not None:
            return load_libffm_stream(stream[0], display(path), n_features, stream[1])
        return load_libffm(path, n_features=n_features)
    except MemoryError as exc:
        raise CliError(f"cannot read libFFM file {path}: out of memory ({describe(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError) as exc:
        message = describe(exc)
        raise CliError(message if message.startswith(path) else f"cannot read libFFM file {path}: {message}",
                       EXIT_DATA) from exc


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
