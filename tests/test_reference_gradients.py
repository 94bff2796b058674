"""Tests of the float64 NumPy reference (``fastafm.reference``).

The analytic gradients are checked against central finite differences of the
objective for every parameter, both losses, with/without regularisation,
with/without attention and with/without a dropout mask.  The inputs are chosen
so that no attention pre-activation ``z`` sits near the ReLU kink (asserted, not
skipped), and each compared gradient is asserted to be non-zero where the model
says it must be, so the checks can fail.
"""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import reference as ref

N_FEATURES = 8          # feature 7 is never stored: its w/V gradient must stay 0
K = 3
T = 4
FD_EPS = 1e-6
FD_RTOL = 1e-6
Z_MARGIN = 1e-3          # every |z| must exceed this so FD never crosses a ReLU kink
DATA_SEED = 20240611
PARAM_SEED = 7

# Rows as (ids, values), storage order as written.  Sizes 0, 1, 2, 7, 4, 3;
# repeated ids (also adjacent), unsorted ids, negative values, one explicit zero.
ROWS = [
    ([], []),
    ([3], [-1.3]),
    ([5, 1], [0.9, -0.7]),
    ([2, 4, 0, 2, 6, 4, 4], [1.1, -0.8, 0.6, -1.4, 0.75, 1.2, -0.55]),
    ([6, 1, 3, 0], [0.0, 1.25, -0.95, 0.85]),      # explicit zero kept as a non-zero
    ([5, 5, 2], [0.7, -1.1, 1.35]),                # i_r == i_s pair
]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def make_csr(rows, n_features=N_FEATURES):
    """CSR matrix keeping storage order, duplicates and explicit zeros."""
    indptr = np.cumsum([0] + [len(ids) for ids, _ in rows]).astype(np.int64)
    indices = np.array([i for ids, _ in rows for i in ids], dtype=np.int64)
    data = np.array([v for _, vals in rows for v in vals], dtype=np.float64)
    X = sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_features))
    assert X.nnz == len(data)  # nothing merged or dropped
    return X


def make_params(seed=PARAM_SEED):
    """Parameters scaled so that attention is active and non-uniform."""
    rng = np.random.default_rng(seed)
    return ref.Params(
        w0=0.2,
        w=rng.normal(0.0, 0.3, N_FEATURES),
        V=rng.normal(0.0, 0.8, (N_FEATURES, K)),
        W=rng.normal(0.0, 0.8, (T, K)),
        b=rng.normal(0.0, 0.3, T),
        h=rng.normal(0.0, 1.0, T),
        p=rng.normal(1.0, 0.5, K),
    )


def all_z(params, X):
    """Attention pre-activations of every pair, computed independently of the reference."""
    zs = []
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        ids, vals = X.indices[lo:hi], X.data[lo:hi]
        for r in range(len(ids)):
            for s in range(r + 1, len(ids)):
                e = params.V[ids[r]] * params.V[ids[s]] * vals[r] * vals[s]
                zs.append(params.W @ e + params.b)
    return np.array(zs)


def targets(loss):
    if loss == "squared":
        return np.random.default_rng(DATA_SEED).normal(0.0, 1.0, len(ROWS))
    return np.array([1.0, -1.0, 0.0, 1.0, -1.0, 1.0])  # 0 is read as -1


DROPOUT_MASK = np.array(
    [[2.5, 0.0, 2.5],
     [0.0, 2.5, 2.5],
     [2.5, 2.5, 0.0],
     [2.5, 0.0, 2.5],
     [0.0, 2.5, 2.5],
     [2.5, 2.5, 2.5]]
)  # rho = 0.6, inverted scaling 1/(1-rho) = 2.5


def fd_gradient(fun, params, name, eps=FD_EPS):
    """Central finite differences of ``fun(params)`` with respect to ``params.<name>``."""
    value = getattr(params, name)
    if name == "w0":
        plus, minus = params.copy(), params.copy()
        plus.w0 += eps
        minus.w0 -= eps
        return (fun(plus) - fun(minus)) / (2 * eps)
    out = np.zeros_like(value)
    for idx in np.ndindex(value.shape):
        plus, minus = params.copy(), params.copy()
        getattr(plus, name)[idx] += eps
        getattr(minus, name)[idx] -= eps
        out[idx] = (fun(plus) - fun(minus)) / (2 * eps)
    return out


def rel_err(g_fd, g):
    g_fd, g = np.atleast_1d(g_fd), np.atleast_1d(g)
    return np.linalg.norm(g_fd - g) / max(np.linalg.norm(g_fd), 1e-300)


def expected_zero(name, attention, attention_l2):
    """Gradients that must vanish: without attention, the attention net gets none
    from the loss (W only its L2 term)."""
    if attention:
        return False
    return name in ("b", "h") or (name == "W" and attention_l2 == 0.0)


# --------------------------------------------------------------------------- #
# input sanity: the FD check is only meaningful away from ReLU kinks
# --------------------------------------------------------------------------- #
def test_inputs_avoid_relu_kinks_and_attention_is_nontrivial():
    X, params = make_csr(ROWS), make_params()
    Z = all_z(params, X)
    assert Z.shape == (0 + 0 + 1 + 21 + 6 + 3, T)
    assert np.min(np.abs(Z)) > Z_MARGIN
    # Both ReLU branches are exercised.
    assert np.any(Z > 0) and np.any(Z < 0)
    # Attention weights are far from uniform in the long row.
    indptr, _, a = ref.pair_attention(params, X)
    a_long = a[indptr[3]:indptr[4]]
    assert a_long.max() / a_long.min() > 2.0


# --------------------------------------------------------------------------- #
# gradient check
# --------------------------------------------------------------------------- #
# n_i of frequency_l2: feature 4 occurs 3 times in ROWS but is given 2 (clamped to 3), feature 7 never.
FEATURE_COUNTS = np.array([9.0, 3.0, 4.0, 1.0, 2.0, 6.0, 2.0, 0.0])

CASES = list(itertools.product(
    ["squared", "logistic"],            # loss
    [True, False],                      # attention
    [(0.0, 0.0, 0.0), (0.7, 0.3, 0.0), (0.7, 0.3, 5.0), (0.0, 0.0, 5.0)],  # (attention_l2, l2, frequency_l2)
    [False, True],                      # dropout mask
))


@pytest.mark.parametrize("loss,attention,regs,use_dropout", CASES)
def test_gradients_match_finite_differences(loss, attention, regs, use_dropout):
    attention_l2, l2, frequency_l2 = regs
    X, params, y = make_csr(ROWS), make_params(), targets(loss)
    mask = DROPOUT_MASK if use_dropout else None
    kw = dict(loss=loss, attention=attention, attention_l2=attention_l2, l2=l2, dropout_mask=mask,
              frequency_l2=frequency_l2, feature_counts=FEATURE_COUNTS)
    assert np.min(np.abs(all_z(params, X))) > Z_MARGIN

    J, grads = ref.gradients(params, X, y, **kw)
    assert np.isfinite(J)
    assert J == pytest.approx(ref.objective(params, X, y, **kw), rel=1e-14, abs=0)

    fun = lambda prm: ref.objective(prm, X, y, **kw)  # noqa: E731
    for name in ref.PARAM_NAMES:
        g = getattr(grads, name)
        assert np.shape(g) == np.shape(getattr(params, name)), name
        g_fd = fd_gradient(fun, params, name)
        if expected_zero(name, attention, attention_l2):
            assert np.all(np.asarray(g) == 0.0), name
            assert np.linalg.norm(g_fd) < 1e-8, name
            continue
        # The gradient is not trivially zero, so a wrong formula cannot pass.
        assert np.linalg.norm(g_fd) > 1e-3, name
        assert rel_err(g_fd, g) <= FD_RTOL, (name, rel_err(g_fd, g))

    # Feature 7 is never stored: no gradient (no loss term and no lazy L2).
    assert grads.w[7] == 0.0 and np.all(grads.V[7] == 0.0)


def test_gradient_check_detects_a_planted_error():
    """The comparison is tight enough to catch a 1e-4 relative error in one coordinate."""
    X, params, y = make_csr(ROWS), make_params(), targets("squared")
    _, grads = ref.gradients(params, X, y, attention_l2=0.7, l2=0.3)
    fun = lambda prm: ref.objective(prm, X, y, attention_l2=0.7, l2=0.3)  # noqa: E731
    g_fd = fd_gradient(fun, params, "h")
    bad = grads.h.copy()
    bad[0] += 1e-4 * np.linalg.norm(bad)
    assert rel_err(g_fd, grads.h) <= FD_RTOL
    assert rel_err(g_fd, bad) > FD_RTOL


def test_l2_regularises_touched_features_only():
    X, params = make_csr(ROWS), make_params()
    y = targets("squared")
    _, g0 = ref.gradients(params, X, y)
    _, g1 = ref.gradients(params, X, y, l2=0.5)
    touched = ref.touched_features(X)
    np.testing.assert_array_equal(touched, [0, 1, 2, 3, 4, 5, 6])  # feature 6 only as explicit zero / once
    np.testing.assert_allclose(g1.V[touched] - g0.V[touched], 0.5 * params.V[touched], rtol=1e-12)
    np.testing.assert_allclose(g1.w[touched] - g0.w[touched], 0.5 * params.w[touched], rtol=1e-12)
    assert g1.w[7] == 0.0 and np.all(g1.V[7] == 0.0)
    J0 = ref.objective(params, X, y)
    J1 = ref.objective(params, X, y, l2=0.5)
    expected = 0.25 * (np.sum(params.V[touched] ** 2) + np.sum(params.w[touched] ** 2))
    assert J1 - J0 == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- #
# forward-pass properties
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("attention", [True, False])
def test_rows_with_fewer_than_two_nonzeros_are_linear(attention):
    """(a) 0 or 1 non-zeros: y = w0 + linear term, no NaN, no attention gradient."""
    params = make_params()
    X = make_csr([([], []), ([4], [-2.5]), ([6], [0.0])])
    y_hat = ref.forward(params, X, attention=attention)
    expected = np.array([params.w0, params.w0 - 2.5 * params.w[4], params.w0])
    np.testing.assert_allclose(y_hat, expected, rtol=1e-15, atol=0)
    _, g = ref.gradients(params, X, np.array([0.3, -1.0, 2.0]), attention=attention)
    for name in ("V", "W", "b", "h", "p"):
        assert np.all(getattr(g, name) == 0.0), name
    assert all(np.all(np.isfinite(v)) for _, v in g.items())


def test_no_attention_equals_explicit_double_sum():
    """(b) attention=False is FM pooling: Σ_{r<s} p·(v_r ⊙ v_s) x_r x_s."""
    params = make_params()
    X = make_csr(ROWS)
    y_hat = ref.forward(params, X, attention=False)
    for i, (ids, vals) in enumerate(ROWS):
        expected = params.w0 + sum(params.w[j] * x for j, x in zip(ids, vals))
        for r in range(len(ids)):
            for s in range(r + 1, len(ids)):
                expected += params.p @ (params.V[ids[r]] * params.V[ids[s]]) * vals[r] * vals[s]
        assert y_hat[i] == pytest.approx(expected, rel=1e-13, abs=1e-15)


def test_pair_attention_weights():
    """(c) weights sum to 1 per row with >= 2 non-zeros; no pairs for smaller rows."""
    params = make_params()
    X = make_csr(ROWS)
    indptr, pos, a = ref.pair_attention(params, X)
    sizes = [len(ids) for ids, _ in ROWS]
    assert indptr.dtype == np.int64 and pos.dtype == np.int64 and a.dtype == np.float64
    np.testing.assert_array_equal(np.diff(indptr), [m * (m - 1) // 2 for m in sizes])
    assert pos.shape == (indptr[-1], 2) and a.shape == (indptr[-1],)
    for i, m in enumerate(sizes):
        row_pos, row_a = pos[indptr[i]:indptr[i + 1]], a[indptr[i]:indptr[i + 1]]
        if m < 2:
            assert row_a.size == 0
            continue
        assert row_a.sum() == pytest.approx(1.0, abs=1e-14)
        assert np.all(row_a > 0)
        # positions: every r < s of the row, in storage (row-major) order
        expected = [(r, s) for r in range(m) for s in range(r + 1, m)]
        np.testing.assert_array_equal(row_pos, expected)
        # y is reproduced from the returned weights
        ids, vals = np.array(ROWS[i][0]), np.array(ROWS[i][1])
        e = params.V[ids[row_pos[:, 0]]] * params.V[ids[row_pos[:, 1]]] * (
            vals[row_pos[:, 0]] * vals[row_pos[:, 1]])[:, None]
        y_expected = params.w0 + params.w[ids] @ vals + params.p @ (row_a @ e)
        assert ref.forward(params, X)[i] == pytest.approx(y_expected, rel=1e-13)
    # without attention every weight is 1
    _, _, a_uniform = ref.pair_attention(params, X, attention=False)
    np.testing.assert_array_equal(a_uniform, np.ones(indptr[-1]))


def test_zero_dropout_row_removes_interaction():
    """(e) a row whose mask is all zeros keeps only w0 + linear term (and feeds no
    gradient into V, W, b, h, p)."""
    params = make_params()
    X = make_csr([ROWS[3], ROWS[4]])
    mask = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    y_hat = ref.forward(params, X, dropout_mask=mask)
    ids, vals = ROWS[3]
    assert y_hat[0] == pytest.approx(params.w0 + params.w[ids] @ np.array(vals), rel=1e-14)
    # Sanity: without the mask the interaction is non-negligible.
    assert abs(ref.forward(params, X)[0] - y_hat[0]) > 1e-2
    # Mask 2 doubles the interaction of row 1.
    full = ref.forward(params, X)
    lin1 = params.w0 + params.w[ROWS[4][0]] @ np.array(ROWS[4][1])
    assert y_hat[1] - lin1 == pytest.approx(2.0 * (full[1] - lin1), rel=1e-13)
    # Gradients of the masked row alone: only w0 and w move.
    X0 = make_csr([ROWS[3]])
    _, g = ref.gradients(params, X0, np.array([1.5]), dropout_mask=mask[:1])
    assert g.w0 != 0.0 and np.any(g.w != 0.0)
    for name in ("V", "W", "b", "h", "p"):
        assert np.all(getattr(g, name) == 0.0), name


def test_duplicates_are_kept_and_storage_order_is_irrelevant():
    params = make_params()
    ids, vals = ROWS[3]
    X = make_csr([(ids, vals)])
    perm = np.random.default_rng(DATA_SEED).permutation(len(ids))
    Xp = make_csr([([ids[j] for j in perm], [vals[j] for j in perm])])
    # The multiset of pairs does not depend on the storage order.
    assert ref.forward(params, X)[0] == pytest.approx(ref.forward(params, Xp)[0], rel=1e-13)
    # Merging duplicates (sum_duplicates) changes the model: each entry is its own non-zero.
    Xm = X.copy()
    Xm.sum_duplicates()
    assert Xm.nnz < X.nnz
    assert abs(ref.forward(params, Xm, attention=False)[0]
               - ref.forward(params, X, attention=False)[0]) > 1e-3


def test_logistic_label_zero_is_minus_one_and_loss_is_stable():
    params = make_params()
    X = make_csr(ROWS)
    y0 = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    ym = np.where(y0 > 0, 1.0, -1.0)
    J0, g0 = ref.gradients(params, X, y0, loss="logistic")
    Jm, gm = ref.gradients(params, X, ym, loss="logistic")
    assert J0 == Jm
    for (name, a), (_, b) in zip(g0.items(), gm.items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # Huge margins: no overflow, loss ~ |y| on the wrong side, ~0 on the right side.
    big = params.copy()
    big.w0 = 1e4
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is benign
        Jw, gw = ref.gradients(big, X, -np.ones(len(ROWS)), loss="logistic")
        Jr, gr = ref.gradients(big, X, np.ones(len(ROWS)), loss="logistic")
    assert np.isfinite(Jw) and Jw > 6 * 9e3
    assert 0.0 <= Jr < 1e-300
    assert gw.w0 == pytest.approx(len(ROWS), rel=1e-12) and abs(gr.w0) < 1e-300


def test_softmax_is_stable_for_huge_scores():
    params = make_params()
    params.h = params.h * 1e6
    X = make_csr(ROWS)
    with np.errstate(over="raise", invalid="raise"):
        indptr, _, a = ref.pair_attention(params, X)
        J, g = ref.gradients(params, X, targets("squared"))
    assert np.all(np.isfinite(a)) and np.isfinite(J)
    assert all(np.all(np.isfinite(v)) for _, v in g.items())
    for i in range(len(ROWS)):
        seg = a[indptr[i]:indptr[i + 1]]
        if seg.size:
            assert seg.sum() == pytest.approx(1.0, abs=1e-14)


# --------------------------------------------------------------------------- #
# optimizer steps
# --------------------------------------------------------------------------- #
def _batch_grads():
    params = make_params()
    X = make_csr([ROWS[2], ROWS[5]])    # touches features 1, 2, 5 only
    _, g = ref.gradients(params, X, np.array([0.4, -0.9]), attention_l2=0.7, l2=0.3)
    return params, X, g


def test_adagrad_step_updates_touched_rows_only():
    """(d) Adagrad: G += g²; θ -= lr g / sqrt(G); w/V only in T(B)."""
    params, X, g = _batch_grads()
    touched = ref.touched_features(X)
    np.testing.assert_array_equal(touched, [1, 2, 5])
    untouched = np.setdiff1d(np.arange(N_FEATURES), touched)
    # Put fake gradient mass in untouched rows: it must be ignored.
    g.w[untouched] = 1.0
    g.V[untouched] = 1.0
    before = params.copy()
    acc = ref.init_accumulators(params)
    for name, v in acc.items():
        assert np.all(np.asarray(v) == ref.ADAGRAD_INITIAL_ACCUMULATOR), name
    acc.V[2, 1] = 0.25      # non-trivial accumulator for the hand-checked coordinate
    lr = 0.05
    ref.adagrad_step(params, acc, g, touched, lr)

    np.testing.assert_array_equal(params.w[untouched], before.w[untouched])
    np.testing.assert_array_equal(params.V[untouched], before.V[untouched])
    assert np.all(acc.V[untouched] == ref.ADAGRAD_INITIAL_ACCUMULATOR)
    assert np.all(params.V[touched] != before.V[touched])
    # Dense parameters move (W always: it carries attention_l2 · W).
    assert np.all(params.W != before.W) and np.all(params.p != before.p)
    # one coordinate by hand
    G = 0.25 + g.V[2, 1] ** 2
    assert acc.V[2, 1] == pytest.approx(G, rel=1e-15)
    assert params.V[2, 1] == pytest.approx(before.V[2, 1] - lr * g.V[2, 1] / np.sqrt(G), rel=1e-15)
    G0 = ref.ADAGRAD_INITIAL_ACCUMULATOR + g.w0 ** 2
    assert isinstance(params.w0, float) and isinstance(acc.w0, float)
    assert params.w0 == pytest.approx(before.w0 - lr * g.w0 / np.sqrt(G0), rel=1e-15)
    Gb = ref.ADAGRAD_INITIAL_ACCUMULATOR + g.b[3] ** 2
    assert params.b[3] == pytest.approx(before.b[3] - lr * g.b[3] / np.sqrt(Gb), rel=1e-15)


def test_sgd_step_updates_touched_rows_only():
    """(d) SGD: θ -= lr g; w/V only in T(B)."""
    params, X, g = _batch_grads()
    touched = ref.touched_features(X)
    untouched = np.setdiff1d(np.arange(N_FEATURES), touched)
    g.w[untouched] = 1.0
    g.V[untouched] = 1.0
    before = params.copy()
    lr = 0.05
    ref.sgd_step(params, g, touched, lr)
    np.testing.assert_array_equal(params.w[untouched], before.w[untouched])
    np.testing.assert_array_equal(params.V[untouched], before.V[untouched])
    np.testing.assert_allclose(params.V[touched], before.V[touched] - lr * g.V[touched], rtol=1e-15)
    np.testing.assert_allclose(params.w[touched], before.w[touched] - lr * g.w[touched], rtol=1e-15)
    assert params.V[5, 0] == before.V[5, 0] - lr * g.V[5, 0]
    assert params.w0 == before.w0 - lr * g.w0
    np.testing.assert_array_equal(params.p, before.p - lr * g.p)
    np.testing.assert_array_equal(params.W, before.W - lr * g.W)


# --------------------------------------------------------------------------- #
# initialisation
# --------------------------------------------------------------------------- #
def test_init_params_follows_the_table():
    n, k, t = 500, 8, 6
    p = ref.init_params(n, k, t, init_std=0.01, rng=np.random.default_rng(0))
    assert p.w0 == 0.0 and isinstance(p.w0, float)
    assert np.all(p.w == 0.0) and p.w.shape == (n,)
    assert p.V.shape == (n, k) and abs(p.V.std() - 0.01) < 0.001
    assert p.W.shape == (t, k) and p.b.shape == (t,) and p.h.shape == (t,)
    assert np.all(p.p == 1.0) and p.p.shape == (k,)
    assert all(np.asarray(v).dtype == np.float64 for _, v in p.items())
    # Seeds reproduce; copy() is deep.
    q = ref.init_params(n, k, t, rng=0)
    np.testing.assert_array_equal(p.V, q.V)
    c = p.copy()
    c.V[0, 0] += 1.0
    assert c.V[0, 0] != p.V[0, 0]
    # Flat round trip.
    np.testing.assert_array_equal(p.from_flat(p.to_flat()).to_flat(), p.to_flat())


def test_frequency_l2_strength_per_touched_id():
    """l2 + frequency_l2 * c_iB / max(n_i, c_iB)^2, c_iB counted over stored entries (explicit zeros too)."""
    X = make_csr(ROWS)
    touched = ref.touched_features(X)
    lam = ref.touched_l2(X, touched, 0.25, 4.0, FEATURE_COUNTS)
    occurrences = {0: 2, 1: 2, 2: 3, 3: 2, 4: 3, 5: 3, 6: 2}
    want = [0.25 + 4.0 * c / max(FEATURE_COUNTS[i], c) ** 2 for i, c in occurrences.items()]
    np.testing.assert_allclose(lam, want, rtol=1e-15)
    with pytest.raises(ValueError, match="feature_counts"):
        ref.touched_l2(X, touched, 0.0, 1.0, None)


def test_frequency_l2_sums_to_one_over_n_per_epoch():
    """With n_i counted over the epoch's rows, an id's shares over the epoch's batches add up to 1/n_i,
    whatever the batching: the penalty is per parameter, not per occurrence or per batch."""
    rng = np.random.default_rng(3)
    X = make_csr(ROWS * 5)
    counts = np.bincount(X.indices, minlength=N_FEATURES).astype(np.float64)
    for batch in (1, 4, 7, 30):
        order = rng.permutation(X.shape[0])
        total = np.zeros(N_FEATURES)
        for b0 in range(0, X.shape[0], batch):
            part = X[np.sort(order[b0:b0 + batch])]
            touched = ref.touched_features(part)
            total[touched] += ref.touched_l2(part, touched, 0.0, 1.0, counts)
        seen = counts > 0
        np.testing.assert_allclose(total[seen], 1.0 / counts[seen], rtol=1e-12)
        assert np.all(total[~seen] == 0.0)
