"""Bad input raises a clear exception naming the problem, never a crash or silent garbage.

Each case: (what is wrong, the call, the exception type, a fragment of the message)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import _core


@pytest.fixture(scope="module")
def data():
    X, y, _ = fastafm.make_planted(n_rows=300, n_fields=4, cardinality=5, planted_pairs=((0, 1),), random_state=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return fastafm.AFMRegressor(embedding_dim=4, attention_dim=4, n_epochs=1, random_state=0).fit(X, y)


def _nan_sparse(X):
    X = X.copy().astype(np.float64)
    X.data[3] = np.nan
    return X


FIT_CASES = [
    ("X with NaN", lambda X, y: (_nan_sparse(X), y), ValueError, "X contains NaN"),
    ("dense X with inf", lambda X, y: (np.where(X.toarray() > 0, np.inf, 0.0), y), ValueError, "X contains NaN or inf"),
    ("y with NaN", lambda X, y: (X, np.where(np.arange(len(y)) == 5, np.nan, y)), ValueError, "y contains NaN"),
    ("y too short", lambda X, y: (X, y[:-1]), ValueError, "y has 299 values but X has 300 rows"),
    ("y 2-D", lambda X, y: (X, np.c_[y, y]), ValueError, "y must be 1-D"),
    ("X 1-D", lambda X, y: (np.ones(300), y), ValueError, "X must be 2-D"),
    ("X 3-D", lambda X, y: (np.ones((300, 2, 2)), y), ValueError, "X must be 2-D"),
    ("X of strings", lambda X, y: (np.full((300, 3), "a"), y), TypeError, "X must hold real numbers"),
    ("X complex", lambda X, y: (X.toarray() * 1j, y), TypeError, "real numbers"),
    ("X is a string", lambda X, y: ("data.libfm", y), TypeError, "2-D array or a SciPy sparse matrix"),
    ("empty X", lambda X, y: (np.zeros((0, 20)), np.zeros(0)), ValueError, "X has 0 rows"),
    ("no features", lambda X, y: (np.zeros((300, 0)), y), ValueError, "X has 0 features"),
    ("y of strings", lambda X, y: (X, np.array(["a"] * 300)), TypeError, "y must hold numbers"),
]


@pytest.mark.parametrize("what,make,exc,message", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_rejects_bad_data(data, what, make, exc, message):
    X, y = make(*data)
    with pytest.raises(exc, match=message):
        fastafm.AFMRegressor(n_epochs=1).fit(X, y)


HYPER_CASES = [
    ("embedding_dim", 0, ValueError), ("embedding_dim", -3, ValueError), ("embedding_dim", 2.5, TypeError),
    ("attention_dim", 0, ValueError), ("dropout", 1.0, ValueError), ("dropout", -0.1, ValueError),
    ("learning_rate", 0.0, ValueError), ("learning_rate", -1.0, ValueError), ("learning_rate", float("nan"), ValueError),
    ("attention_l2", -1.0, ValueError), ("l2", -0.5, ValueError), ("batch_size", 0, ValueError),
    ("n_epochs", -1, ValueError), ("optimizer", "adam", ValueError), ("n_threads", -2, ValueError),
    ("init_std", -0.1, ValueError), ("attention", "yes", TypeError), ("random_state", "seed", TypeError),
]


@pytest.mark.parametrize("name,value,exc", HYPER_CASES, ids=[f"{n}={v!r}" for n, v, _ in HYPER_CASES])
def test_fit_rejects_bad_hyperparameters(data, name, value, exc):
    with pytest.raises(exc, match=name):
        fastafm.AFMRegressor(**{"n_epochs": 1, name: value}).fit(*data)


def test_predict_rejects_more_columns_than_fit(data, fitted):
    X, _ = data
    wider = sp.hstack([X, sp.csr_matrix((X.shape[0], 3))]).tocsr()
    with pytest.raises(ValueError, match="has 23 features, but the model was fitted with 20"):
        fitted.predict(wider)


def test_predict_before_fit_raises():
    with pytest.raises(Exception, match="not fitted"):
        fastafm.AFMRegressor().predict(np.ones((2, 2)))


def test_classifier_needs_two_classes(data):
    X, _ = data
    with pytest.raises(ValueError, match="exactly two classes"):
        fastafm.AFMClassifier(n_epochs=1).fit(X, np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="exactly two classes"):
        fastafm.AFMClassifier(n_epochs=1).fit(X, np.arange(X.shape[0]) % 3)


def test_eval_set_is_checked(data):
    X, y = data
    with pytest.raises(ValueError, match="eval_set must be a tuple"):
        fastafm.AFMRegressor(n_epochs=1).fit(X, y, eval_set=X)
    with pytest.raises(ValueError, match="eval_set X has 19 features"):
        fastafm.AFMRegressor(n_epochs=1).fit(X, y, eval_set=(X[:, :19], y))


FIELD_CASES = [
    ("negative id", np.array([[0, -1]]), None, ValueError, "negative feature id -1"),
    ("huge id", np.array([[0, 2**40]]), None, ValueError, "beyond the int32 range"),
    ("id >= n_features", np.array([[0, 7]]), 5, ValueError, "feature id 7, but n_features is 5"),
    ("float ids", np.array([[0.5, 1.0]]), None, TypeError, "ids must be integers"),
    ("1-D ids", np.array([1, 2, 3]), None, ValueError, "ids must be 2-D"),
    ("empty ids", np.zeros((0, 3), dtype=int), None, ValueError, "at least one row"),
    ("bad n_features", np.array([[0, 1]]), 0, ValueError, "n_features must be a positive integer"),
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
    ("int64 indices", dict(indices=np.array([0, 1], np.int64)), TypeError, "indices must have dtype int32"),
    ("float64 values", dict(values=np.array([1.0, 1.0])), TypeError, "values must have dtype float32"),
    ("values length", dict(values=np.ones(3, np.float32)), ValueError, "values has shape"),
    ("V wrong dtype", dict(params={**_params(), "V": np.zeros((5, 3))}), TypeError, "params\\['V'\\] must have dtype"),
    ("p wrong shape", dict(params={**_params(), "p": np.ones(4, np.float32)}), ValueError, "params\\['p'\\] has shape"),
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
    params, accum = _params(), _params()
    cfg = _core.TrainConfig()
    args = (np.array([0, 1, 2], np.int64), np.array([0, 1], np.int32), np.ones(2, np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="order holds row 2"):
        _core.train_epoch(params, accum, *args, np.array([0, 2], np.int64), cfg)
    with pytest.raises(ValueError, match="y has shape"):
        _core.train_epoch(params, accum, *args[:3], np.zeros(3, np.float32), np.array([0], np.int64), cfg)
    with pytest.raises(ValueError, match="must be writable"):
        ro = _params()
        ro["V"].flags.writeable = False
        _core.train_epoch(ro, accum, *args, np.array([0], np.int64), cfg)
    cfg.learning_rate = -1.0
    with pytest.raises(ValueError, match="learning_rate"):
        _core.train_epoch(params, accum, *args, np.array([0], np.int64), cfg)


def test_malformed_libfm_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.libfm"
    path.write_text("1 0:1 3:1\n-1 2:1 x:1\n")
    with pytest.raises(ValueError, match=r"bad\.libfm:2: "):
        fastafm.load_libfm(path)
