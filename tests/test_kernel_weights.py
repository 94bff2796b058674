"""Sample weights in the compiled core against the float64 reference: the batch gradient per element with
weights (0, fractional, large; rows of 0, 1, 2 and many non-zeros, repeated ids), one optimizer step, an epoch
with all-ones weights bit-identical to no weights, and the binding's refusal of bad weights."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import (assert_batch_gradients, assert_close, core_config, core_epoch, core_slots, dense_gradients,
                     random_csr, random_params, to_core)

SHAPES = [(1, 1), (3, 5), (16, 8), (33, 17)]  # SIMD tiles filled exactly and with tails
EDGE_NNZ = [0, 1, 2, 3, 0, 7, 1, 12, 2, 5]


def _weights(rng, n):
    w = rng.uniform(0.0, 3.0, size=n)
    w[rng.choice(n, size=max(1, n // 5), replace=False)] = 0.0  # some rows left out
    w[rng.integers(0, n)] = 17.0
    return w.astype(np.float32)


@pytest.mark.parametrize("k,t", SHAPES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_weighted_batch_gradients_match_reference(rng, k, t, loss, attention, n_threads):
    n_features = 13
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 8, size=10)), n_features=n_features)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    w = _weights(rng, X.shape[0])
    params = random_params(rng, n_features, k, t)
    l2s = dict(attention_l2=0.7, l2=0.3)
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(loss=loss, attention=attention, n_threads=n_threads, **l2s), weights=w)
    want_obj, want = reference.gradients(params, X, y, loss=loss, attention=attention, sample_weight=w, **l2s)
    # T(B) is the features of the rows of positive weight: a row of weight 0 touches nothing.
    assert_batch_gradients(got, want_obj, want, X, sample_weight=w)
    # The weights matter: without them the gradient differs.
    unweighted = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                          core_config(loss=loss, attention=attention, n_threads=n_threads, **l2s))
    assert unweighted["w0"] != pytest.approx(got["w0"], rel=1e-3)


def test_weighted_gradients_on_a_very_long_row(rng):
    X = random_csr(rng, [300, 2, 0, 1], n_features=50)
    y = rng.normal(size=4)
    w = np.array([0.25, 2.0, 1.0, 0.0], dtype=np.float32)
    params = random_params(rng, 50, 8, 8, v_std=0.1)
    rows = np.arange(4, dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(n_threads=2, l2=0.1), weights=w)
    _, want = reference.gradients(params, X, y, l2=0.1, sample_weight=w)
    assert_close(got["W"], want.W, "W", rtol=1e-3)
    assert_close(got["V"], want.V[got["touched"]], "V", rtol=1e-3)


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
def test_one_weighted_training_step_matches_reference(rng, optimizer):
    """An epoch of one batch with weights is one reference step on the core's weighted batch gradient; the
    rows of features only a weight-0 row holds are not updated (not even by L2), as if the row were absent."""
    k, t, n_features, lr = 6, 5, 40, 0.05
    X = random_csr(rng, [4, 0, 3, 1, 6, 2], n_features=n_features - 3, repeat_ids=False)
    X.indices[X.indptr[2]:X.indptr[3]] = [37, 38, 39]  # the weight-0 row's features, in no other row
    X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], n_features))
    y = rng.normal(size=X.shape[0])
    w = np.array([1.5, 1.0, 0.0, 3.0, 0.5, 2.0], dtype=np.float32)
    params = random_params(rng, n_features, k, t)
    core = to_core(params)
    accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in core.items()}
    before = {name: a.copy() for name, a in core.items()}
    order = np.arange(X.shape[0], dtype=np.int64)
    cfg = dict(l2=0.1, attention_l2=0.2)
    res = core_epoch(core, core_slots(optimizer, accum), *csr_arrays(X), y.astype(np.float32), order,
                     core_config(optimizer=optimizer, lr=lr, **cfg), weights=w)
    assert res["n_batches"] == 1
    cg = _testing.batch_gradients(before, *csr_arrays(X), y.astype(np.float32), order, core_config(**cfg), weights=w)
    _, ref_grads = reference.gradients(params, X, y, sample_weight=w, **cfg)
    assert_close(cg["V"], ref_grads.V[cg["touched"]], "V")
    assert res["loss_sum"] == pytest.approx(
        reference.objective(params, X, y, sample_weight=w), rel=1e-5)
    touched = reference.touched_features(X, w)
    grads = dense_gradients(cg, n_features, k)
    want = params.copy()
    if optimizer == "adagrad":
        reference.adagrad_step(want, reference.init_accumulators(params), grads, touched, lr)
    else:
        reference.sgd_step(want, grads, touched, lr)
    for name in ("w", "V", "W", "b", "h", "p"):
        assert_close(core[name].astype(np.float64) - before[name], getattr(want, name) - getattr(params, name), name,
                     rtol=1e-4)
    zero_row_features = np.array([37, 38, 39])
    np.testing.assert_array_equal(core["V"][zero_row_features], before["V"][zero_row_features])
    np.testing.assert_array_equal(core["w"][zero_row_features], before["w"][zero_row_features])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_all_ones_weights_train_bit_identically_to_none(rng, n_threads, dropout):
    X = random_csr(rng, list(rng.integers(0, 9, size=300)), n_features=30)
    y = rng.normal(size=X.shape[0]).astype(np.float32)
    params = random_params(rng, 30, 8, 8)
    order = rng.permutation(X.shape[0]).astype(np.int64)
    cfg = core_config(n_threads=n_threads, dropout=dropout, l2=0.05, attention_l2=0.3, batch_size=32)
    out = []
    for weights in (None, np.ones(X.shape[0], dtype=np.float32)):
        core = to_core(params)
        accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in core.items()}
        res = core_epoch(core, {"G": accum}, *csr_arrays(X), y, order, cfg, weights=weights)
        out.append((res["loss_sum"], core, accum))
    assert out[0][0] == out[1][0]
    for name in reference.PARAM_NAMES:
        np.testing.assert_array_equal(out[0][1][name], out[1][1][name], err_msg=name)
        np.testing.assert_array_equal(out[0][2][name], out[1][2][name], err_msg=name)


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([1, -1, 1], np.float32), ValueError, r"weights\[1\].*finite and >= 0"),
    (np.array([1, np.nan, 1], np.float32), ValueError, r"weights\[1\]"),
    (np.array([np.inf, 1, 1], np.float32), ValueError, r"weights\[0\]"),
    (np.ones(2, np.float32), ValueError, "weights has shape"),
    (np.ones((3, 1), np.float32), ValueError, "weights must be 1-D"),
    (np.ones(3, np.float64), TypeError, "weights must have dtype float32"),
])
def test_the_binding_refuses_bad_weights(rng, bad, exc, match):
    X = random_csr(rng, [2, 3, 1], n_features=5)
    params = to_core(random_params(rng, 5, 2, 2))
    y = np.zeros(3, np.float32)
    rows = np.arange(3, dtype=np.int64)
    with pytest.raises(exc, match=match):
        _testing.batch_gradients(params, *csr_arrays(X), y, rows, core_config(), weights=bad)
    with pytest.raises(exc, match=match):
        core_epoch(params, {}, *csr_arrays(X), y, rows, core_config(optimizer="sgd"), weights=bad)
