"""pretrain="linear+fm" (issue 22, item 1): the linear model w0 + w.x first, then the FM started from its w0 and w,
then AFM from that FM; with early stopping the linear model is kept when it validates better than the AFM. Rows
with validation rows, in memory or a cache (read into memory for it), get the exact linear stage
(tests/test_exact_linear.py); rows of more than exact_linear.MAX_NNZ non-zeros (forced here by lowering it), or a
fit without validation rows, the SGD stage: an FM whose V is 0 and stays 0. Each stage is compared per element with
the fit a user would make by hand. Small synthetic data, one thread (bit-identity), no clock reads."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm

KW = dict(embedding_dim=4, attention_dim=4, n_threads=1, random_state=5)
FM_KW = dict(embedding_dim=4, n_threads=1, random_state=5, linear_fallback=False)  # the hand fits: no exact stage


def planted(n_rows=1200, seed=0, noise=0.3):
    X, y = fastafm.make_planted(n_rows=n_rows, n_fields=4, cardinality=6, planted_pairs=((0, 1),), noise=noise,
                                classification=True, random_state=seed)[:2]
    return X, y


def timeless(history) -> list:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def params(model) -> dict:
    return model.get_model_params()


def test_an_fm_with_zero_embeddings_is_a_linear_model_and_stays_one():
    """The linear stage's premise: with V = 0 the pair terms and their gradients are 0, so V never moves and
    the model is w0 + w.x (its predictions are the logistic function of that)."""
    X, y = planted()
    lin = fastafm.FMClassifier(init_std=0.0, n_epochs=3, **FM_KW).fit(X, y)
    p = params(lin)
    assert not np.any(p["V"])
    logit = p["w0"].reshape(()) + X @ p["w"].astype(np.float64)
    np.testing.assert_allclose(lin.decision_function(X), logit, rtol=1e-5, atol=1e-5)


def test_past_max_nnz_the_stages_are_an_sgd_linear_fit_an_fm_from_it_and_an_afm_from_that(tmp_path, monkeypatch):
    """pretrain="linear+fm" on rows too many for the exact stage is, per element: FMClassifier(init_std=0) with
    the AFM's settings and early stopping on the same rows; an FM started from its w0 and w (V drawn as usual);
    AFM warm-started from that FM (a one-block cache trains as the same rows in memory, bit for bit)."""
    from fastafm.training import exact_linear

    X, y = planted()
    cache = fastafm.convert((X[:1000], y[:1000]), tmp_path / "rows.cache")
    fit_rows, eval_set = (X[:1000], y[:1000]), (X[1000:], y[1000:])
    exact = fastafm.AFMClassifier(n_epochs=8, pretrain="linear+fm", **KW).fit(cache, eval_set=eval_set)
    in_memory = fastafm.AFMClassifier(n_epochs=8, pretrain="linear+fm", **KW).fit(*fit_rows, eval_set=eval_set)
    assert exact.linear_history_ == in_memory.linear_history_ and "l2" in exact.linear_history_[0]  # exact, both
    for name, value in params(in_memory).items():
        np.testing.assert_array_equal(params(exact)[name], value, err_msg=name)
    monkeypatch.setattr(exact_linear, "MAX_NNZ", 0)
    model = fastafm.AFMClassifier(n_epochs=8, pretrain="linear+fm", **KW).fit(cache, eval_set=eval_set)
    lin = fastafm.FMClassifier(n_epochs=8, init_std=0.0, **FM_KW).fit(*fit_rows, eval_set=eval_set)
    assert timeless(model.linear_history_) == timeless(lin.history_)
    drawn = params(fastafm.FMClassifier(n_epochs=0, **FM_KW).fit(*fit_rows))["V"]  # the FM's own initial V
    start = {"w0": params(lin)["w0"], "w": params(lin)["w"], "V": drawn}
    fm = fastafm.FMClassifier(n_epochs=8, **FM_KW).fit(*fit_rows, eval_set=eval_set, init=start)
    assert timeless(model.pretrain_history_) == timeless(fm.history_)
    afm = fastafm.AFMClassifier(n_epochs=8, pretrain=None, linear_fallback=False, **KW).fit(*fit_rows,
                                                                                  eval_set=eval_set, init=fm)
    assert afm.best_score_ < lin.best_score_  # the planted pair: the AFM beats the linear model and is kept
    for name, value in params(afm).items():
        np.testing.assert_array_equal(params(model)[name], value, err_msg=name)
    assert model.best_epoch_ == afm.best_epoch_ and model.best_score_ == afm.best_score_


def noise_pairs(seed, n=1500):
    """A 3-id field that sets the click rate (0.2 or 0.5) and two fields of 300 ids that carry nothing: every
    pair term can only memorise noise."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 3, n)
    X = fastafm.from_fields(np.stack([field, 3 + rng.integers(0, 300, n), 303 + rng.integers(0, 300, n)], axis=1),
                            n_features=603)
    return X, (rng.random(n) < np.where(field == 0, 0.2, 0.5)).astype(int)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_linear_model_is_kept_when_it_validates_better(seed, tmp_path, monkeypatch):
    """Where the pairs carry nothing the AFM does not beat its linear stage on the held-out rows, and the
    fitted model is that linear model, per element (V = 0), with its best score and epoch 0: past MAX_NNZ (a
    cache here) the SGD stage's, otherwise (in memory, and the same cache) the exact stage's (the regularised
    logistic regression at the l2 it chose)."""
    from fastafm.training import exact_linear

    X, y = noise_pairs(seed)
    cache = fastafm.convert((X, y), tmp_path / "rows.cache")
    monkeypatch.setattr(exact_linear, "MAX_NNZ", 0)
    model = fastafm.AFMClassifier(pretrain="linear+fm", **KW).fit(cache)  # 1,500 rows: early stopping is on
    assert model.do_early_stopping_ and model.best_epoch_ == 0
    assert model.best_score_ == min(r["eval_logloss"] for r in model.linear_history_)
    p = params(model)
    assert not np.any(p["V"])
    held = fastafm.FMClassifier(init_std=0.0, early_stopping=True, **FM_KW).fit(cache)
    for name in ("w0", "w"):
        np.testing.assert_array_equal(p[name], params(held)[name], err_msg=name)
    np.testing.assert_allclose(model.predict_proba(X), held.predict_proba(X), rtol=1e-6, atol=1e-7)

    monkeypatch.undo()
    exact = fastafm.AFMClassifier(pretrain="linear+fm", **KW).fit(X, y)
    streamed = fastafm.AFMClassifier(pretrain="linear+fm", **KW).fit(cache)
    assert streamed.linear_history_ == exact.linear_history_
    for name, value in params(exact).items():
        np.testing.assert_array_equal(params(streamed)[name], value, err_msg=name)
    assert exact.do_early_stopping_ and exact.best_epoch_ == 0
    scores = [r["eval_logloss"] for r in exact.linear_history_]
    assert exact.best_score_ == min(scores)
    chosen = exact.linear_history_[int(np.argmin(scores))]["l2"]
    p = params(exact)
    assert not np.any(p["V"])
    lr = logistic_regression(*held_part(X, y, seed=KW["random_state"]), chosen)
    # to the solver's stop (the objective within exact_linear.DECREMENT_TOL of its minimum: weights to ~1e-3)
    np.testing.assert_allclose(p["w"], lr.coef_[0], atol=1e-3)
    np.testing.assert_allclose(p["w0"], lr.intercept_, atol=1e-3)


def held_part(X, y, seed, fraction=0.1):
    """The rows a fit with early stopping trains on (its validation_fraction held out, as the fit holds out)."""
    from fastafm.training import session
    from fastafm.training.rows import holdout_split

    keep, _ = holdout_split(X.shape[0], fraction, session.split_generator(seed), np.where(y > 0, 1.0, -1.0))
    return X[keep], y[keep]


def logistic_regression(X, y, l2):
    """scikit-learn's fit of the exact stage's problem: C = 1 / (l2 x rows); the intercept is not penalised (in
    float64: scikit-learn solves float32 input in float32)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0 / (l2 * X.shape[0]), tol=1e-10, max_iter=10000).fit(X.astype(np.float64), y)


def test_never_worse_on_validation_than_the_linear_stage():
    """Whatever the data, the kept model's validation log loss is at most the linear stage's best."""
    for seed in range(3):
        X, y = planted(n_rows=1100, seed=seed, noise=1.0)
        model = fastafm.AFMClassifier(n_epochs=5, pretrain="linear+fm", **KW).fit(X, y)
        assert model.best_score_ <= min(r["eval_logloss"] for r in model.linear_history_)


def test_without_early_stopping_every_stage_runs_and_nothing_is_replaced():
    X, y = planted(n_rows=400)
    model = fastafm.AFMClassifier(n_epochs=2, pretrain="linear+fm", **KW).fit(X, y)  # < 1,000 rows: auto is off
    assert not model.do_early_stopping_
    assert len(model.linear_history_) == len(model.pretrain_history_) == 2 and np.any(params(model)["V"])


def test_other_pretrain_values_have_no_linear_stage_and_the_value_is_checked():
    X, y = planted(n_rows=400)
    assert fastafm.AFMClassifier(n_epochs=1, **KW).fit(X, y).linear_history_ is None
    with pytest.raises(ValueError, match="pretrain"):
        fastafm.AFMClassifier(pretrain="linear").fit(X, y)
