"""The command line's raw logs (fastafm.rawlog, docs/data.md): the schema options of `fastafm convert`
(--label, --numeric, --categorical, --ignore, --sep, --no-header, --hash-buckets, --min-frequency and the
numeric handling), the conversion itself, and the raw rows `predict` and `eval` read with a model's encoding."""
from __future__ import annotations

import os
import time

from .parser import EXIT_DATA, EXIT_USAGE, CliError

RAW_FLAGS = ("label", "numeric", "categorical", "ignore", "sep", "hash_buckets", "numeric_bins", "max_categories")


def wants_raw(args) -> bool:
    from ..rawlog.api import is_raw_source

    given = any(getattr(args, name, None) is not None for name in RAW_FLAGS)
    return given or not args.header or len(args.input) > 1 or is_raw_source(args.input[0])


def _numeric_bins(given):
    """--numeric-bins as convert's keyword: not given -> "auto" (the default), none -> None."""
    return "auto" if given is None else None if given == "none" else given


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return " ".join((str(exc).strip() or type(exc).__name__).split())


def cmd_convert(args) -> int:
    """`fastafm convert` of raw logs: two streaming passes into a cache holding the encoding."""
    from ..rawlog.api import convert
    from ..rawlog.schema import DEFAULT_MAX_CATEGORIES

    if args.n_features is not None:
        raise CliError("--n-features applies to libFM input; a raw log's width is its encoding's", EXIT_USAGE)
    if args.format != "auto":
        raise CliError(f"--format {args.format} applies to libFM/libFFM text, not to a raw log", EXIT_USAGE)
    if args.label is None:
        raise CliError("converting a raw log needs --label COL (the column that holds the label)", EXIT_USAGE)
    if os.path.isdir(args.output):
        raise CliError(f"cannot write cache {args.output}: it is a directory", EXIT_DATA)
    start = time.perf_counter()
    try:
        cache = convert(list(args.input), args.output, label=args.label, numeric=args.numeric,
                        categorical=args.categorical, ignore=args.ignore, sep=args.sep, header=args.header,
                        hash_buckets=args.hash_buckets, min_frequency=args.min_frequency,
                        numeric_scaling=args.numeric_scaling, numeric_bins=_numeric_bins(args.numeric_bins),
                        numeric_missing=args.numeric_missing, weights=args.weights,
                        max_categories=args.max_categories or DEFAULT_MAX_CATEGORIES,
                        progress=None if not args.quiet else False)
    except MemoryError as exc:
        raise CliError(f"cannot convert to {args.output}: out of memory ({_message(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError, ImportError) as exc:
        raise CliError(f"cannot convert to {args.output}: {_message(exc)}", EXIT_DATA) from exc
    seconds = time.perf_counter() - start
    size = sum(os.path.getsize(p) for p in _paths(args.input))
    if not args.quiet:
        encoding = cache.read_encoding()
        print(f"wrote {args.output}: {cache.n_rows} rows, {len(encoding.fields)} fields, {cache.n_features} "
              f"features ({os.path.getsize(args.output) / 1e6:.1f} MB, {seconds:.2f} s, "
              f"{size / 1e6 / max(seconds, 1e-9):.1f} MB/s of input)", flush=True)
    return 0


def _paths(inputs) -> list:
    from ..rawlog.reader import expand

    return [p for p in expand(list(inputs)) if isinstance(p, str)]


def load_rows(model, path: str, labels: bool, sep=None):
    """(X, y or None) of raw rows for a model trained from a raw log, encoded with its encoding."""
    from ..rawlog.pipeline import encode_rows

    try:
        return encode_rows(path, model.encoding_, labels=labels, sep=sep)
    except MemoryError as exc:
        raise CliError(f"cannot read data file {path}: out of memory ({_message(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError, ImportError) as exc:
        message = _message(exc)
        raise CliError(message if message.startswith(path) else f"cannot read data file {path}: {message}",
                       EXIT_DATA) from exc
