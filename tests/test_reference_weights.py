"""Sample weights in the float64 reference (docs/model.md, "Sample weights"): a row's loss and gradient times
its weight. An integer weight is the row repeated that many times in the batch; weight 0 is the row left out
(also for the lazy L2, whose T(B) counts only rows of positive weight); the weighted gradients agree with
finite differences of the weighted objective."""
import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import reference as ref
from test_reference_gradients import (DROPOUT_MASK, FD_RTOL, ROWS, fd_gradient, make_csr, make_params, rel_err,
                                      targets)

KW = dict(attention_l2=0.7, l2=0.3)


def _repeat(X, y, counts, mask=None):
    """Rows of X (and y, and the dropout mask) each repeated counts[i] times, in order."""
    idx = np.repeat(np.arange(X.shape[0]), counts)
    return X[idx], np.asarray(y)[idx], None if mask is None else mask[idx]


def _assert_grads_equal(a, b, rtol=1e-12):
    for name in ref.PARAM_NAMES:
        np.testing.assert_allclose(np.atleast_1d(getattr(a, name)), np.atleast_1d(getattr(b, name)), rtol=rtol,
                                   atol=1e-13, err_msg=name)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("use_dropout", [False, True])
def test_integer_weights_equal_repeated_rows(loss, attention, use_dropout):
    X, params, y = make_csr(ROWS), make_params(), targets(loss)
    mask = DROPOUT_MASK if use_dropout else None
    counts = np.array([2, 3, 1, 4, 2, 1])
    Xr, yr, mr = _repeat(X, y, counts, mask)
    J_w, g_w = ref.gradients(params, X, y, loss=loss, attention=attention, dropout_mask=mask, sample_weight=counts,
                             **KW)
    J_r, g_r = ref.gradients(params, Xr, yr, loss=loss, attention=attention, dropout_mask=mr, **KW)
    assert J_w == pytest.approx(J_r, rel=1e-12)
    assert ref.objective(params, X, y, loss=loss, attention=attention, dropout_mask=mask, sample_weight=counts,
                         **KW) == pytest.approx(J_r, rel=1e-12)
    _assert_grads_equal(g_w, g_r)
    # Not trivially equal: the weights change the gradient.
    _, g_1 = ref.gradients(params, X, y, loss=loss, attention=attention, dropout_mask=mask, **KW)
    assert not np.allclose(g_w.V, g_1.V)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("attention", [True, False])
def test_weight_zero_equals_leaving_the_rows_out(loss, attention):
    X, params, y = make_csr(ROWS), make_params(), targets(loss)
    # Rows 1 and 4, the only rows holding feature 3, get weight 0: feature 3 must not be regularised by the
    # lazy L2 either.
    w = np.array([1.0, 0.0, 2.5, 0.5, 0.0, 1.0])
    kept = np.flatnonzero(w > 0)
    J_w, g_w = ref.gradients(params, X, y, loss=loss, attention=attention, sample_weight=w, **KW)
    J_k, g_k = ref.gradients(params, X[kept], np.asarray(y)[kept], loss=loss, attention=attention,
                             sample_weight=w[kept], **KW)
    assert J_w == pytest.approx(J_k, rel=1e-12)
    _assert_grads_equal(g_w, g_k)
    assert g_w.w[3] == 0.0 and np.all(g_w.V[3] == 0.0)  # feature 3 is only in the weight-0 rows
    np.testing.assert_array_equal(ref.touched_features(X, w), ref.touched_features(X[kept]))


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("attention", [True, False])
def test_weighted_gradients_match_finite_differences(loss, attention):
    X, params, y = make_csr(ROWS), make_params(), targets(loss)
    w = np.array([0.3, 1.7, 0.0, 2.2, 0.9, 1.3])
    kw = dict(loss=loss, attention=attention, dropout_mask=DROPOUT_MASK, sample_weight=w, **KW)
    J, grads = ref.gradients(params, X, y, **kw)
    assert J == pytest.approx(ref.objective(params, X, y, **kw), rel=1e-14, abs=0)
    fun = lambda prm: ref.objective(prm, X, y, **kw)  # noqa: E731
    for name in ref.PARAM_NAMES:
        if not attention and name in ("b", "h"):
            continue  # no gradient reaches them under uniform pooling (test_reference_gradients checks the 0)
        g_fd = fd_gradient(fun, params, name)
        assert np.linalg.norm(g_fd) > 1e-3, name
        assert rel_err(g_fd, getattr(grads, name)) <= FD_RTOL, (name, rel_err(g_fd, getattr(grads, name)))


def test_all_ones_weights_are_no_weights():
    X, params, y = make_csr(ROWS), make_params(), targets("squared")
    J1, g1 = ref.gradients(params, X, y, sample_weight=np.ones(len(ROWS)), **KW)
    J0, g0 = ref.gradients(params, X, y, **KW)
    assert J1 == J0
    _assert_grads_equal(g1, g0, rtol=0)


@pytest.mark.parametrize("bad, match", [(np.array([1.0, -1.0, 1, 1, 1, 1]), ">= 0"),
                                        (np.array([1.0, np.nan, 1, 1, 1, 1]), "finite"),
                                        (np.array([1.0, np.inf, 1, 1, 1, 1]), "finite"),
                                        (np.ones(5), "entries")])
def test_reference_refuses_bad_weights(bad, match):
    X, params, y = make_csr(ROWS), make_params(), targets("squared")
    with pytest.raises(ValueError, match=match):
        ref.objective(params, X, y, sample_weight=bad)
    with pytest.raises(ValueError, match=match):
        ref.gradients(params, X, y, sample_weight=bad)


def test_repeated_rows_in_a_batch_are_not_a_sparse_special_case():
    """A row weighted 3 whose features repeat inside it: still the row repeated three times."""
    X = sp.csr_matrix((np.array([0.8, -1.2, 0.5]), np.array([2, 2, 4]), np.array([0, 3])), shape=(1, 8))
    params, y = make_params(), np.array([0.4])
    J_w, g_w = ref.gradients(params, X, y, sample_weight=[3.0], **KW)
    J_r, g_r = ref.gradients(params, X[[0, 0, 0]], np.repeat(y, 3), **KW)
    assert J_w == pytest.approx(J_r, rel=1e-12)
    _assert_grads_equal(g_w, g_r)
