"""Field-aware AFM: the float64 reference against finite differences, and the core's field-pair terms (R on the
pooled pairs, S in the attention logits; docs/model.md "Field-aware AFM") against the reference per element, on
every instruction set the CPU has, in blocks and in long rows streamed through tiles."""
import zlib

import numpy as np
import pytest

from fastafm import _core
from fastafm import reference_field_afm as ref
from fastafm._core import _testing

from support import (assert_close, core_config, forced_pair_layout, forced_pair_tile, random_csr, random_params,
                     to_core)

MODES = {"weights": ("R",), "logits": ("S",), "both": ("R", "S")}


def make(rng, row_nnz, n_features, k, t, n_fields, mode):
    """Rows of the given sizes (repeated ids), random fields, an AFM whose attention is far from uniform and
    symmetric field-pair terms of the mode."""
    X = random_csr(rng, row_nnz, n_features)
    fields = rng.integers(0, n_fields, size=n_features).astype(np.int32)
    params = to_core(random_params(rng, n_features, k, t))
    for name in MODES[mode]:
        M = rng.normal(1.0 if name == "R" else 0.0, 0.8, size=(n_fields, n_fields))
        params[name] = ((M + M.T) / 2).astype(np.float32)
    return X, fields, params


def csr(X):
    return X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32)


def check_against_reference(X, fields, params, loss, rng, rtol=3e-4, **cfg_kw):
    cp = {**params, "field": fields}
    n = X.shape[0]
    out = _core.predict(cp, *csr(X), attention=True, n_threads=1)
    assert_close(out, ref.forward(params, fields, X), "y")
    y = (rng.choice([-1.0, 1.0], size=n) if loss == "logistic" else rng.normal(size=n)).astype(np.float32)
    weight = rng.uniform(0.0, 2.0, size=n).astype(np.float32)
    cfg = core_config(loss, attention_l2=0.3, l2=0.01, **cfg_kw)
    got = _testing.batch_gradients(cp, *csr(X), y, np.arange(n, dtype=np.int64), cfg, weights=weight)
    J, G = ref.gradients(params, fields, X, y, loss, attention_l2=0.3, l2=0.01, sample_weight=weight)
    assert got["objective"] == pytest.approx(J, rel=1e-4)
    for name in ("W", "b", "h", "p", *[m for m in ("R", "S") if m in params]):
        assert_close(got[name], G[name], name, rtol=rtol)
    for name in ("R", "S"):
        if name in params:
            np.testing.assert_array_equal(got[name], got[name].T)  # both triangles, the same floats
    assert_close(got["V"], G["V"][got["touched"]], "V", rtol=rtol)
    assert_close(got["w"], G["w"][got["touched"]], "w", rtol=rtol)


# (k, t, n_fields): k and t below, at and past a vector and with register tails; one field; many fields
SHAPES = [(1, 1, 1), (4, 3, 3), (8, 8, 5), (13, 7, 7), (16, 16, 2), (33, 20, 12), (64, 9, 25)]


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_core_matches_reference(isa, mode, shape, loss):
    k, t, n_fields = shape
    rng = np.random.default_rng(zlib.crc32(repr((mode, shape, loss)).encode()))
    X, fields, params = make(rng, [0, 1, 2, 3, 7, 2, 12, 5, 1, 9], 40, k, t, n_fields, mode)
    check_against_reference(X, fields, params, loss, rng)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_long_rows_streamed_through_tiles(isa, mode):
    """Rows of more pairs than a block holds: the online softmax with the field-pair terms, tile by tile (tiles
    of 7 pairs: tails, and tiles that start inside a run of pairs)."""
    rng = np.random.default_rng(11)
    X, fields, params = make(rng, [30, 2, 45, 0, 13], 60, 9, 5, 6, mode)
    with forced_pair_tile(7):
        check_against_reference(X, fields, params, "logistic", rng, rtol=1e-3)
        weights = _core.pair_attention({**params, "field": fields}, *csr(X), _pair_indptr(X), True, 1)
    np.testing.assert_allclose(weights, ref_attention(params, fields, X), rtol=2e-4, atol=2e-6)


def _pair_indptr(X):
    nnz = np.diff(X.indptr)
    return np.concatenate([[0], np.cumsum(nnz * (nnz - 1) // 2)]).astype(np.int64)


def ref_attention(params, fields, X):
    P = {name: np.asarray(a, np.float64) for name, a in params.items()}
    out = []
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        out.append(ref._row(P, fields, X.indices[lo:hi].astype(np.int64), X.data[lo:hi].astype(np.float64))[6])
    return np.concatenate(out)


def test_pair_attention_includes_the_logit_terms(isa):
    rng = np.random.default_rng(12)
    X, fields, params = make(rng, [3, 0, 6, 2, 1, 8], 30, 8, 6, 4, "both")
    weights = _core.pair_attention({**params, "field": fields}, *csr(X), _pair_indptr(X), True, 1)
    np.testing.assert_allclose(weights, ref_attention(params, fields, X), rtol=2e-4, atol=2e-6)


def test_neutral_terms_are_plain_afm_bit_for_bit(isa):
    """R = 1 and S = 0 change no float: the output and every shared gradient are plain AFM's."""
    rng = np.random.default_rng(13)
    X, fields, params = make(rng, [0, 1, 2, 5, 9, 4], 30, 12, 6, 4, "both")
    params["R"][:] = 1.0
    params["S"][:] = 0.0
    plain = {n: a for n, a in params.items() if n not in ("R", "S")}
    with forced_pair_layout("rows"):  # plain AFM may choose the pairs-major layout; field-aware never does
        np.testing.assert_array_equal(_core.predict({**params, "field": fields}, *csr(X), attention=True),
                                      _core.predict(plain, *csr(X), attention=True))
        y = rng.normal(size=6).astype(np.float32)
        rows = np.arange(6, dtype=np.int64)
        a = _testing.batch_gradients({**params, "field": fields}, *csr(X), y, rows, core_config())
        b = _testing.batch_gradients(plain, *csr(X), y, rows, core_config())
    for name in ("W", "b", "h", "p", "V", "w"):
        np.testing.assert_array_equal(a[name], b[name])


def test_dropout_and_the_pairs_major_request(isa):
    """Dropout masks the pooled vector as for AFM; a forced pairs-major layout still runs field-aware blocks in
    the rows layout (the same floats)."""
    rng = np.random.default_rng(14)
    X, fields, params = make(rng, [4, 6, 2, 7], 20, 8, 8, 3, "both")
    cp = {**params, "field": fields}
    y = rng.normal(size=4).astype(np.float32)
    rows = np.arange(4, dtype=np.int64)
    cfg = core_config(dropout=0.5, seed=3, epoch=1)
    mask = _testing.dropout_mask(3, 1, rows, 8, 0.5)
    got = _testing.batch_gradients(cp, *csr(X), y, rows, cfg, use_dropout=True)
    J, G = ref.gradients(params, fields, X, y, dropout_mask=mask)
    assert got["objective"] == pytest.approx(J, rel=1e-4)
    assert_close(got["S"], G["S"], "S")
    assert_close(got["V"], G["V"][got["touched"]], "V")
    with forced_pair_layout("pairs"):
        pm = _core.predict(cp, *csr(X), attention=True)
    with forced_pair_layout("rows"):
        np.testing.assert_array_equal(pm, _core.predict(cp, *csr(X), attention=True))


def test_bad_field_terms_are_refused():
    rng = np.random.default_rng(15)
    X, fields, params = make(rng, [3, 2], 10, 4, 4, 3, "both")
    with pytest.raises(ValueError, match="attention must be True"):
        _core.predict({**params, "field": fields}, *csr(X), attention=False)
    with pytest.raises(ValueError, match="no 'field' array"):
        _core.predict(params, *csr(X), attention=True)
    with pytest.raises(ValueError, match=r"\['S'\] has 2 fields but 'R' has 3"):
        _core.predict({**params, "S": params["S"][:2, :2].copy(), "field": fields}, *csr(X), attention=True)
    with pytest.raises(ValueError, match="not a field"):
        _core.predict({**params, "field": np.full(10, 5, np.int32)}, *csr(X), attention=True)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_reference_gradients_match_finite_differences(mode, loss):
    rng = np.random.default_rng(16)
    X, fields, params = make(rng, [0, 1, 2, 4, 6, 3], 10, 3, 4, 3, mode)
    p64 = {name: np.asarray(a, np.float64) for name, a in params.items()}
    y = rng.choice([-1.0, 1.0], size=6) if loss == "logistic" else rng.normal(size=6)
    kw = dict(attention_l2=0.2, l2=0.05, sample_weight=rng.uniform(0.0, 2.0, size=6), frequency_l2=0.5,
              feature_counts=np.full(10, 5.0), dropout_mask=rng.choice([0.0, 2.0], size=(6, 3)))
    _, G = ref.gradients(p64, fields, X, y, loss, **kw)
    eps = 1e-6
    for name in ("w0", "w", "V", "W", "b", "h", "p", *MODES[mode]):
        a = p64[name]
        for pos in [tuple(rng.integers(0, s) for s in a.shape) for _ in range(8)]:
            # R and S are read in their upper triangles: an entry's derivative is its upper twin's
            at = (min(pos), max(pos)) if name in ("R", "S") else pos
            old = a[at]
            a[at] = old + eps
            up = ref.objective(p64, fields, X, y, loss, **kw)
            a[at] = old - eps
            down = ref.objective(p64, fields, X, y, loss, **kw)
            a[at] = old
            assert G[name][pos] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7), (name, pos)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_many_non_zeros_in_a_block_and_two_threads(isa, mode):
    """Rows of 100-160 non-zeros (thousands of pairs in one block, not streamed), repeated ids, and the batch's
    rows split into chunks over 2 threads, whose dense gradients (R and S among them) are reduced."""
    rng = np.random.default_rng(17)
    X, fields, params = make(rng, [100, 3, 160, 0, 57, 2, 1, 130], 400, 16, 8, 9, mode)
    check_against_reference(X, fields, params, "logistic", rng, rtol=1e-3, n_threads=2)
