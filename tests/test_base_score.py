"""The intercept starts at the best constant of the training rows (the objectives' initial_bias): the weighted
mean of the targets, or the log-odds of the weighted classes — which lets scikit-learn's
check_class_weight_classifiers pass at the default 20 epochs (tests/test_sklearn_compat.py)."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm.training import engine
from fastafm.objectives import objective

TINY = dict(embedding_dim=2, attention_dim=2, n_threads=1, random_state=0, pretrain=None)


def test_base_score_is_the_best_constant_of_the_loss():
    t = np.array([1.0, 1.0, -1.0, -1.0, -1.0])
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.0])
    mean = (w @ t) / w.sum()
    assert objective("logistic").initial_bias(mean) == pytest.approx(np.log(3.0 / 2.0), rel=1e-12)
    assert objective("squared").initial_bias(mean) == pytest.approx(mean, rel=1e-15)
    assert objective("rate").initial_bias(2 * 0.25 - 1) == pytest.approx(np.log(0.25 / 0.75), rel=1e-12)
    one_class = objective("logistic").initial_bias(1.0)  # one class only (weight 0 for the other): bounded
    assert np.isfinite(one_class) and one_class > 10
    assert objective("logistic").initial_bias(-1.0) == pytest.approx(-one_class, rel=1e-9)


@pytest.mark.parametrize("source", ["memory", "cache"])
def test_fit_starts_w0_at_the_weighted_base_score(monkeypatch, tmp_path, source):
    """The w0 the first epoch starts from, in memory and streamed from a cache, with sample and class weights."""
    rng = np.random.default_rng(0)
    X = fastafm.from_fields(rng.integers(0, 5, size=(200, 3)), n_features=15)
    y = (rng.random(200) < 0.3).astype(int)
    w = rng.uniform(0.5, 2.0, 200)
    started = []
    run_epoch = engine.LocalEpochs.run_epoch

    def spy(self, epoch):
        if epoch == 1:
            started.append(float(self.state.params["w0"][0]))
        return run_epoch(self, epoch)

    monkeypatch.setattr(engine.LocalEpochs, "run_epoch", spy)
    model = fastafm.AFMClassifier(**TINY, n_epochs=1, class_weight={0: 1.0, 1: 3.0})
    if source == "memory":
        model.fit(X, y, sample_weight=w)
    else:
        model.fit(fastafm.convert((X, y), tmp_path / "c.cache", weights=w))
    cw = np.where(y == 1, 3.0, 1.0) * w.astype(np.float32).astype(np.float64)
    want = np.log(cw[y == 1].sum() / cw[y == 0].sum())
    assert started == [pytest.approx(want, rel=1e-5)]
    started.clear()
    fastafm.AFMRegressor(**TINY, n_epochs=1).fit(X, y * 10.0 + 5.0)
    assert started == [pytest.approx(np.mean(y * 10.0 + 5.0), rel=1e-6)]
