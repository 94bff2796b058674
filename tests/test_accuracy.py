"""The accuracy features: the FM baseline, warm start from FM, early stopping, metrics, reading the attention,
and progress output. Small synthetic data only (fastafm.make_planted and random rows), single-threaded so that
bit-identity holds."""
from __future__ import annotations

import re

import numpy as np
import pytest
from support import random_csr, slot_arrays, raw_output

import fastafm
from fastafm import metrics
from fastafm.interpret import PairAttention

pytest.importorskip("sklearn")
import sklearn.metrics as skm  # noqa: E402
from sklearn.base import clone  # noqa: E402


def planted(n_rows=2000, seed=0, classification=False, noise=0.1):
    return fastafm.make_planted(n_rows=n_rows, n_fields=5, cardinality=8, planted_pairs=((0, 1), (2, 3)),
                                noise=noise, classification=classification, random_state=seed)


def fm_pair_sum(X, V):
    """sum_{r<s} <V[i_r], V[i_s]> x_r x_s per row, as an explicit double loop over the stored non-zeros."""
    out = np.zeros(X.shape[0])
    V = V.astype(np.float64)
    for row in range(X.shape[0]):
        lo, hi = X.indptr[row], X.indptr[row + 1]
        ids, vals = X.indices[lo:hi], X.data[lo:hi].astype(np.float64)
        for r in range(len(ids)):
            for s in range(r + 1, len(ids)):
                out[row] += V[ids[r]] @ V[ids[s]] * vals[r] * vals[s]
    return out


# ---------------------------------------------------------------------------------------------- FM baseline
@pytest.mark.parametrize("cls", [fastafm.FMRegressor, fastafm.FMClassifier])
def test_fm_pair_term_is_the_explicit_double_sum(rng, cls):
    n_features = 30
    X = random_csr(rng, rng.integers(0, 9, size=300), n_features)  # repeated ids, real values, rows of 0..8
    y = rng.normal(size=300) if cls is fastafm.FMRegressor else (rng.random(300) > 0.5).astype(float)
    model = cls(embedding_dim=6, n_epochs=3, dropout=0.3, learning_rate=0.1, init_std=0.3, n_threads=1,
                random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.p_, np.ones(6, np.float32))  # p is not trained: the FM term has no p
    assert np.abs(model.w_).max() > 0 and model.w0_ != 0
    X_new = random_csr(rng, [0, 1, 2, 5, 8, 12], n_features)
    X_new.indices[X_new.indptr[4] : X_new.indptr[4] + 3] = 7  # a row holding the same id three times
    want = model.w0_ + X_new @ model.w_.astype(np.float64) + fm_pair_sum(X_new, model.V_)
    np.testing.assert_allclose(raw_output(model)(X_new), want, rtol=1e-4, atol=1e-5)


def test_fm_hyperparameters_are_fms_own():
    fm = fastafm.FMRegressor(embedding_dim=16, n_epochs=2)
    params = fm.get_params()
    assert "attention_dim" not in params and "attention_l2" not in params and "attention" not in params
    assert params["embedding_dim"] == 16 and params["n_iter_no_change"] == 2 and "pretrain" not in params
    assert clone(fm).get_params() == params
    with pytest.raises(ValueError, match="attention_dim"):
        fm.set_params(attention_dim=8)
    X, y, _ = planted(n_rows=400)
    fm.fit(X, y)
    assert fm.W_.shape == (1, 16) and fm.V_.shape == (X.shape[1], 16)
    # FM and AFM are siblings over one base (issue 11), no longer FM a subclass of AFM.
    assert not isinstance(fm, fastafm.AFMRegressor) and not issubclass(fastafm.FMRegressor, fastafm.AFMRegressor)
    pa = fm.pair_attention(X[:3])
    np.testing.assert_array_equal(pa.weights, 1.0)  # FM weighs every pair 1


def test_fm_passes_the_sklearn_estimator_checks():
    sklearn = pytest.importorskip("sklearn")
    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):
        pytest.skip("check_estimator(on_fail=None) needs scikit-learn >= 1.6")
    import warnings

    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import check_estimator

    # The expected failures of tests/test_sklearn_compat.py, with their reasons (mini-batch training is not
    # equivalent to repeated rows).
    from test_sklearn_compat import EXPECTED_FAILED_CHECKS

    for est in (fastafm.FMRegressor(embedding_dim=4, n_epochs=20, n_threads=1, random_state=0),
                fastafm.FMClassifier(embedding_dim=4, n_epochs=20, n_threads=1, random_state=0)):
        with warnings.catch_warnings():  # the array-API check skips itself without SCIPY_ARRAY_API
            warnings.simplefilter("ignore", SkipTestWarning)
            results = check_estimator(est, on_fail=None,
                                      expected_failed_checks=EXPECTED_FAILED_CHECKS[type(est).__name__])
        failed = sorted({r["check_name"] for r in results if r["status"] == "failed"})
        assert len(results) > 40 and failed == [], (type(est).__name__, failed)


# ---------------------------------------------------------------------------------------------- warm start
def test_warm_start_copies_w0_w_V_and_initialises_the_rest_as_usual():
    X, y, _ = planted(n_rows=1500)
    fm = fastafm.FMRegressor(embedding_dim=8, n_epochs=4, n_threads=1, random_state=1).fit(X, y)
    kw = dict(embedding_dim=8, attention_dim=6, n_threads=1, random_state=5)
    warm = fastafm.AFMRegressor(n_epochs=0, **kw).fit(X, y, init=fm)
    cold = fastafm.AFMRegressor(n_epochs=0, **kw).fit(X, y)
    for name in ("w0", "w", "V"):
        np.testing.assert_array_equal(warm.get_model_params()[name], fm.get_model_params()[name], err_msg=name)
    for name in ("W", "b", "h", "p"):  # the attention network and p: as without warm start (p = 1)
        np.testing.assert_array_equal(warm.get_model_params()[name], cold.get_model_params()[name], err_msg=name)
    np.testing.assert_array_equal(warm.p_, 1.0)
    # The copy is a copy: training the AFM leaves the FM alone, and starts from the FM's fit.
    V_fm = fm.V_.copy()
    trained = fastafm.AFMRegressor(n_epochs=1, **kw).fit(X, y, init=fm)
    np.testing.assert_array_equal(fm.V_, V_fm)
    assert not np.array_equal(trained.V_, V_fm)
    first = fastafm.AFMRegressor(n_epochs=1, **kw).fit(X, y, eval_set=(X, y)).history_[0]["eval_rmse"]
    assert trained.fit(X, y, eval_set=(X, y), init=fm).history_[0]["eval_rmse"] < first
    # A dict of arrays works as well.
    from_dict = fastafm.AFMRegressor(n_epochs=0, **kw).fit(X, y, init={k: fm.get_model_params()[k]
                                                                      for k in ("w0", "w", "V")})
    np.testing.assert_array_equal(from_dict.V_, fm.V_)


def test_warm_start_rejects_mismatches():
    X, y, _ = planted(n_rows=300)
    fm = fastafm.FMRegressor(embedding_dim=8, n_epochs=1, n_threads=1, random_state=1).fit(X, y)
    with pytest.raises(ValueError, match="embedding_dim 8 but this model has embedding_dim 16"):
        fastafm.AFMRegressor(embedding_dim=16, n_epochs=1).fit(X, y, init=fm)
    with pytest.raises(ValueError, match="has 40 features but X has 30"):
        fastafm.AFMRegressor(embedding_dim=8, n_epochs=1).fit(X[:, :30], y, init=fm)
    with pytest.raises(ValueError, match="not fitted"):
        fastafm.AFMRegressor(embedding_dim=8).fit(X, y, init=fastafm.FMRegressor(embedding_dim=8))
    with pytest.raises(ValueError, match="missing"):
        fastafm.AFMRegressor(embedding_dim=8).fit(X, y, init={"V": fm.V_})
    with pytest.raises(TypeError, match="init must be"):
        fastafm.AFMRegressor(embedding_dim=8).fit(X, y, init="fm.afm")


# ---------------------------------------------------------------------------------------------- early stopping
def overfitting_data(classification=False):
    """A tiny, noisy training set and a larger held-out set: the eval metric improves, then gets worse."""
    X, y, _ = planted(n_rows=1400, seed=3, classification=classification, noise=0.2 if classification else 0.5)
    return X[:150], y[:150], X[150:], y[150:]


@pytest.mark.parametrize(("cls", "metric"), [(fastafm.AFMRegressor, None), (fastafm.AFMRegressor, "mae"),
                                             (fastafm.FMRegressor, None), (fastafm.AFMClassifier, None),
                                             (fastafm.FMClassifier, "auc")])
def test_early_stopping_restores_the_best_epoch(cls, metric):
    classification = cls in (fastafm.AFMClassifier, fastafm.FMClassifier)
    X, y, X_eval, y_eval = overfitting_data(classification)
    kw = dict(embedding_dim=8, learning_rate=0.02 if classification else 0.05, dropout=0.0, batch_size=16,
              n_threads=1, random_state=7)
    if cls in (fastafm.AFMRegressor, fastafm.AFMClassifier):
        kw.update(attention_dim=4, pretrain=None)
    model = cls(n_epochs=60, n_iter_no_change=3, early_stopping_metric=metric, linear_fallback=False,  # the epoch's
                **kw).fit(X, y, eval_set=(X_eval, y_eval))
    name = "eval_" + (metric or ("rmse" if hasattr(model, "label_range_") else "logloss"))
    scores = [h[name] for h in model.history_]
    best = int(np.argmax(scores) if name == "eval_auc" else np.argmin(scores)) + 1
    assert model.best_epoch_ == best and model.best_score_ == scores[best - 1]
    assert 1 <= best < 40, scores  # the data make it overfit early (from epoch 1 with w0 started at the mean)
    assert len(model.history_) == best + 3 and model.n_epochs_done_ == best + 3
    # The restored model is the model after exactly best_epoch epochs: parameters and Adagrad state.
    ref = cls(n_epochs=best, **kw).fit(X, y)
    for name_, arr in ref.get_model_params().items():
        np.testing.assert_array_equal(model.get_model_params()[name_], arr, err_msg=name_)
    for name_, arr in slot_arrays(ref).items():
        np.testing.assert_array_equal(slot_arrays(model)[name_], arr, err_msg=name_)
    np.testing.assert_array_equal(raw_output(model)(X_eval), raw_output(ref)(X_eval))


def test_without_early_stopping_all_epochs_run_and_the_last_is_kept():
    X, y, X_eval, y_eval = overfitting_data()
    kw = dict(embedding_dim=8, attention_dim=4, learning_rate=0.2, batch_size=16, n_threads=1, random_state=7,
              pretrain=None)
    model = fastafm.AFMRegressor(n_epochs=12, early_stopping=False, **kw).fit(X, y, eval_set=(X_eval, y_eval))
    assert len(model.history_) == 12 and model.best_epoch_ < 12  # informational only
    np.testing.assert_array_equal(model.V_, fastafm.AFMRegressor(n_epochs=12, **kw).fit(X, y).V_)


def test_early_stopping_arguments_are_checked():
    X, y, _ = planted(n_rows=200)
    with pytest.raises(ValueError, match="early_stopping_metric must be one of"):
        fastafm.AFMRegressor(early_stopping_metric="auc").fit(X, y, eval_set=(X, y))
    with pytest.raises(ValueError, match="early_stopping_metric must be one of"):
        fastafm.AFMClassifier(early_stopping_metric="rmse").fit(X, y > 0)
    with pytest.raises(ValueError, match="n_iter_no_change"):
        fastafm.AFMRegressor(n_iter_no_change=0).fit(X, y, eval_set=(X, y))
    with pytest.raises(TypeError, match="n_iter_no_change"):
        fastafm.AFMRegressor(n_iter_no_change=2.5).fit(X, y, eval_set=(X, y))
    for name, value in (("early_stopping", "yes"), ("validation_fraction", 1.0), ("validation_fraction", 0.0),
                        ("tol", -0.1), ("pretrain", "afm")):
        with pytest.raises(ValueError, match=name):
            fastafm.AFMRegressor(**{name: value}).fit(X, y)


# ---------------------------------------------------------------------------------------------- metrics
def test_metrics_match_sklearn(rng):
    y = rng.normal(size=500)
    pred = y + rng.normal(0, 0.5, size=500)
    assert metrics.rmse(y, pred) == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)), rel=1e-12)
    assert metrics.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    clipped = np.clip(pred, -1.0, 1.0)
    assert metrics.rmse(y, pred, clip=(-1.0, 1.0)) == pytest.approx(np.sqrt(skm.mean_squared_error(y, clipped)))
    assert metrics.rmse(y, pred, clip=(-1.0, 1.0)) != pytest.approx(metrics.rmse(y, pred))
    labels = (rng.random(500) < 0.3).astype(float)
    proba = np.clip(rng.random(500) * 0.6 + 0.4 * labels, 1e-6, 1 - 1e-6)
    assert metrics.log_loss(labels, proba) == pytest.approx(skm.log_loss(labels, proba), rel=1e-10)
    score = np.round(proba * 10)  # many ties: counted half, as sklearn
    assert metrics.roc_auc(labels, score) == pytest.approx(skm.roc_auc_score(labels, score), rel=1e-12)
    assert metrics.roc_auc(labels, proba) == pytest.approx(skm.roc_auc_score(labels, proba), rel=1e-12)
    assert np.isnan(metrics.roc_auc(np.ones(5), np.arange(5.0)))


# ---------------------------------------------------------------------------------------------- attention
def test_pair_attention_gives_every_rows_pairs_and_weights():
    X, y, _ = planted(n_rows=600)
    model = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=2, n_threads=1, random_state=0)
    model.fit(X, y)
    X_rows = X[:4].tolil()
    X_rows[1] = 0  # a row without non-zeros: no pairs
    X_rows = X_rows.tocsr()
    pa = model.pair_attention(X_rows)
    assert isinstance(pa, PairAttention) and len(pa) == 4 and "4 rows" in repr(pa)
    indptr, pairs, weights = model.attention_weights(X_rows)
    np.testing.assert_array_equal(pa.indptr, indptr)
    np.testing.assert_array_equal(pa.weights, weights)
    for r in range(4):
        row_pairs, row_weights = pa[r]
        ids = X_rows.indices[X_rows.indptr[r] : X_rows.indptr[r + 1]]
        want = [(ids[a], ids[b]) for a in range(len(ids)) for b in range(a + 1, len(ids))]
        assert [tuple(p) for p in row_pairs] == want
        if want:
            assert row_weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert pa[1][0].shape == (0, 2) and pa[-1][1].shape == (10,)
    assert len(pa[1:3]) == 2
    top = pa.top(0, 3)
    assert len(top) == 3 and top[0][2] == pytest.approx(float(pa[0][1].max()))
    with pytest.raises(IndexError):
        pa[4]


def test_field_pair_attention_field_forms_and_checks():
    X, y, fields = planted(n_rows=600)
    model = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=2, n_threads=1, random_state=0)
    model.fit(X, y)
    by_map = fastafm.field_pair_attention(model, X, fields)
    ranges = [(f * 8, (f + 1) * 8) for f in range(5)]
    np.testing.assert_array_equal(fastafm.field_pair_attention(model, X, ranges), by_map)
    as_dict = {i: int(f) for i, f in enumerate(fields)}
    np.testing.assert_array_equal(fastafm.field_pair_attention(model, X, as_dict), by_map)
    assert by_map.shape == (5, 5) and np.allclose(by_map, by_map.T, equal_nan=True)
    # Ids in no range are ignored: dropping field 4 leaves the other fields' means unchanged.
    np.testing.assert_array_equal(fastafm.field_pair_attention(model, X, ranges[:4]), by_map[:4, :4])
    with pytest.raises(ValueError, match="overlaps"):
        fastafm.field_pair_attention(model, X, [(0, 10), (8, 16)])
    with pytest.raises(ValueError, match="half-open"):
        fastafm.field_pair_attention(model, X, [(0, 8), (8, 41)])
    with pytest.raises(ValueError, match="outside"):
        fastafm.field_pair_attention(model, X, {40: 0})


# ---------------------------------------------------------------------------------------------- progress
def test_verbose_prints_epoch_lines_without_a_tty(capsys):
    X, y, _ = planted(n_rows=800)
    model = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=3, n_threads=1, random_state=0,
                                 verbose=1, early_stopping=False, pretrain=None)
    model.fit(X[:600], y[:600], eval_set=(X[600:], y[600:]))
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 3
    assert re.match(r"epoch +1 +train_loss=\d\.\d+ +eval_rmse=\d\.\d+ +eval_mae=\d\.\d+ +\d+\.\d+s", lines[0])
    assert err == ""  # verbose=1 shows the bar only on a terminal; stderr is not one here
    fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=20, n_threads=1, random_state=0, verbose=0,
                         n_iter_no_change=1).fit(X[:600], y[:600], eval_set=(X[600:], y[600:]))
    assert capsys.readouterr() == ("", "")  # silent by default


def test_verbose_2_forces_the_progress_bar(capsys):
    import tqdm  # noqa: F401  - a required dependency (pyproject.toml): its absence is a failure, not a skip
    X, y, _ = planted(n_rows=3000)
    fastafm.FMRegressor(embedding_dim=8, n_epochs=1, batch_size=8, n_threads=1, random_state=0, verbose=2).fit(X, y)
    out, err = capsys.readouterr()
    assert "epoch   1" in out and "epoch 1" in err and "rows" in err


# ---------------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("cls", [fastafm.FMRegressor, fastafm.FMClassifier])
def test_fm_save_load_round_trip(tmp_path, cls):
    X, y, _ = planted(n_rows=400, classification=cls is fastafm.FMClassifier)
    model = cls(embedding_dim=4, n_epochs=2, n_threads=1, random_state=0).fit(X, y)
    model.save(tmp_path / "fm.afm")
    loaded = fastafm.load(tmp_path / "fm.afm")
    assert type(loaded) is cls and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(raw_output(loaded)(X), raw_output(model)(X))
