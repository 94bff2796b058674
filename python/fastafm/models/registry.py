"""The estimator classes by name, with what each fixes about the model: the model files, the Dask driver
and the CLI build estimators and model specs through here, never from each other's attributes.

fastafm.models.estimators registers its classes when it is imported (on first use of the registry at the latest).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ..data.fields import field_array, n_fields_of
from .params import FIELD_AWARE_AUTO, FIELD_AWARE_PARAMS, FWFM_PARAM, resolved_field_aware
from ..objectives import REGRESSION_LOSSES, objective
from .hyperparams import SIGNATURES
from ..training.state import ModelSpec, TrainingState


@dataclass(frozen=True)
class Kind:
    """One estimator class: its name, loss, family ("afm" or "fm") and the settings its family fixes."""

    name: str
    cls: type
    loss: str               # "squared" or "logistic"
    family: str             # "afm": attention pooling (or uniform with attention=False); "fm": uniform, p = 1;
                            # "fwfm": FM with a weight per field pair (R)
    fixed: dict = field(default_factory=dict)

    @property
    def objective(self):
        """The objective of the loss (fastafm.objectives): targets, metrics, prediction transform."""
        return objective(self.loss)

    @property
    def classifier(self) -> bool:
        return self.objective.classifier

    @property
    def metrics(self) -> tuple:
        """The eval metrics (the eval_ keys of history_), the first the one early stopping watches by default."""
        return self.objective.metrics

    @property
    def signature(self):
        return SIGNATURES[f"{self.family}_classifier" if self.classifier else self.family]

    def values(self, hyperparameters: dict) -> dict:
        """The hyperparameters with what the family fixes (FM: no attention network, p fixed at 1)."""
        return {**hyperparameters, **self.fixed}

    def objective_of(self, hyperparameters: dict):
        """The objective the hyperparameters choose: a regressor's `loss` ("logistic": rate targets)."""
        if "loss" in hyperparameters and not self.classifier:
            return objective(REGRESSION_LOSSES[hyperparameters["loss"]])
        return self.objective

    def field_aware(self, hyperparameters: dict, fields_known: bool = False):
        """AFM's field_aware mode with "auto" resolved: by the `fields` hyperparameter, or `fields_known` (a
        cache's or a model file's fields, a fitted state's field array), and attention; None for the other
        families."""
        if self.family != "afm":
            return None
        known = fields_known or hyperparameters.get("fields") is not None
        # "auto" leaves uniform pooling (attention=False) plain: its field-pair weights are FwFM's
        return resolved_field_aware(hyperparameters.get("field_aware"),
                                    known and bool(hyperparameters.get("attention", True)))

    def fitted_field_aware(self, hyperparameters: dict, has_fields: bool):
        """The mode a fitted model (or a model file) has: "auto" resolved by whether it holds the fields alone,
        since a fit can settle "auto" to None where fields were given (`settle_field_aware`)."""
        return resolved_field_aware(hyperparameters.get("field_aware"), has_fields) if self.family == "afm" else None

    @staticmethod
    def settle_field_aware(hyperparameters: dict, stopping: bool) -> dict:
        """The hyperparameters a fit trains with: field_aware "auto" is None without early stopping (its field-pair
        terms were chosen with validation rows; without them they overfit: docs/accuracy.md)."""
        if hyperparameters.get("field_aware") == FIELD_AWARE_AUTO and not stopping:
            return {**hyperparameters, "field_aware": None}
        return hyperparameters

    def takes_fields(self, hyperparameters: dict) -> bool:
        """Whether a fit reads the fields a cache carries: FwFM, and AFM with field_aware set ("auto" too)."""
        return self.family == "fwfm" or (self.family == "afm" and hyperparameters.get("field_aware") is not None)

    def field_params(self, hyperparameters: dict, fields_known: bool = False) -> tuple:
        """The field-pair parameters: FwFM's R, field-aware AFM's R and/or S (field_aware), none otherwise."""
        if self.family == "fwfm":
            return (FWFM_PARAM,)
        return FIELD_AWARE_PARAMS[self.field_aware(hyperparameters, fields_known)] if self.family == "afm" else ()

    def fields(self, hyperparameters: dict, n_features: int):
        """FwFM: the field of every feature (int32), from the `fields` hyperparameter (None: one field);
        field-aware AFM: the same, required (a clear error without it); None for the others."""
        if not self.field_params(hyperparameters):
            return None
        given = hyperparameters.get("fields")
        if self.family == "afm":
            mode = self.field_aware(hyperparameters)
            if not hyperparameters.get("attention", True):
                raise ValueError(f"field_aware={mode!r} acts on the attention: it needs attention=True (for "
                                 "uniform pooling with field-pair weights use FwFMRegressor/FwFMClassifier)")
            if given is None:
                raise ValueError(f"field_aware={mode!r} needs the field of every feature: pass fields= (e.g. "
                                 "FieldEncoder().fields_, load_libffm's third output), or fit a raw log's cache "
                                 "(fastafm.convert), which carries them; field_aware=None needs none")
        if given is None:
            return np.zeros(int(n_features), np.int32)
        return field_array(given, int(n_features))

    def spec(self, hyperparameters: dict, n_features: int, fields=None) -> ModelSpec:
        """The model spec; FwFM's n_fields from `fields` (its field array) or, when None, the hyperparameter."""
        v = self.values(hyperparameters)
        field_params = self.field_params(v, fields is not None)
        if field_params and fields is None:
            fields = self.fields(hyperparameters, n_features)
        n_fields = n_fields_of(fields) if fields is not None and field_params else 0
        return ModelSpec(int(n_features), int(v["embedding_dim"]), int(v["attention_dim"]),
                         self.objective_of(v).core_loss, "attention" if v["attention"] else "uniform",
                         self.family == "afm", n_fields, field_params or (FWFM_PARAM,))

    def build(self, hyperparameters: dict, state: TrainingState):
        """A fitted estimator of this class from its hyperparameters and a training state."""
        model = self.cls(**hyperparameters)
        model.training_state_ = state
        return model


# FM keeps the attention network at its smallest shape (attention_dim 1): the core's parameter set always
# has one, unused under uniform pooling.
FM_FIXED = {"attention_dim": 1, "attention": False, "attention_l2": 0.0}

_KINDS: dict = {}


def register(cls: type, loss: str, family: str) -> type:
    _KINDS[cls.__name__] = Kind(cls.__name__, cls, loss, family, FM_FIXED if family in ("fm", "fwfm") else {})
    return cls


def _registered() -> dict:
    """The kinds, the estimators imported first if they were not yet (the package root imports them on first
    access only, and a model file can be loaded before any estimator class was used)."""
    if not _KINDS:
        importlib.import_module("fastafm.models.estimators")  # registers its classes (by name: no import cycle)
    return _KINDS


def kind(name_or_class) -> Kind:
    """The Kind of a registered class (or class name); KeyError for anything else."""
    _registered()
    name = name_or_class if isinstance(name_or_class, str) else name_or_class.__name__
    found = _KINDS[name]
    if not isinstance(name_or_class, str) and found.cls is not name_or_class:
        raise KeyError(name)
    return found


def names() -> tuple:
    return tuple(_registered())


def sibling(of: Kind, family: str) -> Kind:
    """The registered kind of `family` with the same loss as `of` (AFMClassifier -> FMClassifier)."""
    for found in _registered().values():
        if found.family == family and found.loss == of.loss:
            return found
    raise KeyError(f"no {family} estimator with the {of.loss} loss")
