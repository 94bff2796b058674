"""The `fastafm` command line's parser: its commands, options (the hyperparameters from the one table,
fastafm.models.hyperparams), help texts and exit codes. The commands themselves are fastafm.cli.commands."""
from __future__ import annotations

import argparse
import textwrap

from ..models.hyperparams import BY_NAME, SIGNATURES, Float, Int, add_cli_arguments


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
MODEL_TYPES = {"afm": SIGNATURES["afm"], "fm": SIGNATURES["fm"], "fwfm": SIGNATURES["fwfm"]}
TASK_METRICS = {"regression": ("rmse", "mae"), "classification": ("logloss", "auc", "ne"),
                "rate": ("logloss", "ne")}  # rate: regression with --loss logistic


def _version() -> str:
    from .. import __version__

    return __version__



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
                       help="afm: AFMRegressor / AFMClassifier; fm: FMRegressor / FMClassifier; fwfm: "
                            "FwFMRegressor / FwFMClassifier, TRAIN and --valid then libFFM text (label "
                            "field:feature:value: a file, a pipe, or TRAIN a cache converted from one or from a "
                            "raw log), whose fields the model keeps (default afm)")
    hp = train.add_argument_group("hyperparameters (defaults are the library's, per model type)")
    add_cli_arguments(hp, MODEL_TYPES)  # one option per entry of the hyperparameter table with a flag
    class_weight = BY_NAME["class_weight"]  # the classifiers' own (not in MODEL_TYPES' signatures)
    hp.add_argument(class_weight.cli, dest="class_weight", type=class_weight.constraint.parse,
                    default=argparse.SUPPRESS, metavar=class_weight.metavar,
                    help=f"{class_weight.cli_help} (default none)")
    sampling = BY_NAME["negative_sampling_rate"]
    hp.add_argument(sampling.cli, dest="negative_sampling_rate", type=sampling.constraint.parse,
                    default=argparse.SUPPRESS, metavar=sampling.metavar, help=f"{sampling.cli_help} (default 1)")
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
        "convert", help="write a binary cache of a libFM/libSVM or libFFM file for out-of-core training",
        description=_wrap("Convert INPUT (libFM/libSVM text, or libFFM text: label field:feature:value, whose "
                          "fields the cache keeps) to the binary row cache OUTPUT in one streaming "
                          "pass with bounded memory (docs/cache.md). `fastafm train OUTPUT --model ...` then "
                          "trains from it in shuffled blocks without loading it.", DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    conv.add_argument("input", metavar="INPUT", nargs="+",
                      help="data file (libFM/libSVM or libFFM), or raw logs: CSV, TSV or Parquet files or glob "
                           "patterns")
    conv.add_argument("output", metavar="OUTPUT", help="the cache file to write")
    conv.add_argument("--n-features", type=Int(1).parse, metavar="N",
                      help="width of the data: feature ids must be < N (default: the largest id plus one)")
    conv.add_argument("--weights", metavar="FILE",
                      help="sample weights to store in the cache: a text file with one weight (a number >= 0) per "
                           "line, line i for row i of INPUT")
    conv.add_argument("--format", choices=("auto", "libfm", "libffm"), default="auto",
                      help="the text's format: auto tells it by the first feature token (field:feature:value is "
                           "libFFM, whose fields the cache keeps; feature:value is libFM); a file mixing the two "
                           "is an error (default auto)")
    conv.add_argument("--quiet", action="store_true", help="no summary line (and no progress bar)")
    add_convert_options(conv)

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
    ex = sub.add_parser(
        "explain", help="write every row's exact explanation (feature and pair contributions) as JSON lines",
        description=_wrap("Explain every row of DATA with a saved model (model.explain, docs/explain.md): one "
                          "JSON object per line with the row, its base_value (w0, plus log(negative sampling "
                          "rate) for a classifier), its score (decision_function: the logit for a "
                          "classifier), its features as [id, value x, contribution] and its pairs as [id i, "
                          "id j, term, attention], each by decreasing |contribution|; base_value plus the "
                          "features' contributions is the score.", DATA_FORMAT_HELP),
        epilog=EXIT_CODES_HELP, formatter_class=fmt)
    ex.add_argument("data", metavar="DATA", help="data file (libFM/libSVM); its labels are ignored")
    ex.add_argument("--model", metavar="MODEL", required=True, help="a model written by `fastafm train`")
    ex.add_argument("--out", metavar="FILE", help="write the explanations to FILE (default: standard output)")
    ex.add_argument("--top", type=Int(0).parse, default=10, metavar="K",
                    help="the K largest feature and pair contributions of each row, 0 for all (default 10)")
    ex.add_argument("--threads", type=Int(0).parse, default=None, metavar="N",
                    help="OpenMP threads, 0 = all cores (default: the model's setting)")
    for command in (train, predict, ev, ex):
        _add_pair_limit(command)
    for command in (predict, ev):
        add_read_options(command)
    return parser


def _sep(text: str) -> str:
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "space": " ", "semicolon": ";", "pipe": "|"}
    value = named.get(text.lower() if len(text) > 1 else text, text)
    if len(value.encode()) != 1:
        raise argparse.ArgumentTypeError(f"a separator is one character (or \\t, tab, comma, ...), got {text!r}")
    return value


def _bins(text: str):
    """--numeric-bins auto, none, N (every numeric column) or COL=N,COL=N."""
    if text in ("auto", "none"):  # (cli.raw maps "none" to None; not giving the option means "auto")
        return text
    if "=" not in text:
        return Int(2).parse(text)
    out = {}
    for part in text.split(","):
        col, _, n = part.partition("=")
        out[col.strip()] = Int(2).parse(n)
    return out


def _scaling(text: str):
    if text not in ("standard", "minmax", "none"):
        raise argparse.ArgumentTypeError(f"--numeric-scaling is standard, minmax or none, got {text!r}")
    return None if text == "none" else text


def add_convert_options(conv) -> None:
    raw = conv.add_argument_group(
        "raw logs (CSV, TSV, Parquet; docs/data.md)",
        "INPUT is read as a raw log when it is a .csv/.tsv/.parquet file (possibly .gz/.bz2/.xz), when several "
        "INPUTs or a glob are given, or when any of these options is. COL is a header name or, with "
        "--no-header, a 0-based index; COLS is comma-separated.")
    raw.add_argument("--label", metavar="COL", help="the label column (required for a raw log)")
    raw.add_argument("--numeric", metavar="COLS", help="numeric columns (scaled, or binned with --numeric-bins)")
    raw.add_argument("--categorical", metavar="COLS", help="categorical columns (default: every other column)")
    raw.add_argument("--ignore", metavar="COLS", help="columns to skip")
    raw.add_argument("--sep", type=_sep, metavar="CHAR",
                     help="the separator (default: ',' for .csv, a tab otherwise; \\t or tab for a tab)")
    raw.add_argument("--no-header", dest="header", action="store_false",
                     help="the first line is a row, not column names (columns are then 0-based indices)")
    raw.add_argument("--hash-buckets", type=Int(1).parse, metavar="N",
                     help="hash each categorical value into N ids per field (64-bit FNV-1a of its bytes, modulo "
                          "N; stable across processes and machines) instead of counting a vocabulary")
    raw.add_argument("--min-frequency", type=Int(1).parse, default=1, metavar="N",
                     help="values seen fewer than N times share the field's unknown id (default 1)")
    raw.add_argument("--numeric-scaling", type=_scaling, default="standard", metavar="{standard,minmax,none}",
                     help="numeric columns: (x - mean) / std, (x - min) / (max - min) or as they are "
                          "(default standard)")
    raw.add_argument("--numeric-bins", type=_bins, metavar="auto|none|N|COL=N,...",
                     help="quantile bins instead of scaling: auto (10 bins for count-like columns, every value a "
                          "non-negative integer; the default), none, N for every numeric column, or per column")
    raw.add_argument("--numeric-missing", choices=("zero", "indicator"), default="zero",
                     help="a missing numeric value: 0, or its own indicator id (default zero)")
    raw.add_argument("--max-categories", type=Int(1).parse, metavar="N",
                     help="the most distinct values counted exactly, over all fields (default 4,000,000); more "
                          "is an error suggesting --hash-buckets")


def add_read_options(command) -> None:
    command.add_argument("--sep", type=_sep, metavar="CHAR",
                         help="for a model trained from a raw log: DATA's separator (default: from its extension, "
                              "else the training file's)")


def _add_pair_limit(command) -> None:
    from ..data.limits import DEFAULT_MAX_PAIRS_PER_ROW, ENV

    command.add_argument("--max-pairs-per-row", type=Int(1).parse, default=None, metavar="N",
                         help="refuse a row of more than N feature pairs (m(m-1)/2 for m non-zeros: AFM's work "
                              f"per row); default {ENV} or {DEFAULT_MAX_PAIRS_PER_ROW} (rows of up to 8,192 "
                              "non-zeros); FM and --no-attention are not limited")


