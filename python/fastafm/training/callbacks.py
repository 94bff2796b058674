"""Callbacks of the training engine (fastafm.training.engine.train): eval metrics, the history, early stopping."""
from __future__ import annotations

import numpy as np

from .._compat import InvalidParameterError
from .engine import Callback


def better(metric: str, score, best, tol: float = 0.0) -> bool:
    """Whether `score` improves on `best` (None: nothing yet) by more than `tol`; lower is better except for
    auc."""
    if not np.isfinite(score):
        return False
    if best is None:
        return True
    return score > best + tol if metric == "auc" else score < best - tol


def check_metric(metric, metrics: tuple, owner: str) -> str:
    """The metric early stopping watches: `metric`, or the estimator's first when None."""
    chosen = metrics[0] if metric is None else metric
    if chosen not in metrics:
        raise InvalidParameterError(f"early_stopping_metric must be one of {list(metrics)} for {owner}, got {metric!r}")
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

    def __init__(self, verbose: int = 0, prefix: str = "") -> None:
        self.verbose, self.prefix = verbose, prefix

    def on_epoch_end(self, state, record) -> bool:
        state.history.append(record)
        if self.verbose:
            extras = "  ".join(f"{k}={v:.5f}" for k, v in record.items() if k.startswith("eval_"))
            print(f"{self.prefix}epoch {record['epoch']:3d}  train_loss={record['train_loss']:.5f}  {extras}  "
                  f"{record['seconds']:.2f}s", flush=True)
        return False


class EarlyStopping(Callback):
    """Stops once `n_iter_no_change` epochs in a row did not improve `metric` (in the record, from Evaluation)
    by more than `tol` on the best epoch so far, then restores the parameters and optimizer slots of that
    best epoch (the last one that improved by more than tol). The history and the shuffling stream are not
    rewound: history keeps every epoch run, and partial_fit continues with the next epoch's shuffling."""

    def __init__(self, metric: str, n_iter_no_change: int, tol: float = 0.0, verbose: int = 0,
                 prefix: str = "") -> None:
        self.metric, self.n_iter_no_change, self.tol = metric, int(n_iter_no_change), float(tol)
        self.verbose, self.prefix = verbose, prefix
        self.best, self.best_epoch, self.snapshot = None, 0, None

    def on_epoch_end(self, state, record) -> bool:
        score = record[f"eval_{self.metric}"]
        if better(self.metric, score, self.best, self.tol):
            self.best, self.best_epoch = score, record["epoch"]
            self.snapshot = state.snapshot(into=self.snapshot)
            return False
        if record["epoch"] - self.best_epoch >= self.n_iter_no_change:
            if self.verbose:
                best = "none" if self.best is None else f"{self.best:.5f}"
                print(f"{self.prefix}early stopping: no {self.metric} improvement for {self.n_iter_no_change} "
                      f"epochs; restoring epoch {self.best_epoch} ({self.metric}={best})", flush=True)
            return True
        return False

    def result(self):
        """(best epoch, its score), (None, nan) when no epoch had a finite score."""
        if self.best is None:
            return None, float("nan")
        return self.best_epoch, float(self.best)

    def on_train_end(self, state) -> None:
        if self.snapshot is not None:
            state.restore(self.snapshot, rng=False)
