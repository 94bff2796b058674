"""What a fit does around its epochs, the same for every estimator in one process and on Dask: when early
stopping is on, which rows are held out for it, the forms an eval_set may take, the callbacks of a fit and the
attributes it leaves on the estimator."""
from __future__ import annotations

import numpy as np

from .callbacks import EarlyStopping, Evaluation, History, best_of
from .engine import train

#: early_stopping="auto" turns early stopping on from this many training rows (a tenth held out: 100 rows), or
#: whenever an eval_set is given. Measured on the small click logs (bench/small_logs.py, docs/accuracy.md): from
#: 1,000 rows on, the defaults without it ended far above the log loss with it, often above the base rate's.
AUTO_EARLY_STOPPING_ROWS = 1_000
_SPLIT_STREAM = 0x5EED_5EA1  # the validation split's own stream of an integer random_state


def early_stopping_on(setting, n_rows: int, has_eval_set: bool) -> bool:
    """early_stopping resolved: "auto" is on with an eval_set or at least AUTO_EARLY_STOPPING_ROWS rows."""
    if isinstance(setting, str):  # "auto"
        return has_eval_set or n_rows >= AUTO_EARLY_STOPPING_ROWS
    return bool(setting)


def split_generator(random_state) -> np.random.Generator:
    """The generator of the validation split: for an integer random_state its own stream (so the model's
    initialisation and shuffling draw what they draw without the split), for a Generator or RandomState one
    draw from it, None: fresh entropy."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        return np.random.default_rng([int(random_state), _SPLIT_STREAM])
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return np.random.default_rng(int(random_state.integers(0, 2**63 - 1)))
    return np.random.default_rng()


def eval_set_parts(eval_set) -> tuple:
    """(X_eval, y_eval, sample_weight_eval or None) of an eval_set given as a tuple of two or three, or a list
    holding one such tuple."""
    if isinstance(eval_set, list):
        if len(eval_set) != 1:
            raise ValueError("eval_set must be one (X, y) or (X, y, sample_weight) tuple or a list holding one")
        eval_set = eval_set[0]
    if not isinstance(eval_set, tuple) or len(eval_set) not in (2, 3):
        raise ValueError("eval_set must be a tuple (X_eval, y_eval) or (X_eval, y_eval, sample_weight_eval)")
    return eval_set[0], eval_set[1], None if len(eval_set) == 2 else eval_set[2]


def run(epochs, n_epochs: int, evaluate, stopping: bool, metric: str, estimator, prefix: str = ""):
    """`n_epochs` epochs (fastafm.training.engine.train) with the callbacks of a fit: the eval metrics
    (`evaluate() -> {"eval_...": value}`, None without evaluation rows), the history and, with `stopping`,
    early stopping on `metric` (the estimator's n_iter_no_change, tol, verbose). Returns (best epoch, best
    score) of `metric`, (None, nan) without an evaluation."""
    verbose = int(estimator.verbose)
    callbacks: list = []
    if evaluate is not None:
        callbacks.append(Evaluation(evaluate))
    callbacks.append(History(verbose, prefix))
    stopper = None
    if stopping:
        stopper = EarlyStopping(metric, estimator.n_iter_no_change, estimator.tol, verbose, prefix)
        callbacks.append(stopper)
    train(epochs, n_epochs, callbacks)
    if stopper is not None:
        return stopper.result()
    return best_of(epochs.history, metric) if evaluate is not None else (None, float("nan"))


def record_results(estimator, history: list, evaluated: bool, best, metric: str, stopping: bool) -> None:
    """The attributes a fit leaves: do_early_stopping_, and with an evaluation best_epoch_, best_score_ and
    validation_score_ (an earlier fit's are removed)."""
    estimator.do_early_stopping_ = stopping
    for name in ("best_epoch_", "best_score_", "validation_score_"):
        estimator.__dict__.pop(name, None)
    if evaluated:
        estimator.best_epoch_, estimator.best_score_ = best
        estimator.validation_score_ = np.array([r[f"eval_{metric}"] for r in history], dtype=np.float64)
