"""model.predictor() (fastafm.serving): equal to decision_function / predict_proba / predict to the last bit for
every estimator, one row and batches, CSR objects and arrays; bad rows refused with clear errors; a predictor
refuses to run after its estimator is fitted again."""
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm

N_FEATURES = 40


def rows(seed, n_rows=60, nnz_choices=(0, 1, 2, 3, 5, 9, 14)):
    """CSR rows of 0 to 14 non-zeros, repeated ids, a stored 0.0 and negative values."""
    rng = np.random.default_rng(seed)
    indptr, cols, vals = [0], [], []
    for _ in range(n_rows):
        m = int(rng.choice(nnz_choices))
        cols += list(rng.integers(0, N_FEATURES, size=m))
        vals += list(rng.uniform(-1.5, 2.0, size=m))
        indptr.append(len(cols))
    vals = np.asarray(vals, np.float32)
    if vals.size:
        vals[0] = 0.0
    return sp.csr_matrix((vals, np.asarray(cols, np.int32), np.asarray(indptr, np.int64)), shape=(n_rows, N_FEATURES))


FIELDS = np.arange(N_FEATURES) % 7


def fitted(name, **kw):
    rng = np.random.default_rng(0)
    X = rows(1, 300)
    cls = getattr(fastafm, name)
    extra = {"fields": FIELDS} if name.startswith("FwFM") else {}
    if name.endswith("Classifier"):
        y = np.where(rng.random(300) < 0.4, "click", "none")
    elif kw.get("loss") == "logistic":
        y = rng.random(300)
    else:
        y = rng.normal(size=300)
    return cls(embedding_dim=8, n_epochs=2, random_state=0, early_stopping=False, **extra, **kw).fit(X, y)


MODELS = [("AFMRegressor", {}), ("AFMClassifier", {}), ("FMRegressor", {}), ("FMClassifier", {}),
          ("FwFMRegressor", {}), ("FwFMClassifier", {}), ("AFMRegressor", {"loss": "logistic"}),
          ("FMClassifier", {"negative_sampling_rate": 0.25}), ("AFMRegressor", {"attention": False})]


def expected(model, kind, X):
    if kind == "decision":
        return model.decision_function(X)
    if kind == "proba":
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


@pytest.mark.parametrize("name, kw", MODELS, ids=lambda v: str(v))
def test_equal_to_the_estimator_to_the_last_bit(name, kw):
    model = fitted(name, **kw)
    X = rows(2)
    kinds = ("decision", "proba", "predict") if name.endswith("Classifier") else ("predict",)
    for kind in kinds:
        want = expected(model, kind, X)
        for threads in (1, 2):
            pred = model.predictor(kind=kind, n_threads=threads)
            np.testing.assert_array_equal(pred(X), want)
            np.testing.assert_array_equal(pred.csr(X.indptr.astype(np.int32), X.indices, X.data), want)
            for r in (0, 1, 7, 59):  # one row at a time, rows of 0 to 14 non-zeros
                lo, hi = X.indptr[r], X.indptr[r + 1]
                got = pred.row(X.indices[lo:hi], X.data[lo:hi])
                assert got == want[r] and type(got) is type(want[r])
                np.testing.assert_array_equal(pred(X[r]), expected(model, kind, X[r]))
    assert model.predictor().kind == kinds[0]


def test_batches_of_many_rows_and_threads_and_out():
    model = fitted("AFMClassifier")
    X = rows(3, 5000)
    want = model.decision_function(X)
    out = np.empty(X.shape[0])
    for threads in (0, 1, 2):
        pred = model.predictor(n_threads=threads)
        assert pred(X, out=out) is out
        np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(pred(sp.csr_array(X)), want)


def test_long_rows_equal():
    """Rows of more pairs than a block holds (streamed in tiles) beside short ones."""
    model = fitted("AFMRegressor")
    X = sp.vstack([rows(4, 3, nnz_choices=(1500,)), rows(5, 4)]).tocsr()
    X = sp.csr_matrix((X.data.astype(np.float32), X.indices.astype(np.int32), X.indptr), shape=X.shape)
    pred = model.predictor()
    np.testing.assert_array_equal(pred(X), model.predict(X))
    lo, hi = X.indptr[0], X.indptr[1]
    assert pred.row(X.indices[lo:hi], X.data[lo:hi]) == model.predict(X[0])[0]


def test_shared_by_threads():
    model = fitted("FMRegressor")
    X = rows(6, 2000)
    want = model.predict(X)
    pred = model.predictor(n_threads=1)
    errors = []

    def serve():
        for _ in range(20):
            if not np.array_equal(pred(X), want):
                errors.append("differs")

    def serve_rows(offset):  # rows of different lengths at once: no call may see another's row
        for _ in range(10):
            for r in range(offset, 200, 3):
                lo, hi = X.indptr[r], X.indptr[r + 1]
                if pred.row(X.indices[lo:hi], X.data[lo:hi]) != want[r]:
                    errors.append(f"row {r} differs")
            if not np.array_equal(pred.csr(X.indptr.astype(np.int32), X.indices, X.data), want):
                errors.append("csr differs")

    threads = [threading.Thread(target=serve) for _ in range(2)]
    threads += [threading.Thread(target=serve_rows, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.fixture(scope="module")
def fwfm():
    return fitted("FwFMClassifier")


def test_bad_rows_are_refused(fwfm):
    pred = fwfm.predictor()
    X = rows(7, 5)
    with pytest.raises(ValueError, match="expecting 40 features"):
        pred(sp.csr_matrix((X.data, X.indices, X.indptr), shape=(5, 41)))
    with pytest.raises(TypeError, match="float32 values"):
        pred(X.astype(np.float64))
    with pytest.raises(TypeError, match="CSR"):
        pred(X.toarray())
    with pytest.raises(TypeError, match="CSR"):
        pred(X.tocoo())
    bad = X.copy()
    bad.data[2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        pred(bad)
    bad.data[2] = np.inf
    with pytest.raises(ValueError, match="finite"):
        pred.csr(bad.indptr, bad.indices, bad.data)
    with pytest.raises(ValueError, match="out of range"):
        pred.row(np.array([3, 40], np.int32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="out of range"):
        pred.row(np.array([-1], np.int32), np.ones(1, np.float32))
    with pytest.raises(TypeError, match="int32"):
        pred.row(np.array([3, 4]), np.ones(2, np.float32))
    with pytest.raises(TypeError, match="float32"):
        pred.row(np.array([3, 4], np.int32), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        pred.row(np.array([3, 4], np.int32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        pred.row(np.array([[3, 4]], np.int32), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="non-decreasing"):
        pred.csr(np.array([0, 2, 1, 3], np.int64), np.zeros(3, np.int32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="indptr"):
        pred.csr(np.array([0, 2], np.int64), np.zeros(3, np.int32), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="indptr"):
        pred.csr(np.array([0, 3], np.float64), np.zeros(3, np.int32), np.ones(3, np.float32))
    with pytest.raises(TypeError, match="out"):
        pred(X, out=np.empty(5, np.float32))
    with pytest.raises(ValueError, match="out"):
        pred(X, out=np.empty(4))
    with pytest.raises(ValueError, match="out="):
        fwfm.predictor(kind="proba")(X, out=np.empty(5))
    np.testing.assert_array_equal(pred(X), fwfm.decision_function(X))  # still serving after the errors


def test_bad_settings_are_refused(fwfm):
    with pytest.raises(ValueError, match="kind must be one of 'decision', 'proba', 'predict'"):
        fwfm.predictor(kind="logit")
    with pytest.raises(ValueError, match="kind must be one of 'predict'"):
        fitted("FMRegressor").predictor(kind="decision")
    with pytest.raises(ValueError, match="n_threads"):
        fwfm.predictor(n_threads=-1)
    with pytest.raises(ValueError, match="n_threads"):
        fwfm.predictor(n_threads=1.5)
    with pytest.raises(Exception, match="fitted|fit"):
        fastafm.FMRegressor().predictor()


def test_a_refitted_model_needs_a_new_predictor():
    model = fitted("AFMClassifier")
    X = rows(8, 10)
    pred = model.predictor()
    y = np.where(np.arange(300) % 3 == 0, "click", "none")
    model.partial_fit(rows(1, 300), y)
    with pytest.raises(RuntimeError, match="predictor\\(\\) again"):
        pred(X)
    pred = model.predictor()
    np.testing.assert_array_equal(pred(X), model.decision_function(X))
    model.fit(rows(9, 300), y)
    with pytest.raises(RuntimeError, match="fitted again"):
        pred.row(np.array([1], np.int32), np.ones(1, np.float32))
    np.testing.assert_array_equal(model.predictor()(X), model.decision_function(X))


def test_the_pair_limit_holds_for_every_call_form(monkeypatch):
    from fastafm.data import limits

    X, y, _ = fastafm.make_planted(300, n_fields=4, cardinality=6, random_state=0)
    X = X.astype(np.float32)
    attention = fastafm.AFMRegressor(embedding_dim=4, attention_dim=4, n_epochs=1, random_state=0).fit(X, y)
    uniform = fastafm.FMRegressor(embedding_dim=4, n_epochs=1, random_state=0).fit(X, y)
    pa, pu = attention.predictor(), uniform.predictor()
    row = X[1]
    monkeypatch.setattr(limits, "_override", 3)  # rows of 4 non-zeros: 6 pairs
    with pytest.raises(limits.RowTooLongError, match=r"X row 0 has 4 non-zeros, 6 feature pairs"):
        pa(X[:2])
    with pytest.raises(limits.RowTooLongError, match=r"X row 0 has 4 non-zeros"):
        pa.csr(X.indptr[:3].copy(), X.indices[:8].copy(), X.data[:8].copy())
    with pytest.raises(limits.RowTooLongError, match=r"predictor.row: row 0 has 4 non-zeros"):
        pa.row(row.indices, row.data)
    np.testing.assert_array_equal(pu(X[:2]), uniform.predict(X[:2]))  # FM pools in O(non-zeros): no limit
    monkeypatch.setattr(limits, "_override", 6)
    assert pa.row(row.indices, row.data) == attention.predict(X[1:2])[0]
