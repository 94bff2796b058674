"""The kept model after the linear stage (fastafm.training.linear_mix): the mix (1 - s) model + s linear of every
family realised in its own parameters, per element; the share chosen as the grid's best by a float64 reference
of the validation metric; the fit's linear_share_ and best_score_."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse

import fastafm
from fastafm import metrics
from fastafm.models import registry
from fastafm.training import linear_mix
from fastafm.training.evaluation import InMemoryEval

FAMILIES = {
    "afm": (fastafm.AFMClassifier, dict(pretrain=None)),
    "afm-uniform": (fastafm.AFMClassifier, dict(pretrain=None, attention=False)),
    "afm-fields": (fastafm.AFMClassifier, dict(pretrain=None, field_aware="both")),
    "fm": (fastafm.FMClassifier, {}),
    "fwfm": (fastafm.FwFMClassifier, {}),
    "afm-reg": (fastafm.AFMRegressor, dict(pretrain=None)),
    "fm-reg": (fastafm.FMRegressor, {}),
}


def pair_rows(seed, n=1200):
    """Three fields: the first sets a linear effect, the pair of the other two an interaction (so neither the
    linear model nor the pairs alone explain the target)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.integers(0, 4, n), rng.integers(0, 6, n), rng.integers(0, 6, n)
    X = fastafm.from_fields(np.stack([a, 4 + b, 10 + c], axis=1), n_features=16)
    z = np.array([-1.0, -0.3, 0.4, 1.2])[a] + np.where((b + c) % 3 == 0, 1.0, -0.5)
    fields = np.repeat([0, 1, 2], [4, 6, 6])
    return X, z + 0.5 * rng.normal(size=n), fields


def fitted(name, seed=0, **settings):
    cls, kw = FAMILIES[name]
    kw = dict(kw, **settings)
    X, z, fields = pair_rows(seed)
    y = z if cls.__name__.endswith("Regressor") else (z > 0).astype(int)
    if cls is not fastafm.FMClassifier and cls is not fastafm.FMRegressor:
        kw = dict(kw, fields=fields)
    kw = dict(dict(n_epochs=3), **kw)
    model = make(cls, embedding_dim=4, attention_dim=4, n_threads=1, random_state=seed, early_stopping=False,
                 linear_fallback=False, **kw)
    return model.fit(X, y), X, y


def make(cls, **kw):
    """cls(**kw) without attention_dim for the FM families, which have none."""
    if not cls.__name__.startswith("AFM"):
        kw.pop("attention_dim", None)
    return cls(**kw)


def linear_params(rng, n_features):
    return {"w0": rng.normal(size=1).astype(np.float32), "w": rng.normal(size=n_features).astype(np.float32)}


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("share", [0.0, 0.05, 0.35, 0.5, 0.95, 1.0])
def test_the_mix_is_the_model_of_its_family_per_element(name, share):
    """(1 - s) model + s linear, realised in w0, w and p (AFM), R (FwFM) or V (FM): the outputs per row."""
    model, X, _ = fitted(name)
    linear = linear_params(np.random.default_rng(1), X.shape[1])
    before = model.decision_function(X) if hasattr(model, "decision_function") else model.predict(X)
    mixed = copy.deepcopy(model)
    linear_mix.mix(mixed.training_state_, linear, share)
    after = mixed.decision_function(X) if hasattr(mixed, "decision_function") else mixed.predict(X)
    expected = (1 - share) * before.astype(np.float64) + share * (linear["w0"][0] + X @ linear["w"].astype(np.float64))
    np.testing.assert_allclose(after, expected, rtol=2e-5, atol=2e-5)
    params = mixed.get_model_params()
    if share == 1.0:  # the linear model exactly
        assert not np.any(params["V"]) and np.array_equal(params["w"], linear["w"])
    if share == 0.0:
        for key, value in model.get_model_params().items():
            assert np.array_equal(params[key], value)
    if name == "fwfm" and 0.0 < share < 1.0:  # the field-pair table shows the kept model; V stays
        np.testing.assert_array_equal(params["V"], model.get_model_params()["V"])
        np.testing.assert_allclose(mixed.field_weights_, (1 - share) * model.field_weights_, rtol=1e-6)


def reference_metric(metric, y_eval, outputs, label_range):
    if metric == "rmse":
        return float(np.sqrt(np.mean((np.clip(outputs, *label_range) - y_eval) ** 2)))
    p = 1 / (1 + np.exp(-outputs))
    if metric == "auc":
        return metrics.roc_auc((y_eval > 0).astype(int), outputs)
    return metrics.log_loss((y_eval > 0).astype(int), np.clip(p, 1e-15, 1 - 1e-15))


class Blocks:
    """Evaluation rows scored in three blocks, one of a single row (as a cache's are streamed)."""

    def __init__(self, X, y) -> None:
        self.parts = [InMemoryEval(X[a:b], y[a:b]) for a, b in ((0, 150), (150, 151), (151, X.shape[0]))]

    def partials(self, objective, score, label_range) -> list:
        return [p for part in self.parts for p in part.partials(objective, score, label_range)]


@pytest.mark.parametrize("family,metric", [("AFMClassifier", "logloss"), ("FMClassifier", "auc"),
                                           ("AFMRegressor", "rmse")])
def test_the_share_kept_is_the_grids_best_by_a_float64_reference(family, metric):
    """Two scorers that each miss half of the truth (so the best mix is inside the grid): best_share returns the
    share and score a float64 reference finds best, across evaluation blocks."""
    rng = np.random.default_rng(4)
    X = scipy.sparse.random(400, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    a, b = rng.normal(size=30), rng.normal(size=30)
    z = X @ (a + b) / 2 + 0.3 * rng.normal(size=400)
    regression = metric == "rmse"
    targets = z if regression else np.where(rng.random(400) < 1 / (1 + np.exp(-z)), 1.0, -1.0)
    label_range = (float(z.min()), float(z.max())) if regression else None

    def scorer(vector):
        return lambda indptr, indices, values: scipy.sparse.csr_matrix(
            (values, indices, indptr), shape=(len(indptr) - 1, 30)) @ vector

    values = [reference_metric(metric, targets, (1 - s) * (X @ a) + s * (X @ b), label_range)
              for s in linear_mix.SHARES]
    pick = int(np.argmax(values) if metric == "auc" else np.argmin(values))
    assert 0 < pick < len(values) - 1  # the construction's point: an inner share wins
    share, score = linear_mix.best_share(registry.kind(family).objective, Blocks(X, targets.astype(np.float32)),
                                         metric, label_range, scorer(a), scorer(b))
    assert share == pytest.approx(linear_mix.SHARES[pick]) and score == pytest.approx(values[pick], rel=1e-9)


def test_no_mix_without_the_linear_models_score():
    model, X, _ = fitted("fm")
    state = model.training_state_
    before = {k: v.copy() for k, v in state.params.items()}
    kept, share = linear_mix.keep_the_best_mix(state, (SimpleNamespace(params={}), (None, float("nan"))),
                                               (1, 0.5), "logloss", None, None, None)
    assert kept == (1, 0.5) and share == 0.0
    assert all(np.array_equal(before[k], state.params[k]) for k in before)


def linear_and_pair_rows(seed=3, n=2000):
    """A 4-id field with a strong linear effect, a 200-id field that carries nothing (the pairs overfit it), and
    two 3-id fields whose pair matters: neither the linear model nor the trained pairs alone validate best."""
    rng = np.random.default_rng(seed)
    a, b, c, d = rng.integers(0, 4, n), rng.integers(0, 200, n), rng.integers(0, 3, n), rng.integers(0, 3, n)
    X = fastafm.from_fields(np.stack([a, 4 + b, 204 + c, 207 + d], 1), n_features=210)
    z = np.array([-1.5, -0.5, 0.5, 1.5])[a] + 0.6 * np.where(c == d, 1.0, -0.5)
    return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int), np.repeat([0, 1, 2, 3], [4, 200, 3, 3])


@pytest.mark.parametrize("cls", [fastafm.AFMClassifier, fastafm.FMClassifier, fastafm.FwFMClassifier])
def test_a_fit_keeps_the_mix_that_validates_best(cls):
    """linear_fallback=True (the default): on rows where both parts carry signal the kept model is a mix (0 <
    linear_share_ < 1), its best_score_ the kept model's validation score, better than the trained model's
    (linear_fallback=False, the same seed: the same training) and the linear model's."""
    X, y, fields = linear_and_pair_rows()
    kw = dict(embedding_dim=4, attention_dim=4, n_threads=1, random_state=2)
    if cls is not fastafm.FMClassifier:
        kw["fields"] = fields
    X_train, y_train, X_val, y_val = X[:1600], y[:1600], X[1600:], y[1600:]
    model = make(cls, **kw).fit(X_train, y_train, eval_set=(X_val, y_val))
    plain = make(cls, linear_fallback=False, **kw).fit(X_train, y_train, eval_set=(X_val, y_val))
    assert 0.0 < model.linear_share_ < 1.0 and plain.linear_history_ is None
    assert model.best_epoch_ == plain.best_epoch_ >= 1  # the trained model's epoch, mixed
    linear_best = min(r["eval_logloss"] for r in model.linear_history_)
    assert model.best_score_ < min(plain.best_score_, linear_best)
    p = np.clip(model.predict_proba(X_val)[:, 1], 1e-15, 1 - 1e-15)
    assert model.best_score_ == pytest.approx(metrics.log_loss(y_val, p), rel=1e-5)


@pytest.mark.parametrize("cls,kw", [(fastafm.AFMRegressor, dict(loss="logistic", attention_dim=4)),
                                    (fastafm.FMRegressor, {}), (fastafm.FwFMClassifier, dict(class_weight="balanced"))])
def test_the_mix_with_rates_weights_and_squared_loss(cls, kw):
    """Rates (AFMRegressor(loss="logistic"), weighted by impressions), the squared loss with sample weights and
    class weights: the kept model validates at least as well as the trained model and the linear path's best,
    and its predictions stay in range."""
    X, y, fields = linear_and_pair_rows(seed=5)
    rng = np.random.default_rng(6)
    weights = rng.integers(1, 5, X.shape[0]).astype(float)
    if cls is fastafm.AFMRegressor:  # click rates of 1-4 impressions a row
        target = np.clip(y * 0.7 + 0.3 * rng.random(X.shape[0]) * (1 - y), 0, 1)
    elif cls is fastafm.FMRegressor:
        target = y + 0.3 * rng.normal(size=X.shape[0])
    else:
        target = y
    if cls is not fastafm.FMRegressor:
        kw = dict(kw, fields=fields)
    common = dict(embedding_dim=4, n_threads=1, random_state=3, **kw)
    model = make(cls, **common).fit(X, target, sample_weight=weights)
    plain = make(cls, linear_fallback=False, **common).fit(X, target, sample_weight=weights)
    assert 0.0 <= model.linear_share_ <= 1.0 and model.do_early_stopping_
    metric = "rmse" if cls is fastafm.FMRegressor else "logloss"
    assert model.best_score_ <= min(plain.best_score_, min(r[f"eval_{metric}"] for r in model.linear_history_))
    out = model.predict(X)
    assert np.all(np.isfinite(out))
    if cls is fastafm.AFMRegressor:
        assert np.all((out >= 0) & (out <= 1))


def test_the_cli_status_line_names_the_kept_share():
    from fastafm.cli.commands import _kept

    X, y, _ = linear_and_pair_rows()
    model = fastafm.FMClassifier(embedding_dim=4, n_threads=1, random_state=2).fit(X[:1600], y[:1600],
                                                                                  eval_set=(X[1600:], y[1600:]))
    assert 0 < model.linear_share_ < 1
    assert _kept(model) == (f" (best epoch {model.best_epoch_}, validation logloss {model.best_score_:.5f}, the "
                            f"linear model's share {model.linear_share_:.2f})")
    plain = fastafm.FMClassifier(embedding_dim=4, n_threads=1, random_state=2, early_stopping=False).fit(X, y)
    assert _kept(plain) == ""
