"""Plots of a trained model (matplotlib, an optional dependency: `pip install fastafm[plot]`).

history(model)               training loss (left axis) and eval metrics (right axis) per epoch
attention_heatmap(matrix)    a field x field mean-attention matrix, e.g. from interpret.field_pair_attention
waterfall(explanation, r)    one row's explanation (model.explain(X)): base value, the largest contributions,
                             the score (no shap needed)
calibration(y, p)            reliability diagram: observed rate against mean predicted probability per bin

All draw on the given Axes (or a new figure) and return the Axes; matplotlib is imported on first use.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ._compat import import_optional

__all__ = ["attention_heatmap", "calibration", "history", "waterfall"]

_METRIC_LABELS = {"eval_rmse": "eval RMSE", "eval_mae": "eval MAE", "eval_logloss": "eval log loss",
                  "eval_auc": "eval AUC", "eval_ne": "eval NE"}


def _pyplot():
    return import_optional("matplotlib.pyplot", "fastafm.plot", "plot")


def _records(model_or_history) -> list:
    records = getattr(model_or_history, "history_", model_or_history)
    if records is None or not hasattr(records, "__iter__") or isinstance(records, (str, bytes, dict)):
        raise TypeError("history() takes a fitted fastafm model or its history_ list of per-epoch dicts")
    records = list(records)
    if not records:
        raise ValueError("the model has no training history to plot (fit it for at least one epoch)")
    if not all(isinstance(r, dict) and "train_loss" in r for r in records):
        raise ValueError("history records must be dicts with a 'train_loss' entry")
    return records


def history(model, ax=None, title: Optional[str] = None):
    """Plot the training loss and each eval metric per epoch.

    Parameters
    ----------
    model : fitted AFMRegressor/AFMClassifier, or its `history_` (a list of per-epoch dicts)
    ax : matplotlib Axes, optional
        Where to draw; default a new figure. The training loss goes on `ax` (left y-axis); the eval
        metrics of an `eval_set` (eval_rmse, eval_mae, eval_logloss, eval_auc) on a twin right y-axis.
    title : str, optional

    Returns
    -------
    ax : the Axes of the training loss; the twin Axes of the metrics, if any, is ``ax.metrics_axis``.
    """
    records = _records(model)
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(records)])
    loss = np.array([r["train_loss"] for r in records], dtype=float)
    lines = ax.plot(epochs, loss, marker="o", color="C0", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (mean per row)", color="C0")
    ax.tick_params(axis="y", labelcolor="C0")
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    ax.grid(True, alpha=0.3)
    metric_names = [k for k in records[0] if k.startswith("eval_")]
    metrics_ax: Any = None
    if metric_names:
        metrics_ax = ax.twinx()
        for i, name in enumerate(metric_names):
            values = np.array([r.get(name, np.nan) for r in records], dtype=float)
            lines += metrics_ax.plot(epochs, values, marker="s", linestyle="--", color=f"C{i + 1}",
                                     label=_METRIC_LABELS.get(name, name.replace("_", " ")))
        metrics_ax.set_ylabel(", ".join(_METRIC_LABELS.get(n, n) for n in metric_names))
    ax.legend(lines, [line.get_label() for line in lines], loc="best")
    ax.set_title(title if title is not None else "training history")
    ax.metrics_axis = metrics_ax
    return ax


def attention_heatmap(matrix, field_names: Optional[Sequence[str]] = None, ax=None, annotate: bool = True,
                      cmap: Any = "viridis", fmt: str = "{:.3f}", title: Optional[str] = None):
    """Draw a field x field mean-attention matrix as a labelled heatmap.

    Parameters
    ----------
    matrix : array (n_fields, n_fields)
        E.g. `fastafm.interpret.field_pair_attention(model, X, fields)`. NaN cells (field pairs that never
        occur together, such as a field with itself) are left blank.
    field_names : sequence of str, optional
        Tick labels (e.g. `FieldEncoder.field_names_`); default the field numbers.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure.
    annotate : bool, default True
        Write each cell's value in it (format `fmt`).
    cmap : str or matplotlib Colormap, default "viridis"
    title : str, optional

    Returns
    -------
    ax : the Axes; its colour bar is ``ax.colorbar``.
    """
    arr = np.asarray(matrix, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"matrix must be a non-empty square (n_fields, n_fields) array, got shape {arr.shape}")
    n = arr.shape[0]
    if field_names is None:
        names = [str(i) for i in range(n)]
    else:
        names = [str(name) for name in field_names]
        if len(names) != n:
            raise ValueError(f"field_names has {len(names)} names but the matrix has {n} fields")
    plt = _pyplot()
    if ax is None:
        side = min(max(4.0, 0.6 * n + 2.0), 14.0)
        _, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    masked = np.ma.masked_invalid(arr)
    import matplotlib

    base = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    colormap = base.with_extremes(bad="white")  # NaN cells blank
    image = ax.imshow(masked, cmap=colormap, interpolation="nearest")
    ax.set_xticks(np.arange(n))
    ax.set_yticks(np.arange(n))
    ax.set_xticklabels(names, rotation=45 if n > 1 else 0, ha="right" if n > 1 else "center",
                       rotation_mode="anchor")
    ax.set_yticklabels(names)
    ax.set_xlabel("field")
    ax.set_ylabel("field")
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="lightgrey", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    colorbar = ax.figure.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("mean attention")
    if annotate:
        finite = arr[np.isfinite(arr)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            norm = image.norm
            for i in range(n):
                for j in range(n):
                    if np.isfinite(arr[i, j]):
                        r, g, b, _ = colormap(norm(arr[i, j]) if hi > lo else 0.5)
                        luminance = 0.299 * r + 0.587 * g + 0.114 * b
                        ax.text(j, i, fmt.format(arr[i, j]), ha="center", va="center", fontsize=8,
                                color="black" if luminance > 0.5 else "white")
    ax.set_title(title if title is not None else "mean attention per field pair")
    ax.colorbar = colorbar
    return ax


def waterfall(explanation, row: int = 0, max_features: int = 10, ax=None, title: Optional[str] = None,
              feature_names: Optional[Sequence[str]] = None):
    """A waterfall of one row of `model.explain(X)`: from the base value (w0, at the bottom) each of the
    `max_features` largest |contributions| as a bar (red up, blue down; the rest summed in one bar) to the row's
    score, decision_function(X)[row] (the logit for a classifier). As shap.plots.waterfall, without shap.

    feature_names: default the explanation's (else "feature <id>"). Returns the Axes."""
    plt = _pyplot()
    info = explanation.row(row)
    names = feature_names if feature_names is not None else explanation.feature_names
    label = (lambda i: str(names[i])) if names is not None else (lambda i: f"feature {i}")
    vals, feats, data = info["values"], info["features"], info["data"]
    order = np.argsort(-np.abs(vals), kind="stable")
    shown = order[:max_features]
    items = [(f"{label(int(feats[i]))} = {data[i]:.4g}", float(vals[i])) for i in shown]
    if order.shape[0] > max_features:
        items.append((f"{order.shape[0] - max_features} other features", float(vals[order[max_features:]].sum())))
    items = items[::-1]  # the largest at the top
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.45 * len(items) + 1.6), layout="constrained")
    left = info["base_value"] + np.concatenate([[0.0], np.cumsum([v for _, v in items])[:-1]])
    for y, ((name, v), x0) in enumerate(zip(items, left)):
        ax.barh(y, v, left=x0, color="#d62728" if v >= 0 else "#1f77b4", height=0.6)
        ax.text(max(x0, x0 + v), y, f" {v:+.3f}", va="center", ha="left", fontsize=8)  # right of the bar
    ends = np.concatenate([left, left + np.array([v for _, v in items]), [info["base_value"], info["score"]]])
    span = max(float(ends.max() - ends.min()), 1e-9)
    ax.set_xlim(float(ends.min()) - 0.05 * span, float(ends.max()) + 0.2 * span)
    ax.set_yticks(range(len(items)), [n for n, _ in items])
    ax.axvline(info["base_value"], color="grey", lw=0.8, ls="--")
    ax.axvline(info["score"], color="black", lw=0.8)
    ax.set_xlabel(f"base value {info['base_value']:.3f}  ->  score {info['score']:.3f}")
    ax.set_title(title if title is not None else f"row {row}: contributions to the score")
    return ax


def calibration(y_true, proba, n_bins: int = 10, sample_weight=None, ax=None, title: Optional[str] = None,
                label: Optional[str] = None):
    """Reliability diagram: per equal-width probability bin, the observed positive rate against the mean
    predicted probability (the diagonal is perfect calibration), with the expected calibration error and
    normalized entropy in the legend. y_true in {0, 1} or rates in [0, 1] (with weights). Call it again on the same `ax` to overlay models. Returns the Axes."""
    from . import metrics

    plt = _pyplot()
    mean_p, rate, total = metrics.calibration_bins(y_true, proba, n_bins, sample_weight)
    ece = metrics.expected_calibration_error(y_true, proba, n_bins, sample_weight)
    ne = metrics.normalized_entropy(y_true, proba, sample_weight=sample_weight)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    full = total > 0
    ax.plot(mean_p[full], rate[full], marker="o", label=f"{label or 'model'} (ECE {ece:.4f}, NE {ne:.4f})")
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title if title is not None else "calibration")
    return ax
