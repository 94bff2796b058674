"""The `fastafm` command line: train, predict and eval on libFM/libSVM files, and the demo.

    fastafm train TRAIN [--valid VALID] --model OUT [--cache [CACHE]] [hyperparameters]
    fastafm convert INPUT OUTPUT [--n-features N]
    fastafm predict --model MODEL DATA [--out FILE]
    fastafm eval --model MODEL DATA [--json]
    fastafm demo [--rows N] [--epochs N] [--threads N] [--seed N] [--quiet]

Exit codes (documented in `fastafm --help`): 0 success, 1 other failure (e.g. training diverged), 2 usage
error, 3 bad input data or file, 4 model file problem. Errors print one line to stderr, no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from typing import Optional, Sequence

import numpy as np

from ..data.files import display as _display
from ..models.hyperparams import BY_NAME, SIGNATURES, Float, Int, add_cli_arguments, cli_given, cli_values

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_MODEL = 4

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  any other failure, e.g. training diverged (lower --learning-rate)
  2  usage error: unknown command or option, or an invalid option value
  3  bad input data or file: a data file missing, unreadable or malformed (the message gives
     path:line), labels unusable for the task, or an output file that cannot be written
  4  model file problem: --model missing, unreadable or not a fastafm model, or the model
     cannot be written
Errors are one line on stderr, starting with "fastafm: error:".
"""

DATA_FORMAT_HELP = ('Data files are libFM / libSVM text, one row per line: "label id:value id:value ...", '
                    "ids zero-based, # starts a comment; fastafm.load_libfm documents the full format.")


class CliError(Exception):
    """An error to report in one line with the given exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------- parser
def _wrap(*paragraphs: str) -> str:
    return "\n\n".join(textwrap.fill(p, width=78) for p in paragraphs)


#: --model-type -> the signature of its estimators (the first: the default)
MODEL_TYPES = {"afm": SIGNATURES["afm"], "fm": SIGNATURES["fm"]}
_TASK_METRICS = {"regression": ("rmse", "mae"), "classification": ("logloss", "auc")}


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fastafm",
        description=_wrap("Attentional Factorization Machines on the CPU: train, predict and evaluate on "
                          "libFM/libSVM files, or run the demo. `fastafm COMMAND --help` documents each command."),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # demo: unchanged from the first release
    demo = sub.add_parser("demo", help="train FM-like pooling and AFM on synthetic planted data and compare them",
                          description=_wrap("Train FM-like uniform pooling and AFM on synthetic data with "
                                            "planted field pairs; print both test RMSEs and the field pairs "
                                            "with the largest attention."),
                          epilog=EXIT_CODES_HELP, formatter_class=fmt)
    demo.add_argument("--rows", type=int, default=30000, help="number of synthetic rows (default 30000)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument("--threads", type=int, default=0, help="OpenMP threads, 0 = all cores (default 0)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no per-epoch lines")

    train = sub.add_parser(
        "train", help="train a model on a libFM/libSVM file and save it",
        description=_wrap("Train an AFM (or, with --model-type fm, an FM) model on TRAIN and write it to --model. "
                          "Progress (one line per epoch with the training loss and the validation RMSE and MAE "
                          "or log loss and AUC, on --valid or on the rows early stopping holds out) goes to "
                          "standard output unless --quiet.", DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    train.add_argument("train", metavar="TRAIN", help="training data file (libFM/libSVM)")
    train.add_argument("--valid", metavar="VALID", help="validation data file, evaluated after every epoch")
    train.add_argument("--model", metavar="OUT", required=True, help="where to write the trained model (required)")
    train.add_argument("--task", choices=("regression", "classification"), default="regression",
                       help="regression: squared loss (AFMRegressor); classification: logistic loss "
                            "(AFMClassifier), the file must hold exactly two labels, e.g. 0/1 or -1/1, the "
                            "larger one being the positive class (default regression)")
    train.add_argument("--model-type", choices=tuple(MODEL_TYPES), default="afm",
                       help="afm: AFMRegressor / AFMClassifier; fm: FMRegressor / FMClassifier (default afm)")
    hp = train.add_argument_group("hyperparameters (defaults are the library's, per model type)")
    add_cli_arguments(hp, MODEL_TYPES)  # one option per entry of the hyperparameter table with a flag
    class_weight = BY_NAME["class_weight"]  # the classifiers' only one (not in MODEL_TYPES' signatures)
    hp.add_argument(class_weight.cli, dest="class_weight", type=class_weight.constraint.parse,
                    default=argparse.SUPPRESS, metavar=class_weight.metavar,
                    help=f"{class_weight.cli_help} (default none)")
    train.add_argument("--weights", metavar="FILE",
                       help="sample weights of TRAIN: a text file with one weight (a number >= 0) per line, line i "
                            "for row i of TRAIN; each row's loss is multiplied by its weight. With --cache the "
                            "weights are stored in the cache")
    train.add_argument("--n-features", type=Int(1).parse, metavar="N",
                       help="width of the model: feature ids must be < N (default: the largest id in TRAIN and "
                            "VALID plus one). Set it when test files may hold larger ids")
    train.add_argument("--cache", nargs="?", const="", metavar="CACHE",
                       help="train out of core: stream TRAIN from a binary cache in shuffled blocks instead of "
                            "loading it. TRAIN is first converted to CACHE (default TRAIN.cache), unless CACHE is "
                            "a valid cache newer than TRAIN. A TRAIN that is itself a cache (written by `fastafm "
                            "convert`) is always streamed, with or without this option")
    train.add_argument("--block-mb", type=Float(0.0, low_open=True).parse, default=64.0, metavar="MB",
                       help="size of a streamed block of a cache in MB of data, the unit of shuffling and of "
                            "the reusable read buffer (default %(default)s)")
    train.add_argument("--quiet", action="store_true", help="no progress: no per-epoch lines or summaries")

    conv = sub.add_parser(
        "convert", help="write a binary cache of a libFM/libSVM file for out-of-core training",
        description=_wrap("Convert INPUT (libFM/libSVM text) to the binary row cache OUTPUT in one streaming "
                          "pass with bounded memory (docs/cache.md). `fastafm train OUTPUT --model ...` then "
                          "trains from it in shuffled blocks without loading it.", DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    conv.add_argument("input", metavar="INPUT", help="data file (libFM/libSVM)")
    conv.add_argument("output", metavar="OUTPUT", help="the cache file to write")
    conv.add_argument("--n-features", type=Int(1).parse, metavar="N",
                      help="width of the data: feature ids must be < N (default: the largest id plus one)")
    conv.add_argument("--weights", metavar="FILE",
                      help="sample weights to store in the cache: a text file with one weight (a number >= 0) per "
                           "line, line i for row i of INPUT")
    conv.add_argument("--quiet", action="store_true", help="no summary line")

    predict = sub.add_parser(
        "predict", help="write one prediction per line for a libFM/libSVM file",
        description=_wrap("Predict every row of DATA with a saved model: one number per line, the predicted "
                          "value (regression) or the probability of the positive class (classification). The "
                          "labels in DATA are ignored. A one-line summary goes to standard error unless --quiet.",
                          DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    predict.add_argument("data", metavar="DATA", help="data file (libFM/libSVM); its labels are ignored")
    predict.add_argument("--model", metavar="MODEL", required=True, help="a model written by `fastafm train`")
    predict.add_argument("--out", metavar="FILE", help="write the predictions to FILE (default: standard output)")
    predict.add_argument("--threads", type=Int(0).parse, default=None, metavar="N",
                         help="OpenMP threads, 0 = all cores (default: the model's setting)")
    predict.add_argument("--quiet", action="store_true", help="no summary on standard error")

    ev = sub.add_parser(
        "eval", help="print the model's metrics on a labelled libFM/libSVM file",
        description=_wrap("Evaluate a saved model on DATA and print one 'name: value' line per metric (or "
                          "one JSON object with --json). Regression: rows, rmse (predictions clipped to the "
                          "training label range, as in the per-epoch eval lines and the AFM paper) and mae. "
                          "Classification: rows, logloss, auc and accuracy; DATA's labels must be the two "
                          "labels the model was trained on.", DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    ev.add_argument("data", metavar="DATA", help="labelled data file (libFM/libSVM)")
    ev.add_argument("--model", metavar="MODEL", required=True, help="a model written by `fastafm train`")
    ev.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    ev.add_argument("--threads", type=Int(0).parse, default=None, metavar="N",
                    help="OpenMP threads, 0 = all cores (default: the model's setting)")
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


# ---------------------------------------------------------------------- helpers
def _status(args, message: str, stream=None) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=stream or sys.stdout, flush=True)


def _load_data(path: str, n_features: Optional[int] = None, stream=None):
    """load_libfm(path), or with `stream` = (open file, first bytes already read from it) the same parse of that
    stream (a pipe is read once: the CLI sniffs it and parses what it sniffed)."""
    from ..data.libfm import _load_libfm_stream, load_libfm

    try:
        if stream is not None:
            return _load_libfm_stream(stream[0], _display(path), n_features, stream[1])
        return load_libfm(path, n_features=n_features)
    except MemoryError as exc:
        raise CliError(f"cannot read data file {path}: out of memory ({_describe(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError) as exc:
        message = _describe(exc)
        if isinstance(exc, OSError) or not message.startswith(path):
            message = f"cannot read data file {path}: {message}"
        if n_features is not None and "does not fit n_features" in message:
            message += f"; the model has {n_features} features (train with --n-features to make room for more ids)"
        raise CliError(message, EXIT_DATA) from exc


def _widen(X, n_features: int):
    import scipy.sparse as sp

    return sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features), copy=False)


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip() or type(exc).__name__
    if "incompatible function arguments" in text:  # pybind11 lists every overload: keep its first sentence
        text = text.split(". ", 1)[0]
    return " ".join(text.split())  # one line


def _input_kind(path: str, what: str, code: int = EXIT_DATA) -> str:
    """'file' or 'pipe' for a data file (fastafm._files' policy), as a CliError when it cannot be read."""
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
             weights: Optional[str] = None):
    from ..data.cache import _convert_stream, convert

    _input_kind(source, "data file")
    if weights is not None:
        _input_kind(weights, "weights file")
    _check_writable(dest, "cache", EXIT_DATA)
    _refuse_same(dest, "cache", [source, weights], EXIT_DATA)
    try:
        if stream is not None:
            return _convert_stream(stream[0], _display(source), dest, stream[1], n_features=n_features,
                                   block_bytes=block_bytes, weights=weights)
        return convert(source, dest, n_features=n_features, block_bytes=block_bytes, weights=weights)
    except MemoryError as exc:
        raise CliError(f"cannot convert {source} to {dest}: out of memory ({_describe(exc)})", EXIT_DATA) from exc
    except (ValueError, OSError, TypeError) as exc:
        message = _describe(exc)
        if isinstance(exc, OSError) or not message.startswith(source):
            message = f"cannot convert {source} to {dest}: {message}"
        raise CliError(message, EXIT_DATA) from exc


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
    start = time.perf_counter()
    cache = _convert(args.input, args.output, args.n_features, weights=args.weights)
    _status(args, f"wrote {args.output}: {cache.n_rows} rows, {cache.nnz} non-zeros, {cache.n_features} features"
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


def _training_cache(args, stream=None):
    """The cache to stream TRAIN from, or None to load TRAIN in memory (from `stream` when TRAIN is a pipe)."""
    block_bytes = max(1, int(args.block_mb * 1e6))
    if stream is not None:
        if args.cache is None:
            return None
        if not args.cache:
            raise CliError(f"--cache needs a CACHE path when TRAIN ({args.train}) is a pipe", EXIT_USAGE)
        start = time.perf_counter()
        cache = _convert(args.train, args.cache, args.n_features, block_bytes, stream=stream, weights=args.weights)
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
        if args.n_features is None or cache.n_features == args.n_features:
            _status(args, f"using the cache {dest} (newer than {args.train})")
            return cache
    start = time.perf_counter()
    cache = _convert(args.train, dest, args.n_features, block_bytes, weights=args.weights)
    _status(args, f"converted {args.train} to the cache {dest} ({time.perf_counter() - start:.2f} s)")
    return cache


def _cmd_train(args) -> int:
    _check_writable(args.model, "model", EXIT_MODEL)
    _refuse_same(args.model, "model", [args.train, args.valid, args.cache or None], EXIT_MODEL)
    model = _make_model(args)  # usage errors before any data is read
    stream = _open_pipe(args.train) if _input_kind(args.train, "data file") == "pipe" else None
    try:
        return _train(args, model, stream)
    finally:
        if stream is not None:
            stream[0].close()


def _train(args, model, stream) -> int:
    cache = _training_cache(args, stream)
    if cache is not None:
        return _train_from_cache(args, cache)
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
        X, X_val = _widen(X, width), _widen(X_val, width)
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
    from ..data.cache import read_weights_file

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
    if metric is not None and metric not in _TASK_METRICS[args.task]:
        raise CliError(f"--early-stopping-metric must be {' or '.join(_TASK_METRICS[args.task])} for "
                       f"{args.task}, got {metric!r}", EXIT_USAGE)
    name = {"afm": "AFM", "fm": "FM"}[args.model_type] + ("Classifier" if args.task == "classification"
                                                           else "Regressor")
    return getattr(estimators, name)(**cli_values(args, signature), verbose=0 if args.quiet else 1)


def _epochs(model) -> str:
    """How long `fit` trains, for the status line."""
    text = f"at most {model.n_epochs} epochs" if model.early_stopping is not False else f"{model.n_epochs} epochs"
    if getattr(model, "pretrain", None) == "fm":
        text += ", after pretraining an FM"
    return text


def _train_from_cache(args, cache) -> int:
    """`train` streaming a cache: VALID (in memory) must fit the cache's width."""
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
    except (ValueError, TypeError) as exc:
        raise CliError(f"cannot train on {args.train}: {_describe(exc)}", EXIT_DATA) from exc
    seconds = time.perf_counter() - start
    try:
        model.save(args.model)
    except OSError as exc:
        raise CliError(f"cannot write model {args.model}: {_describe(exc)}", EXIT_MODEL) from exc
    _status(args, f"trained in {seconds:.1f} s; model written to {args.model}")
    return EXIT_OK


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
    X, _ = _load_data(args.data, model.n_features_in_)
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


def evaluate(model, X, y) -> dict:
    """The metrics `fastafm eval` prints, as a dict (NaN AUC when DATA holds one class only)."""
    from .. import metrics

    if _is_classifier(model):
        classes = np.asarray(model.classes_)
        if classes.dtype.kind not in "fiub":
            raise CliError(f"the model's labels {classes.tolist()} are not numbers, so they cannot match the "
                           f"labels of a libFM file", EXIT_DATA)
        classes = classes.astype(np.float64)
        unknown = np.setdiff1d(np.unique(y).astype(np.float64), classes)
        if unknown.size:
            raise CliError(f"labels {', '.join(f'{v:g}' for v in unknown[:5])} are not among the model's labels "
                           f"{classes[0]:g}, {classes[1]:g}", EXIT_DATA)
        proba = model.predict_proba(X)[:, 1]
        y01 = (y == classes[1]).astype(np.float64)
        return {"rows": int(X.shape[0]), "logloss": metrics.log_loss(y01, proba),
                "auc": metrics.roc_auc(y01, proba), "accuracy": float(np.mean((proba > 0.5) == (y01 == 1.0)))}
    pred = model.predict(X)
    clip = getattr(model, "label_range_", None)
    return {"rows": int(X.shape[0]), "rmse": metrics.rmse(y, pred, clip=clip), "mae": metrics.mae(y, pred)}


def _cmd_eval(args) -> int:
    model = _load_model(args.model)
    X, y = _load_data(args.data, model.n_features_in_)
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


COMMANDS = {"demo": _cmd_demo, "train": _cmd_train, "predict": _cmd_predict, "eval": _cmd_eval,
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
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        return _report(str(exc), exc.code)
    except MemoryError as exc:  # anywhere (e.g. a model too large for this machine): one line, not a traceback
        return _report(f"out of memory: {_describe(exc)}", EXIT_FAILURE)
    except Exception as exc:  # a bug, or an error not mapped above: still the documented one line
        return _report(f"{type(exc).__name__}: {_describe(exc)}", EXIT_FAILURE)


def _report(message: str, code: int) -> int:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"fastafm: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
