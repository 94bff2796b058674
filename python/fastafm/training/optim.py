"""Optimizers as named state slots, each slot an array per parameter with the parameter's shape.

    sgd      ()                  no state
    adagrad  ("G",)              running sums of squared gradients, starting at ADAGRAD_INITIAL_ACCUMULATOR (fastafm.models.params)
    adam     ("m", "v", "step")  first and second moments (starting at 0) of every parameter, and the step
                                 counts: slot "step" holds only w (one count per row of V and w, which are
                                 always updated together: lazy Adam's per-row counts) and w0 (the count of the
                                 dense parameters w0, W, b, h, p)

The same names are used by the training state (fastafm.training.state), the model files (format version 3 stores
`slot.<slot>.<param>` members) and the core (`_core.optimizer_slots`, its OptimizerState struct).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..models.params import ADAGRAD_INITIAL_ACCUMULATOR, PARAM_NAMES


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    slots: tuple = ()
    initial: dict = field(default_factory=dict)      # slot -> initial value of every element
    positive: tuple = ()                              # slots whose values must stay > 0 (checked on load)
    nonnegative: tuple = ()                           # slots whose values must stay >= 0 (checked on load)
    slot_params: dict = field(default_factory=dict)   # slot -> the parameters it covers (default: all)
    row_steps: bool = False                           # a step count per row of V and w (Adam's bias correction)

    def params_of(self, slot: str, names: tuple = PARAM_NAMES) -> tuple:
        """The parameter names slot `slot` holds an array for (each of that parameter's shape), of the model's
        parameters `names` (FwFM's add R)."""
        return self.slot_params.get(slot, names)


OPTIMIZERS = {
    "sgd": OptimizerSpec("sgd"),
    "adagrad": OptimizerSpec("adagrad", ("G",), {"G": ADAGRAD_INITIAL_ACCUMULATOR}, positive=("G",)),
    "adam": OptimizerSpec("adam", ("m", "v", "step"), {"m": 0.0, "v": 0.0, "step": 0.0},
                          nonnegative=("v", "step"), slot_params={"step": ("w0", "w")}, row_steps=True),
}


def init_slots(optimizer: str, params: dict) -> dict:
    """Fresh state of `optimizer` for `params`: {slot: {param name: float32 array}}."""
    spec = OPTIMIZERS[optimizer]
    return {slot: {name: np.full_like(params[name], spec.initial[slot]) for name in spec.params_of(slot, tuple(params))}
            for slot in spec.slots}
