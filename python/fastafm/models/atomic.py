"""Atomic refits: a `fit` that fails at any stage (the pretraining FM, an epoch, a callback, a divergence,
KeyboardInterrupt, a bad eval_set) leaves a previously fitted estimator exactly as it was.

A fit builds a new TrainingState and new arrays and never writes into the ones a previous fit left, so keeping
the estimator's attribute dict (a shallow copy: the same objects) and putting it back on failure restores every
fitted attribute, its parameters, optimizer state and history, at no copying cost. A first fit that fails keeps
what it reached (an interrupted first fit keeps its completed batches, as documented); partial_fit continues a
model in place and is not atomic.
"""
from __future__ import annotations

import functools


def atomic_refit(fit):
    """Decorate `fit(self, ...)`: on any exception, a previously fitted `self` gets its attributes back."""

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        fitted = hasattr(self, "training_state_") or hasattr(self, "_local_")  # one process, Dask
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            if fitted:
                self.__dict__.clear()
                self.__dict__.update(before)
            raise

    return wrapper
