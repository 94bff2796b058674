"""The exact linear stage of pretrain="linear+fm" (fastafm.training.exact_linear): its loss, gradient and Hessian
products against finite differences in float64, its solutions against scikit-learn's LogisticRegression and
Ridge on the same problem (weights included), and the choice of its penalty on the validation rows."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

import fastafm
from fastafm.objectives.logistic import LOGISTIC
from fastafm.training import exact_linear
from fastafm.training.evaluation import InMemoryEval
from fastafm.training.rows import InMemoryRows

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def sparse_rows(rng, n_rows=300, n_features=40, density=0.15):
    """Random CSR rows with repeated ids across rows, some empty rows and some dense values."""
    X = scipy.sparse.random(n_rows, n_features, density=density, format="csr", random_state=rng,
                            data_rvs=lambda k: rng.normal(size=k))
    keep = np.ones(n_rows)
    keep[::17] = 0.0  # rows with no non-zero
    X = (scipy.sparse.diags(keep) @ X).tocsr()
    X.eliminate_zeros()
    return X


def targets(rng, loss, n):
    if loss == "logistic":
        return np.where(rng.random(n) < 0.4, 1.0, -1.0)
    if loss == "rate":
        return 2.0 * rng.random(n) - 1.0  # the core's targets 2r - 1 of rates r in [0, 1]
    return rng.normal(size=n)


@pytest.mark.parametrize("loss", ["logistic", "rate", "squared"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_and_hessian_products_match_finite_differences(loss, weighted):
    rng = np.random.default_rng([loss == "squared", weighted, 7])
    X = sparse_rows(rng)
    w = rng.random(X.shape[0]) * 3 if weighted else None
    core = "squared" if loss == "squared" else "logistic"
    problem = exact_linear.Problem(X.astype(np.float64), targets(rng, loss, X.shape[0]), w, core)
    problem.l2 = 0.03
    theta = rng.normal(size=X.shape[1] + 1)
    value, grad = problem.value_and_grad(theta)
    h = 1e-6
    for i in rng.choice(theta.shape[0], 12, replace=False).tolist() + [0]:
        e = np.zeros_like(theta)
        e[i] = h
        numeric = (problem.value_and_grad(theta + e)[0] - problem.value_and_grad(theta - e)[0]) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-6, abs=1e-8), i
    problem.value_and_grad(theta)  # the Hessian products are taken at the last theta evaluated
    v = rng.normal(size=theta.shape[0])
    hv = problem.hessp(v)
    numeric = (problem.value_and_grad(theta + h * v)[1] - problem.value_and_grad(theta - h * v)[1]) / (2 * h)
    np.testing.assert_allclose(hv, numeric, rtol=1e-5, atol=1e-8)


def test_the_logistic_loss_is_stable_at_large_outputs():
    values, slope, curve = exact_linear.loss_terms("logistic", np.array([-800.0, 0.0, 800.0]), np.array([1.0, -1, -1]))
    assert np.all(np.isfinite(values)) and values[0] == pytest.approx(800.0) and values[2] == pytest.approx(800.0)
    np.testing.assert_allclose(slope, [-1.0, 0.5, 1.0])
    np.testing.assert_allclose(curve, [0.0, 0.25, 0.0])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("l2", [1e-1, 1e-3])
def test_logistic_solutions_equal_scikit_learns(weighted, l2):
    """sum_i s_i loss_i / S + l2/2 ||w||^2 is LogisticRegression's problem with C = 1 / (l2 S)."""
    rng = np.random.default_rng([int(weighted), int(-np.log10(l2))])
    X = sparse_rows(rng, n_rows=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(X @ rng.normal(size=40))))).astype(int)
    s = rng.random(400) * 2 if weighted else np.ones(400)
    problem = exact_linear.Problem(X, np.where(y > 0, 1.0, -1.0), s if weighted else None, "logistic")
    theta = problem.solve(l2, np.zeros(41), tol=1e-16)
    ref = sklearn_linear.LogisticRegression(C=1.0 / (l2 * s.sum()), tol=1e-12, max_iter=100000)
    ref.fit(X, y, sample_weight=s)
    np.testing.assert_allclose(theta[1:], ref.coef_[0], atol=1e-5)
    assert theta[0] == pytest.approx(ref.intercept_[0], abs=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_squared_solutions_equal_ridge(weighted):
    """sum_i s_i (z_i - t_i)^2 / (2 S) + l2/2 ||w||^2 is Ridge's problem with alpha = l2 S."""
    rng = np.random.default_rng([3, int(weighted)])
    X = sparse_rows(rng, n_rows=300)
    t = X @ rng.normal(size=40) + 0.5 + 0.1 * rng.normal(size=300)
    s = rng.random(300) * 2 if weighted else np.ones(300)
    theta = exact_linear.Problem(X, t, s if weighted else None, "squared").solve(1e-2, np.zeros(41), tol=1e-16)
    ref = sklearn_linear.Ridge(alpha=1e-2 * s.sum(), tol=1e-12, solver="lsqr").fit(X.toarray(), t, sample_weight=s)
    np.testing.assert_allclose(theta[1:], ref.coef_, atol=1e-5)
    assert theta[0] == pytest.approx(ref.intercept_, abs=1e-5)


@pytest.mark.parametrize("loss", ["logistic", "squared"])
def test_the_default_tolerance_ends_within_it_of_the_minimum(loss):
    """The Newton decrement bounds twice the gap to the minimum: the default stop leaves the objective within
    DECREMENT_TOL of the tightly solved one, from a cold start and from a neighbouring penalty's solution."""
    rng = np.random.default_rng(17 if loss == "logistic" else 18)
    X = sparse_rows(rng, n_rows=600)
    z = X @ rng.normal(size=40)
    t = np.where(rng.random(600) < 1 / (1 + np.exp(-z)), 1.0, -1.0) if loss == "logistic" else z + rng.normal(size=600)
    problem = exact_linear.Problem(X, t, None, loss)
    warm = problem.solve(1e-2, np.zeros(41))
    for start in (np.zeros(41), warm):
        loose = problem.solve(1e-3, start)
        value = problem.value_and_grad(loose)[0]
        exact = problem.value_and_grad(problem.solve(1e-3, start, tol=1e-16))[0]
        assert exact <= value + 1e-15 and value - exact <= exact_linear.DECREMENT_TOL


def test_the_path_keeps_the_penalty_that_validates_best_and_stops_after_it():
    rng = np.random.default_rng(11)
    X = sparse_rows(rng, n_rows=2000, n_features=200, density=0.03)
    y = np.where(rng.random(2000) < 1 / (1 + np.exp(-(X @ rng.normal(size=200)))), 1.0, -1.0).astype(np.float32)
    rows = InMemoryRows(X[:1500].astype(np.float32), y[:1500])
    held = InMemoryEval(X[1500:].astype(np.float32), y[1500:])
    stage, (best, score) = exact_linear.fit(rows, LOGISTIC, held, "logloss", None, 0.0)
    scores = [r["eval_logloss"] for r in stage.history]
    assert best == int(np.argmin(scores)) and score == min(scores)
    assert stage.l2 == exact_linear.L2_PATH[best] == stage.history[best]["l2"]
    # every penalty up to the best, then PATIENCE that do not improve (unless the path ran out)
    assert len(stage.history) == min(best + 1 + exact_linear.PATIENCE, len(exact_linear.L2_PATH))
    assert [r["l2"] for r in stage.history] == list(exact_linear.L2_PATH[:len(stage.history)])
    # the kept parameters solve that penalty's problem to the default tolerance (the objective within it of the
    # exact minimum), and the score is theirs (as the model predicts)
    problem = exact_linear.Problem(X[:1500].astype(np.float64), y[:1500].astype(np.float64), None, "logistic")
    problem.l2 = stage.l2
    exact = problem.value_and_grad(problem.solve(stage.l2, np.zeros(201), tol=1e-16))[0]
    kept = np.concatenate([stage.params["w0"], stage.params["w"]]).astype(np.float64)
    assert exact <= problem.value_and_grad(kept)[0] <= exact + exact_linear.DECREMENT_TOL
    z = stage.params["w0"].astype(np.float64) + X[1500:] @ stage.params["w"].astype(np.float64)
    assert score == pytest.approx(fastafm.metrics.log_loss((y[1500:] > 0).astype(int), 1 / (1 + np.exp(-z))),
                                  rel=1e-9)


def test_a_regressor_keeps_the_ridge_fit_where_the_pairs_carry_nothing():
    """AFMRegressor(pretrain="linear+fm") on a linear target: the kept model is the exact stage's ridge fit."""
    rng = np.random.default_rng(5)
    ids = np.stack([rng.integers(0, 5, 1500), 5 + rng.integers(0, 200, 1500), 205 + rng.integers(0, 200, 1500)], 1)
    X = fastafm.from_fields(ids, n_features=405)
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])[ids[:, 0]] + 0.3 * rng.normal(size=1500)
    model = fastafm.AFMRegressor(pretrain="linear+fm", embedding_dim=4, attention_dim=4, n_threads=1,
                                 random_state=3).fit(X, y)
    assert model.do_early_stopping_ and model.best_epoch_ == 0 and not np.any(model.get_model_params()["V"])
    scores = [r["eval_rmse"] for r in model.linear_history_]
    assert model.best_score_ == min(scores)
    z = model.predict(X)
    np.testing.assert_allclose(z, model.get_model_params()["w0"][0] + X @ model.get_model_params()["w"], rtol=1e-5,
                               atol=1e-5)


def noise_pairs(seed, n=1500):
    """A 3-id field that sets the click rate and two fields of 300 ids that carry nothing."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 3, n)
    X = fastafm.from_fields(np.stack([field, 3 + rng.integers(0, 300, n), 303 + rng.integers(0, 300, n)], axis=1),
                            n_features=603)
    return X, (rng.random(n) < np.where(field == 0, 0.2, 0.5)).astype(int)


@pytest.mark.parametrize("cls", [fastafm.AFMClassifier, fastafm.FMClassifier, fastafm.FwFMClassifier])
def test_linear_fallback_mixes_in_the_linear_model_of_every_family_where_it_validates_better(cls):
    """The default linear_fallback=True: where the pairs carry nothing the linear model takes most of the kept
    model (fastafm.training.linear_mix; tests/test_linear_mix.py has the mix per element), which validates
    better than the linear path's best and the trained model; linear_fallback=False keeps the trained model."""
    X, y = noise_pairs(2)
    kw = dict(embedding_dim=4, n_threads=1, random_state=1, pretrain=None) if cls is fastafm.AFMClassifier else \
        dict(embedding_dim=4, n_threads=1, random_state=1)
    model = cls(**kw).fit(X, y)
    assert model.do_early_stopping_ and 0.5 <= model.linear_share_ <= 1.0
    assert model.best_score_ <= min(r["eval_logloss"] for r in model.linear_history_)
    plain = cls(linear_fallback=False, **kw).fit(X, y)
    assert plain.linear_history_ is None and plain.best_epoch_ >= 1 and np.any(plain.get_model_params()["V"])
    assert model.best_score_ < plain.best_score_
    assert model.best_epoch_ == (0 if model.linear_share_ == 1.0 else plain.best_epoch_)


def test_no_fallback_without_a_trained_model(tmp_path):
    X, y = noise_pairs(3)
    untrained = fastafm.FMClassifier(n_epochs=0, embedding_dim=4, n_threads=1, random_state=1).fit(X, y)
    assert untrained.linear_history_ is None  # n_epochs=0: no validation score to compare
    no_stop = fastafm.FMClassifier(embedding_dim=4, n_threads=1, random_state=1, early_stopping=False).fit(X, y)
    assert no_stop.linear_history_ is None


def test_a_cache_falls_back_as_its_rows_in_memory(tmp_path):
    """A cache's training rows are read into memory for the exact solve: the same path, the same model."""
    X, y = noise_pairs(3)
    in_memory = fastafm.FMClassifier(embedding_dim=4, n_threads=1, random_state=1).fit(X, y)
    cache = fastafm.convert((X, y), tmp_path / "rows.cache", block_rows=97)  # several blocks
    streamed = fastafm.FMClassifier(embedding_dim=4, n_threads=1, random_state=1).fit(cache)
    assert streamed.do_early_stopping_ and streamed.linear_history_ is not None
    assert streamed.linear_history_ == in_memory.linear_history_
    assert streamed.linear_share_ == in_memory.linear_share_ > 0  # the same mix of the same two models
    np.testing.assert_array_equal(streamed.decision_function(X), in_memory.decision_function(X))
