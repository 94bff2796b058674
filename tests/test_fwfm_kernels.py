"""FwFM: the float64 reference against finite differences, and the core's field-weighted kernels (forward,
every gradient, on every instruction set the CPU has) against the reference, per element."""
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import _core
from fastafm import reference_fwfm as ref


def make(rng, n_rows, n_features, k, n_fields, nnz_choices=(0, 1, 2, 3, 7), repeat=False):
    """Random rows (some empty, single, repeated ids), fields, and a model whose R is symmetric."""
    fields = rng.integers(0, n_fields, size=n_features).astype(np.int32)
    rows, cols, vals = [], [], []
    for i in range(n_rows):
        m = int(rng.choice(nnz_choices))
        ids = rng.integers(0, n_features, size=m) if repeat else rng.permutation(n_features)[:m]
        rows += [i] * len(ids)
        cols += list(ids)
        vals += list(rng.uniform(0.2, 1.5, size=len(ids)))
    X = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(n_rows, n_features))
    if repeat:  # keep repeated ids as separate non-zeros: build the CSR arrays by hand
        order = np.argsort(rows, kind="stable")
        indptr = np.searchsorted(np.asarray(rows)[order], np.arange(n_rows + 1)).astype(np.int64)
        X = sp.csr_matrix((np.asarray(vals, np.float32)[order], np.asarray(cols, np.int32)[order], indptr),
                          shape=(n_rows, n_features))
    R = rng.normal(0.8, 0.5, size=(n_fields, n_fields))
    R = ((R + R.T) / 2).astype(np.float32)
    params = {"w0": np.array([0.1], np.float32), "w": rng.normal(0, 0.3, n_features).astype(np.float32),
              "V": rng.normal(0, 0.4, (n_features, k)).astype(np.float32),
              "W": np.zeros((1, k), np.float32), "b": np.zeros(1, np.float32), "h": np.zeros(1, np.float32),
              "p": np.ones(k, np.float32), "R": R}
    return X, fields, params


def core_params(params, fields):
    return {**params, "field": fields}


def config(loss="squared", **kw):
    cfg = _core.TrainConfig()
    cfg.loss = getattr(_core.Loss, loss)
    cfg.attention = False
    cfg.learn_projection = False
    for name, value in kw.items():
        setattr(cfg, name, value)
    return cfg


def csr(X):
    return (X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32))


SHAPES = [  # (n_features, k, n_fields): k below, at and past a vector, register tails; one field; many fields
    (12, 1, 1), (20, 4, 3), (30, 8, 5), (40, 13, 7), (50, 16, 2), (64, 33, 12), (25, 64, 25), (80, 7, 40)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_core_matches_reference(isa, shape, loss):
    n_features, k, n_fields = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, loss)).encode()))
    for repeat in (False, True):
        X, fields, params = make(rng, 24, n_features, k, n_fields, repeat=repeat)
        y = rng.choice([-1.0, 1.0], size=X.shape[0]) if loss == "logistic" else rng.normal(size=X.shape[0])
        y = y.astype(np.float32)
        out = _core.predict(core_params(params, fields), *csr(X), attention=False, n_threads=1)
        np.testing.assert_allclose(out, ref.forward(params, fields, X), rtol=2e-5, atol=2e-5)
        cfg = config(loss, l2=0.01)
        rows = np.arange(X.shape[0], dtype=np.int64)
        got = _core._testing.batch_gradients(core_params(params, fields), *csr(X), y, rows, cfg)
        J, G = ref.gradients(params, fields, X, y, loss=loss, l2=0.01)
        assert got["objective"] == pytest.approx(J, rel=1e-5)
        assert got["w0"] == pytest.approx(G["w0"], rel=1e-4, abs=1e-5)
        # absolute slack on the scale of the gradient (float32 sums of terms that large cancel to entries near 0)
        np.testing.assert_allclose(got["R"], G["R"], rtol=2e-4, atol=2e-5 * max(1.0, np.abs(G["R"]).max()))
        np.testing.assert_array_equal(got["R"], got["R"].T)  # both triangles, the same floats
        touched = got["touched"]
        np.testing.assert_allclose(got["V"], G["V"][touched], rtol=2e-4, atol=2e-5 * max(1.0, np.abs(G["V"]).max()))
        np.testing.assert_allclose(got["w"], G["w"][touched], rtol=2e-4, atol=2e-5 * max(1.0, np.abs(G["w"]).max()))


def one_hot_rows(rng, n_rows, n_fields, per_field, n_present):
    """Rows of one non-zero in each of n_present of n_fields fields (Criteo's shape when all are present),
    features of field f in [f * per_field, (f + 1) * per_field)."""
    fields = np.repeat(np.arange(n_fields), per_field).astype(np.int32)
    indptr, cols = [0], []
    for _ in range(n_rows):
        present = np.sort(rng.permutation(n_fields)[:n_present])
        cols += list(present * per_field + rng.integers(0, per_field, size=n_present))
        indptr.append(len(cols))
    vals = rng.uniform(0.2, 1.5, size=len(cols)).astype(np.float32)
    return sp.csr_matrix((vals, np.asarray(cols, np.int32), np.asarray(indptr, np.int64)),
                         shape=(n_rows, n_fields * per_field)), fields


# (n_fields, present, k): the triangular GEMMs' row blocks (8 fields) whole and with tails, Criteo's 39 fields,
# fields absent from the rows, k of one vector, of register tails and of several panels
ONE_HOT = [(39, 39, 16), (39, 30, 16), (16, 16, 16), (17, 17, 8), (9, 9, 64), (24, 23, 33), (40, 40, 5), (2, 2, 16)]


@pytest.mark.parametrize("shape", ONE_HOT)
def test_one_hot_field_rows_match_reference(isa, shape):
    n_fields, present, k = shape
    rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
    X, fields = one_hot_rows(rng, 12, n_fields, 3, present)
    _, _, params = make(rng, 1, X.shape[1], k, n_fields)
    y = rng.normal(size=X.shape[0]).astype(np.float32)
    out = _core.predict(core_params(params, fields), *csr(X), attention=False, n_threads=1)
    np.testing.assert_allclose(out, ref.forward(params, fields, X), rtol=2e-5, atol=2e-4)
    got = _core._testing.batch_gradients(core_params(params, fields), *csr(X), y, np.arange(12, dtype=np.int64),
                                         config())
    J, G = ref.gradients(params, fields, X, y)
    assert got["objective"] == pytest.approx(J, rel=1e-5)
    np.testing.assert_allclose(got["R"], G["R"], rtol=2e-4, atol=2e-4 * np.abs(G["R"]).max())
    np.testing.assert_array_equal(got["R"], got["R"].T)
    np.testing.assert_allclose(got["V"], G["V"][got["touched"]], rtol=2e-4, atol=2e-4 * np.abs(G["V"]).max())


def test_many_non_zeros_and_dropout(isa):
    rng = np.random.default_rng(5)
    X, fields, params = make(rng, 6, 300, 24, 30, nnz_choices=(150, 290), repeat=True)
    y = rng.normal(size=6).astype(np.float32)
    mask = _core._testing.dropout_mask(7, 2, np.arange(6, dtype=np.int64), 24, 0.5)
    cfg = config("squared", dropout=0.5, seed=7, epoch=2)
    got = _core._testing.batch_gradients(core_params(params, fields), *csr(X), y, np.arange(6, dtype=np.int64), cfg,
                                         use_dropout=True)
    J, G = ref.gradients(params, fields, X, y, dropout_mask=mask)
    assert got["objective"] == pytest.approx(J, rel=1e-4)
    scale = np.abs(G["V"]).max()
    np.testing.assert_allclose(got["V"], G["V"][got["touched"]], rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose(got["R"], G["R"], rtol=1e-3, atol=1e-4 * np.abs(G["R"]).max())


def test_rows_of_more_fields_than_the_gemm_path(isa):
    """Rows of more than kFwGemmFields (256) distinct fields take the vector-loop path; the others the GEMMs."""
    rng = np.random.default_rng(6)
    X, fields, params = make(rng, 4, 700, 9, 600, nnz_choices=(320, 400))
    assert max(len(set(fields[X.indices[X.indptr[i]:X.indptr[i + 1]]])) for i in range(4)) > 256
    y = rng.normal(size=4).astype(np.float32)
    out = _core.predict(core_params(params, fields), *csr(X), attention=False, n_threads=1)
    np.testing.assert_allclose(out, ref.forward(params, fields, X), rtol=1e-4, atol=1e-3)
    got = _core._testing.batch_gradients(core_params(params, fields), *csr(X), y, np.arange(4, dtype=np.int64),
                                         config())
    J, G = ref.gradients(params, fields, X, y)
    assert got["objective"] == pytest.approx(J, rel=1e-4)
    np.testing.assert_allclose(got["V"], G["V"][got["touched"]], rtol=1e-3, atol=1e-4 * np.abs(G["V"]).max())
    np.testing.assert_allclose(got["R"], G["R"], rtol=1e-3, atol=1e-4 * np.abs(G["R"]).max())
    np.testing.assert_array_equal(got["R"], got["R"].T)


def test_rows_without_pairs_and_lone_features_are_exact(isa):
    """0 and 1 non-zeros: the output is the linear part exactly; a feature alone in its field adds no diagonal
    term (its V gradient is exactly the off-diagonal one, 0 when every field holds one non-zero of one row)."""
    rng = np.random.default_rng(1)
    X, fields, params = make(rng, 30, 20, 9, 4, nnz_choices=(0, 1))
    out = _core.predict(core_params(params, fields), *csr(X), attention=False, n_threads=1)
    fm = {name: a for name, a in params.items() if name != "R"}  # FM's rows without pairs: the linear part
    np.testing.assert_array_equal(out, _core.predict(fm, *csr(X), attention=False, n_threads=1))
    got = _core._testing.batch_gradients(core_params(params, fields), *csr(X), np.zeros(30, np.float32),
                                         np.arange(30, dtype=np.int64), config())
    assert np.all(got["V"] == 0.0) and np.all(got["R"] == 0.0)


def test_one_field_is_fm_scaled():
    """With one field, FwFM is FM with the pair term times R[0, 0]."""
    rng = np.random.default_rng(2)
    X, fields, params = make(rng, 20, 15, 8, 1)
    params["R"][:] = 2.5
    fm = {k: v for k, v in params.items() if k != "R"}
    both = _core.predict(core_params(params, fields), *csr(X), attention=False, n_threads=1)
    lin = _core.predict({**fm, "V": np.zeros_like(fm["V"])}, *csr(X), attention=False, n_threads=1)
    plain = _core.predict(fm, *csr(X), attention=False, n_threads=1)
    np.testing.assert_allclose(both - lin, 2.5 * (plain - lin), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_reference_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(3)
    X, fields, params = make(rng, 8, 10, 3, 3, nnz_choices=(0, 1, 2, 4, 6), repeat=True)
    p64 = {name: np.asarray(a, np.float64) for name, a in params.items()}
    y = rng.choice([-1.0, 1.0], size=8) if loss == "logistic" else rng.normal(size=8)
    weight = rng.uniform(0.0, 2.0, size=8)
    counts = np.full(10, 5.0)
    kw = dict(loss=loss, l2=0.05, sample_weight=weight, frequency_l2=0.5, feature_counts=counts,
              dropout_mask=rng.choice([0.0, 2.0], size=(8, 3)))
    _, G = ref.gradients(p64, fields, X, y, **kw)
    eps = 1e-6
    for name in ("w0", "w", "V", "R"):
        a = p64[name] = np.atleast_1d(p64[name]).astype(np.float64)
        for pos in [tuple(rng.integers(0, s) for s in a.shape) for _ in range(12)]:
            if name == "R":  # one shared value: move both triangles
                f, g = sorted(pos)
                pos = (f, g)
            saved = a[pos]
            a[pos] = saved + eps
            if name == "R":
                a[pos[::-1]] = a[pos]
            up = ref.objective(p64, fields, X, y, **kw)
            a[pos] = saved - eps
            if name == "R":
                a[pos[::-1]] = a[pos]
            down = ref.objective(p64, fields, X, y, **kw)
            a[pos] = saved
            if name == "R":
                a[pos[::-1]] = saved
            want = np.atleast_1d(G[name])[pos]
            assert (up - down) / (2 * eps) == pytest.approx(want, rel=1e-5, abs=1e-7), (name, pos)


def test_bad_fields_are_refused():
    rng = np.random.default_rng(4)
    X, fields, params = make(rng, 4, 6, 2, 2)
    with pytest.raises(ValueError, match="no 'field'"):
        _core.predict(params, *csr(X), attention=False)
    bad = fields.copy()
    bad[3] = 2
    with pytest.raises(ValueError, match=r"\['field'\]\[3\] = 2"):
        _core.predict(core_params(params, bad), *csr(X), attention=False)
    # R with attention is field-aware AFM (tests/test_field_afm_kernels.py); S, a logit term, needs attention
    with pytest.raises(ValueError, match="attention must be True"):
        _core.predict(core_params({**params, "S": np.zeros_like(params["R"])}, fields), *csr(X), attention=False)
