"""Optimizers as named state slots, each slot an array per parameter with the parameter's shape.

    sgd      ()       no state
    adagrad  ("G",)   running sums of squared gradients, starting at reference.ADAGRAD_INITIAL_ACCUMULATOR

The same names are used by the training state (fastafm._state), the model files (format version 3 stores
`slot.<slot>.<param>` members) and the core (`_core.optimizer_slots`, its OptimizerState struct). A new
optimizer is one entry here and one case in the core: Adam would be ("m", "v") plus a step count per row of
V and w (`row_steps`), which the entry already has room for.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .reference import ADAGRAD_INITIAL_ACCUMULATOR


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    slots: tuple = ()
    initial: dict = field(default_factory=dict)  # slot -> initial value of every element
    positive: tuple = ()                          # slots whose values must stay > 0 (checked on load)
    row_steps: bool = False                       # a step count per row of V and w (Adam's bias correction)


OPTIMIZERS = {
    "sgd": OptimizerSpec("sgd"),
    "adagrad": OptimizerSpec("adagrad", ("G",), {"G": ADAGRAD_INITIAL_ACCUMULATOR}, positive=("G",)),
}


def init_slots(optimizer: str, params: dict) -> dict:
    """Fresh state of `optimizer` for `params`: {slot: {param name: float32 array}}."""
    spec = OPTIMIZERS[optimizer]
    return {slot: {name: np.full_like(arr, spec.initial[slot]) for name, arr in params.items()}
            for slot in spec.slots}
