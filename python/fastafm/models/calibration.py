"""Calibration of classifiers trained on downsampled logs: when the training rows kept every positive and each
negative with probability r (`negative_sampling_rate`), the odds they show are the population's divided by r,
so the population's log-odds are the model's plus log(r) (the standard correction of He et al. 2014 and
McMahan et al. 2013). The offset is added to `decision_function`, hence to `predict_proba`, `predict`, the
explanations' base value and the ONNX graph's score; training and its eval metrics stay on the rows'
own (sampled) distribution."""
from __future__ import annotations

import math

from ..data.validation import check_float


def sampling_offset(rate) -> float:
    """log(rate) for a negative_sampling_rate in (0, 1] (a ValueError naming it otherwise)."""
    check_float(rate, "negative_sampling_rate", 0.0, 1.0, low_open=True, high_open=False)
    return math.log(float(rate))
