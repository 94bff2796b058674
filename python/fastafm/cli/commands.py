"""The `fastafm` command line: train, predict and eval on libFM/libSVM files, and the demo.

    fastafm train TRAIN [--valid VALID] --model OUT [--cache [CACHE]] [hyperparameters]
    fastafm convert INPUT OUTPUT [--n-features N]   (or raw logs: INPUT... OUTPUT --label COL [schema options])
    fastafm predict --model MODEL DATA [--out FILE]
    fastafm eval --model MODEL DATA [--json]
    fastafm demo [--rows N] [--epochs N] [--threads N] [--seed N] [--quiet]

Exit codes (documented in `fastafm --help`): 0 success, 1 other failure (e.g. training diverged), 2 usage
error, 3 bad input data or file, 4 model file problem. Errors print one line to stderr, no traceback.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from ..data.limits import RowTooLongError
from ..data.files import display as _display
from ..models.hyperparams import BY_NAME, SIGNATURES, cli_given, cli_values
from .evaluation import evaluate
from .fields import (cache_valid, check_cache_fields, describe as _describe, fielded as _fielded, guarded,
                     load_ffm, read_rows, text_format, train_ffm, widen)
from .raw import cmd_convert as cmd_convert_raw, load_rows as load_raw_rows, wants_raw
from .parser import (EXIT_DATA, EXIT_FAILURE, EXIT_MODEL, EXIT_OK, EXIT_USAGE, MODEL_TYPES, TASK_METRICS, CliError,
                     build_parser)


# ---------------------------------------------------------------------- helpers
def _status(args, message: str, stream=None) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=stream or sys.stdout, flush=True)


def _load_data(path: str, n_features: Optional[int] = None, stream=None):
    """load_libfm(path), or with `stream` = (open file, first bytes already read from it) the same parse of that
    stream (a pipe is read once: the CLI sniffs it and parses what it sniffed)."""
    from ..data.libfm import load_libfm_stream, load_libfm

    return read_rows(path, n_features, stream, load_libfm, load_libfm_stream, "data file")


def _load_rows(model, path: str, n_features: Optional[int] = None, args=None):
    """(X, y) of DATA for a fitted model: the rows of a cache (any model), raw rows for a model trained from a
    raw log (its encoding), libFFM for FwFM and field-aware AFM (their fields are the model's own), libFM
    otherwise."""
    if _is_cache(path):
        cache = _open_cache(path, 64 << 20)
        if n_features is not None and cache.n_features > n_features:
            raise CliError(f"{path} has {cache.n_features} features, but the model has {n_features}", EXIT_DATA)
        X, y = cache.read_rows(0, cache.n_rows)
        return (X if n_features is None else widen(X, n_features)), y
    if model.encoding_ is not None:
        return load_raw_rows(model, path, labels=args.command == "eval", sep=args.sep)
    if getattr(model, "fields_", None) is not None or (os.path.isfile(path) and text_format(path)[0] == "libffm"):
        X, y, _ = load_ffm(path, n_features)
        return X, y
    return _load_data(path, n_features)


def _load_model(path: str):
    from ..models.persistence import load_model

    if not os.path.exists(path):
        raise CliError(f"cannot read model {path}: no such file", EXIT_MODEL)
    try:
        return load_model(path)  # refuses anything but a regular file before opening it
    except MemoryError as exc:
        raise CliError(f"cannot read model {path}: out of memory ({_describe(exc)})", EXIT_MODEL) from exc
    except (ValueError, OSError, KeyError, TypeError) as exc:
        message = _describe(exc)
        if message.startswith(f"{path}: "):
            message = message[len(path) + 2:]
        raise CliError(f"cannot read model {path}: {message}", EXIT_MODEL) from exc


def _input_kind(path: str, what: str, code: int = EXIT_DATA) -> str:
    """'file' or 'pipe' for a data file (fastafm.data.files' policy), as a CliError when it cannot be read."""
    from ..data.files import input_kind

    try:
        return input_kind(path, "a libFM file", pipes=True)
    except (ValueError, OSError) as exc:
        message = _describe(exc)
        raise CliError(message if message.startswith(_display(path)) else f"cannot read {what} {path}: {message}",
                       code) from exc


def _refuse_same(dest: str, what: str, sources, code: int) -> None:
    """CliError when writing `dest` would replace one of the input files (same inode)."""
    from ..data.files import same_file

    for source in sources:
        if source is not None and same_file(source, dest):
            raise CliError(f"cannot write {what} {dest}: it is the input file {source}, which it would destroy",
                           code)


def _check_writable(path: str, what: str, code: int) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"cannot write {what} {path}: it is a directory", code)
    if not os.path.isdir(directory):
        raise CliError(f"cannot write {what} {path}: no such directory {directory}", code)
    if not os.access(directory, os.W_OK):
        raise CliError(f"cannot write {what} {path}: permission denied", code)


def _is_classifier(model) -> bool:
    return hasattr(model, "classes_")


# ---------------------------------------------------------------------- commands
def _cmd_demo(args) -> int:
    from ..demo import run_demo

    run_demo(n_rows=args.rows, n_epochs=args.epochs, n_threads=args.threads, random_state=args.seed,
             verbose=0 if args.quiet else 1)
    return EXIT_OK


def _convert(source: str, dest: str, n_features: Optional[int], block_bytes: int = 64 << 20, stream=None,
             weights: Optional[str] = None, fmt: str = "auto"):
    from ..data.convert import convert, convert_stream

    _input_kind(source, "data file")
    if weights is not None:
        _input_kind(weights, "weights file")
    _check_writable(dest, "cache", EXIT_DATA)
    _refuse_same(dest, "cache", [source, weights], EXIT_DATA)
    if stream is not None:
        return guarded(source, f"cannot convert {source} to {dest}", lambda: convert_stream(
            stream[0], _display(source), dest, stream[1], n_features=n_features, block_bytes=block_bytes,
            weights=weights, format=fmt))
    return guarded(source, f"cannot convert {source} to {dest}", lambda: convert(
        source, dest, n_features=n_features, block_bytes=block_bytes, weights=weights, format=fmt))


def _open_cache(path: str, block_bytes: int):
    from ..data.cache import CacheFile

    try:
        return CacheFile(path, block_bytes=block_bytes)
    except (ValueError, OSError) as exc:
        message = _describe(exc)
        raise CliError(message if message.startswith(path) else f"cannot read cache {path}: {message}",
                       EXIT_DATA) from exc


def _is_cache(path: str) -> bool:
    """Whether the regular file at `path` starts with a cache's magic bytes (never opens anything else: a pipe
    must be read once, see _training_cache)."""
    from ..data.cache import MAGIC

    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _cmd_convert(args) -> int:
    if wants_raw(args):  # CSV, TSV, Parquet (fastafm.cli.raw)
        return cmd_convert_raw(args)
    start, args.input = time.perf_counter(), args.input[0]
    cache = _convert(args.input, args.output, args.n_features, weights=args.weights, fmt=args.format)
    fields = cache.read_fields() if cache.has_fields else None
    _status(args, f"wrote {args.output}: {cache.n_rows} rows, {cache.nnz} non-zeros, {cache.n_features} features"
                  f"{'' if fields is None else f' in {int(fields.max(initial=0)) + 1} fields'}"
                  f"{', sample weights' if cache.has_weights else ''} "
                  f"({os.path.getsize(args.output) / 1e6:.1f} MB, {time.perf_counter() - start:.2f} s)")
    return EXIT_OK


def _open_pipe(path: str):
    """(open stream, its first bytes) of the pipe TRAIN, which is read once: the bytes sniffed for a cache's
    magic are handed to the parser with the rest of the stream."""
    from ..data.files import open_input, read_exactly
    from ..data.cache import MAGIC

    try:
        fh, _ = open_input(path, "a libFM file", pipes=True)
        head = read_exactly(fh, len(MAGIC))
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot read data file {path}: {_describe(exc)}", EXIT_DATA) from exc
    if head == MAGIC:
        fh.close()
        raise CliError(f"cannot read {path}: it is a cache on a pipe; a cache is read at random offsets and must "
                       "be a regular file", EXIT_DATA)
    return fh, head


def _training_cache(args, stream=None, fmt: str = "auto"):
    """The cache to stream TRAIN from, or None to load TRAIN in memory (from `stream` when TRAIN is a pipe); text
    is converted as `fmt` ("libffm" for a model that needs fields: an existing cache without them is redone)."""
    block_bytes = max(1, int(args.block_mb * 1e6))
    if stream is not None:
        if args.cache is None:
            return None
        if not args.cache:
            raise CliError(f"--cache needs a CACHE path when TRAIN ({args.train}) is a pipe", EXIT_USAGE)
        start = time.perf_counter()
        cache = _convert(args.train, args.cache, args.n_features, block_bytes, stream=stream, weights=args.weights,
                         fmt=fmt)
        _status(args, f"converted {args.train} to the cache {args.cache} ({time.perf_counter() - start:.2f} s)")
        return cache
    if _is_cache(args.train):
        if args.weights is not None:
            raise CliError(f"--weights cannot be given with the cache {args.train}: a cache's sample weights are "
                           "stored in it when it is converted (fastafm convert --weights)", EXIT_USAGE)
        return _open_cache(args.train, block_bytes)
    if args.cache is None:
        return None
    dest = args.cache or args.train + ".cache"
    if (args.weights is None and os.path.isfile(args.train) and _is_cache(dest)
            and os.path.getmtime(dest) >= os.path.getmtime(args.train)):  # with --weights: always converted
        cache = _open_cache(dest, block_bytes)
        if (args.n_features is None or cache.n_features == args.n_features) and (fmt != "libffm" or cache.has_fields):
            _status(args, f"using the cache {dest} (newer than {args.train})")
            return cache
    start = time.perf_counter()
    cache = _convert(args.train, dest, args.n_features, block_bytes, weights=args.weights, fmt=fmt)
    _status(args, f"converted {args.train} to the cache {dest} ({time.perf_counter() - start:.2f} s)")
    return cache


def _cmd_train(args) -> int:
    _check_writable(args.model, "model", EXIT_MODEL)
    _refuse_same(args.model, "model", [args.train, args.valid, args.cache or None], EXIT_MODEL)
    model = _make_model(args)  # usage errors before any data is read
    if getattr(model, "precision", "fp32") == "bf16":
        from .. import _core

        if not _core.bf16_supported():
            raise CliError("--precision bf16 needs a CPU with AVX512_BF16 (the avx512_bf16 flag of /proc/cpuinfo); "
                           "this CPU lacks it: use --precision fp32", EXIT_USAGE)
    stream = _open_pipe(args.train) if _input_kind(args.train, "data file") == "pipe" else None
    try:
        return _train(args, model, stream)
    finally:
        if stream is not None:
            stream[0].close()


def _train(args, model, stream) -> int:
    # FwFM and --field-aware need fields: a libFFM TRAIN (file, pipe or its --cache) or a cache that carries them;
    # field_aware "auto" takes the fields where the input carries them (a cache with fields)
    needs_fields = _fielded(args, model)
    cache = _training_cache(args, stream, "libffm" if needs_fields else "auto")
    if cache is not None:
        if needs_fields:
            check_cache_fields(args, cache)
        return _train_from_cache(args, cache, needs_fields)
    fmt, stream = ("libffm", stream) if needs_fields else text_format(args.train, stream)
    if fmt == "libffm":  # FwFM, --field-aware and "auto" keep the file's fields; other models read its rows
        X, y, fields, eval_set = train_ffm(args, stream)
        if needs_fields or getattr(model, "field_aware", None) == "auto":
            model.set_params(fields=fields)
        _status(args, f"read {args.train}: {X.shape[0]} rows, {X.nnz} non-zeros, {int(fields.max()) + 1} fields")
        weights = None if args.weights is None else _load_weights(args.weights, X.shape[0], args.train)
        return _fit_and_save(args, model, X, y, eval_set, weights)
    start = time.perf_counter()
    X, y = _load_data(args.train, args.n_features, stream)
    _status(args, f"read {args.train}: {X.shape[0]} rows, {X.nnz} non-zeros, max feature id {X.shape[1] - 1} "
                  f"({time.perf_counter() - start:.2f} s)")
    if X.shape[0] == 0:
        raise CliError(f"cannot read data file {args.train}: no rows", EXIT_DATA)
    sample_weight = None if args.weights is None else _load_weights(args.weights, X.shape[0], args.train)
    eval_set = None
    if args.valid is not None:
        X_val, y_val = _load_data(args.valid, args.n_features)
        if X_val.shape[0] == 0:
            raise CliError(f"cannot read data file {args.valid}: no rows", EXIT_DATA)
        width = max(X.shape[1], X_val.shape[1])
        X, X_val = widen(X, width), widen(X_val, width)
        eval_set = (X_val, y_val)
        _status(args, f"read {args.valid}: {X_val.shape[0]} rows for validation")
    cls = type(model)
    if args.task == "classification":
        labels = np.unique(y)
        if labels.shape[0] != 2:
            raise CliError(f"{args.train}: classification needs exactly two labels, found {labels.shape[0]} "
                           f"({', '.join(f'{v:g}' for v in labels[:5])}{', ...' if labels.shape[0] > 5 else ''})",
                           EXIT_DATA)
        if eval_set is not None:
            unknown = np.setdiff1d(np.unique(eval_set[1]), labels)
            if unknown.size:
                raise CliError(f"{args.valid}: labels {', '.join(f'{v:g}' for v in unknown[:5])} are not among "
                               f"the training labels {labels[0]:g}, {labels[1]:g}", EXIT_DATA)
    _status(args, f"training {cls.__name__} for {_epochs(model)}, {X.shape[1]} features")
    return _fit_and_save(args, model, X, y, eval_set, sample_weight)


def _load_weights(path: str, n_rows: int, data: str):
    """The sample weights of the --weights file: one per line, as many as DATA has rows."""
    from ..data.convert import read_weights_file

    _input_kind(path, "weights file")
    try:
        return read_weights_file(path, n_rows)
    except (ValueError, OSError) as exc:
        message = _describe(exc)
        raise CliError(message if message.startswith(path) else f"cannot read weights file {path}: {message}"
                       f" ({data} has {n_rows} rows)", EXIT_DATA) from exc


def _make_model(args):
    """The estimator of --model-type and --task with the options given (the others: its own defaults)."""
    from ..models import estimators

    signature = MODEL_TYPES[args.model_type]
    if args.task == "classification":  # the classifiers also take class_weight
        signature = SIGNATURES[f"{args.model_type}_classifier"]
    elif hasattr(args, "class_weight"):
        raise CliError("--class-weight applies to --task classification only", EXIT_USAGE)
    other = sorted(cli_given(args) - set(signature.names))
    if other:
        flags = ", ".join(BY_NAME[name].cli for name in other)
        raise CliError(f"{flags} {'does' if len(other) == 1 else 'do'} not apply to --model-type "
                       f"{args.model_type}", EXIT_USAGE)
    metric = getattr(args, "early_stopping_metric", None)
    task = "rate" if getattr(args, "loss", "squared") == "logistic" else args.task
    if metric is not None and metric not in TASK_METRICS[task]:
        raise CliError(f"--early-stopping-metric must be {' or '.join(TASK_METRICS[task])} for "
                       f"{args.task}{' with --loss logistic' if task == 'rate' else ''}, got {metric!r}", EXIT_USAGE)
    name = {"afm": "AFM", "fm": "FM", "fwfm": "FwFM"}[args.model_type] + ("Classifier" if args.task == "classification"
                                                           else "Regressor")
    return getattr(estimators, name)(**cli_values(args, signature), verbose=0 if args.quiet else 1)


def _epochs(model) -> str:
    """How long `fit` trains, for the status line."""
    text = f"at most {model.n_epochs} epochs" if model.early_stopping is not False else f"{model.n_epochs} epochs"
    if getattr(model, "pretrain", None) == "fm":
        text += ", after pretraining an FM"
    elif getattr(model, "pretrain", None) == "linear+fm":
        text += ", after pretraining a linear model and an FM"
    return text


def _train_from_cache(args, cache, needs_fields: bool = False) -> int:
    """`train` streaming a cache: VALID (in memory) must fit the cache's width; libFFM text for a model that
    takes a libFFM cache's fields."""
    if args.n_features is not None and args.n_features != cache.n_features:
        raise CliError(f"{cache.path} has {cache.n_features} features, not --n-features {args.n_features} (the "
                       "width of a cache is set when it is converted)", EXIT_DATA)
    if cache.n_rows == 0:
        raise CliError(f"cannot read data file {cache.path}: no rows", EXIT_DATA)
    _status(args, f"streaming {cache.path}: {cache.n_rows} rows, {cache.nnz} non-zeros, {cache.n_features} "
                  f"features, blocks of {cache.block_rows} rows")
    model = _make_model(args)  # checked by _cmd_train already
    if args.task == "classification" and cache.n_label_values != 2:
        found = "3 or more" if cache.n_label_values > 2 else str(cache.n_label_values)
        raise CliError(f"{cache.path}: classification needs exactly two labels, found {found}", EXIT_DATA)
    eval_set = None
    if args.valid is not None:
        if needs_fields and not cache.has_encoding:
            X_val, y_val = cache_valid(cache, args.valid)
        else:
            X_val, y_val = _load_data(args.valid, cache.n_features)
        if X_val.shape[0] == 0:
            raise CliError(f"cannot read data file {args.valid}: no rows", EXIT_DATA)
        if args.task == "classification":
            unknown = np.setdiff1d(np.unique(y_val), [cache.label_min, cache.label_max])
            if unknown.size:
                raise CliError(f"{args.valid}: labels {', '.join(f'{v:g}' for v in unknown[:5])} are not among "
                               f"the training labels {cache.label_min:g}, {cache.label_max:g}", EXIT_DATA)
        eval_set = (X_val, y_val)
        _status(args, f"read {args.valid}: {X_val.shape[0]} rows for validation")
    _status(args, f"training {type(model).__name__} for {_epochs(model)} out of core")
    return _fit_and_save(args, model, cache, None, eval_set)


def _fit_and_save(args, model, X, y, eval_set, sample_weight=None) -> int:
    start = time.perf_counter()
    try:
        model.fit(X, y, sample_weight=sample_weight, eval_set=eval_set)
    except FloatingPointError as exc:
        raise CliError(_describe(exc), EXIT_FAILURE) from exc
    except RowTooLongError:
        raise  # main() names the file
    except (ValueError, TypeError) as exc:
        raise CliError(f"cannot train on {args.train}: {_describe(exc)}", EXIT_DATA) from exc
    seconds = time.perf_counter() - start
    try:
        model.save(args.model)
    except OSError as exc:
        raise CliError(f"cannot write model {args.model}: {_describe(exc)}", EXIT_MODEL) from exc
    _status(args, f"trained in {seconds:.1f} s{_kept(model)}; model written to {args.model}")
    return EXIT_OK


def _kept(model) -> str:
    """What early stopping and the linear fallback kept, for the status line ("" without a validation score)."""
    if getattr(model, "best_epoch_", None) is None:
        return ""
    share = getattr(model, "linear_share_", 0.0)
    metric = model.early_stopping_metric or ("rmse" if hasattr(model, "label_range_") else "logloss")
    return (f" (best epoch {model.best_epoch_}, validation {metric} {model.best_score_:.5f}"
            + (f", the linear model's share {share:.2f}" if share else "") + ")")


def _set_threads(model, threads) -> None:
    from ..models.hyperparams import validate

    if threads is not None:
        try:
            validate({"n_threads": threads}, ("n_threads",))
        except (ValueError, TypeError) as exc:
            raise CliError(f"--threads: {_describe(exc)}", EXIT_USAGE) from exc
        model.set_params(n_threads=threads)


def _predict(model, X, threads):
    _set_threads(model, threads)
    if _is_classifier(model):
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def _cmd_predict(args) -> int:
    model = _load_model(args.model)
    X, _ = _load_rows(model, args.data, model.n_features_in_, args)
    if args.out is not None:
        _check_writable(args.out, "predictions", EXIT_DATA)
        _refuse_same(args.out, "predictions", [args.data, args.model], EXIT_DATA)
    start = time.perf_counter()
    pred = _predict(model, X, args.threads) if X.shape[0] else np.empty(0)
    text = "".join(f"{v:.9g}\n" for v in pred.tolist())
    if args.out is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `fastafm predict ... | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
    else:
        try:
            with open(args.out, "w", encoding="ascii") as fh:
                fh.write(text)
        except OSError as exc:
            raise CliError(f"cannot write predictions {args.out}: {_describe(exc)}", EXIT_DATA) from exc
    what = "probabilities of the positive class" if _is_classifier(model) else "predictions"
    _status(args, f"{X.shape[0]} {what} written to {args.out or 'standard output'} "
                  f"({time.perf_counter() - start:.2f} s)", stream=sys.stderr)
    return EXIT_OK


def _cmd_eval(args) -> int:
    model = _load_model(args.model)
    X, y = _load_rows(model, args.data, model.n_features_in_, args)
    if X.shape[0] == 0:
        raise CliError(f"cannot read data file {args.data}: no rows", EXIT_DATA)
    _set_threads(model, args.threads)
    try:
        result = evaluate(model, X, y)
    except CliError as exc:
        raise CliError(f"{args.data}: {exc}", exc.code) from exc
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                          for k, v in result.items()}))
    else:
        for key, value in result.items():
            print(f"{key}: {value}" if isinstance(value, int) else f"{key}: {value:.6f}")
    return EXIT_OK


def _cmd_explain(args) -> int:
    from ..explain import explanation_lines

    model = _load_model(args.model)
    X, _ = _load_data(args.data, model.n_features_in_)
    if args.out is not None:
        _check_writable(args.out, "explanations", EXIT_DATA)
        _refuse_same(args.out, "explanations", [args.data, args.model], EXIT_DATA)
    _set_threads(model, args.threads)
    start = time.perf_counter()
    e = model.explain(X, dense=False)
    try:
        if args.out is None:
            sys.stdout.writelines(explanation_lines(e, args.top))
            sys.stdout.flush()
        else:
            with open(args.out, "w", encoding="ascii") as fh:
                fh.writelines(explanation_lines(e, args.top))
    except BrokenPipeError:  # e.g. `fastafm explain ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        raise CliError(f"cannot write explanations {args.out}: {_describe(exc)}", EXIT_DATA) from exc
    print(f"{X.shape[0]} rows explained ({time.perf_counter() - start:.2f} s)", file=sys.stderr)
    return EXIT_OK


COMMANDS = {"explain": _cmd_explain, "demo": _cmd_demo, "train": _cmd_train, "predict": _cmd_predict, "eval": _cmd_eval,
            "convert": _cmd_convert}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with `argv` (default sys.argv[1:]); returns the exit code.

    Usage errors and --help/--version are reported by argparse and give their exit code (2 and 0) as the
    return value rather than raising SystemExit.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    from ..data.limits import set_max_pairs_per_row

    try:
        if getattr(args, "max_pairs_per_row", None) is not None:
            set_max_pairs_per_row(args.max_pairs_per_row)
        return COMMANDS[args.command](args)
    except RowTooLongError as exc:  # one line naming the file, the row and the limit
        path, message = _data_path(args, str(exc)), _describe(exc)
        return _report(message if message.startswith(path) else f"{path}: {message}", EXIT_DATA)
    except CliError as exc:
        return _report(str(exc), exc.code)
    except MemoryError as exc:  # anywhere (e.g. a model too large for this machine): one line, not a traceback
        return _report(f"out of memory: {_describe(exc)}", EXIT_FAILURE)
    except Exception as exc:  # a bug, or an error not mapped above: still the documented one line
        return _report(f"{type(exc).__name__}: {_describe(exc)}", EXIT_FAILURE)
    finally:
        if getattr(args, "max_pairs_per_row", None) is not None:
            set_max_pairs_per_row(None)  # main() may be called again in this process (tests)


def _data_path(args, message: str) -> str:
    """The file a row too long came from: VALID for eval_set rows, else TRAIN or DATA."""
    if message.startswith("eval_set") and getattr(args, "valid", None):
        return args.valid
    return str(getattr(args, "data", None) or getattr(args, "train", ""))


def _report(message: str, code: int) -> int:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"fastafm: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
