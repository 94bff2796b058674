"""Rows with fewer than two non-zeros have no pairs, so their pair term is exactly 0 (docs/model.md), on every
ISA path and pooling: the prediction is the linear part alone, and the pair term adds exactly nothing to the
gradients (V, W, b, h, p), in prediction, training and the attention outputs.

Uniform pooling (attention=False) computes the pair term as ((sum v x)^2 - sum (v x)^2) / 2; for one
non-zero that is (vx)^2 - (vx)^2, which under FMA contraction (AVX2, AVX-512) left the rounding error of
(vx)^2, up to ~1e-5 at |V| ~ 3. The checks below compare outputs bit for bit between two unrelated embedding
tables V, so they cannot pass while any V-dependent residue remains."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import core_config, core_slots, random_csr, random_params, small_model, to_core

# k sizes that fill whole vectors of every width (8, 16, 64) and leave tails (1, 7, 17).
KS = [1, 7, 8, 16, 17, 64]
N_FEATURES = 40


def _model(rng, k, t=5, fm=False):
    """Large embeddings (|V| ~ 3) so that any residue of the pair term is far above float32 resolution."""
    params = random_params(rng, N_FEATURES, k, t, v_std=3.0)
    if fm:  # the FM model: p fixed at 1
        params.p = np.ones(k)
    return params


def _other_V(core, rng):
    out = dict(core)
    out["V"] = rng.normal(0, 3.0, size=core["V"].shape).astype(np.float32)
    return out


def _short_and_long_rows(rng):
    """Rows of 0 and 1 non-zeros mixed with longer ones (in the same blocks), repeated ids allowed."""
    nnz = [1, 0, 5, 1, 2, 1, 0, 33, 1, 1, 3, 0, 1]
    return random_csr(rng, nnz, N_FEATURES), np.array(nnz) < 2


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("fm", [False, True], ids=["afm", "fm"])
def test_prediction_of_rows_without_pairs_is_the_linear_part_exactly(rng, isa, k, attention, fm):
    params = _model(rng, k, fm=fm)
    core = to_core(params)
    X, short = _short_and_long_rows(rng)
    out = _core.predict(core, *csr_arrays(X), attention, 1)
    out_other_V = _core.predict(_other_V(core, rng), *csr_arrays(X), attention, 1)
    # Bit-identical under another V: nothing of the pair term is left in these rows.
    np.testing.assert_array_equal(out[short], out_other_V[short])
    assert not np.array_equal(out[~short], out_other_V[~short])  # the check would see a pair term
    linear = params.w0 + np.array([X[r].toarray().ravel() @ params.w for r in range(X.shape[0])])
    np.testing.assert_allclose(out[short], linear[short], rtol=1e-6, atol=1e-6)
    ref = reference.forward(params, X, attention=attention)
    np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-4 * np.max(np.abs(ref)))


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_pair_term_adds_exactly_zero_gradient_for_rows_without_pairs(rng, isa, k, attention, loss):
    params = _model(rng, k)
    core = to_core(params)
    X = random_csr(rng, [1, 0, 1, 1, 0, 1, 1, 1], N_FEATURES)
    y = rng.choice([-1.0, 1.0], size=X.shape[0]).astype(np.float32)
    rows = np.arange(X.shape[0], dtype=np.int64)
    for use_dropout in (False, True):
        cfg = core_config(loss=loss, attention=attention, dropout=0.5 if use_dropout else 0.0)
        g = _testing.batch_gradients(core, *csr_arrays(X), y, rows, cfg, use_dropout)
        for name in ("V", "W", "b", "h", "p"):
            assert np.all(g[name] == 0.0), f"{name}: the pair term of rows without pairs added {g[name]}"
        assert np.any(g["w"] != 0.0) and g["w0"] != 0.0  # the linear part is trained


@pytest.mark.parametrize("attention", [False, True])
def test_training_on_rows_without_pairs_leaves_V_and_p_exactly_unchanged(rng, isa, attention):
    params = to_core(_model(rng, 17))
    accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in params.items()}
    X = random_csr(rng, list(rng.integers(0, 2, size=300)), N_FEATURES)
    y = rng.normal(size=X.shape[0]).astype(np.float32)
    before = {name: a.copy() for name, a in params.items()}
    trainer = _core.Trainer(params, core_slots("adagrad", accum), core_config(attention=attention, dropout=0.3,
                                                                              batch_size=16, n_threads=2))
    res = trainer.train_epoch(*csr_arrays(X), y, np.arange(X.shape[0], dtype=np.int64), 0, 0)
    assert res["n_rows"] == X.shape[0] and np.isfinite(res["loss_sum"])
    for name in ("V", "W", "b", "h", "p"):
        np.testing.assert_array_equal(params[name], before[name], err_msg=name)
    assert not np.array_equal(params["w"], before["w"])


@pytest.mark.parametrize("cls, kw", [(fastafm.AFMRegressor, {"attention": True, "pretrain": None}),
                                     (fastafm.AFMRegressor, {"attention": False, "pretrain": None}),
                                     (fastafm.FMRegressor, {})], ids=["afm", "afm-uniform", "fm"])
def test_estimators_give_the_linear_part_and_no_pairs_for_short_rows(rng, cls, kw):
    X = random_csr(rng, list(rng.integers(0, 6, size=200)), N_FEATURES)
    y = rng.normal(size=X.shape[0])
    model = small_model(cls, **kw).fit(X, y)
    Xs, short = _short_and_long_rows(rng)
    pred = model.predict(Xs)
    linear = model.w0_ + sp.csr_matrix(Xs).astype(np.float64) @ model.w_.astype(np.float64)
    np.testing.assert_allclose(pred[short], np.ravel(linear)[short], rtol=1e-6, atol=1e-6)
    if cls is fastafm.AFMRegressor:
        indptr, pairs, weights = model.attention_weights(Xs)
        counts = np.diff(indptr)
        assert np.all(counts[short] == 0) and np.all(counts[~short] > 0)
        if kw["attention"]:
            np.testing.assert_allclose(np.add.reduceat(weights, indptr[:-1][~short]), 1.0, rtol=1e-5)
        else:  # uniform pooling: every pair weighs 1
            np.testing.assert_array_equal(weights, 1.0)
