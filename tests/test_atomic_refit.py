"""Atomic refits (issue 26): a fit that fails at any stage leaves a previously fitted model exactly as it was —
parameters, optimizer state, history and every other fitted attribute (compared as the pickled estimator, byte
for byte), and its predictions. Each stage fails for real where it can (divergence, a bad eval_set), else by an
injected error at that stage (an epoch, the pretraining FM, a callback, KeyboardInterrupt)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastafm
from fastafm.training import callbacks, engine

SMALL = dict(embedding_dim=4, attention_dim=4, n_epochs=3, n_threads=1, random_state=0)


@pytest.fixture(scope="module")
def data():
    X, y, _ = fastafm.make_planted(n_rows=400, n_fields=4, cardinality=6, planted_pairs=((0, 1),), random_state=0)
    return X, y


def _fail_on_epoch(monkeypatch, n: int, exc: BaseException):
    """Make the n-th epoch of the engine (counting the pretraining FM's) raise `exc` after training its rows."""
    calls = {"n": 0}
    run_epoch = engine.LocalEpochs.run_epoch

    def failing(self, epoch):
        loss = run_epoch(self, epoch)
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return loss

    monkeypatch.setattr(engine.LocalEpochs, "run_epoch", failing)
    return calls


def _fail_callback(monkeypatch, exc: BaseException):
    def failing(self, model, record):
        raise exc

    monkeypatch.setattr(callbacks.Evaluation, "on_epoch_end", failing)


STAGES = {
    "the pretraining FM": lambda mp, m, X, y: (_fail_on_epoch(mp, 1, RuntimeError("epoch")), m.fit(X, y)),
    "an AFM epoch after the FM": lambda mp, m, X, y: (_fail_on_epoch(mp, 5, RuntimeError("epoch")), m.fit(X, y)),
    "an epoch without pretraining": lambda mp, m, X, y: (_fail_on_epoch(mp, 2, RuntimeError("epoch")),
                                                         m.set_params(pretrain=None), m.fit(X, y)),
    "KeyboardInterrupt": lambda mp, m, X, y: (_fail_on_epoch(mp, 4, KeyboardInterrupt()), m.fit(X, y)),
    "a callback of the FM": lambda mp, m, X, y: (_fail_callback(mp, ValueError("callback")),
                                                 m.fit(X, y, eval_set=(X[:50], y[:50]))),
    "a callback of the AFM": lambda mp, m, X, y: (_fail_callback(mp, ValueError("callback")),
                                                  m.set_params(pretrain=None), m.fit(X, y, eval_set=(X[:50], y[:50]))),
    "a divergence": lambda mp, m, X, y: (m.set_params(learning_rate=1e30, pretrain=None, dropout=0.0),
                                         m.fit(X * 1e3, y)),
    "a bad eval_set": lambda mp, m, X, y: m.fit(X, y, eval_set=(X[:, :3], y)),
    "bad hyperparameters": lambda mp, m, X, y: (m.set_params(batch_size=0), m.fit(X, y)),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("cls", [fastafm.AFMRegressor, fastafm.AFMClassifier])
def test_a_failed_refit_leaves_the_fitted_model_exactly_as_it_was(data, monkeypatch, stage, cls):
    X, y = data
    y = (y > np.median(y)).astype(int) if cls is fastafm.AFMClassifier else y
    model = cls(**SMALL).fit(X, y, eval_set=(X[:100], y[:100]))
    before, params, pred = pickle.dumps(model), model.get_params(), model.predict(X)
    with pytest.raises(BaseException) as info:
        STAGES[stage](monkeypatch, model, X, y)
    assert not isinstance(info.value, AssertionError), info.value
    monkeypatch.undo()
    model.set_params(**params)  # the stages that fail by a hyperparameter set it first
    assert pickle.dumps(model) == before, stage
    np.testing.assert_array_equal(model.predict(X), pred)
    assert model.n_epochs_done_ >= 1 and model.best_epoch_ is not None


def test_a_failed_first_fit_keeps_what_it_reached(data, monkeypatch):
    """Atomicity protects a fitted model; an interrupted first fit keeps its completed epochs (docs: Ctrl-C)."""
    X, y = data
    _fail_on_epoch(monkeypatch, 2, KeyboardInterrupt())
    model = fastafm.AFMRegressor(**SMALL, pretrain=None)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert model.n_epochs_done_ == 1
