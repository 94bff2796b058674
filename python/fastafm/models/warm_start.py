"""Warm start (`fit(..., init=model)`): w0, w and V taken from a fitted FM/AFM or a dict, checked."""
from __future__ import annotations

import numpy as np

from ..training.callbacks import better

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


def keep_the_better(state, linear, best, metric: str, verbose: int = 0):
    """With early stopping, after the linear stage of pretrain="linear+fm" or linear_fallback: when the linear
    model's best validation score (`linear`:
    its (training state, (best epoch, best score))) beats the model's (`best`, its (epoch, score)), the model
    becomes that linear model exactly (w0 and w copied, V = 0: every pair term is 0, the attention's too) and
    its best is the linear stage's (epoch 0). Without a validation score (no early
    stopping and no eval_set) the model is kept. Returns the (epoch, score) kept."""
    _, score = best
    linear_state, (linear_epoch, linear_score) = linear
    if linear_epoch is None or not better(metric, linear_score, None if score != score else score):
        return best
    for name in ("w0", "w"):
        np.copyto(state.params[name], linear_state.params[name])
    state.params["V"][...] = 0.0
    if verbose:
        print(f"keeping the linear stage ({metric}={linear_score:.5f}): it beats the model's best", flush=True)
    return 0, linear_score
