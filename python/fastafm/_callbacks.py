"""Callbacks of the training engine (fastafm._engine.train): eval metrics, the history, early stopping."""
from __future__ import annotations

import numpy as np

from ._engine import Callback


def better(metric: str, score, best) -> bool:
    """Whether `score` improves on `best` (None: nothing yet); lower is better except for auc."""
    if not np.isfinite(score):
        return False
    if best is None:
        return True
    return score > best if metric == "auc" else score < best


def check_metric(metric, metrics: tuple, owner: str) -> str:
    """The metric early stopping watches: `metric`, or the estimator's first when None."""
    chosen = metrics[0] if metric is None else metric
    if chosen not in metrics:
        raise ValueError(f"early_stopping_metric must be one of {list(metrics)} for {owner}, got {metric!r}")
    return chosen


def best_of(history: list, metric: str):
    """(best epoch, its score) of `metric` over the history; (None, nan) when no epoch has it."""
    best, best_epoch = None, None
    for record in history:
        score = record.get(f"eval_{metric}")
        if score is not None and better(metric, score, best):
            best, best_epoch = score, record["epoch"]
    return best_epoch, float("nan") if best is None else float(best)


class Evaluation(Callback):
    """Adds the eval_set metrics (`evaluate() -> {"eval_...": value}`) to every epoch's record."""

    def __init__(self, evaluate) -> None:
        self.evaluate = evaluate

    def on_epoch_end(self, state, record) -> bool:
        record.update(self.evaluate())
        return False


class History(Callback):
    """Appends every epoch's record to the state's history; with verbose, prints it as one line."""

    def __init__(self, verbose: int = 0) -> None:
        self.verbose = verbose

    def on_epoch_end(self, state, record) -> bool:
        state.history.append(record)
        if self.verbose:
            extras = "  ".join(f"{k}={v:.5f}" for k, v in record.items() if k.startswith("eval_"))
            print(f"epoch {record['epoch']:3d}  train_loss={record['train_loss']:.5f}  {extras}  "
                  f"{record['seconds']:.2f}s", flush=True)
        return False


class EarlyStopping(Callback):
    """Stops once `patience` epochs in a row did not improve `metric` (in the record, from Evaluation), then
    restores the parameters and optimizer slots of the best epoch. The history and the shuffling stream are
    not rewound: history keeps every epoch run, and partial_fit continues with the next epoch's shuffling."""

    def __init__(self, metric: str, patience: int, verbose: int = 0) -> None:
        self.metric, self.patience, self.verbose = metric, int(patience), verbose
        self.best, self.best_epoch, self.snapshot = None, 0, None

    def on_epoch_end(self, state, record) -> bool:
        score = record[f"eval_{self.metric}"]
        if better(self.metric, score, self.best):
            self.best, self.best_epoch = score, record["epoch"]
            self.snapshot = state.snapshot(into=self.snapshot)
            return False
        if record["epoch"] - self.best_epoch >= self.patience:
            if self.verbose:
                print(f"early stopping: no {self.metric} improvement for {self.patience} epochs; "
                      f"restoring epoch {self.best_epoch} ({self.metric}={self.best:.5f})", flush=True)
            return True
        return False

    def on_train_end(self, state) -> None:
        if self.snapshot is not None:
            state.restore(self.snapshot, rng=False)
