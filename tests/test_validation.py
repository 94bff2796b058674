"""Bad input raises a clear exception naming the argument and the problem, never a crash or silent garbage.

Each table row: (what is wrong, how to make it, the exception type, a fragment of the message). The tables
cover every place data enters: fit/partial_fit (X, y, eval_set, hyperparameters), predict and the other
methods of a fitted model, from_fields, and the compiled core itself (for callers that skip the Python
layer). load_libfm's arguments and file contents are in test_libfm.py, load's in test_persistence.py.

Unsorted column indices within a CSR row are *valid* AFM input, not malformed CSR: a row's storage order
defines the order of its feature pairs (r < s), and repeated ids are separate non-zeros (test at the end).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import _core
from support import core_epoch


@pytest.fixture(scope="module")
def data():
    X, y, _ = fastafm.make_planted(n_rows=300, n_fields=4, cardinality=5, planted_pairs=((0, 1),), random_state=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return fastafm.AFMRegressor(embedding_dim=4, attention_dim=4, n_epochs=1, random_state=0, n_threads=1).fit(X, y)


@pytest.fixture(scope="module")
def fitted_classifier(data):
    X, y = data
    return fastafm.AFMClassifier(embedding_dim=4, attention_dim=4, n_epochs=1, random_state=0,
                                 n_threads=1).fit(X, y > 0)


def _set(X, value=None, **arrays):
    """A copy of CSR X with some of its raw arrays replaced (scipy does not re-check them)."""
    X = X.copy().astype(np.float64)
    if value is not None:
        X.data[3] = value
    for name, arr in arrays.items():
        setattr(X, name, np.asarray(arr))
    return X


def _dense(X, value):
    A = X.toarray().astype(np.float64)
    A[2, 1] = value
    return A


def _indptr(X, fix):
    indptr = X.indptr.astype(np.int64).copy()
    fix(indptr)
    return _set(X, indptr=indptr)


def _shift_first(X, by):
    indptr = X.indptr.copy()
    indptr[0] = by
    return indptr


def _decrease(ip):
    ip[5] = ip[4] - 1


def _start_at_1(ip):
    ip[0] = 1


def _end_short(ip):
    ip[-1] -= 1


def _wide(X):
    return sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], 2**31 + 5))


FIT_CASES = [
    # values
    ("sparse X with NaN", lambda X, y: (_set(X, np.nan), y), ValueError, "X contains NaN"),
    ("sparse X with inf", lambda X, y: (_set(X, np.inf), y), ValueError, "X contains NaN or inf"),
    ("sparse X beyond float32", lambda X, y: (_set(X, 1e39), y), ValueError, "too large for float32"),
    ("dense X with NaN", lambda X, y: (_dense(X, np.nan), y), ValueError, "X contains NaN"),
    ("dense X with -inf", lambda X, y: (_dense(X, -np.inf), y), ValueError, "X contains NaN or inf"),
    ("dense X beyond float32", lambda X, y: (_dense(X, -3e38 * 10), y), ValueError, "too large for float32"),
    # type and shape
    ("X 1-D", lambda X, y: (np.ones(300), y), ValueError, "X must be 2-D"),
    ("X 3-D", lambda X, y: (np.ones((300, 2, 2)), y), ValueError, "X must be 2-D"),
    ("X 0-D", lambda X, y: (np.float64(3.0), y), ValueError, "X must be 2-D"),
    ("X of strings", lambda X, y: (np.full((300, 3), "a"), y), TypeError, "X must hold real numbers"),
    ("X object non-numbers", lambda X, y: (np.array([[{}, 1]] * 300, dtype=object), y), TypeError,
     "X must hold real numbers"),
    ("X complex", lambda X, y: (X.toarray() * 1j, y), ValueError, "X must hold real numbers: Complex"),
    ("sparse X complex", lambda X, y: (X.astype(np.complex64), y), ValueError, "X must hold real numbers: Complex"),
    ("X is a string", lambda X, y: ("data.libfm", y), TypeError, "X must be a 2-D array or a SciPy sparse"),
    ("X is None", lambda X, y: (None, y), TypeError, "X must be a 2-D array or a SciPy sparse"),
    ("X ragged lists", lambda X, y: ([[1.0, 2.0], [3.0]] * 150, y), ValueError, "X is not a rectangular"),
    ("sparse X 1-D", lambda X, y: (sp.coo_array(np.ones(300)), y), ValueError, "X must be 2-D"),
    # zero rows / features
    ("empty X", lambda X, y: (np.zeros((0, 20)), np.zeros(0)), ValueError, "X has 0 rows"),
    ("no features", lambda X, y: (np.zeros((300, 0)), y), ValueError, r"X has 0 feature\(s\)"),
    ("sparse X 0 rows", lambda X, y: (sp.csr_matrix((0, 20)), np.zeros(0)), ValueError, "X has 0 rows"),
    ("sparse X 0 features", lambda X, y: (sp.csr_matrix((300, 0)), y), ValueError, r"X has 0 feature\(s\)"),
    ("more than int32 columns", lambda X, y: (_wide(X), y), ValueError, "at most 2147483647"),
    # malformed CSR
    ("indptr decreasing", lambda X, y: (_indptr(X, _decrease), y), ValueError, "X has a malformed CSR indptr"),
    ("indptr not from 0", lambda X, y: (_indptr(X, _start_at_1), y), ValueError, "X has a malformed CSR indptr"),
    ("indptr end != nnz", lambda X, y: (_indptr(X, _end_short), y), ValueError, "X has a malformed CSR indptr"),
    ("indptr too short", lambda X, y: (_set(X, indptr=X.indptr[:-1]), y), ValueError, "malformed CSR indptr of shape"),
    ("indptr float", lambda X, y: (_set(X, indptr=X.indptr.astype(float)), y), TypeError, "non-integer CSR"),
    ("index >= n_features", lambda X, y: (_set(X, indices=np.where(np.arange(X.nnz) == 7, 20, X.indices)), y),
     ValueError, r"X has column indices outside \[0, 20\)"),
    ("negative index", lambda X, y: (_set(X, indices=np.where(np.arange(X.nnz) == 7, -1, X.indices)), y),
     ValueError, "X has column indices outside"),
    ("indices/data length", lambda X, y: (_set(X, data=X.data[:-1].astype(np.float64)), y), ValueError,
     "X has 1200 indices but 1199 values"),
    # targets
    ("y with NaN", lambda X, y: (X, np.where(np.arange(len(y)) == 5, np.nan, y)), ValueError, "y contains NaN"),
    ("y with inf", lambda X, y: (X, np.where(np.arange(len(y)) == 5, np.inf, y)), ValueError, "y contains NaN"),
    ("y beyond float32", lambda X, y: (X, np.where(np.arange(len(y)) == 5, 1e39, y.astype(float))), ValueError, "y contains NaN"),
    ("y too short", lambda X, y: (X, y[:-1]), ValueError, "y has 299 values but X has 300 rows"),
    ("y too long", lambda X, y: (X, np.r_[y, 0.0]), ValueError, "y has 301 values but X has 300 rows"),
    ("y 2-D", lambda X, y: (X, np.c_[y, y]), ValueError, "y must be 1-D"),
    ("y 0-D", lambda X, y: (X, np.float64(1.0)), ValueError, "y must be 1-D"),
    ("y of strings", lambda X, y: (X, np.array(["a"] * 300)), TypeError, "y must hold real numbers"),
    ("y with None", lambda X, y: (X, [None] * 300), ValueError, "y contains NaN"),
    ("y complex", lambda X, y: (X, y * 1j), ValueError, "y must hold real numbers: Complex"),
    ("y ragged", lambda X, y: (X, [[1.0], [1.0, 2.0]] * 150), ValueError, "y is not a rectangular"),
    ("y is None", lambda X, y: (X, None), ValueError, "requires y to be passed, but the target y is None"),
]


@pytest.mark.parametrize("what,make,exc,message", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_rejects_bad_data(data, what, make, exc, message):
    X, y = make(*data)
    with pytest.raises(exc, match=message):
        fastafm.AFMRegressor(n_epochs=1, embedding_dim=2, attention_dim=2).fit(X, y)


@pytest.mark.parametrize("what,make,exc,message", FIT_CASES[:30], ids=[c[0] for c in FIT_CASES[:30]])
def test_predict_rejects_bad_data(data, fitted, what, make, exc, message):
    X, y = make(*data)
    with pytest.raises(exc, match=message):
        fitted.predict(X)


def test_column_vector_y_is_accepted_with_a_warning(data):
    X, y = data
    from fastafm.data.validation import DataConversionWarning

    with pytest.warns(DataConversionWarning, match="column-vector y"):
        model = fastafm.AFMRegressor(n_epochs=1, embedding_dim=2, attention_dim=2, random_state=0).fit(X, y[:, None])
    assert model.n_epochs_done_ == 1


HYPER_CASES = [
    ("embedding_dim", 0, ValueError), ("embedding_dim", -3, ValueError), ("embedding_dim", 2.5, TypeError),
    ("embedding_dim", True, TypeError), ("embedding_dim", "8", TypeError), ("embedding_dim", None, TypeError),
    ("embedding_dim", 2**31, ValueError),
    ("attention_dim", 0, ValueError), ("attention_dim", 2**31, ValueError), ("attention_dim", 4.0, TypeError),
    ("dropout", 1.0, ValueError), ("dropout", -0.1, ValueError), ("dropout", float("nan"), ValueError),
    ("dropout", "0.1", TypeError),
    ("learning_rate", 0.0, ValueError), ("learning_rate", -1.0, ValueError), ("learning_rate", float("nan"), ValueError),
    ("learning_rate", float("inf"), ValueError), ("learning_rate", None, TypeError),
    ("attention_l2", -1.0, ValueError), ("attention_l2", float("inf"), ValueError), ("l2", -0.5, ValueError),
    ("batch_size", 0, ValueError), ("batch_size", 2**31, ValueError), ("batch_size", 1.5, TypeError),
    ("n_epochs", -1, ValueError), ("n_epochs", 2.0, TypeError),
    ("optimizer", "adamw", ValueError), ("optimizer", None, ValueError),
    ("n_threads", -2, ValueError), ("n_threads", 10**6, ValueError),
    ("init_std", -0.1, ValueError), ("init_std", float("nan"), ValueError),
    ("attention", "yes", TypeError), ("attention", 1, TypeError),
    ("random_state", "seed", TypeError), ("random_state", -1, ValueError), ("random_state", 1.5, TypeError),
    ("verbose", -1, ValueError),
]


@pytest.mark.parametrize("name,value,exc", HYPER_CASES, ids=[f"{n}={v!r}" for n, v, _ in HYPER_CASES])
def test_fit_rejects_bad_hyperparameters(data, name, value, exc):
    from fastafm._compat import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=name) as info:
        fastafm.AFMRegressor(**{"n_epochs": 1, name: value}).fit(*data)
    assert isinstance(info.value, exc)
    with pytest.raises(InvalidParameterError, match=name):  # partial_fit checks them too
        fastafm.AFMRegressor(**{"n_epochs": 1, name: value}).partial_fit(*data)


def _estimator_classes():
    classes = [fastafm.AFMRegressor, fastafm.AFMClassifier, fastafm.FMRegressor, fastafm.FMClassifier]
    try:
        import fastafm.dask as fdask
    except ImportError:  # the dask extra is optional
        return classes
    return classes + [fdask.DaskAFMRegressor, fdask.DaskAFMClassifier]


@pytest.mark.parametrize("cls", _estimator_classes(), ids=lambda c: c.__name__)
def test_every_bad_hyperparameter_is_an_invalid_parameter_error(data, cls):
    """scikit-learn's convention, for every estimator and every hyperparameter: a wrong type (a string for a
    number, `learning_rate="0.1"`) or a wrong value is an InvalidParameterError (scikit-learn's class when it
    is installed), which is both a ValueError and a TypeError, and names the parameter."""
    import inspect

    from fastafm._compat import InvalidParameterError
    from fastafm.models.hyperparams import BY_NAME, Anything

    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
    from fastafm._compat import HAVE_SKLEARN

    if HAVE_SKLEARN:
        from sklearn.utils._param_validation import InvalidParameterError as SklearnError
        assert InvalidParameterError is SklearnError
    X, y = data
    y = np.where(y > np.median(y), 1, 0) if "Classifier" in cls.__name__ else y
    names = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    checked = 0
    for name in names:
        if isinstance(BY_NAME[name].constraint, Anything):
            continue
        for value in ("0.1", object(), -5):
            try:
                BY_NAME[name].constraint.check(value, name)
            except (ValueError, TypeError):
                pass
            else:
                if name != "early_stopping_metric":
                    continue  # a valid value for this parameter (-5 is never; "0.1" may be elsewhere)
            with pytest.raises(InvalidParameterError, match=name):
                cls(**{name: value}).fit(X, y)
            checked += 1
    assert checked >= len(names) - 2


def _wider(X, extra=3):
    return sp.hstack([X, sp.csr_matrix((X.shape[0], extra))]).tocsr()


METHOD_CASES = [
    ("more columns", lambda X: _wider(X), ValueError, "X has 23 features, but AFMRegressor is expecting 20"),
    ("fewer columns", lambda X: X[:, :19], ValueError, "X has 19 features, but AFMRegressor is expecting 20"),
    ("NaN", lambda X: _set(X, np.nan), ValueError, "X contains NaN"),
    ("1-D", lambda X: np.ones(20), ValueError, "X must be 2-D"),
    ("strings", lambda X: np.full((3, 20), "x"), TypeError, "X must hold real numbers"),
    ("0 rows", lambda X: np.zeros((0, 20)), ValueError, "X has 0 rows"),
    ("index beyond", lambda X: _set(X, indices=np.where(np.arange(X.nnz) == 0, 25, X.indices)), ValueError,
     "column indices outside"),
]
METHODS = ["predict", "attention_weights"]  # the regressor: decision_function is the classifiers'


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("what,make,exc,message", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_fitted_methods_reject_bad_X(data, fitted, method, what, make, exc, message):
    X, _ = data
    with pytest.raises(exc, match=message):
        getattr(fitted, method)(make(X))


@pytest.mark.parametrize("method", ["predict_proba", "decision_function", "predict"])
def test_classifier_methods_reject_bad_X(data, fitted_classifier, method):
    X, _ = data
    with pytest.raises(ValueError, match="X has 23 features, but AFMClassifier is expecting 20"):
        getattr(fitted_classifier, method)(_wider(X))


@pytest.mark.parametrize("method", ["predict", "decision_function", "attention_weights", "save"])
def test_methods_before_fit_raise(method, tmp_path):
    arg = tmp_path / "m.afm" if method == "save" else np.ones((2, 2))
    with pytest.raises(Exception, match="not fitted"):
        getattr(fastafm.AFMClassifier(), method)(arg)
    if method != "decision_function":
        with pytest.raises(Exception, match="not fitted"):
            getattr(fastafm.AFMRegressor(), method)(arg)


@pytest.mark.parametrize("cls", ["AFMRegressor", "FMRegressor", "DaskAFMRegressor"])
def test_regressors_have_no_decision_function(cls):
    """scikit-learn's convention (check_regressors_no_decision_function): predict is a regressor's raw output."""
    if cls.startswith("Dask"):
        pytest.importorskip("distributed")  # the dask extra is optional
        import fastafm.dask as module
    else:
        module = fastafm
    assert not hasattr(getattr(module, cls)(), "decision_function")
    assert hasattr(getattr(module, cls.replace("Regressor", "Classifier"))(), "decision_function")


def test_partial_fit_checks_width_of_later_batches(data):
    X, y = data
    model = fastafm.AFMRegressor(n_epochs=1, embedding_dim=2, attention_dim=2, random_state=0).partial_fit(X, y)
    with pytest.raises(ValueError, match="X has 23 features, but AFMRegressor is expecting 20"):
        model.partial_fit(_wider(X), y)
    with pytest.raises(ValueError, match="y has 299 values"):
        model.partial_fit(X, y[:-1])
    assert model.n_epochs_done_ == 1  # nothing trained by the refused calls


CLASSIFIER_CASES = [
    ("one class", lambda y: np.ones(300), {}, ValueError, "needs two classes in y, got 1 class"),
    ("three classes", lambda y: np.arange(300) % 3, {}, ValueError, "needs two classes in y, got 3"),
    ("continuous labels", lambda y: y, {}, ValueError, "Unknown label type: continuous"),
    ("NaN label", lambda y: np.where(np.arange(300) == 4, np.nan, (y > 0) * 1.0), {}, ValueError, "y contains NaN"),
    ("None label", lambda y: np.array([None] + ["a", "b"] * 149 + ["a"], dtype=object), {}, ValueError,
     "missing labels"),
    ("y too short", lambda y: (y > 0)[:-1], {}, ValueError, "y has 299 values but X has 300 rows"),
    ("y 2-D", lambda y: np.c_[y > 0, y > 0], {}, ValueError, "y must be 1-D"),
    ("y is None", lambda y: None, {}, ValueError, "requires y to be passed"),
    ("y complex", lambda y: (y > 0) * 1j, {}, ValueError, "Complex data not supported"),
    ("mixed label types", lambda y: np.array(["a", 1] * 150, dtype=object), {}, TypeError,
     "y must hold labels of one type"),
    ("classes of three", lambda y: y > 0, {"classes": [0, 1, 2]}, ValueError, "classes must hold exactly two"),
    ("labels outside classes", lambda y: np.arange(300) % 2 + 5, {"classes": [5, 7]}, ValueError,
     "labels not in classes"),
]


@pytest.mark.parametrize("what,make_y,kw,exc,message", CLASSIFIER_CASES, ids=[c[0] for c in CLASSIFIER_CASES])
def test_classifier_rejects_bad_labels(data, what, make_y, kw, exc, message):
    X, y = data
    model = fastafm.AFMClassifier(n_epochs=1, embedding_dim=2, attention_dim=2)
    with pytest.raises(exc, match=message):
        if kw:
            model.partial_fit(X, make_y(y), **kw)
        else:
            model.fit(X, make_y(y))


def test_classifier_partial_fit_classes(data):
    X, y = data
    model = fastafm.AFMClassifier(n_epochs=1, embedding_dim=2, attention_dim=2, random_state=0)
    model.partial_fit(X[:10], np.zeros(10), classes=[0, 1])  # a first batch with one class, declared both
    np.testing.assert_array_equal(model.classes_, [0, 1])
    with pytest.raises(ValueError, match="labels not seen in fit"):
        model.partial_fit(X, np.full(300, 2))
    with pytest.raises(ValueError, match="differ from classes_"):
        model.partial_fit(X, y > 0, classes=[0, 2])
    with pytest.raises(ValueError, match="classes is only for classifiers"):
        fastafm.AFMRegressor().partial_fit(X, y, classes=[0, 1])


EVAL_CASES = [
    ("not a tuple", lambda X, y: X, "eval_set must be a tuple"),
    ("list of two", lambda X, y: [(X, y), (X, y)], "eval_set must be one"),
    ("tuple of four", lambda X, y: (X, y, y, y), "eval_set must be a tuple"),
    ("bad eval weights", lambda X, y: (X, y, -np.ones(300)), "eval_set sample_weight contains negative weights"),
    ("fewer features", lambda X, y: (X[:, :19], y), "eval_set X has 19 features"),
    ("y length", lambda X, y: (X, y[:5]), "eval_set y has 5 values"),
    ("NaN in y", lambda X, y: (X, np.full(300, np.nan)), "eval_set y contains NaN"),
    ("NaN in X", lambda X, y: (_set(X, np.nan), y), "eval_set X contains NaN"),
]


@pytest.mark.parametrize("what,make,message", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_set_is_checked(data, what, make, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        fastafm.AFMRegressor(n_epochs=1).fit(X, y, eval_set=make(X, y))


FIELD_CASES = [
    ("negative id", np.array([[0, -1]]), None, ValueError, "negative feature id -1"),
    ("huge id", np.array([[0, 2**40]]), None, ValueError, "beyond the int32 range"),
    ("id >= n_features", np.array([[0, 7]]), 5, ValueError, "feature id 7, but n_features is 5"),
    ("float ids", np.array([[0.5, 1.0]]), None, TypeError, "ids must be integers"),
    ("NaN ids", np.array([[np.nan, 1.0]]), None, TypeError, "ids must be integers"),
    ("bool ids", np.array([[True, False]]), None, TypeError, "ids must be integers"),
    ("string ids", np.array([["a", "b"]]), None, TypeError, "ids must be integers"),
    ("1-D ids", np.array([1, 2, 3]), None, ValueError, "ids must be 2-D"),
    ("3-D ids", np.zeros((2, 2, 2), dtype=int), None, ValueError, "ids must be 2-D"),
    ("empty ids", np.zeros((0, 3), dtype=int), None, ValueError, "at least one row"),
    ("no fields", np.zeros((3, 0), dtype=int), None, ValueError, "at least one row and one field"),
    ("bad n_features", np.array([[0, 1]]), 0, ValueError, "n_features must be a positive integer"),
    ("float n_features", np.array([[0, 1]]), 4.0, ValueError, "n_features must be a positive integer"),
]


@pytest.mark.parametrize("what,ids,n_features,exc,message", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_from_fields_rejects(what, ids, n_features, exc, message):
    with pytest.raises(exc, match=message):
        fastafm.from_fields(ids, n_features=n_features)


def test_from_fields_builds_one_hot_rows():
    X = fastafm.from_fields(np.array([[0, 3, 3], [2, 1, 4]]), n_features=6)
    assert X.shape == (2, 6) and X.dtype == np.float32
    np.testing.assert_array_equal(X.indices, [0, 3, 3, 2, 1, 4])  # repeats kept, field order kept
    np.testing.assert_array_equal(X.data, 1.0)


def test_unsorted_and_repeated_indices_are_valid_input(fitted):
    """Not malformed CSR: the model takes each stored entry as a non-zero, pairs in storage order."""
    rows = [[3, 1, 17, 8], [8, 17, 1, 3], [5, 5, 2]]
    ids = np.concatenate(rows).astype(np.int32)
    vals = np.array([1.0, 0.5, 2.0, 1.5, 1.5, 2.0, 0.5, 1.0, 1.0, 1.0, 3.0], np.float32)
    X = sp.csr_matrix((vals, ids, [0, 4, 8, 11]), shape=(3, 20))
    assert not X.has_sorted_indices
    Xc = fastafm.data.validation.as_csr(X)
    np.testing.assert_array_equal(Xc.indices, ids)  # neither sorted nor merged
    pred = fitted.predict(X)
    assert np.isfinite(pred).all()
    assert pred[0] == pytest.approx(pred[1], rel=1e-5)  # the same pairs, in another order
    merged = sp.csr_matrix(([2.0, 3.0], [5, 2], [0, 2]), shape=(1, 20))  # (5, 5) is a pair of its own
    assert pred[2] != pytest.approx(fitted.predict(merged)[0], rel=1e-6)
    pair_indptr, pairs, _ = fitted.attention_weights(X)
    np.testing.assert_array_equal(pairs[:3], [[3, 1], [3, 17], [3, 8]])  # pairs follow storage order
    np.testing.assert_array_equal(pairs[pair_indptr[2]], [5, 5])


# ------------------------------------------------------------------------------------------------ the core


def _params(n=5, k=3, t=2):
    return {"w0": np.zeros(1, np.float32), "w": np.zeros(n, np.float32), "V": np.zeros((n, k), np.float32),
            "W": np.zeros((t, k), np.float32), "b": np.zeros(t, np.float32), "h": np.zeros(t, np.float32),
            "p": np.ones(k, np.float32)}


CORE_CASES = [
    ("id out of range", dict(indices=np.array([0, 9], np.int32)), ValueError, "feature id 9 is out of range"),
    ("negative id", dict(indices=np.array([0, -1], np.int32)), ValueError, "feature id -1 is out of range"),
    ("indptr decreasing", dict(indptr=np.array([0, 2, 1, 2], np.int64)), ValueError, "non-decreasing"),
    ("indptr too long", dict(indptr=np.array([0, 1, 2, 3], np.int64)), ValueError, "indptr\\[-1\\]"),
    ("indptr not from 0", dict(indptr=np.array([1, 1, 2, 2], np.int64)), ValueError, "indptr\\[0\\] must be 0"),
    ("indptr empty", dict(indptr=np.array([], np.int64)), ValueError, "indptr must have at least one"),
    ("indptr 2-D", dict(indptr=np.zeros((2, 2), np.int64)), ValueError, "indptr must be 1-D"),
    ("indptr int32", dict(indptr=np.array([0, 1, 1, 2], np.int32)), TypeError, "indptr must have dtype int64"),
    ("int64 indices", dict(indices=np.array([0, 1], np.int64)), TypeError, "indices must have dtype int32"),
    ("float64 values", dict(values=np.array([1.0, 1.0])), TypeError, "values must have dtype float32"),
    ("values length", dict(values=np.ones(3, np.float32)), ValueError, "values has shape"),
    ("strided values", dict(values=np.ones(4, np.float32)[::2]), ValueError, "values must be C-contiguous"),
    ("V wrong dtype", dict(params={**_params(), "V": np.zeros((5, 3))}), TypeError, "params\\['V'\\] must have dtype"),
    ("p wrong shape", dict(params={**_params(), "p": np.ones(4, np.float32)}), ValueError, "params\\['p'\\] has shape"),
    ("w wrong length", dict(params={**_params(), "w": np.ones(4, np.float32)}), ValueError, "params\\['w'\\] has shape"),
    ("V 1-D", dict(params={**_params(), "V": np.zeros(5, np.float32)}), ValueError, "V and W must be 2-D"),
    ("k = 0", dict(params={**_params(k=0)}), ValueError, "sizes must be positive"),
    ("missing h", dict(params={k: v for k, v in _params().items() if k != "h"}), ValueError, "missing the array 'h'"),
]


@pytest.mark.parametrize("what,override,exc,message", CORE_CASES, ids=[c[0] for c in CORE_CASES])
def test_core_checks_before_touching_memory(what, override, exc, message):
    """The binding validates raw arrays itself: a caller that skips the Python layer still gets an error."""
    args = dict(params=_params(), indptr=np.array([0, 1, 1, 2], np.int64), indices=np.array([0, 1], np.int32),
                values=np.ones(2, np.float32))
    args.update(override)
    with pytest.raises(exc, match=message):
        _core.predict(args["params"], args["indptr"], args["indices"], args["values"])


def test_core_rejects_bad_training_rows():
    params, accum = _params(), {"G": _params()}  # adagrad's state: slot G
    cfg = _core.TrainConfig()
    args = (np.array([0, 1, 2], np.int64), np.array([0, 1], np.int32), np.ones(2, np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="order holds row 2"):
        core_epoch(params, accum, *args, np.array([0, 2], np.int64), cfg)
    with pytest.raises(ValueError, match="order holds row -1"):
        core_epoch(params, accum, *args, np.array([-1], np.int64), cfg)
    with pytest.raises(ValueError, match="y has shape"):
        core_epoch(params, accum, *args[:3], np.zeros(3, np.float32), np.array([0], np.int64), cfg)
    with pytest.raises(ValueError, match="must be writable"):
        ro = _params()
        ro["V"].flags.writeable = False
        core_epoch(ro, accum, *args, np.array([0], np.int64), cfg)
    with pytest.raises(ValueError, match="different shapes"):
        core_epoch(params, {"G": _params(n=6)}, *args, np.array([0], np.int64), cfg)
    for field, value, message in (("learning_rate", -1.0, "learning_rate"), ("learning_rate", float("inf"),
                                  "learning_rate"), ("dropout", 1.0, "dropout"), ("l2", -1.0, "L2"),
                                  ("batch_size", 0, "batch_size"), ("n_threads", -1, "n_threads")):
        cfg = _core.TrainConfig()
        setattr(cfg, field, value)
        with pytest.raises(ValueError, match=message):
            core_epoch(params, accum, *args, np.array([0], np.int64), cfg)


def test_core_rejects_an_optimizer_value_of_no_optimizer():
    """_core.Optimizer(n) accepts any int; the core's optimizer table has a row only for its members."""
    assert [int(v) for v in _core.Optimizer.__members__.values()] == [0, 1, 2]
    cfg = _core.TrainConfig()
    cfg.optimizer = _core.Optimizer(3)
    with pytest.raises(ValueError, match="unknown optimizer 3"):
        _core.Trainer(_params(), {}, cfg)
    with pytest.raises(ValueError, match="unknown optimizer 3"):
        _core.optimizer_slots(_core.Optimizer(3))


def test_core_rejects_bad_pair_indptr():
    args = (_params(), np.array([0, 3, 3], np.int64), np.array([0, 1, 2], np.int32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="pair counts at row 0"):
        _core.pair_attention(*args, np.array([0, 2, 2], np.int64))
    with pytest.raises(ValueError, match="pair_indptr has shape"):
        _core.pair_attention(*args, np.array([0, 3], np.int64))


def test_malformed_libfm_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.libfm"
    path.write_text("1 0:1 3:1\n-1 2:1 x:1\n")
    with pytest.raises(ValueError, match=r"bad\.libfm:2: "):
        fastafm.load_libfm(path)
