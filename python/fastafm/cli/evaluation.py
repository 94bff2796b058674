"""`fastafm eval`'s metrics of a model on labelled rows, by the model's task (classification, rates, regression)."""
from __future__ import annotations

import numpy as np

from .parser import EXIT_DATA, CliError


def evaluate(model, X, y) -> dict:
    """The metrics `fastafm eval` prints, as a dict (NaN AUC when DATA holds one class only)."""
    from .. import metrics

    if hasattr(model, "classes_"):  # a classifier
        classes = np.asarray(model.classes_)
        if classes.dtype.kind not in "fiub":
            raise CliError(f"the model's labels {classes.tolist()} are not numbers, so they cannot match the "
                           f"labels of a libFM file", EXIT_DATA)
        classes = classes.astype(np.float64)
        unknown = np.setdiff1d(np.unique(y).astype(np.float64), classes)
        if unknown.size:
            raise CliError(f"labels {', '.join(f'{v:g}' for v in unknown[:5])} are not among the model's labels "
                           f"{classes[0]:g}, {classes[1]:g}", EXIT_DATA)
        proba = model.predict_proba(X)[:, 1]
        y01 = (y == classes[1]).astype(np.float64)
        return {"rows": int(X.shape[0]), "logloss": metrics.log_loss(y01, proba),
                "auc": metrics.roc_auc(y01, proba), "accuracy": float(np.mean((proba > 0.5) == (y01 == 1.0))),
                "ne": metrics.normalized_entropy(y01, proba)}
    pred = model.predict(X)
    if getattr(model, "loss", "squared") == "logistic":  # rate targets: DATA's labels are rates in [0, 1]
        if np.any((y < 0) | (y > 1)):
            raise CliError("the model predicts rates (--loss logistic): labels must be in [0, 1]", EXIT_DATA)
        return {"rows": int(X.shape[0]), "logloss": metrics.log_loss(y, pred),
                "ne": metrics.normalized_entropy(y, pred)}
    clip = getattr(model, "label_range_", None)
    return {"rows": int(X.shape[0]), "rmse": metrics.rmse(y, pred, clip=clip), "mae": metrics.mae(y, pred)}
