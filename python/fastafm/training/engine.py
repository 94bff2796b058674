"""The training engine: `train(epochs, n_epochs, callbacks)` runs epochs and rolls a diverged epoch back;
evaluation, history and early stopping are callbacks (fastafm.training.callbacks).

What an epoch is differs between one process and Dask, and nothing else does: `LocalEpochs` (here) runs the
row source's epoch through this process's core Trainer, fastafm.dask.driver.DaskEpochs runs it in sync rounds
across the workers (each through its own core Trainer, over the same row sources) with a merge. Both offer
`run_epoch`, `weight_sum`, the training `state` (its epoch count and history), and `snapshot` / `restore` /
`finite` of the model they train, which is what the engine and the callbacks use. Estimators, the CLI and the
Dask workers configure the core through `make_config`, from the plain settings of
fastafm.models.hyperparams.core_settings; `CoreTrainer` is the package's one entry into the core's training.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from .. import _core
from ..models.params import ADAM_BETA1, ADAM_BETA2, ADAM_EPS
from .state import TrainingState

def make_config(settings: dict, seed: int = 0, epoch: int = 0) -> _core.TrainConfig:
    """A TrainConfig from plain settings (TrainConfig itself is not picklable, the settings are)."""
    cfg = _core.TrainConfig()
    cfg.loss = getattr(_core.Loss, settings["loss"])
    cfg.optimizer = getattr(_core.Optimizer, settings["optimizer"])
    cfg.attention = bool(settings["attention"])
    cfg.learn_projection = bool(settings["learn_projection"])
    cfg.dropout = float(settings["dropout"])
    cfg.attention_l2 = float(settings["attention_l2"])
    cfg.l2 = float(settings["l2"])
    cfg.frequency_l2 = float(settings["frequency_l2"])
    cfg.learning_rate = float(settings["learning_rate"])
    cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps = ADAM_BETA1, ADAM_BETA2, ADAM_EPS
    cfg.batch_size = int(settings["batch_size"])
    cfg.n_threads = int(settings["n_threads"])
    cfg.bf16 = settings.get("precision", "fp32") == "bf16"
    if cfg.bf16 and not _core.bf16_supported():
        raise ValueError("precision='bf16' needs a CPU with AVX512_BF16 (the avx512_bf16 flag of /proc/cpuinfo: "
                         "AMD Zen 4, Intel Sapphire Rapids or later); this CPU lacks it: use precision='fp32'")
    cfg.seed = int(seed)
    cfg.epoch = int(epoch)
    return cfg


class CoreTrainer:
    """The core's Trainer over `params` and the optimizer `slots` (updated in place) for one fit: its work
    memory lives across epochs, streamed blocks and Dask rounds. `run` trains some rows of one row set with
    the dropout stream (seed, epoch). `feature_counts`: the n_i of frequency_l2 (the occurrences of each
    feature in the rows this trainer trains), needed only when frequency_l2 > 0."""

    def __init__(self, params: dict, slots: dict, settings: dict, feature_counts=None) -> None:
        self._trainer = _core.Trainer(params, slots, make_config(settings), feature_counts=feature_counts)

    def run(self, indptr, indices, values, y, order, seed: int, epoch: int, progress=None, weights=None) -> dict:
        return self._trainer.train_epoch(indptr, indices, values, y, order, seed=int(seed), epoch=int(epoch),
                                         progress=progress, weights=weights)


class LocalEpochs:
    """Epochs in this process: the row source's epoch (fastafm.training.rows) through one core Trainer over the
    state's parameters and slots, with a progress bar when verbose."""

    def __init__(self, state: TrainingState, rows, settings: dict, verbose: int = 0) -> None:
        if state.spec.attention:  # work quadratic in a row's non-zeros: the limit of fastafm.data.limits
            rows.check_pairs()
        rows.check_memory(state.spec, settings)
        self.state, self.rows, self.settings, self.verbose = state, rows, settings, verbose
        self.weight_sum = rows.weight_sum
        self._trainer: CoreTrainer | None = None

    def start(self) -> None:
        # frequency_l2's n_i: over the rows this call trains (fit: the training rows; partial_fit: the rows given).
        counts = None
        if float(self.settings["frequency_l2"]) > 0.0:
            counts = self.rows.feature_counts(self.state.spec.n_features)
        self._trainer = CoreTrainer(self.state.core_params(), self.state.slots, self.settings, counts)

    def run_epoch(self, epoch: int) -> float:
        assert self._trainer is not None
        with epoch_progress(self.verbose, self.rows.n_rows, epoch) as progress:
            return self.rows.run_epoch(self.state, self._trainer, progress)

    @property
    def history(self) -> list:
        return self.state.history

    def snapshot(self, into=None):
        return self.state.snapshot(into)

    def restore(self, snap, rng: bool = True) -> None:
        self.state.restore(snap, rng)

    def finite(self) -> bool:
        return self.state.finite()


class Callback:
    """Hooks of `train`: on_epoch_end may add to the epoch's record and returns True to stop. `model` is the
    epochs' runner: its `history`, and `snapshot` / `restore` of the model trained."""

    def on_epoch_end(self, model, record: dict) -> bool:
        return False

    def on_train_end(self, model) -> None:
        return None


def train(epochs, n_epochs: int, callbacks=()) -> None:
    """n_epochs epochs of `epochs` (LocalEpochs or DaskEpochs), fewer when a callback stops.

    A diverged epoch (non-finite loss or parameters) is rolled back to its start, parameters, optimizer
    slots and shuffling stream, and raises FloatingPointError; an interrupt (KeyboardInterrupt, a progress
    callback's error) keeps every completed batch unless one went non-finite.
    """
    if n_epochs <= 0:
        return
    epochs.start()
    state = epochs.state
    saved = epochs.snapshot()  # the rollback buffers: allocated once per call, refilled every epoch
    for _ in range(n_epochs):
        epoch = state.n_epochs_done + 1
        saved = epochs.snapshot(into=saved)
        start = time.perf_counter()
        try:
            loss_sum = epochs.run_epoch(epoch)
        except BaseException:
            if not epochs.finite():
                epochs.restore(saved)
            raise
        # The mean loss per unit of weight (per row when unweighted).
        record = {"epoch": epoch, "train_loss": loss_sum / epochs.weight_sum, "seconds": time.perf_counter() - start}
        if not np.isfinite(record["train_loss"]) or not epochs.finite():
            epochs.restore(saved)
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: the loss or a parameter became NaN or infinite; the model "
                f"keeps the parameters from the end of epoch {epoch - 1}. Try a smaller learning_rate (now "
                f"{epochs.settings['learning_rate']}), or scale the feature values down"
            )
        stop = False
        for callback in callbacks:
            stop = callback.on_epoch_end(epochs, record) or stop
        state.n_epochs_done += 1
        if stop:
            break
    for callback in callbacks:
        callback.on_train_end(epochs)


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
