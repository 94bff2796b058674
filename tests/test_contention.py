"""The trainer's team modes (issue 13): with its cores busy elsewhere, thread 0 may train batches alone while
the team sleeps (cpp/src/trainer.cpp, choose_mode). The chunks and their sums are fixed by n_threads, so the
result must be bit-identical whichever threads ran which batches. FASTAFM_TEAM_MODE=alternate switches modes
every batch, =team never leaves the team; both against the adaptive default."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from support import random_csr


def fit_params(monkeypatch, mode, X, y, n_threads):
    if mode is None:
        monkeypatch.delenv("FASTAFM_TEAM_MODE", raising=False)
    else:
        monkeypatch.setenv("FASTAFM_TEAM_MODE", mode)
    model = fastafm.AFMRegressor(embedding_dim=12, attention_dim=10, batch_size=16, n_epochs=3, dropout=0.2,
                                 n_threads=n_threads, random_state=3)
    model.fit(X, y)
    return {name: np.array(v, copy=True) for name, v in model.get_model_params().items()}


@pytest.mark.parametrize("n_threads", [2, 3])
def test_team_modes_give_bit_identical_models(monkeypatch, rng, n_threads):
    X = random_csr(rng, list(rng.integers(0, 9, size=300)), n_features=40)
    y = rng.normal(size=X.shape[0])
    ref = fit_params(monkeypatch, "team", X, y, n_threads)
    for mode in ("alternate", None):
        got = fit_params(monkeypatch, mode, X, y, n_threads)
        for name, value in ref.items():
            assert np.array_equal(got[name], value), f"{name} differs with FASTAFM_TEAM_MODE={mode}"
