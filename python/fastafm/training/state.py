"""The training state of a fitted model: what the estimators, the training engine, the model files and the
Dask driver share, instead of reading each other's attributes.

A `TrainingState` is the model spec (shapes, loss, pooling), the parameters, the optimizer's named slots
(fastafm.training.optim), the shuffling generator, the dropout seed, the epoch count and history, and the labels
(classes or the label range). `snapshot` / `restore` copy parameters and slots *into* existing arrays, so the
arrays the core's Trainer views stay the same objects for a whole fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from ..models.params import FIELD_INIT, FWFM_PARAM, PARAM_NAMES, init_arrays
from .optim import OPTIMIZERS, init_slots
from ..data.validation import check_model_memory



@dataclass(frozen=True)
class ModelSpec:
    """What the parameters are: their shapes, the loss, and how pairs are pooled."""

    n_features: int
    embedding_dim: int
    attention_dim: int
    loss: str = "squared"           # or "logistic"
    pooling: str = "attention"      # or "uniform" (FM, or AFM's attention=False ablation)
    learn_projection: bool = True   # False (FM): p stays 1
    n_fields: int = 0               # the fields of R / S (n_fields x n_fields); 0: no field-pair terms
    field_params: tuple = (FWFM_PARAM,)  # FwFM: R; field-aware AFM: R (pooled pairs) and/or S (logits)

    @property
    def attention(self) -> bool:
        return self.pooling == "attention"

    def shapes(self) -> dict:
        n, k, t = self.n_features, self.embedding_dim, self.attention_dim
        out = {"w0": (1,), "w": (n,), "V": (n, k), "W": (t, k), "b": (t,), "h": (t,), "p": (k,)}
        if self.n_fields:
            for name in self.field_params:
                out[name] = (self.n_fields, self.n_fields)
        return out

    @property
    def param_names(self) -> tuple:
        return tuple(self.shapes())


@dataclass
class Snapshot:
    params: dict
    slots: dict
    rng_state: Mapping[str, Any]


@dataclass
class TrainingState:
    spec: ModelSpec
    optimizer: str
    params: dict                 # name -> float32 array
    slots: dict                  # slot -> {name -> float32 array}, the slots of OPTIMIZERS[optimizer]
    rng: np.random.Generator     # shuffling (and, at initialisation, the dropout seed)
    dropout_seed: int
    n_epochs_done: int = 0
    history: list = field(default_factory=list)
    classes: Optional[np.ndarray] = None         # a classifier's two labels, classes[1] the positive one
    label_range: Optional[tuple] = None          # a regressor's training label range (eval RMSE clipping)
    row_nnz: Optional[float] = None              # mean non-zeros a row of the first training rows ("auto" rate)
    fields: Optional[np.ndarray] = None          # FwFM, field-aware AFM: each feature's field (int32)
    encoding: Any = None                         # a raw log's RawEncoding (fastafm.rawlog): predict reads raw rows
    edits: int = 0                               # partial_fit calls on these arrays (fastafm.serving's check)

    def core_params(self) -> dict:
        """The parameters as the core takes them: with field-pair terms, the field array beside them (not a
        parameter: never trained, saved or averaged), the others as they are."""
        return self.params if self.fields is None else {**self.params, "field": self.fields}

    def arrays(self):
        """Every parameter and slot array."""
        yield from self.params.values()
        for arrays in self.slots.values():
            yield from arrays.values()

    def finite(self) -> bool:
        """True when every parameter and slot is finite (float64 sums: no false overflow)."""
        return all(np.isfinite(np.sum(a, dtype=np.float64)) for a in self.arrays())

    def snapshot(self, into: Optional[Snapshot] = None) -> Snapshot:
        """A copy of the parameters, slots and generator state; `into` reuses an earlier snapshot's buffers."""
        if into is None:
            return Snapshot({k: a.copy() for k, a in self.params.items()},
                            {s: {k: a.copy() for k, a in d.items()} for s, d in self.slots.items()},
                            self.rng.bit_generator.state)
        for name, a in self.params.items():
            np.copyto(into.params[name], a)
        for slot, arrays in self.slots.items():
            for name, a in arrays.items():
                np.copyto(into.slots[slot][name], a)
        into.rng_state = self.rng.bit_generator.state
        return into

    def restore(self, snap: Snapshot, rng: bool = True) -> None:
        """Copy a snapshot back into the state's own arrays (and, with rng, the generator state)."""
        for name, a in self.params.items():
            np.copyto(a, snap.params[name])
        for slot, arrays in self.slots.items():
            for name, a in arrays.items():
                np.copyto(a, snap.slots[slot][name])
        if rng:
            self.rng.bit_generator.state = snap.rng_state

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays())


def as_generator(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(int(random_state))
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int or a numpy Generator/RandomState, got {random_state!r}")


def init_state(spec: ModelSpec, optimizer: str, init_std: float, random_state) -> TrainingState:
    """A fresh model: parameters from fastafm.models.params.init_arrays, fresh optimizer slots, then the dropout seed,
    all drawn from the generator of `random_state` in that order (so a seed fixes the whole fit)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    check_model_memory(spec.n_features, spec.embedding_dim, spec.attention_dim, len(OPTIMIZERS[optimizer].slots))
    rng = as_generator(random_state)
    arrays = init_arrays(spec.n_features, spec.embedding_dim, spec.attention_dim, init_std=float(init_std), rng=rng)
    params = {name: np.ascontiguousarray(arrays[name], dtype=np.float32) for name in PARAM_NAMES}
    if spec.n_fields:
        for name in spec.field_params:
            params[name] = np.full((spec.n_fields, spec.n_fields), FIELD_INIT[name], np.float32)
    dropout_seed = int(rng.integers(0, 2**63 - 1))
    return TrainingState(spec, optimizer, params, init_slots(optimizer, params), rng, dropout_seed)
