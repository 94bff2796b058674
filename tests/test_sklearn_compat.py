"""scikit-learn compatibility: the estimator checks, tags, clone, Pipeline and GridSearchCV; and fastafm
without scikit-learn installed (it is an optional dependency)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastafm
from support import small_model

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402

SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])

# Mini-batch SGD cannot pass scikit-learn's equivalence checks (fit with integer weights == fit on the rows
# repeated, to rtol 1e-7): repeating rows adds rows to every epoch, so the shuffled order, the mini-batches, the
# number of optimizer steps and the per-batch attention L2 all differ. The equivalence holds for one batch's
# objective and gradient, which tests/test_reference_weights.py and tests/test_kernel_weights.py check.
_BATCHING = ("mini-batch training: repeating rows changes the epoch's batches, steps and per-batch L2 "
             "(docs/model.md, Sample weights); one batch's weighted gradient equals the repeated rows' (tested)")
_WEIGHT_EQUIVALENCE = {"check_sample_weight_equivalence_on_dense_data": _BATCHING,
                       "check_sample_weight_equivalence_on_sparse_data": _BATCHING}
# Checks that fail by design, with the reason (sklearn >= 1.6 reports them as expected failures).
EXPECTED_FAILED_CHECKS = {
    "AFMRegressor": _WEIGHT_EQUIVALENCE,
    "AFMClassifier": _WEIGHT_EQUIVALENCE,
    "FMRegressor": _WEIGHT_EQUIVALENCE,
    "FMClassifier": _WEIGHT_EQUIVALENCE,
    "FwFMRegressor": _WEIGHT_EQUIVALENCE,
    "FwFMClassifier": _WEIGHT_EQUIVALENCE,
}


def _small(cls):
    return small_model(cls, embedding_dim=4, attention_dim=4, n_epochs=20)


def _expected_failed(estimator):
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


def _check_name(check):
    return getattr(check, "func", check).__name__


# scikit-learn's array-API check only runs with SCIPY_ARRAY_API=1 set before SciPy is imported, and skips
# itself otherwise; fastafm does not claim array-API support (its tags say so), so the check is left out
# rather than reported as a skip.
NOT_APPLICABLE = {"check_array_api_input"}


def _estimator_checks():
    if SKLEARN_VERSION < (1, 6):
        return []
    params = []
    for estimator in (_small(fastafm.AFMRegressor), _small(fastafm.AFMClassifier), _small(fastafm.FMRegressor),
                      _small(fastafm.FMClassifier), _small(fastafm.FwFMRegressor), _small(fastafm.FwFMClassifier)):
        for item in estimator_checks.estimator_checks_generator(
            estimator, legacy=True, expected_failed_checks=_expected_failed(estimator), mark="xfail"
        ):
            # Expected failures come as pytest.param(..., marks=xfail), the others as (estimator, check).
            (est, check), marks = (item.values, item.marks) if hasattr(item, "marks") else (item, ())
            if _check_name(check) in NOT_APPLICABLE:
                continue
            params.append(pytest.param(est, check, marks=marks, id=f"{type(est).__name__}-{_check_name(check)}"))
    return params


@pytest.mark.skipif(SKLEARN_VERSION < (1, 6), reason="the estimator checks API needs scikit-learn >= 1.6")
@pytest.mark.parametrize("estimator, check", _estimator_checks())
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.skipif(SKLEARN_VERSION < (1, 6), reason="the estimator checks API needs scikit-learn >= 1.6")
def test_the_sample_weight_checks_run():
    """The estimator checks include scikit-learn's sample-weight checks (a new scikit-learn renaming them would
    otherwise silently drop them), and only the equivalence checks are expected to fail."""
    names = {_check_name(p.values[1]) for p in _estimator_checks() if p.id.startswith("AFMRegressor-")}
    expected = {p.id for p in _estimator_checks() if p.marks}
    assert all("sample_weight_equivalence" in name for name in expected) and len(expected) == 2 * 6, expected  # 6 classes
    for name in ("check_sample_weights_list", "check_sample_weights_shape", "check_sample_weights_not_an_array",
                 "check_sample_weights_not_overwritten", "check_all_zero_sample_weights_error",
                 "check_sample_weight_equivalence_on_dense_data", "check_sample_weight_equivalence_on_sparse_data"):
        assert name in names


def test_tags_declare_sparse_input_and_a_binary_classifier():
    if SKLEARN_VERSION < (1, 6):
        pytest.skip("__sklearn_tags__ needs scikit-learn >= 1.6")
    from sklearn.utils import get_tags

    for cls in (fastafm.AFMRegressor, fastafm.AFMClassifier):
        tags = get_tags(cls())
        assert tags.input_tags.sparse and not tags.input_tags.allow_nan
    assert get_tags(fastafm.AFMClassifier()).classifier_tags.multi_class is False
    assert get_tags(fastafm.AFMRegressor()).estimator_type == "regressor"
    assert get_tags(fastafm.AFMClassifier()).estimator_type == "classifier"


@pytest.fixture(scope="module")
def data():
    X, y, _ = fastafm.make_planted(n_rows=600, n_fields=4, cardinality=5, planted_pairs=((0, 1),), random_state=0)
    return X, y


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(data):
    X, y = data
    model = _small(fastafm.AFMRegressor).set_params(dropout=0.1).fit(X, y)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "training_state_") and not hasattr(copy, "n_features_in_")
    np.testing.assert_array_equal(copy.fit(X, y).predict(X), model.predict(X))


def test_pipeline(data):
    X, y = data
    pipe = make_pipeline(MaxAbsScaler(), _small(fastafm.AFMClassifier))
    pipe.fit(X, y > 0)
    assert pipe.score(X, y > 0) > 0.6
    assert pipe.predict_proba(X).shape == (600, 2)
    reg = make_pipeline(MaxAbsScaler(), _small(fastafm.AFMRegressor)).fit(X, y)
    assert reg.predict(X).shape == (600,)


def test_grid_search(data):
    X, y = data
    grid = GridSearchCV(_small(fastafm.AFMRegressor).set_params(n_epochs=3),
                        {"embedding_dim": [2, 4], "learning_rate": [0.02, 0.1]}, cv=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"embedding_dim", "learning_rate"}
    assert len(grid.cv_results_["mean_test_score"]) == 4
    assert grid.best_estimator_.n_epochs_done_ == 3


def test_fastafm_works_without_scikit_learn(tmp_path):
    """scikit-learn is optional: with it blocked, the estimators, validation and model files still work."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["sklearn"] = None  # any `import sklearn...` now raises ImportError
        import numpy as np
        import fastafm
        from fastafm import _compat
        assert not _compat.HAVE_SKLEARN
        X, y, _ = fastafm.make_planted(n_rows=200, n_fields=3, cardinality=4, planted_pairs=((0, 1),), random_state=0)
        model = fastafm.AFMClassifier(embedding_dim=2, attention_dim=2, n_epochs=2, random_state=0).fit(X, y > 0)
        assert model.score(X, y > 0) > 0.75 > np.mean(y > 0)  # measured 0.85; the majority class is 0.545
        assert model.score(X, y > 0, sample_weight=np.full(200, 2.0)) == model.score(X, y > 0)
        right = (model.predict(X) == (y > 0)).astype(float)  # weights on the right rows only: accuracy 1
        assert model.score(X, y > 0, sample_weight=right) == 1.0
        try:
            model.score(X, y > 0, sample_weight=np.zeros(200))
        except ValueError as exc:
            assert "sample_weight" in str(exc)
        else:
            raise AssertionError("all-zero sample_weight was accepted")
        model.save({str(tmp_path / "m.afm")!r})
        assert (fastafm.load({str(tmp_path / "m.afm")!r}).predict(X) == model.predict(X)).all()
        try:
            fastafm.AFMRegressor().predict(X)
        except AttributeError as exc:
            assert "not fitted" in str(exc)
        else:
            raise AssertionError("predict before fit did not raise")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
