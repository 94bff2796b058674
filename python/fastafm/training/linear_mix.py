"""The model a fit keeps after its linear stage (linear_fallback, pretrain="linear+fm"): the trained model and the
exact linear model mixed, with the linear model's share chosen on the validation rows.

Outputs are linear in the mix: (1 - s) f_model(x) + s f_linear(x) is again a model of the same family, with
w0 and w mixed the same way and the pair term scaled by (1 - s) — through p where the model learns it (AFM: p
multiplies the pooled pairs, so the attention is unchanged), through the field-pair weights R (FwFM), through
V scaled by sqrt(1 - s) (FM: its pair term is a product of two rows of V). s = 0 keeps the trained model, s = 1
is the linear model exactly (V = 0). Where the linear model validates better the pairs often still carry part
of the signal: a share inside the grid beat both ends on most click logs measured (docs/accuracy.md, "Mixing
the linear model in").
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

from ..models.params import FWFM_PARAM
from .callbacks import better
from .evaluation import evaluate

#: the linear model's shares tried (0: the trained model, 1: the linear model)
SHARES = np.linspace(0.0, 1.0, 21)


class _Outputs:
    """The evaluation rows' outputs of both models, computed once (block by block, as the evaluation parts
    call their score function) and replayed mixed for every share."""

    def __init__(self, model_score, linear_score) -> None:
        self._model_score, self._linear_score = model_score, linear_score
        self.blocks: list = []

    def record(self, *arrays) -> np.ndarray:
        model = self._model_score(*arrays)
        self.blocks.append((model, self._linear_score(*arrays)))
        return model

    def mixed(self, share: float):
        blocks = iter(self.blocks)

        def score(*_arrays) -> np.ndarray:
            model, linear = next(blocks)
            return linear if share >= 1.0 else (1.0 - share) * model + share * linear

        return score


def linear_score(params: dict, n_features: int):
    """score(indptr, indices, values) -> w0 + X w of the linear model's float32 `params`, in float64."""
    w0, w = float(params["w0"][0]), params["w"].astype(np.float64)

    def score(indptr, indices, values) -> np.ndarray:
        X = scipy.sparse.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, n_features))
        return w0 + X @ w

    return score


def best_share(objective, evaluation, metric: str, label_range, model_score, linear_scorer) -> tuple:
    """(share, score): the linear model's share in SHARES whose mix scores best on `evaluation` by `metric`
    (ties go to the smaller share, nearer the trained model)."""
    outputs = _Outputs(model_score, linear_scorer)
    best: tuple = (0.0, evaluate(objective, [evaluation], outputs.record, label_range)[f"eval_{metric}"])
    for share in SHARES[1:]:
        value = evaluate(objective, [evaluation], outputs.mixed(float(share)), label_range)[f"eval_{metric}"]
        if better(metric, value, None if best[1] != best[1] else best[1]):
            best = (float(share), value)
    return best


def mix(state, linear_params: dict, share: float) -> None:
    """`state`'s parameters become the mix (1 - share) model + share linear (the module's docstring)."""
    if share <= 0.0:
        return
    if share >= 1.0:  # the linear model exactly: every pair term (the attention's too) is 0
        for name in ("w0", "w"):
            np.copyto(state.params[name], linear_params[name])
        state.params["V"][...] = 0.0
        return
    for name in ("w0", "w"):
        mixed = (1.0 - share) * state.params[name].astype(np.float64) + share * linear_params[name]
        np.copyto(state.params[name], mixed.astype(np.float32))
    if state.spec.learn_projection:  # AFM: p multiplies the pooled pairs
        state.params["p"] *= np.float32(1.0 - share)
    elif FWFM_PARAM in state.params:  # FwFM: R multiplies each pair (its field-pair table shows the kept model)
        state.params[FWFM_PARAM] *= np.float32(1.0 - share)
    else:  # FM: the pair term is a product of two rows of V
        state.params["V"] *= np.float32(np.sqrt(1.0 - share))


def keep_the_best_mix(state, linear, best, metric: str, evaluation, objective, model_score,
                      verbose: int = 0) -> tuple:
    """With early stopping, after the linear stage: `state` (restored to its best epoch, whose (epoch, score)
    is `best`) becomes the best mix of itself and the linear model (`linear`: its (stage with .params,
    (best index, best score)), or None: no linear stage). Returns ((epoch, score) kept, the linear model's
    share): epoch 0 when the linear model alone is kept; without a linear stage or a validation score for
    either, the model unchanged and share 0."""
    if linear is None:
        return best, 0.0
    linear_stage, (linear_epoch, linear_best) = linear
    if linear_epoch is None or best[0] is None:
        return best, 0.0
    share, score = best_share(objective, evaluation, metric, state.label_range, model_score,
                              linear_score(linear_stage.params, state.spec.n_features))
    if share >= 1.0:  # the linear model as its stage scored it (its history's record)
        score = linear_best
    if share == 0.0 or not better(metric, score, None if best[1] != best[1] else best[1]):
        return best, 0.0
    mix(state, linear_stage.params, share)
    if verbose:
        print(f"keeping {share:.2f} of the linear model mixed in ({metric}={score:.5f})", flush=True)
    return (0 if share >= 1.0 else best[0], score), share
