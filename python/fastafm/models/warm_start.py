"""Warm start (`fit(..., init=model)`): w0, w and V taken from a fitted FM/AFM or a dict, checked."""
from __future__ import annotations

import numpy as np

#: the values of `pretrain` that train stages before the AFM: "fm" (an FM), "linear+fm" (the linear model
#: w0 + w.x, then an FM started from it, then the AFM; docs/accuracy.md "Never worse than the regression inside")
PRETRAIN_STAGES = ("fm", "linear+fm")


def warm_start_params(init, n_features: int, embedding_dim: int) -> dict:
    """w0, w, V of the warm-start model `init` (a fitted estimator or a dict), checked against the shapes."""
    if isinstance(init, dict):
        missing = {"w0", "w", "V"} - set(init)
        if missing:
            raise ValueError(f"init dict is missing {sorted(missing)}; it needs 'w0', 'w' and 'V'")
        source = {name: np.asarray(init[name], dtype=np.float32) for name in ("w0", "w", "V")}
        what = "init"
    elif hasattr(init, "get_model_params"):
        if not hasattr(init, "training_state_"):
            raise ValueError(f"init must be a fitted model; this {type(init).__name__} is not fitted")
        source = init.get_model_params()
        what = f"init ({type(init).__name__})"
    else:
        raise TypeError(f"init must be a fitted FM/AFM estimator or a dict of w0, w, V; got {type(init).__name__}")
    w0 = np.atleast_1d(source["w0"]).reshape(-1)
    w, V = source["w"], source["V"]
    if V.ndim != 2 or w.ndim != 1 or w0.shape != (1,) or w.shape[0] != V.shape[0]:
        raise ValueError(f"{what}: w0, w, V have inconsistent shapes {w0.shape}, {w.shape}, {V.shape}")
    if V.shape[0] != n_features:
        raise ValueError(f"{what} has {V.shape[0]} features but X has {n_features}; warm start needs the same "
                         "feature ids")
    if V.shape[1] != embedding_dim:
        raise ValueError(f"{what} has embedding_dim {V.shape[1]} but this model has embedding_dim {embedding_dim}")
    if not all(np.all(np.isfinite(a)) for a in (w0, w, V)):
        raise ValueError(f"{what} contains NaN or infinity")
    return {"w0": w0, "w": w, "V": V}

