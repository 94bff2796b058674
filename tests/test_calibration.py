"""Issue 24: negative_sampling_rate (the log-odds correction for downsampled logs), rate targets on the
regressors (loss="logistic": aggregated click/impression rows), their bad inputs, NE and ECE."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import metrics

SMALL = dict(embedding_dim=8, random_state=0)


def _downsampled(rate=0.1, seed=0):
    X, y, _, _ = fastafm.make_clicks(60000, random_state=seed)
    Xt, yt, X, y = X[40000:], y[40000:], X[:40000], y[:40000]
    keep = (y == 1) | (np.random.default_rng(seed + 1).random(y.shape[0]) < rate)
    return X[keep], y[keep], Xt, yt


@pytest.mark.parametrize("cls,extra", [(fastafm.AFMClassifier, dict(attention_dim=8)), (fastafm.FMClassifier, {})])
def test_told_the_sampling_rate_the_mean_probability_is_the_population_rate(cls, extra):
    Xs, ys, Xt, yt = _downsampled(0.1)
    assert ys.mean() > 4 * yt.mean()  # the training rows are far from the population
    told = cls(negative_sampling_rate=0.1, n_epochs=10, **SMALL, **extra).fit(Xs, ys)
    naive = cls(n_epochs=10, **SMALL, **extra).fit(Xs, ys)
    base = float(yt.mean())
    assert told.predict_proba(Xt)[:, 1].mean() == pytest.approx(base, rel=0.10)
    assert naive.predict_proba(Xt)[:, 1].mean() > 2 * base  # told nothing: far off
    # The correction is exactly log(rate) on the logit, and the same rows train the same parameters.
    np.testing.assert_allclose(told.decision_function(Xt), naive.decision_function(Xt) + np.log(0.1), rtol=1e-6)


def test_sampling_rate_is_kept_in_model_files_and_onnx(tmp_path):
    Xs, ys, Xt, _ = _downsampled(0.1)
    model = fastafm.AFMClassifier(negative_sampling_rate=0.25, attention_dim=8, n_epochs=2, **SMALL).fit(Xs, ys)
    model.save(tmp_path / "m.afm")
    loaded = fastafm.load(tmp_path / "m.afm")
    assert loaded.negative_sampling_rate == 0.25
    np.testing.assert_array_equal(loaded.predict_proba(Xt[:50]), model.predict_proba(Xt[:50]))
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    proto = fastafm.onnx.export(model)
    sess = ort.InferenceSession(proto.SerializeToString())
    idx, val = fastafm.onnx.to_padded(Xt[:50])
    score, proba = sess.run(None, {"indices": idx, "values": val})
    np.testing.assert_allclose(score, model.decision_function(Xt[:50]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(proba, model.predict_proba(Xt[:50])[:, 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, float("nan")])
def test_a_sampling_rate_outside_zero_one_is_refused_by_name(rate):
    X, y, _, _ = fastafm.make_clicks(200, random_state=0)
    with pytest.raises(ValueError, match="negative_sampling_rate"):
        fastafm.FMClassifier(negative_sampling_rate=rate, **SMALL).fit(X, y)


def _aggregated(n_rows=20000, seed=0):
    X, y, _, _ = fastafm.make_clicks(n_rows + 5000, n_fields=4, cardinality=5, base_logit=-1.0, random_state=seed)
    Xt, yt, X, y = X[n_rows:], y[n_rows:], X[:n_rows], y[:n_rows]
    keys, inv = np.unique(X.toarray(), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = np.bincount(inv).astype(np.float64)
    return X, y, sp.csr_matrix(keys), np.bincount(inv, weights=y) / n, n, Xt, yt


@pytest.mark.parametrize("cls,extra", [(fastafm.AFMRegressor, dict(attention_dim=8)), (fastafm.FMRegressor, {})])
def test_aggregated_rows_reach_the_expanded_rows_log_loss(cls, extra):
    X, y, Xa, rate, n, Xt, yt = _aggregated()
    clf = {fastafm.AFMRegressor: fastafm.AFMClassifier, fastafm.FMRegressor: fastafm.FMClassifier}[cls]
    expanded = clf(n_epochs=10, early_stopping=False, **SMALL, **extra).fit(X, y)
    agg = cls(loss="logistic", n_epochs=60, batch_size=16, early_stopping=False, **SMALL, **extra)
    agg.fit(Xa, rate, sample_weight=n)
    assert Xa.shape[0] < X.shape[0] / 20
    want = metrics.log_loss(yt, expanded.predict_proba(Xt)[:, 1])
    got = metrics.log_loss(yt, agg.predict(Xt))
    assert got <= want * 1.02
    p = agg.predict(Xt)
    assert np.all((p > 0) & (p < 1))
    assert set(agg.history_[-1]) >= {"train_loss"}


def test_rate_regressor_history_watches_logloss_and_ne(tmp_path):
    X, y, Xa, rate, n, Xt, yt = _aggregated(4000)
    model = fastafm.FMRegressor(loss="logistic", n_epochs=3, early_stopping_metric="ne", **SMALL)
    model.fit(Xa, rate, sample_weight=n, eval_set=(Xt, yt))
    assert {"eval_logloss", "eval_ne"} <= set(model.history_[-1])
    assert model.history_[-1]["eval_ne"] == pytest.approx(
        metrics.normalized_entropy(yt, model.predict(Xt)), rel=1e-5)
    model.save(tmp_path / "m.fm")
    loaded = fastafm.load(tmp_path / "m.fm")
    assert loaded.loss == "logistic"
    np.testing.assert_array_equal(loaded.predict(Xt), model.predict(Xt))


def test_bad_rate_inputs_are_refused_by_name():
    X, y, Xa, rate, n, _, _ = _aggregated(2000)
    model = fastafm.FMRegressor(loss="logistic", n_epochs=1, **SMALL)
    with pytest.raises(ValueError, match=r"y must hold rates in \[0, 1\]"):
        model.fit(Xa, rate + 1.0, sample_weight=n)
    with pytest.raises(ValueError, match=r"y must hold rates in \[0, 1\]"):
        model.fit(Xa, rate - 1.0, sample_weight=n)
    zero = n.copy()
    zero[3] = 0
    with pytest.raises(ValueError, match=r"sample_weight\[3\] is 0"):
        model.fit(Xa, rate, sample_weight=zero)
    with pytest.raises(ValueError, match="loss"):
        fastafm.FMRegressor(loss="hinge").fit(Xa, rate)


def test_classifiers_history_has_ne_and_can_stop_on_it():
    X, y, _, _ = fastafm.make_clicks(3000, random_state=0)
    model = fastafm.FMClassifier(n_epochs=3, early_stopping=True, early_stopping_metric="ne", linear_fallback=False,
                                 **SMALL).fit(X, y)  # best_score_ an epoch's (not a mix with the linear model's)
    assert "eval_ne" in model.history_[-1] and model.best_score_ == pytest.approx(
        min(h["eval_ne"] for h in model.history_))


def test_normalized_entropy_and_ece():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0.0])
    base = np.full(8, 0.25)
    assert metrics.normalized_entropy(y, base) == pytest.approx(1.0)
    assert metrics.expected_calibration_error(y, base) == pytest.approx(0.0)
    better = np.where(y > 0, 0.9, 0.1)
    assert metrics.normalized_entropy(y, better) < 0.5
    # One bin at 0.9 with observed rate 1 and one at 0.1 with observed rate 0: ECE = 0.1.
    assert metrics.expected_calibration_error(y, better) == pytest.approx(0.1)
    # Rates with weights are their expanded rows.
    rates, w = np.array([0.25, 0.5]), np.array([4.0, 2.0])
    expanded = np.array([1, 0, 0, 0, 1, 0.0])
    p, pe = np.array([0.3, 0.6]), np.array([0.3] * 4 + [0.6] * 2)
    assert metrics.normalized_entropy(rates, p, sample_weight=w) == pytest.approx(metrics.normalized_entropy(expanded, pe))
    with pytest.raises(ValueError, match="n_bins"):
        metrics.expected_calibration_error(y, base, n_bins=0)


def test_rate_rows_from_a_cache_file_train_as_in_memory(tmp_path):
    X, y, Xa, rate, n, Xt, yt = _aggregated(3000)
    path = str(tmp_path / "rates.cache")
    fastafm.convert((Xa, rate), path, weights=n)
    kw = dict(n_epochs=3, batch_size=16, early_stopping=False, **SMALL)
    from_cache = fastafm.FMRegressor(loss="logistic", **kw).fit(fastafm.CacheFile(path))
    in_memory = fastafm.FMRegressor(loss="logistic", **kw).fit(Xa, rate, sample_weight=n)
    assert metrics.log_loss(yt, from_cache.predict(Xt)) == pytest.approx(metrics.log_loss(yt, in_memory.predict(Xt)),
                                                                         rel=0.02)
    bad = str(tmp_path / "bad.cache")
    fastafm.convert((Xa, rate * 3), bad, weights=n)
    with pytest.raises(ValueError, match=r"rates in \[0, 1\]"):
        fastafm.FMRegressor(loss="logistic", **kw).fit(fastafm.CacheFile(bad))


def test_rate_regressor_onnx_has_a_probability_output():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    X, y, Xa, rate, n, Xt, yt = _aggregated(2000)
    model = fastafm.AFMRegressor(loss="logistic", attention_dim=8, n_epochs=2, **SMALL).fit(Xa, rate, sample_weight=n)
    sess = ort.InferenceSession(fastafm.onnx.export(model).SerializeToString())
    idx, val = fastafm.onnx.to_padded(Xt[:40])
    score, proba = sess.run(None, {"indices": idx, "values": val})
    p = model.predict(Xt[:40])  # the rate regressor's probability; score is its logit
    np.testing.assert_allclose(score, np.log(p / (1.0 - p)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(proba, p, rtol=1e-5, atol=1e-6)
