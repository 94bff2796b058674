"""The training engine: `train(state, rows, n_epochs, settings, callbacks)` runs epochs of the core over a row
source (fastafm._streaming) and rolls a diverged epoch back; evaluation, history and early stopping are
callbacks (fastafm._callbacks). Estimators, the CLI and the Dask workers all configure the core through
`make_config`, from the plain settings of fastafm._hyperparams.core_settings.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .. import _core
from .. import reference
from .state import TrainingState


def make_config(settings: dict, seed: int, epoch: int) -> _core.TrainConfig:
    """A TrainConfig from plain settings (TrainConfig itself is not picklable, the settings are)."""
    cfg = _core.TrainConfig()
    cfg.loss = _core.Loss.squared if settings["loss"] == "squared" else _core.Loss.logistic
    cfg.optimizer = getattr(_core.Optimizer, settings["optimizer"])
    cfg.attention = bool(settings["attention"])
    cfg.learn_projection = bool(settings["learn_projection"])
    cfg.dropout = float(settings["dropout"])
    cfg.attention_l2 = float(settings["attention_l2"])
    cfg.l2 = float(settings["l2"])
    cfg.frequency_l2 = float(settings["frequency_l2"])
    cfg.learning_rate = float(settings["learning_rate"])
    cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps = reference.ADAM_BETA1, reference.ADAM_BETA2, reference.ADAM_EPS
    cfg.batch_size = int(settings["batch_size"])
    cfg.n_threads = int(settings["n_threads"])
    cfg.seed = int(seed)
    cfg.epoch = int(epoch)
    return cfg


class CoreTrainer:
    """The core's Trainer for one fit of `state` (its work memory lives across epochs and streamed blocks).
    `run` trains one row set in place with the dropout stream (seed, the state's current epoch).
    `feature_counts`: the n_i of frequency_l2 (the occurrences of each feature in the rows of this call)."""

    def __init__(self, state: TrainingState, settings: dict, feature_counts=None) -> None:
        self.state = state
        self._trainer = _core.Trainer(state.params, state.slots, make_config(settings, state.dropout_seed,
                                                                               state.n_epochs_done),
                                      feature_counts=feature_counts)

    def run(self, indptr, indices, values, y, order, seed: int, progress=None, weights=None) -> dict:
        return self._trainer.train_epoch(indptr, indices, values, y, order, seed=int(seed),
                                         epoch=int(self.state.n_epochs_done), progress=progress, weights=weights)


class Callback:
    """Hooks of `train`: on_epoch_end may add to the epoch's record and returns True to stop."""

    def on_epoch_end(self, state: TrainingState, record: dict) -> bool:
        return False

    def on_train_end(self, state: TrainingState) -> None:
        return None


def train(state: TrainingState, rows, n_epochs: int, settings: dict, callbacks=(), verbose: int = 0) -> None:
    """n_epochs epochs over `rows` (rows in memory or a streamed cache), fewer when a callback stops.

    A diverged epoch (non-finite loss or parameters) is rolled back to its start, parameters, optimizer
    slots and shuffling stream, and raises FloatingPointError; an interrupt (KeyboardInterrupt, a progress
    callback's error) keeps every completed batch unless one went non-finite.
    """
    rows.check_memory(state.spec, settings)
    if n_epochs <= 0:
        return
    # frequency_l2's n_i: over the rows this call trains (fit: the training rows; partial_fit: the rows given).
    counts = rows.feature_counts(state.spec.n_features) if float(settings["frequency_l2"]) > 0.0 else None
    trainer = CoreTrainer(state, settings, counts)
    saved = state.snapshot()  # the rollback buffers: allocated once per call, refilled every epoch
    for _ in range(n_epochs):
        epoch = state.n_epochs_done + 1
        state.snapshot(into=saved)
        start = time.perf_counter()
        try:
            with epoch_progress(verbose, rows.n_rows, epoch) as progress:
                loss_sum = rows.run_epoch(state, trainer, progress)
        except BaseException:
            if not state.finite():
                state.restore(saved)
            raise
        # The mean loss per unit of weight (per row when unweighted).
        record = {"epoch": epoch, "train_loss": loss_sum / rows.weight_sum, "seconds": time.perf_counter() - start}
        if not np.isfinite(record["train_loss"]) or not state.finite():
            state.restore(saved)
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: the loss or a parameter became NaN or infinite; the model "
                f"keeps the parameters from the end of epoch {epoch - 1}. Try a smaller learning_rate (now "
                f"{settings['learning_rate']}), or scale the feature values down"
            )
        stop = False
        for callback in callbacks:
            stop = callback.on_epoch_end(state, record) or stop
        state.n_epochs_done += 1
        if stop:
            break
    for callback in callbacks:
        callback.on_train_end(state)


@contextlib.contextmanager
def epoch_progress(verbose, n_rows: int, epoch: int):
    """A tqdm bar over the rows of one epoch, as the core's progress callback (None when verbose is 0 or
    tqdm is missing). verbose=1 shows it only on a terminal (tqdm's own check); verbose>=2 always."""
    bar = None
    if verbose:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # optional: without tqdm, only the per-epoch lines
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=n_rows, desc=f"epoch {epoch}", unit="rows", unit_scale=True, leave=False,
                       disable=None if verbose < 2 else False, mininterval=0.5, dynamic_ncols=True)
    if bar is None or bar.disable:
        if bar is not None:
            bar.close()
        yield None
        return
    done = 0

    def progress(rows_done):
        nonlocal done
        bar.update(rows_done - done)
        done = rows_done

    try:
        yield progress
    finally:
        bar.close()
