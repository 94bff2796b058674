"""sample_weight and class_weight through the estimators: fit, partial_fit, score, the metrics, a weighted
eval_set and early stopping, validation_fraction splits carrying their rows' weights, Pipelines (fit params
and metadata routing), model files; all-ones weights bit-identical to none; bad weights refused on every path."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm import metrics
from support import random_csr, small_model

ESTIMATORS = [fastafm.AFMRegressor, fastafm.AFMClassifier, fastafm.FMRegressor, fastafm.FMClassifier]
CLASSIFIERS = [fastafm.AFMClassifier, fastafm.FMClassifier]


def _data(rng, n_rows=300, classification=False):
    X = random_csr(rng, list(rng.integers(0, 7, size=n_rows)), n_features=25)
    y = rng.normal(size=n_rows)
    return X, ((y > 0).astype(int) if classification else y)


def _params(model):
    return model.get_model_params()


def _same(a, b) -> bool:
    return all(np.array_equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_all_ones_weights_fit_bit_identically_to_none(rng, cls):
    X, y = _data(rng, classification=cls in CLASSIFIERS)
    kw = dict(dropout=0.3, l2=0.01, batch_size=32, early_stopping=True)  # a held-out split and pretraining too
    plain = small_model(cls, **kw).fit(X, y)
    ones = small_model(cls, **kw).fit(X, y, sample_weight=np.ones(X.shape[0]))
    assert _same(_params(plain), _params(ones))
    assert [r["train_loss"] for r in plain.history_] == [r["train_loss"] for r in ones.history_]
    assert plain.best_score_ == ones.best_score_
    ones.partial_fit(X, y, sample_weight=np.ones(X.shape[0]))
    plain.partial_fit(X, y)
    assert _same(_params(plain), _params(ones))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_weights_change_the_fit_and_zero_weights_silence_rows(rng, cls):
    X, y = _data(rng, classification=cls in CLASSIFIERS)
    w = rng.uniform(0.0, 3.0, size=X.shape[0])
    plain = small_model(cls, early_stopping=False).fit(X, y)
    weighted = small_model(cls, early_stopping=False).fit(X, y, sample_weight=w)
    assert not _same(_params(plain), _params(weighted))
    # Rows of weight 0 never reach the model: features only they hold keep their initial w (0).
    import scipy.sparse as sp

    extra = sp.csr_matrix((np.ones(10), (np.arange(10), np.zeros(10, dtype=int))), shape=(X.shape[0], 1))
    X2 = sp.hstack([X, extra], format="csr")  # feature 25: in the first 10 rows only
    w2 = np.ones(X.shape[0])
    w2[:10] = 0.0
    keep_out = small_model(cls, early_stopping=False).fit(X2, y, sample_weight=w2)
    untrained = small_model(cls, n_epochs=0, early_stopping=False).fit(X2, y)
    assert keep_out.w_[25] == 0.0 and np.array_equal(keep_out.V_[25], untrained.V_[25])
    assert not np.array_equal(keep_out.V_[:25], untrained.V_[:25])


def test_weighted_training_loss_is_the_weighted_mean(rng):
    """history_'s train_loss is the summed weighted loss over the total weight (per row when unweighted)."""
    X, y = _data(rng)
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    m = small_model(fastafm.AFMRegressor, n_epochs=1, learning_rate=1e-9, dropout=0.0, pretrain=None,
                    early_stopping=False)
    m.fit(X, y, sample_weight=w)
    # learning_rate ~0: the model barely moves during the epoch, so the epoch's loss is that of the initial model.
    start = small_model(fastafm.AFMRegressor, n_epochs=0, pretrain=None, early_stopping=False).fit(X, y)
    residual = start.predict(X) - y
    assert m.history_[0]["train_loss"] == pytest.approx(np.sum(w * 0.5 * residual**2) / np.sum(w), rel=1e-4)


@pytest.mark.parametrize("cls", CLASSIFIERS)
def test_class_weight_matches_compute_sample_weight_semantics(rng, cls):
    sklearn_cw = pytest.importorskip("sklearn.utils.class_weight")
    X, y = _data(rng, classification=True)
    y = np.where(y > 0, "yes", "no")
    w = rng.uniform(0.2, 2.0, size=X.shape[0])
    for class_weight in ("balanced", {"yes": 4.0}, {"no": 0.5, "yes": 2.0}):
        by_class = small_model(cls, class_weight=class_weight, early_stopping=False).fit(X, y, sample_weight=w)
        expected = sklearn_cw.compute_sample_weight(class_weight, y) * w
        by_hand = small_model(cls, early_stopping=False).fit(X, y, sample_weight=expected)
        assert _same(_params(by_class), _params(by_hand))
        assert not _same(_params(by_class), _params(small_model(cls, early_stopping=False).fit(X, y,
                                                                                                sample_weight=w)))


@pytest.mark.parametrize("bad, match", [({3: 1.0}, "not one of the classes"), ({1: -1.0}, ">= 0"),
                                        ({1: float("nan")}, ">= 0"), ("heavy", "'balanced'"),
                                        ([1.0, 2.0], "dict"), ({0: 0.0, 1: 0.0}, "all zero")])
def test_bad_class_weight_is_a_value_error(rng, bad, match):
    X, y = _data(rng, classification=True)
    with pytest.raises(ValueError, match=match):
        small_model(fastafm.AFMClassifier, class_weight=bad).fit(X, y)


def test_class_weight_in_partial_fit_and_model_files(rng, tmp_path):
    X, y = _data(rng, classification=True)
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        small_model(fastafm.FMClassifier, class_weight="balanced").partial_fit(X, y)
    for class_weight in ("balanced", {0: 1.0, 1: 3.0}, None):
        m = small_model(fastafm.AFMClassifier, class_weight=class_weight).fit(X, y)
        m.save(tmp_path / "m.afm")
        loaded = fastafm.load(tmp_path / "m.afm")
        assert loaded.class_weight == class_weight
        if isinstance(class_weight, dict):
            assert all(type(k) is int for k in loaded.class_weight)  # labels, not JSON's strings
    m = small_model(fastafm.AFMClassifier, class_weight={0: 1.0, 1: 3.0}).fit(X, y)
    m.partial_fit(X, y)  # a dict applies to partial_fit too
    assert m.n_epochs_done_ > 3


def test_files_from_before_class_weight_load_with_none(tmp_path):
    import json
    import os

    from test_persistence import edit, meta_of, members_of

    corpus = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "corpus", "model")
    for name in ("classifier_int.afm", "classifier_str_v3.afm"):  # written before class_weight existed
        path = os.path.join(corpus, name)
        assert "class_weight" not in meta_of(members_of(path))["hyperparameters"]
        assert fastafm.load(path).class_weight is None
    # A dict stored as pairs; a malformed one is refused with the file named.
    X, y = _data(np.random.default_rng(0), classification=True)
    path = tmp_path / "m.afm"
    small_model(fastafm.FMClassifier, class_weight={1: 2.0}).fit(X, y).save(path)
    assert json.loads(json.dumps(meta_of(members_of(path))["hyperparameters"]["class_weight"])) == {
        "pairs": [[1, 2.0]]}

    def broken(meta):
        meta["hyperparameters"]["class_weight"] = {"1": 2.0}

    edit(path, meta=broken)
    with pytest.raises(ValueError, match="not a list of \\[label, weight\\] pairs"):
        fastafm.load(path)


def test_regressors_have_no_class_weight():
    assert "class_weight" not in fastafm.AFMRegressor().get_params()
    assert "class_weight" not in fastafm.FMRegressor().get_params()
    assert fastafm.AFMClassifier().class_weight is None and fastafm.FMClassifier().class_weight is None


def test_eval_set_weights_drive_the_metrics_and_early_stopping(rng):
    X, y = _data(rng)
    X_val, y_val = _data(rng, n_rows=120)
    w_val = rng.uniform(0.0, 2.0, size=120)
    m = small_model(fastafm.AFMRegressor, n_epochs=4).fit(X, y, eval_set=(X_val, y_val, w_val))
    pred = m.predict(X_val)
    last = m.history_[-1]
    if m.best_epoch_ == m.history_[-1]["epoch"]:  # the restored epoch is the last one: its metrics are the model's
        assert last["eval_mae"] == pytest.approx(metrics.mae(y_val, pred, sample_weight=w_val), rel=1e-6)
    assert m.best_score_ == min(r["eval_rmse"] for r in m.history_)
    plain = small_model(fastafm.AFMRegressor, n_epochs=4).fit(X, y, eval_set=[(X_val, y_val)])
    assert plain.history_[0]["eval_rmse"] != m.history_[0]["eval_rmse"]
    ones = small_model(fastafm.AFMRegressor, n_epochs=4).fit(X, y, eval_set=(X_val, y_val, np.ones(120)))
    assert [r["eval_rmse"] for r in ones.history_] == [r["eval_rmse"] for r in plain.history_]


def test_validation_fraction_split_carries_the_held_out_weights(rng):
    """The held-out rows are scored with their own weights: epoch 1's eval RMSE is the weighted RMSE of the
    rows the seeded split held out (recomputed here), and differs from their unweighted RMSE."""
    from fastafm.training.rows import InMemoryRows
    from fastafm.data.validation import as_csr
    from fastafm.training.session import split_generator

    X, y = _data(rng, n_rows=400)
    w = rng.uniform(0.1, 3.0, size=400)
    m = small_model(fastafm.AFMRegressor, early_stopping=True, n_epochs=1, pretrain=None).fit(X, y, sample_weight=w)
    _, held = InMemoryRows(as_csr(X), y.astype(np.float32), w.astype(np.float32)).hold_out(
        0.1, split_generator(0), stratify=False)
    X_val, y_val, w_val = held.X, held.y, held.w
    assert w_val.shape == (40,)
    pred = m.predict(X_val)
    assert m.history_[0]["eval_rmse"] == pytest.approx(
        metrics.rmse(y_val, pred, clip=m.label_range_, sample_weight=w_val), rel=1e-9)
    assert m.history_[0]["eval_rmse"] != pytest.approx(metrics.rmse(y_val, pred, clip=m.label_range_), rel=1e-4)


def test_held_out_rows_of_weight_zero_only_is_an_error(rng):
    X, y = _data(rng, n_rows=200)
    w = np.zeros(200)
    w[0] = 1.0  # nearly all weight 0: the held-out rows (10%) have none
    with pytest.raises(ValueError, match="weight"):
        small_model(fastafm.AFMRegressor, early_stopping=True).fit(X, y, sample_weight=w)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_score_takes_sample_weight(rng, cls):
    X, y = _data(rng, classification=cls in CLASSIFIERS)
    m = small_model(cls).fit(X, y)
    w = rng.uniform(0, 2, size=X.shape[0])
    assert m.score(X, y, sample_weight=np.ones(X.shape[0])) == pytest.approx(m.score(X, y))
    assert m.score(X, y, sample_weight=w) != pytest.approx(m.score(X, y), rel=1e-9)


def test_weighted_metrics_against_repeated_rows(rng):
    y = rng.normal(size=50)
    p = rng.normal(size=50)
    counts = rng.integers(0, 4, size=50)
    counts[0] = 1
    r = np.repeat(np.arange(50), counts)
    assert metrics.rmse(y, p, sample_weight=counts) == pytest.approx(metrics.rmse(y[r], p[r]))
    assert metrics.rmse(y, p, clip=(-0.5, 0.5), sample_weight=counts) == pytest.approx(
        metrics.rmse(y[r], p[r], clip=(-0.5, 0.5)))
    assert metrics.mae(y, p, sample_weight=counts) == pytest.approx(metrics.mae(y[r], p[r]))
    y01 = (y > 0).astype(float)
    proba = 1 / (1 + np.exp(-p))
    assert metrics.log_loss(y01, proba, sample_weight=counts) == pytest.approx(metrics.log_loss(y01[r], proba[r]))
    score = np.round(p, 1)  # ties, counted half
    assert metrics.roc_auc(y01, score, sample_weight=counts) == pytest.approx(metrics.roc_auc(y01[r], score[r]))
    skm = pytest.importorskip("sklearn.metrics")
    w = rng.uniform(0, 2, size=50)
    assert metrics.roc_auc(y01, score, sample_weight=w) == pytest.approx(skm.roc_auc_score(y01, score,
                                                                                         sample_weight=w))
    assert np.isnan(metrics.roc_auc(y01, score, sample_weight=np.where(y01 > 0, 1.0, 0.0)))


BAD_WEIGHTS = [
    (lambda n: -np.ones(n), "negative"),
    (lambda n: np.r_[np.ones(n - 1), np.nan], "NaN or infinity"),
    (lambda n: np.r_[np.ones(n - 1), np.inf], "NaN or infinity"),
    (lambda n: np.r_[np.ones(n - 1), 1e39], "too large for float32"),
    (lambda n: np.ones(n + 1), "values but X has"),
    (lambda n: np.zeros(n), "all zero"),
    (lambda n: np.ones((n, 1)), "1-D"),
    (lambda n: np.array(["1"] * n), "real numbers"),
    (lambda n: [object()] * n, "numbers"),
    (lambda n: "ones", "array of numbers"),
]


@pytest.mark.parametrize("make_bad, match", BAD_WEIGHTS)
def test_bad_sample_weight_is_a_value_error_on_every_path(rng, make_bad, match):
    X, y = _data(rng, n_rows=40)
    bad = make_bad(40)
    with pytest.raises(ValueError, match=match):
        small_model(fastafm.AFMRegressor).fit(X, y, sample_weight=bad)
    with pytest.raises(ValueError, match=match):
        small_model(fastafm.FMRegressor).partial_fit(X, y, sample_weight=bad)
    fitted = small_model(fastafm.FMRegressor, n_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=match):
        fitted.partial_fit(X, y, sample_weight=bad)
    with pytest.raises(ValueError, match=match.replace("X has", "")):
        fitted.score(X, y, sample_weight=bad)
    with pytest.raises(ValueError, match=match):
        small_model(fastafm.FMRegressor).fit(X, y, eval_set=(X, y, bad))
    with pytest.raises(ValueError, match=match):
        metrics.rmse(y, y, sample_weight=bad)


def test_pipeline_routes_sample_weight_to_the_estimator(rng):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.pipeline import make_pipeline

    df = pd.DataFrame({"a": rng.integers(0, 5, 200).astype(str), "b": rng.normal(size=200)})
    y = (rng.normal(size=200) > 0).astype(int)
    w = rng.uniform(0, 2, size=200)
    pipe = make_pipeline(fastafm.FieldEncoder(), small_model(fastafm.AFMClassifier))
    pipe.fit(df, y, afmclassifier__sample_weight=w)
    direct = small_model(fastafm.AFMClassifier).fit(fastafm.FieldEncoder().fit(df).transform(df), y, sample_weight=w)
    assert _same(_params(pipe[-1]), _params(direct))
    assert pipe.score(df, y, sample_weight=w) == pytest.approx(direct.score(pipe[0].transform(df), y,
                                                                            sample_weight=w))


def test_metadata_routing_requests_sample_weight(rng):
    sklearn = pytest.importorskip("sklearn")
    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 4):
        pytest.skip("metadata routing needs scikit-learn >= 1.4")
    from sklearn.model_selection import cross_validate

    X, y = _data(rng, n_rows=120)
    w = rng.uniform(0.5, 2.0, size=120)
    with sklearn.config_context(enable_metadata_routing=True):
        model = small_model(fastafm.FMRegressor).set_fit_request(sample_weight=True).set_score_request(
            sample_weight=True)
        got = cross_validate(model, X, y, cv=2, params={"sample_weight": w})["test_score"]
        plain = cross_validate(small_model(fastafm.FMRegressor), X, y, cv=2)["test_score"]
        # Unrequested weights are refused (UnsetMetadataPassedError, a ValueError): fit does accept them.
        with pytest.raises(ValueError, match="sample_weight"):
            cross_validate(small_model(fastafm.FMRegressor), X, y, cv=2, params={"sample_weight": w})
    assert not np.allclose(got, plain)
