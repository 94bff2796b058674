"""The compiled core against the float64 NumPy reference: predictions, attention weights, batch gradients
(the training step's own code path) and one optimizer step, on fresh random rows including the edge cases
(empty rows, one non-zero, repeated ids, very long rows)."""
from __future__ import annotations

import numpy as np
import pytest

from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import (assert_batch_gradients, assert_close, core_config, core_epoch, core_slots, dense_gradients,
                     random_csr, random_params, to_core)

SHAPES = [(1, 1), (3, 5), (16, 8), (33, 17)]
EDGE_NNZ = [0, 1, 2, 3, 0, 7, 1, 12, 2, 5]


@pytest.mark.parametrize("k,t", SHAPES)
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_predict_matches_reference(rng, k, t, attention, n_threads):
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 9, size=20)), n_features=11)
    params = random_params(rng, 11, k, t)
    got = _core.predict(to_core(params), *csr_arrays(X), attention, n_threads)
    want = reference.forward(params, X, attention=attention)
    assert got.dtype == np.float32 and got.shape == (X.shape[0],)
    assert_close(got, want, "y")


@pytest.mark.parametrize("k,t", SHAPES[1:])
def test_pair_attention_matches_reference(rng, k, t):
    X = random_csr(rng, EDGE_NNZ, n_features=9)
    params = random_params(rng, 9, k, t, v_std=1.2)
    pair_indptr, positions, want = reference.pair_attention(params, X)
    got = _core.pair_attention(to_core(params), *csr_arrays(X), pair_indptr.astype(np.int64))
    assert got.shape == want.shape
    assert_close(got, want, "a")
    # Non-trivial attention: not all weights of the long row are equal.
    long_row = want[pair_indptr[7] : pair_indptr[8]]
    assert np.ptp(long_row) > 0.5 * long_row.mean()


@pytest.mark.parametrize("k,t", SHAPES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("regularised", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_batch_gradients_match_reference(rng, k, t, loss, attention, regularised, n_threads):
    n_features = 13
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 8, size=10)), n_features=n_features)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    params = random_params(rng, n_features, k, t)
    l2s = dict(attention_l2=0.7, l2=0.3) if regularised else dict(attention_l2=0.0, l2=0.0)
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(loss=loss, attention=attention, n_threads=n_threads, **l2s))
    want_obj, want = reference.gradients(params, X, y, loss=loss, attention=attention, **l2s)
    assert_batch_gradients(got, want_obj, want, X)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_frequency_l2_gradients_match_reference(rng, loss, n_threads):
    """frequency_l2's share c_iB / max(n_i, c_iB)^2 per touched id, with repeated ids (c_iB > 1), counts below
    the batch's occurrences (clamped) and ids of count 0 that the batch touches."""
    k, t, n_features = 8, 5, 13
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 8, size=10)), n_features=n_features)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    params = random_params(rng, n_features, k, t)
    occurrences = np.bincount(X.indices, minlength=n_features)
    counts = (occurrences * rng.choice([0.0, 0.5, 1.0, 3.0], size=n_features)).astype(np.float32)
    assert np.any((counts < occurrences) & (occurrences > 0)) and np.any(counts > occurrences)
    rows = np.arange(X.shape[0], dtype=np.int64)
    regs = dict(l2=0.1, frequency_l2=4.0)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(loss=loss, n_threads=n_threads, **regs), feature_counts=counts)
    want_obj, want = reference.gradients(params, X, y, loss=loss, feature_counts=counts, **regs)
    without_obj, without = reference.gradients(params, X, y, loss=loss, l2=0.1)
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    assert abs(want_obj - without_obj) > 1e-2 * abs(want_obj)  # the term is large enough to be seen
    touched = got["touched"]
    assert_close(got["V"], want.V[touched], "V")
    assert_close(got["w"], want.w[touched], "w")
    assert np.max(np.abs(want.V[touched] - without.V[touched])) > 1e-2


def test_frequency_l2_needs_valid_counts(rng):
    X = random_csr(rng, [3, 2, 4], n_features=6)
    params = to_core(random_params(rng, 6, 4, 3))
    y, rows = np.zeros(3, np.float32), np.arange(3, dtype=np.int64)
    cfg = core_config(frequency_l2=1.0)
    with pytest.raises(ValueError, match="frequency_l2 > 0 needs feature_counts"):
        _testing.batch_gradients(params, *csr_arrays(X), y, rows, cfg)
    with pytest.raises(ValueError, match="frequency_l2 > 0 needs feature_counts"):
        _core.Trainer(params, {"G": {n: np.zeros_like(a) for n, a in params.items()}}, cfg)
    for bad, error, match in ((np.ones(5, np.float32), ValueError, "feature_counts has shape"),
                              (np.ones(6), TypeError, "feature_counts must have dtype float32"),
                              (np.array([1, 1, np.nan, 1, 1, 1], np.float32), ValueError, r"feature_counts\[2\]"),
                              (-np.ones(6, np.float32), ValueError, r"feature_counts\[0\] must be finite and >= 0")):
        with pytest.raises(error, match=match):
            _testing.batch_gradients(params, *csr_arrays(X), y, rows, cfg, feature_counts=bad)
    cfg.frequency_l2 = float("nan")
    with pytest.raises(ValueError, match="frequency_l2 must be finite"):
        _testing.batch_gradients(params, *csr_arrays(X), y, rows, cfg, feature_counts=np.ones(6, np.float32))


@pytest.mark.parametrize("rho", [0.2, 0.6])
def test_dropout_gradients_use_the_documented_mask(rng, rho):
    k, t, n_features = 8, 6, 10
    X = random_csr(rng, [3, 5, 0, 2, 6, 4], n_features=n_features)
    y = rng.normal(size=X.shape[0])
    params = random_params(rng, n_features, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    mask = _testing.dropout_mask(1234, 3, rows, k, rho)
    kept = mask[mask != 0]
    np.testing.assert_allclose(kept, 1.0 / (1.0 - rho), rtol=1e-6)
    assert 0 < np.mean(mask == 0) < 1
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(dropout=rho, seed=1234, epoch=3), use_dropout=True)
    want_obj, want = reference.gradients(params, X, y, dropout_mask=mask.astype(np.float64))
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    assert_close(got["p"], want.p, "p")
    assert_close(got["W"], want.W, "W")
    assert_close(got["V"], want.V[got["touched"]], "V")


def test_dropout_mask_is_seeded_and_keyed_by_row():
    rows = np.arange(50, dtype=np.int64)
    a = _testing.dropout_mask(7, 0, rows, 16, 0.5)
    np.testing.assert_array_equal(a, _testing.dropout_mask(7, 0, rows, 16, 0.5))
    np.testing.assert_array_equal(a[::-1], _testing.dropout_mask(7, 0, rows[::-1].copy(), 16, 0.5))
    assert not np.array_equal(a, _testing.dropout_mask(8, 0, rows, 16, 0.5))
    assert not np.array_equal(a, _testing.dropout_mask(7, 1, rows, 16, 0.5))
    assert abs(np.mean(a == 0) - 0.5) < 0.05


def test_very_long_row(rng):
    """One row with 300 non-zeros (44,850 pairs) next to short ones."""
    k, t, n_features = 8, 4, 500
    X = random_csr(rng, [300, 1, 0, 4], n_features=n_features, value_scale=0.5)
    y = rng.normal(size=4)
    params = random_params(rng, n_features, k, t, v_std=0.2)
    assert_close(_core.predict(to_core(params), *csr_arrays(X)), reference.forward(params, X), "y")
    rows = np.arange(4, dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(n_threads=2))
    _, want = reference.gradients(params, X, y)
    assert_close(got["W"], want.W, "W", rtol=1e-3)
    assert_close(got["V"], want.V[got["touched"]], "V", rtol=1e-3)


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_one_training_step_matches_reference(rng, optimizer, n_threads):
    """An epoch with a single batch is exactly one reference gradient + optimizer step; untouched rows of
    V and w, and their accumulators, stay bit-identical."""
    k, t, n_features, lr = 6, 5, 40, 0.05
    X = random_csr(rng, [4, 0, 3, 1, 6, 2], n_features=n_features)
    y = rng.normal(size=X.shape[0])
    params = random_params(rng, n_features, k, t)
    core = to_core(params)
    accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in core.items()}
    before = {name: a.copy() for name, a in core.items()}
    order = np.arange(X.shape[0], dtype=np.int64)
    res = core_epoch(core, core_slots(optimizer, accum), *csr_arrays(X), y.astype(np.float32), order,
                     core_config(optimizer=optimizer, lr=lr, n_threads=n_threads, l2=0.1, attention_l2=0.2))
    assert res["n_batches"] == 1 and res["n_rows"] == X.shape[0]

    # The step must be the reference optimizer applied to the core's own batch gradient (whose agreement with
    # the reference gradient is tested above). Comparing against the reference gradient directly would be
    # ill-conditioned: Adagrad's first step lr*g/sqrt(1e-8 + g^2) turns a float32 rounding residue
    # |g| ~ 1e-7 (where the exact gradient is 0) into a step of ~1e-4.
    cg = _testing.batch_gradients(before, *csr_arrays(X),
                                  y.astype(np.float32), order, core_config(l2=0.1, attention_l2=0.2))
    touched = reference.touched_features(X)
    np.testing.assert_array_equal(np.sort(cg["touched"]), touched)
    grads = dense_gradients(cg, n_features, k)
    want = params.copy()
    if optimizer == "adagrad":
        acc = reference.init_accumulators(params)
        reference.adagrad_step(want, acc, grads, touched, lr)
        assert_close(accum["V"][touched], acc.V[touched], "accum V", rtol=1e-5)
        assert_close(accum["W"], acc.W, "accum W", rtol=1e-5)
    else:
        reference.sgd_step(want, grads, touched, lr)
    for name in ("w", "V", "W", "b", "h", "p"):
        step = core[name].astype(np.float64) - before[name]
        assert_close(step, getattr(want, name) - getattr(params, name), name, rtol=1e-4)
    assert core["w0"][0] - before["w0"][0] == pytest.approx(want.w0 - params.w0, rel=1e-4, abs=1e-7)

    untouched = np.setdiff1d(np.arange(n_features), touched)
    assert untouched.size > 0
    np.testing.assert_array_equal(core["V"][untouched], before["V"][untouched])
    np.testing.assert_array_equal(core["w"][untouched], before["w"][untouched])
    np.testing.assert_array_equal(accum["V"][untouched], np.float32(reference.ADAGRAD_INITIAL_ACCUMULATOR))
    assert not np.array_equal(core["V"][touched], before["V"][touched])


def test_optimizer_kernels_in_place(rng):
    theta = rng.normal(size=17).astype(np.float32)
    acc = np.full(17, 0.5, np.float32)
    grad = rng.normal(size=17).astype(np.float32)
    want_acc = acc.astype(np.float64) + grad.astype(np.float64) ** 2
    want = theta - 0.1 * grad / np.sqrt(want_acc)
    _testing.adagrad_update_(theta, acc, grad, 0.1)
    np.testing.assert_allclose(acc, want_acc, rtol=1e-6)
    np.testing.assert_allclose(theta, want, rtol=1e-5, atol=1e-6)
    before = theta.copy()
    _testing.sgd_update_(theta, grad, 0.5)
    np.testing.assert_allclose(theta, before - 0.5 * grad, rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError):
        _testing.sgd_update_(theta.astype(np.float64), grad, 0.5)  # a silently converted copy would lose the update


def _epoch_args(rng, n_rows=400):
    X = random_csr(rng, list(rng.integers(2, 6, size=n_rows)), n_features=30)
    params = to_core(random_params(rng, 30, 4, 4))
    accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in params.items()}
    y = rng.normal(size=n_rows).astype(np.float32)
    return params, core_slots("adagrad", accum), csr_arrays(X), y, np.arange(n_rows, dtype=np.int64)


def test_progress_callback_sees_rows_and_can_stop(rng):
    params, accum, arrays, y, order = _epoch_args(rng)
    seen = []
    res = core_epoch(params, accum, *arrays, y, order, core_config(batch_size=50), progress=seen.append,
                     progress_interval=0.0)
    assert seen == list(range(50, 401, 50)) and not res["stopped"] and res["n_rows"] == 400

    calls = []

    def stop_after_two(rows_done):
        calls.append(rows_done)
        return len(calls) < 2

    before = params["V"].copy()
    res = core_epoch(params, accum, *arrays, y, order, core_config(batch_size=50), progress=stop_after_two,
                     progress_interval=0.0)
    assert res["stopped"] and res["n_rows"] == 100 and res["n_batches"] == 2
    assert not np.array_equal(params["V"], before)  # the completed batches were applied


def test_progress_callback_exception_propagates(rng):
    params, accum, arrays, y, order = _epoch_args(rng)

    def boom(rows_done):
        raise RuntimeError(f"stop at {rows_done}")

    with pytest.raises(RuntimeError, match="stop at 50"):
        core_epoch(params, accum, *arrays, y, order, core_config(batch_size=50), progress=boom,
                   progress_interval=0.0)


def test_fixed_projection_is_not_trained(rng):
    params, accum, arrays, y, order = _epoch_args(rng)
    cfg = core_config(batch_size=50, attention=False)
    cfg.learn_projection = False
    p_before = params["p"].copy()
    core_epoch(params, accum, *arrays, y, order, cfg)
    np.testing.assert_array_equal(params["p"], p_before)
    cfg.learn_projection = True
    core_epoch(params, accum, *arrays, y, order, cfg)
    assert not np.array_equal(params["p"], p_before)


def test_divergence_stops_the_epoch_before_the_bad_update(rng):
    params, accum, arrays, y, order = _epoch_args(rng)
    y = (y * 1e35).astype(np.float32)  # SGD steps of ~1e41 overflow float32: the next batch's loss is not finite
    res = core_epoch(params, {}, *arrays, y, order, core_config(batch_size=50, lr=1e6, optimizer="sgd"))
    assert res["diverged"] and res["stopped"] and res["n_rows"] < 400
    assert not np.isfinite(res["loss_sum"])


def test_uniform_pooling_needs_no_pair_tiles_for_long_rows(rng):
    """A row of 20,000 non-zeros has ~2e8 pairs: attention would need GBs of pair tiles, uniform pooling
    (O(k nnz)) needs none and matches the reference's explicit pair sum."""
    X = random_csr(rng, [20000, 3], n_features=50, value_scale=0.05)
    params = random_params(rng, 50, 4, 3, v_std=0.1)
    got = _core.predict(to_core(params), *csr_arrays(X), False, 1)
    short = X[1:]
    assert_close(got[1:], reference.forward(params, short, attention=False), "y")
    # The long row: ((sum v x)^2 - sum (v x)^2) / 2 . p, computed here in float64.
    row = X[0]
    vx = params.V[row.indices] * row.data[:, None]
    want0 = params.w0 + params.w[row.indices] @ row.data + params.p @ (0.5 * (vx.sum(0) ** 2 - (vx ** 2).sum(0)))
    assert got[0] == pytest.approx(want0, rel=1e-3, abs=1e-3)


def test_one_trainer_per_fit_trains_like_fresh_calls(rng):
    """A persistent _core.Trainer (one per fit, as the engine uses it for every epoch and streamed block)
    trains each row set exactly as a fresh Trainer does, also rows of 20 non-zeros after rows of 150
    have grown its pair tiles (it cuts each call's blocks at that call's own cap, as a fresh trainer)."""
    k = t = 4
    sets = [random_csr(rng, [20] * 80, n_features=40), random_csr(rng, [150] * 6, n_features=40),
            random_csr(rng, [20] * 80, n_features=40)]
    start = to_core(random_params(rng, 40, k, t, v_std=0.1))
    fresh = ({n: a.copy() for n, a in start.items()}, {n: np.full_like(a, 1e-8) for n, a in start.items()})
    kept = ({n: a.copy() for n, a in start.items()}, {n: np.full_like(a, 1e-8) for n, a in start.items()})
    cfg = core_config(batch_size=256, dropout=0.3, lr=0.01, n_threads=2)
    trainer = _core.Trainer(kept[0], {"G": kept[1]}, cfg)
    for epoch, X in enumerate(sets):
        y = rng.normal(size=X.shape[0]).astype(np.float32)
        order = rng.permutation(X.shape[0]).astype(np.int64)
        cfg.seed, cfg.epoch = 11, epoch
        want = core_epoch(fresh[0], {"G": fresh[1]}, *csr_arrays(X), y, order, cfg)
        got = trainer.train_epoch(*csr_arrays(X), y, order, seed=11, epoch=epoch)
        assert got == want
        for name in start:
            np.testing.assert_array_equal(kept[0][name], fresh[0][name], err_msg=name)
            np.testing.assert_array_equal(kept[1][name], fresh[1][name], err_msg=name)


def test_trainer_checks_its_optimizer_slots(rng):
    params, slots, arrays, y, order = _epoch_args(rng)
    with pytest.raises(ValueError, match="missing the slot 'G'"):
        _core.Trainer(params, {}, core_config())
    with pytest.raises(ValueError, match="slot 'G' that sgd does not have"):
        _core.Trainer(params, slots, core_config(optimizer="sgd"))
    assert _core.optimizer_slots(_core.Optimizer.adagrad) == ["G"] and _core.optimizer_slots(_core.Optimizer.sgd) == []


def _scratch_rule(m, k, t, attention):
    """BlockScratch::sizes: pair buffers for the block's cap (the L2 budget of 256 KiB of E and Z rows, or the
    longest row up to the 8 MiB long-row threshold), two padded rows of k per non-zero of the longest row, the
    per-row buffers of 64 rows, and the float32/float64 sums of a streamed row when one may be long; for k, t <= 32
    the larger of those and the pairs-major layout's buffers."""
    ld = lambda n: (n + 15) // 16 * 16  # noqa: E731
    tile = 256 * 1024 // (4 * (k + t))
    long_at = max(tile, 8 * 2**20 // (4 * (k + t)))
    pairs = max(tile, min(m * (m - 1) // 2, long_at)) if attention else 1
    tile = min(tile, pairs)
    nnz = max(m if attention else 1, 1)
    sums = max(t * k + 2 * t, k) if nnz * (nnz - 1) // 2 > tile else 0
    rows = 64
    E, Z, A, G = pairs * ld(k), pairs * ld(t), pairs, nnz * ld(k)
    if k <= 32 and t <= 32:  # room for the pairs-major layout too (rows of pairs, slack of whole vectors)
        pm_ld, pm_gld = -(-pairs // 48) * 48 + 16, -(-nnz // 64) * 64 + 16
        E, Z, A = max(E, 16 + k * pm_ld + 48), max(Z, t * pm_ld), max(A, 16 + pm_ld + 48)
        G = max(G, k * pm_gld, 2 * (2 * pm_gld + 16 * -(-nnz // 16) * 16), 16 * t * k)  # G^T, V-gradient, dW sums
    return 4 * (E + Z + 2 * A + 2 * G + rows * (3 * k + 2) + sums) + 8 * (rows + 1 + sums)


def test_scratch_bytes_is_the_cores_block_sizing():
    """Python's memory checks use this number instead of a copy of the rule; the rule is checked here once."""
    k = t = 8
    assert _core.scratch_bytes(10, k, t, 1, True) == _scratch_rule(10, k, t, True)
    # 1,225 pairs: within the budget (4,096 pairs); 79,800: more, a block of its own; 499,500 and 12.5 million:
    # more than the long-row threshold (131,072), streamed
    for m in (50, 400, 1000, 5000):
        assert _core.scratch_bytes(m, k, t, 3, True) == 3 * _scratch_rule(m, k, t, True)
        assert _core.scratch_bytes(m, k, t, 1, False) == _scratch_rule(m, k, t, False)
    assert _core.scratch_bytes(39, 64, 64, 1, True) == _scratch_rule(39, 64, 64, True)  # Criteo's 741 pairs
    for k, t in ((10, 10), (32, 7), (1, 1)):  # pairs-major buffers: larger at small k, t or few pairs
        for m in (1, 39, 400):
            assert _core.scratch_bytes(m, k, t, 1, True) == _scratch_rule(m, k, t, True)



def test_each_dense_gradient_is_compared_on_its_own_scale():
    """A gradient far smaller than the others (p here, 1e6 times below W) is checked against its own size: an
    error of 100% in it fails, which a tolerance scaled by the largest gradient of all let through."""
    from types import SimpleNamespace

    from support import assert_per_element, own_scale

    want = SimpleNamespace(W=np.full((2, 2), 1000.0), b=np.zeros(2), h=np.ones(2), p=np.full(2, 1e-3))
    with pytest.raises(AssertionError):
        assert_per_element(2 * want.p, want.p, "p", scale=own_scale(want, "p"))
    assert_per_element(want.p * (1 + 1e-5), want.p, "p", scale=own_scale(want, "p"))
    assert own_scale(want, "b") == 1000.0  # db cancels: the scale of its terms (see own_scale)
