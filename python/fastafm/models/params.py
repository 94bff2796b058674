"""What the parameters are, shared by the training state, the model files, the optimizers and the float64
reference (fastafm.reference, the tests' oracle, imports them from here): their names, the optimizers'
constants, and the initialisation of docs/model.md (the authors' code)."""
from __future__ import annotations

import numpy as np

PARAM_NAMES = ("w0", "w", "V", "W", "b", "h", "p")

#: FwFM's field-pair weights R (n_fields x n_fields) start at 1: an FwFM starts as the FM with the same w0, w
#: and V (and draws nothing from the generator, so the rest of its initialisation is the FM's).
FWFM_PARAM = "R"
FWFM_R_INIT = 1.0
#: Field-aware AFM (docs/model.md): R on the pooled pairs (as FwFM's, start 1) and S, field-pair terms in the
#: attention logits (start 0), so a field-aware AFM starts as the plain AFM of the same seed.
FIELD_LOGITS_PARAM = "S"
FIELD_INIT = {FWFM_PARAM: FWFM_R_INIT, FIELD_LOGITS_PARAM: 0.0}
#: AFM's field_aware modes -> the field-pair parameters each adds.
FIELD_AWARE_PARAMS = {None: (), "weights": (FWFM_PARAM,), "logits": (FIELD_LOGITS_PARAM,),
                      "both": (FWFM_PARAM, FIELD_LOGITS_PARAM)}
#: field_aware="auto" (AFMClassifier's default): this mode where the fields are known (fields=, or a raw log's
#: cache), None where they are not. "both" won or tied on the six classification sets (docs/accuracy.md,
#: "Field-aware AFM by default"); FIELD_AWARE_AUTO is not a key of FIELD_AWARE_PARAMS: it is resolved first.
FIELD_AWARE_AUTO = "auto"
FIELD_AWARE_WHEN_FIELDS_KNOWN = "both"


def resolved_field_aware(mode, fields_known: bool):
    """The field_aware mode a model of this setting has: "auto" resolved by whether its fields are known (and
    its pooling is attention: the caller's part)."""
    if mode == FIELD_AWARE_AUTO:
        return FIELD_AWARE_WHEN_FIELDS_KNOWN if fields_known else None
    return mode

#: Initial value of every Adagrad accumulator (the authors' ``initial_accumulator_value``).
ADAGRAD_INITIAL_ACCUMULATOR = 1e-8

#: Adam's decay rates and epsilon: Kingma & Ba's defaults (also PyTorch's and TensorFlow's LazyAdam's). They
#: are constants, not hyperparameters: the learning rate is the setting that matters (docs/model.md).
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


def init_arrays(n_features, embedding_dim, attention_dim, init_std=0.01, rng=None) -> dict:
    """Initial float64 parameters by name: ``w0 = 0``, ``w = 0``, ``V ~ N(0, init_std²)``,
    ``W, b ~ N(0, 2/(t+k))``, ``h ~ N(0, 1)``, ``p = 1``, drawn from `rng` (a Generator, a seed or None) in
    that order."""
    n, k, t = int(n_features), int(embedding_dim), int(attention_dim)
    if n < 0 or k < 1 or t < 1:
        raise ValueError("need n_features >= 0, embedding_dim >= 1, attention_dim >= 1")
    rng = np.random.default_rng(rng)
    glorot = np.sqrt(2.0 / (t + k))
    return {
        "w0": np.zeros(1),
        "w": np.zeros(n),
        "V": rng.normal(0.0, init_std, size=(n, k)),
        "W": rng.normal(0.0, glorot, size=(t, k)),
        "b": rng.normal(0.0, glorot, size=t),
        "h": rng.normal(0.0, 1.0, size=t),
        "p": np.ones(k),
    }
