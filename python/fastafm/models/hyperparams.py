"""The one table of hyperparameters: default, constraint, help text and command-line flag of each.

It drives the estimators' validation (`validate`), the `fastafm train` options (`add_cli_arguments`), the
settings handed to the core (`core_settings`, for fastafm.training.engine.make_config, the same on Dask workers) and
the README's hyperparameter table (`markdown_table`). Each estimator lists the names it takes in
`SIGNATURES`, with its own defaults where they differ; its `__init__` is written out (scikit-learn reads the
signature) and tests/test_structure.py checks that every `__init__` agrees with this table.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .._compat import InvalidParameterError
from ..data.validation import check_float, check_int

_INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class Int:
    minimum: int
    maximum: Optional[int] = None
    allow_none: bool = False

    def check(self, value, name: str) -> None:
        check_int(value, name, self.minimum, allow_none=self.allow_none, maximum=self.maximum)

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if value < self.minimum:
            raise argparse.ArgumentTypeError(f"must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise argparse.ArgumentTypeError(f"must be <= {self.maximum}, got {value}")
        return value

    def describe(self) -> str:
        return (f"int >= {self.minimum}" + ("" if self.maximum is None else f", <= {self.maximum}")
                + (" or None" if self.allow_none else ""))


@dataclass(frozen=True)
class Float:
    low: float
    high: Optional[float] = None  # exclusive, unless high_open is False
    low_open: bool = False
    high_open: bool = True

    def check(self, value, name: str) -> None:
        check_float(value, name, self.low, self.high, low_open=self.low_open, high_open=self.high_open)

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
        ok = (np.isfinite(value) and (value > self.low if self.low_open else value >= self.low)
              and (self.high is None or (value < self.high if self.high_open else value <= self.high)))
        if not ok:
            raise argparse.ArgumentTypeError(f"must be in {self.describe()}, got {text}")
        return value

    def describe(self) -> str:
        lo = "(" if self.low_open else "["
        hi = "inf)" if self.high is None else f"{self.high}{')' if self.high_open else ']'}"
        return f"{lo}{self.low}, {hi}"


@dataclass(frozen=True)
class AutoOrFloat:
    """"auto" or a float in `number`'s range (learning_rate); on the command line auto or a number."""

    number: Float

    def check(self, value, name: str) -> None:
        if isinstance(value, str) and value == "auto":
            return
        if isinstance(value, str):
            raise ValueError(f"{name} must be 'auto' or a number in {self.number.describe()}, got {value!r}")
        self.number.check(value, name)

    def parse(self, text: str):
        return "auto" if text == "auto" else self.number.parse(text)

    def describe(self) -> str:
        return f"'auto' or a number in {self.number.describe()}"


@dataclass(frozen=True)
class Choice:
    values: tuple

    def check(self, value, name: str) -> None:
        if not isinstance(value, str) or value not in self.values:
            raise ValueError(f"{name} must be {' or '.join(repr(v) for v in self.values)}, got {value!r}")

    def describe(self) -> str:
        return " or ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Bool:
    def check(self, value, name: str) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")

    def describe(self) -> str:
        return "bool"


@dataclass(frozen=True)
class Seed:
    """None, a numpy Generator/RandomState, or an integer >= 0."""

    def check(self, value, name: str) -> None:
        if value is None or isinstance(value, (np.random.Generator, np.random.RandomState)):
            return
        check_int(value, name, 0)

    def parse(self, text: str) -> int:
        return Int(0).parse(text)

    def describe(self) -> str:
        return "None, int >= 0 or a numpy Generator"


@dataclass(frozen=True)
class OptionalName:
    """None or a string; which strings are valid depends on the estimator (early_stopping_metric)."""

    def check(self, value, name: str) -> None:
        return None  # the estimator checks it against its own metrics (_callbacks.check_metric)

    def parse(self, text: str):
        # "none" is the help's spelling of None (the loss); `fastafm train` checks the others against the task
        return None if text == "none" else text

    def describe(self) -> str:
        return "None or a metric name"


@dataclass(frozen=True)
class AutoOrBool:
    """"auto", True or False (early_stopping); on the command line auto, on or off."""

    def check(self, value, name: str) -> None:
        if isinstance(value, (bool, np.bool_)) or (isinstance(value, str) and value == "auto"):
            return
        raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")

    def parse(self, text: str):
        words = {"auto": "auto", "on": True, "off": False}
        if text not in words:
            raise argparse.ArgumentTypeError(f"must be auto, on or off, got {text!r}")
        return words[text]

    def describe(self) -> str:
        return "'auto', True or False"


@dataclass(frozen=True)
class OptionalChoice:
    """One of `values` or None (pretrain); on the command line one of the values or none."""

    values: tuple

    def check(self, value, name: str) -> None:
        if value is None or (isinstance(value, str) and value in self.values):
            return
        raise ValueError(f"{name} must be {' or '.join(repr(v) for v in self.values)} or None, got {value!r}")

    def parse(self, text: str):
        if text == "none":
            return None
        if text not in self.values:
            raise argparse.ArgumentTypeError(f"must be {', '.join(self.values)} or none, got {text!r}")
        return text

    def describe(self) -> str:
        return " or ".join(repr(v) for v in self.values) + " or None"


@dataclass(frozen=True)
class ClassWeight:
    """None, "balanced" or a dict {label: weight >= 0}; on the command line none, balanced or LABEL:W,LABEL:W."""

    def check(self, value, name: str) -> None:
        from ..training.weights import check_class_weight

        check_class_weight(value, name)

    def parse(self, text: str):
        if text in ("none", "balanced"):
            return None if text == "none" else text
        out = {}
        for item in text.split(","):
            label, sep, weight = item.partition(":")
            try:
                if not sep:
                    raise ValueError
                out[float(label)] = float(weight)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be none, balanced or LABEL:WEIGHT,LABEL:WEIGHT (e.g. "
                                                 f"0:1,1:5), got {text!r}") from None
            if not (np.isfinite(out[float(label)]) and out[float(label)] >= 0):
                raise argparse.ArgumentTypeError(f"class weights must be finite and >= 0, got {weight!r}")
        return out

    def describe(self) -> str:
        return "None, 'balanced' or a dict {label: weight}"


@dataclass(frozen=True)
class Fields:
    """None or the field of every feature (FwFM): an array-like, a dict {id: field} or (start, stop) id ranges;
    checked against the data's width in fit (fastafm.data.fields.field_array)."""

    def check(self, value, name: str) -> None:
        if value is None or isinstance(value, dict):
            return
        arr = np.asarray(value)
        if arr.ndim not in (1, 2) or not (arr.size == 0 or np.issubdtype(arr.dtype, np.number)):
            raise ValueError(f"{name} must be None, an array of field numbers, a dict {{id: field}} or (start, stop) "
                             f"id ranges, got {type(value).__name__} of shape {arr.shape}")

    def describe(self) -> str:
        return "None or the field of every feature"


@dataclass(frozen=True)
class Anything:
    def check(self, value, name: str) -> None:
        return None

    def describe(self) -> str:
        return "any"


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Hyperparameter:
    name: str
    default: Any
    constraint: Any
    help: str                       # one phrase: the README table and the CLI help
    cli: Optional[str] = None       # the `fastafm train` flag, None: not on the command line
    metavar: Optional[str] = None
    cli_default: Any = None         # where the command line's default differs (--seed 0)
    cli_help: Optional[str] = None  # where the command line's wording differs from `help`
    core: bool = False              # handed to the core's TrainConfig (core_settings)


#: learning_rate="auto" by family and optimizer, for rows of up to AUTO_RATE_NNZ non-zeros (docs/accuracy.md
#: has the measurements): Adagrad's values are
#: the defaults before "auto" existed; SGD's and Adam's the best of {1e-3, 3e-3, 1e-2} on Frappe regression
#: and classification (seed 0; SGD diverged at 1e-2). SGD's step grows with the batch-summed loss, so it must
#: be small; Adam's step is ~lr per coordinate whatever the gradient's scale.
AUTO_LEARNING_RATES = {
    "afm": {"adagrad": 0.1, "sgd": 0.003, "adam": 0.01},
    "fm": {"adagrad": 0.05, "sgd": 0.003, "adam": 0.01},
    "fwfm": {"adagrad": 0.05, "sgd": 0.003, "adam": 0.01},  # FM's: an FwFM starts as the FM (R = 1)
}

#: The rates above hold for rows of up to this many non-zeros on average (Frappe has 10, MovieLens 6-11, the
#: 3- and 8-field synthetic sets 3 and 8); with more, "auto" divides them by mean_nnz / 10. One step moves every
#: weight a row touches by about the learning rate (Adagrad and Adam normalise the gradient; SGD's gradient of
#: w_i is g x_i), so the output moves by about nnz steps: at Criteo's 39 fields the unscaled rates overshoot
#: (synth-39f, docs/accuracy.md: AFM log loss 0.5880 at 0.1, 0.5763 at 0.1 x 10/39; FM 0.6557 and 0.5865).
AUTO_RATE_NNZ = 10.0


def _auto_text(sep: str = ", ") -> str:
    """The "auto" values, for the help texts: adagrad 0.1 (FM 0.05), sgd ..., adam ..."""
    afm, fm = AUTO_LEARNING_RATES["afm"], AUTO_LEARNING_RATES["fm"]
    return sep.join(f"{opt} {afm[opt]}" + (f" (FM {fm[opt]})" if fm[opt] != afm[opt] else "") for opt in afm)


TABLE: tuple = (
    Hyperparameter("embedding_dim", 64, Int(1, _INT32_MAX), "k, size of the feature embeddings",
                   "--embedding-dim", "K"),
    Hyperparameter("attention_dim", 64, Int(1, _INT32_MAX), "t, hidden size of the attention network (AFM only)",
                   "--attention-dim", "T"),
    Hyperparameter("dropout", 0.5, Float(0.0, 1.0),
                   "drop ratio in [0, 1) on the pooled pair-wise layer (training only, inverted scaling)",
                   "--dropout", "RHO", core=True),
    Hyperparameter("attention_l2", 2.0, Float(0.0),
                   "L2 λ on the attention weights W, once per mini-batch (AFM only)", "--attention-l2", "LAMBDA",
                   core=True),
    Hyperparameter("l2", 0.0, Float(0.0), "L2 on the rows of V and w a mini-batch touches", "--l2", "L2", core=True),
    Hyperparameter("frequency_l2", 1.0, Float(0.0),
                   "L2 on V and w by frequency: per epoch id i pays frequency_l2 / (2 n_i) · (‖V[i]‖² + w[i]²), "
                   "n_i its occurrences in the training rows (rare ids shrink, frequent ones barely)",
                   "--frequency-l2", "L2", core=True),
    Hyperparameter("learning_rate", "auto", AutoOrFloat(Float(0.0, low_open=True)),
                   "step size (the batch loss is a **sum** over rows); `\"auto\"`: the optimizer's own "
                   f"({_auto_text()}), divided by mean non-zeros a row / 10 above 10; `learning_rate_` after fit",
                   "--learning-rate", "LR", core=True,
                   cli_help=f"step size (the batch loss is a sum over rows); auto: the optimizer's own ({_auto_text()}), "
                            "divided by mean non-zeros a row / 10 above 10"),
    Hyperparameter("optimizer", "adagrad", Choice(("adagrad", "sgd", "adam")),
                   "`\"adagrad\"`, `\"sgd\"` or `\"adam\"` (lazy sparse Adam; optimizer state: docs/model.md)",
                   "--optimizer", core=True,
                   cli_help="the optimizer"),
    Hyperparameter("batch_size", 128, Int(1, _INT32_MAX), "rows per mini-batch", "--batch-size", "N", core=True),
    Hyperparameter("n_epochs", 20, Int(0), "epochs of `fit` (the maximum with early stopping)", "--epochs", "N",
                   cli_help="training epochs (the maximum with early stopping)"),
    Hyperparameter("init_std", 0.01, Float(0.0), "std of the initial embeddings", "--init-std", "STD"),
    Hyperparameter("attention", True, Bool(),
                   "False: FM-like uniform pooling with a learned projection p (AFM only)", "--no-attention",
                   cli_help="FM-like uniform pooling (every pair weight 1) instead of attention"),
    Hyperparameter("n_threads", 0, Int(0, 4096), "OpenMP threads (0 = all cores)", "--threads", "N", core=True),
    Hyperparameter("precision", "fp32", Choice(("fp32", "bf16")),
                   "training arithmetic of the attention GEMMs: `\"fp32\"`, or `\"bf16\"` (bf16 inputs, float32 sums "
                   "and weights; needs a CPU with AVX512_BF16, docs/model.md); the model predicts in float32 (AFM only)",
                   "--precision", core=True,
                   cli_help="training arithmetic of the attention GEMMs: fp32, or bf16 (bf16 inputs, float32 sums "
                            "and weights; needs a CPU with AVX512_BF16)"),
    Hyperparameter("random_state", None, Seed(),
                   "seeds initialisation, shuffling and dropout; with a fixed seed and n_threads a fit is "
                   "bit-identical", "--seed", "N", cli_default=0,
                   cli_help="random seed for initialisation, shuffling and dropout; with the same seed and --threads "
                            "a run is bit-identical"),
    Hyperparameter("verbose", 0, Int(0), "a progress bar per epoch (tqdm) and one line per epoch"),
    Hyperparameter("early_stopping", "auto", AutoOrBool(),
                   "`\"auto\"`: on with an `eval_set` or at least 1,000 training rows; True/False force it",
                   "--early-stopping", "{auto,on,off}",
                   cli_help="early stopping: auto (on with --valid or at least 1,000 training rows), on or off"),
    Hyperparameter("validation_fraction", 0.1, Float(0.0, 1.0, low_open=True),
                   "share of the training rows held out (seeded, stratified for classifiers) for early stopping "
                   "when no `eval_set` is given", "--validation-fraction", "F",
                   cli_help="share of TRAIN held out for early stopping when no --valid is given"),
    Hyperparameter("n_iter_no_change", 2, Int(1),
                   "early stopping: stop after this many epochs without improvement; the best epoch is restored",
                   "--n-iter-no-change", "N"),
    Hyperparameter("tol", 0.0, Float(0.0),
                   "early stopping: how much the monitored score must improve to count", "--tol", "TOL"),
    Hyperparameter("early_stopping_metric", None, OptionalName(),
                   "the metric early stopping watches (rmse/mae, logloss/auc; None: the loss, rmse/logloss)",
                   "--early-stopping-metric", "METRIC",
                   cli_help="the metric early stopping watches: rmse or mae (regression), logloss or auc "
                            "(classification); none: the loss"),
    Hyperparameter("linear_fallback", True, Bool(),
                   "with early stopping on rows in memory, also fit the linear model w0 + w.x exactly (its L2 "
                   "chosen on validation rows); keep the mix (1 - s) model + s linear validating best (`linear_share_`)",
                   "--no-linear-fallback",
                   cli_help="do not fit the exact linear model beside the model (it is mixed in at the share "
                            "that validates best)"),
    Hyperparameter("pretrain", "fm", OptionalChoice(("fm", "linear+fm")),
                   "`\"fm\"`: `fit` first trains an FM (its own early stopping) and warm-starts AFM from it; "
                   "`\"linear+fm\"`: first the linear model (V = 0), the FM from it, then AFM, and with early "
                   "stopping the best-validating mix of AFM and linear model is kept; None: AFM from scratch (AFM only)",
                   "--pretrain", "{fm,linear+fm,none}",
                   cli_help="fm: first train an FM with its own early stopping and warm-start AFM from it; "
                            "linear+fm: the linear model first, then the FM from it, then AFM (mixed with the "
                            "linear model at the share that validates best); none: AFM from scratch"),
    Hyperparameter("class_weight", None, ClassWeight(),
                   "None, `\"balanced\"` (class c weighs n_rows / (2 · count(c))) or a dict {label: weight}: each "
                   "row's loss times its class's weight, and times its `sample_weight` (classifiers only)",
                   "--class-weight", "{none,balanced,LABEL:W,...}",
                   cli_help="class weights (classification only): none, balanced (n_rows / (2 count(c))) or "
                            "LABEL:WEIGHT,LABEL:WEIGHT, e.g. 0:1,1:5"),
    Hyperparameter("negative_sampling_rate", 1.0, Float(0.0, 1.0, low_open=True, high_open=False),
                   "the probability with which negative rows were kept in the training data (downsampled logs): "
                   "`decision_function`, `predict_proba` and ONNX add log(rate) to the logit, so probabilities "
                   "refer to the full population (classifiers only)", "--negative-sampling-rate", "RATE",
                   cli_help="the probability with which negatives were kept in TRAIN (downsampled logs): "
                            "probabilities are corrected to the full population (classification only)"),
    Hyperparameter("loss", "squared", Choice(("squared", "logistic")),
                   "`\"squared\"`, or `\"logistic\"`: y is a rate in [0, 1] (clicks / impressions, "
                   "`sample_weight` = impressions), trained as the expanded 0/1 rows; predicts probabilities "
                   "(regressors only)", "--loss",
                   cli_help="regression only: squared, or logistic for rate targets in [0, 1] (clicks / "
                            "impressions; the weights are the impressions)"),
    Hyperparameter("fields", None, Fields(),
                   "the field of every feature (an array of length n_features, a dict or (start, stop) id ranges: "
                   "`FieldEncoder().fields_`, `load_libffm`'s third output); None: one field (FwFM), none "
                   "(AFM: field_aware then needs them, or a raw log's cache, which carries them)"),
    Hyperparameter("field_aware", None, OptionalChoice(("weights", "logits", "both", "auto")),
                   "field-pair terms in AFM (docs/model.md): `\"weights\"` a learned weight r per pair of fields "
                   "on the pooled pairs, `\"logits\"` a learned term s per pair of fields in the attention "
                   "logits, `\"both\"`; needs `fields` (or a raw log's cache) and attention; None: neither; "
                   "`\"auto\"` (AFMClassifier's default): `\"both\"` where the fields are known and the fit stops "
                   "early, else None (AFM only)",
                   "--field-aware", "{weights,logits,both,auto,none}", cli_help="field-pair terms in AFM: weights (r on the pooled pairs), logits "
                   "(s in the attention logits), both, auto (both where the fields are known: a raw log's "
                   "cache; the classifier's default), or none; weights, logits and both read TRAIN as libFFM"),
    Hyperparameter("sync_rows", 16384, Int(1), "rows each worker trains between synchronisations (Dask only)"),
    Hyperparameter("combine", "average", Choice(("sum", "average")),
                   "how the workers' updates are combined (Dask only)"),
    Hyperparameter("client", None, Anything(), "the dask.distributed Client; None: the current one (Dask only)"),
)
BY_NAME = {hp.name: hp for hp in TABLE}

def resolve_learning_rate(value, optimizer: str, family: str, row_nnz=None) -> float:
    """The learning rate a fit uses: `value`, or for "auto" the family's default for `optimizer`, divided by
    row_nnz / AUTO_RATE_NNZ when the training rows' mean non-zeros a row `row_nnz` exceeds AUTO_RATE_NNZ
    (None: not known, e.g. a model file from before the rule, whose rate stays the table's)."""
    if isinstance(value, str) and value == "auto":
        rate = AUTO_LEARNING_RATES[family][optimizer]
        if row_nnz is not None and row_nnz > AUTO_RATE_NNZ:
            rate *= AUTO_RATE_NNZ / float(row_nnz)
        return rate
    return float(value)


def pretrain_learning_rate(value, optimizer: str):
    """The learning rate of the FM that pretrain="fm" fits for an AFM of learning rate `value`: "auto" stays
    "auto" (the FM's own default); a number is scaled by the ratio of the two families' defaults for
    `optimizer` (the setting of the measurements in docs/accuracy.md)."""
    if isinstance(value, str) and value == "auto":
        return "auto"
    return float(value) * AUTO_LEARNING_RATES["fm"][optimizer] / AUTO_LEARNING_RATES["afm"][optimizer]


_COMMON = ("embedding_dim", "dropout", "l2", "frequency_l2", "learning_rate", "optimizer", "batch_size", "n_epochs",
           "init_std")
_AFM = ("embedding_dim", "attention_dim", "dropout", "attention_l2", "l2", "frequency_l2", "learning_rate",
        "optimizer", "batch_size", "n_epochs", "init_std", "attention", "n_threads", "random_state", "verbose")
_EARLY_STOPPING = ("early_stopping", "validation_fraction", "n_iter_no_change", "tol", "early_stopping_metric")
#: the one-process estimators' (the Dask ones have no exact linear stage)
_FALLBACK = ("linear_fallback",)
_FIELD_AWARE = ("field_aware", "fields")  # AFM's field-pair terms (last: after the existing arguments)


@dataclass(frozen=True)
class Signature:
    """The hyperparameters an estimator takes, in its __init__'s order, and its own defaults."""

    names: tuple
    defaults: dict = field(default_factory=dict)

    def default(self, name: str):
        return self.defaults.get(name, BY_NAME[name].default)


SIGNATURES = {
    # The regressors: their family's hyperparameters and the loss (squared, or logistic on rate targets).
    "afm": Signature(_AFM + _EARLY_STOPPING + _FALLBACK + ("pretrain", "loss") + _FIELD_AWARE + ("precision",)),
    # FM: no attention network (its own "auto" learning rates: AUTO_LEARNING_RATES).
    "fm": Signature(_COMMON + ("n_threads", "random_state", "verbose") + _EARLY_STOPPING + _FALLBACK + ("loss",)),
    # The classifiers: their family's hyperparameters, class_weight and negative_sampling_rate.
    # field_aware "auto": field-pair terms where the fields are known (docs/accuracy.md: they won or tied on
    # every classification set; Frappe's regression got worse, so the regressor's default stays None).
    "afm_classifier": Signature(_AFM + _EARLY_STOPPING + _FALLBACK + ("pretrain", "class_weight",
                                                                    "negative_sampling_rate") + _FIELD_AWARE
                                + ("precision",), {"field_aware": "auto"}),
    "fm_classifier": Signature(_COMMON + ("n_threads", "random_state", "verbose") + _EARLY_STOPPING + _FALLBACK
                               + ("class_weight", "negative_sampling_rate")),
    # FwFM: FM's hyperparameters and the fields (a per-feature setting, as HistGradientBoosting's
    # categorical_features: kept by clone, get_params and model files).
    "fwfm": Signature(_COMMON + ("fields", "n_threads", "random_state", "verbose") + _EARLY_STOPPING + _FALLBACK),
    "fwfm_classifier": Signature(_COMMON + ("fields", "n_threads", "random_state", "verbose") + _EARLY_STOPPING
                                 + _FALLBACK + ("class_weight",)),
    "dask": Signature(_AFM + _EARLY_STOPPING + ("sync_rows", "combine", "client") + _FIELD_AWARE),
    "dask_fwfm": Signature(_COMMON + ("fields", "n_threads", "random_state", "verbose") + _EARLY_STOPPING
                           + ("sync_rows", "combine", "client")),
    # The Dask classifiers: their local classifier's class_weight (and AFM's negative_sampling_rate) too.
    "dask_classifier": Signature(_AFM + _EARLY_STOPPING + ("class_weight", "negative_sampling_rate", "sync_rows",
                                                           "combine", "client") + _FIELD_AWARE),
    "dask_fwfm_classifier": Signature(_COMMON + ("fields", "n_threads", "random_state", "verbose") + _EARLY_STOPPING
                                      + ("class_weight", "sync_rows", "combine", "client")),
}


def store(estimator, arguments: dict) -> None:
    """An estimator __init__'s body: every argument (`locals()`) kept as the attribute of its name, unchanged,
    as scikit-learn requires."""
    for name, value in arguments.items():
        if name != "self":
            setattr(estimator, name, value)


def validate(values: dict, names) -> None:
    """Check each of `names` in values against its constraint: an InvalidParameterError naming it, both a
    ValueError and a TypeError whatever was wrong (scikit-learn's convention; the constraints raise either)."""
    for name in names:
        try:
            BY_NAME[name].constraint.check(values[name], name)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, InvalidParameterError):
                raise
            raise InvalidParameterError(str(exc)) from None


def values_of(obj, names) -> dict:
    return {name: getattr(obj, name) for name in names}


def core_settings(values: dict, loss: str, attention: bool, learn_projection: bool, n_threads=None,
                  family: str = "afm", row_nnz=None) -> dict:
    """The plain (picklable) settings of the core's TrainConfig: the table's core entries from `values`, plus
    what the model spec decides (loss, pooling, projection), with learning_rate "auto" resolved for the
    optimizer, `family` ("afm" or "fm") and the training rows' mean non-zeros `row_nnz` (the state's).
    `n_threads` overrides the hyperparameter (Dask: a worker's own thread count)."""
    out = {hp.name: values.get(hp.name, hp.default) for hp in TABLE if hp.core}
    out["learning_rate"] = resolve_learning_rate(out["learning_rate"], out["optimizer"], family, row_nnz)
    out.update(loss=loss, attention=bool(attention), learn_projection=bool(learn_projection))
    if n_threads is not None:
        out["n_threads"] = int(n_threads)
    return out


# ---------------------------------------------------------------------------------------------- CLI, docs
def add_cli_arguments(group, signatures: dict) -> None:
    """The `fastafm train` options of every table entry with a flag that one of `signatures` (label ->
    Signature, the first the default model) takes. No option has an argparse default: `cli_values` fills in
    the chosen estimator's own defaults, so each model type gets its estimator's defaults."""
    for hp in TABLE:
        if hp.cli is None or not any(hp.name in sig.names for sig in signatures.values()):
            continue
        help_text = _cli_help(hp)
        if isinstance(hp.constraint, Bool):  # a True default: the flag turns it off
            group.add_argument(hp.cli, dest=hp.name, action="store_false", default=argparse.SUPPRESS,
                               help=help_text + _only(hp.name, signatures))
            continue
        kwargs: dict = {"dest": hp.name, "default": argparse.SUPPRESS,
                        "help": help_text + _cli_default_text(hp, signatures)}
        if isinstance(hp.constraint, Choice):
            kwargs["choices"] = hp.constraint.values
        else:
            kwargs["type"] = hp.constraint.parse
            kwargs["metavar"] = hp.metavar
        group.add_argument(hp.cli, **kwargs)


def _only(name: str, signatures: dict) -> str:
    takers = [label for label, sig in signatures.items() if name in sig.names]
    return "" if len(takers) == len(signatures) else f" ({', '.join(t.upper() for t in takers)} only)"


def _cli_default_text(hp: Hyperparameter, signatures: dict) -> str:
    def shown(value):
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    if hp.cli_default is not None:
        return f" (default {hp.cli_default})"
    texts = [(label, shown(sig.default(hp.name))) for label, sig in signatures.items() if hp.name in sig.names]
    if len(texts) < len(signatures):
        return f" ({texts[0][0].upper()} only, default {texts[0][1]})"
    if len({str(t) for _, t in texts}) == 1:
        return f" (default {texts[0][1]})"
    return " (default " + ", ".join(f"{label} {t}" for label, t in texts) + ")"


def _cli_help(hp: Hyperparameter) -> str:
    """The help text without Markdown, and without "(AFM only)" (added per model type by the caller)."""
    text = hp.cli_help or hp.help.replace(" (AFM only)", "")
    return text.replace("**", "").replace("`", "").replace("%", "%%")


def cli_given(args) -> set:
    """The table's hyperparameters given on the command line (argparse namespace)."""
    return {hp.name for hp in TABLE if hp.cli is not None and hasattr(args, hp.name)}


def cli_values(args, signature: Signature) -> dict:
    """The keyword arguments of the estimator of `signature` from the command line: each option given, else
    the command line's default (--seed 0) or the estimator's own."""
    out = {}
    for hp in TABLE:
        if hp.cli is None or hp.name not in signature.names:
            continue
        default = hp.cli_default if hp.cli_default is not None else signature.default(hp.name)
        out[hp.name] = getattr(args, hp.name, default)
    return out


def _default_text(name: str) -> str:
    afm, fm = SIGNATURES["afm"], SIGNATURES["fm"]
    text = repr(BY_NAME[name].default).replace("'", '"')
    text = f"`{text}`" if isinstance(BY_NAME[name].default, str) else text
    if name in fm.names and fm.default(name) != afm.default(name):
        text += f" (FM: {fm.default(name)})"
    classifier = SIGNATURES["afm_classifier"]
    if name in classifier.names and classifier.default(name) != afm.default(name):
        text += " (AFMClassifier: " + repr(classifier.default(name)).replace("'", '"') + ")"
    return text


def markdown_table() -> str:
    """The README's hyperparameter table (tests/test_structure.py checks the README holds it)."""
    lines = ["| name | default | meaning |", "|---|---|---|"]
    lines += [f"| `{hp.name}` | {_default_text(hp.name)} | {hp.help} |" for hp in TABLE]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m fastafm.models.hyperparams: print the README table
    print(markdown_table())
