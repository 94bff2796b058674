"""Rate targets (aggregated rows, issue 24): the reference's "rate" loss against the expanded 0/1 rows, its
gradient against finite differences, and the core's logistic loss on t = 2 rate - 1 against the reference per
element (rows of 0, 1, 2 and many non-zeros, repeated ids), on every instruction set."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import assert_batch_gradients, assert_directional_derivatives, core_config, random_csr, random_params, to_core

EDGE_NNZ = [0, 1, 2, 3, 0, 7, 1, 12, 2, 5]


@pytest.mark.parametrize("attention", [True, False])
def test_one_rate_row_is_its_expanded_rows(rng, attention):
    """A row of rate r = 3/8 and weight 8: the loss and every gradient of 3 positive and 5 negative copies."""
    X = random_csr(rng, [4], n_features=9)
    params = random_params(rng, 9, 4, 3)
    j_rate, g_rate = reference.gradients(params, X, [3 / 8], loss="rate", attention=attention, sample_weight=[8.0])
    X8 = sp.vstack([X] * 8).tocsr()
    y8 = [1.0] * 3 + [-1.0] * 5
    j_exp, g_exp = reference.gradients(params, X8, y8, loss="logistic", attention=attention)
    assert j_rate == pytest.approx(j_exp, rel=1e-12)
    np.testing.assert_allclose(g_rate.to_flat(), g_exp.to_flat(), rtol=1e-10, atol=1e-14)


def test_rate_gradient_matches_finite_differences(rng):
    X = random_csr(rng, EDGE_NNZ, n_features=11)
    y = rng.uniform(0, 1, size=X.shape[0])
    y[:2] = [0.0, 1.0]
    w = rng.uniform(0.5, 20, size=X.shape[0])
    params = random_params(rng, 11, 4, 3)
    kw = dict(loss="rate", sample_weight=w, attention_l2=0.3, l2=0.1)
    J, G = reference.gradients(params, X, y, **kw)
    assert J == pytest.approx(reference.objective(params, X, y, **kw), rel=1e-12)
    cg = {"w0": G.w0, "W": G.W, "b": G.b, "h": G.h, "p": G.p, "touched": np.arange(11), "V": G.V, "w": G.w}
    assert_directional_derivatives(cg, params, X, y, rng, **kw)


def test_rates_outside_zero_one_are_refused_by_the_reference():
    X = sp.csr_matrix(np.ones((1, 2)))
    params = reference.init_params(2, 2, 2, rng=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reference.objective(params, X, [1.5], loss="rate")


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("k,t", [(1, 1), (8, 5), (17, 16)])
def test_core_rate_gradients_match_reference(rng, isa, attention, k, t):
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 8, size=8)), n_features=13)
    c = rng.uniform(0, 1, size=X.shape[0])
    c[:3] = [0.0, 1.0, 0.5]
    w = rng.uniform(0.5, 30, size=X.shape[0]).astype(np.float32)
    params = random_params(rng, 13, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), (2 * c - 1).astype(np.float32), rows,
                                   core_config(loss="logistic", attention=attention, n_threads=2, l2=0.2), weights=w)
    c32 = 0.5 * (1.0 + (2 * c - 1).astype(np.float32).astype(np.float64))  # the rate the core sees
    want_obj, want = reference.gradients(params, X, c32, loss="rate", attention=attention, sample_weight=w, l2=0.2)
    assert_batch_gradients(got, want_obj, want, X, sample_weight=w)
