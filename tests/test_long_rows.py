"""Long rows (more pairs than one block holds) streamed through pair tiles, on every instruction set: forward
(online softmax), attention weights and batch gradients (the recomputing second pass) against the float64
reference per element, finite differences of the reference objective, a training step, rounding-only changes
from the tile size, and scratch that grows with a row's non-zeros, not its pairs. The core's test knob
(support.forced_pair_tile) makes rows of a few dozen pairs long, so that these tests stay fast."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import (assert_close, assert_directional_derivatives, assert_per_element, core_config, core_epoch,
                     core_slots, dense_gradients, forced_pair_tile, own_scale, random_csr, random_params, small_model,
                     to_core)

# Pairs per row: 0, 0, 1, 10, 15, 36, 66, 190; repeated ids allowed (random_csr).
ROW_NNZ = [0, 1, 2, 5, 6, 9, 12, 20]
# Tiles against those rows: 1 (every pair its own tile), 9 (10 pairs = one tile plus one pair), 10 (a row of
# exactly one tile stays a block row; 190 = 19 whole tiles, no tail), 14 (15 = one tile plus one), 36 (one
# tile exactly; 66 and 190 leave tails). Tiles start in the middle of a non-zero's run of pairs.
TILES = [1, 9, 10, 14, 36]
SHAPES = [(3, 5), (16, 8), (33, 17)]


def _model(rng, n_features, k, t):
    params = random_params(rng, n_features, k, t, v_std=0.5 / np.sqrt(np.sqrt(k)))
    params.W = params.W / np.sqrt(max(k / 16, 1.0))
    return params


def _dense_scale(want, name):
    return own_scale(want, name)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("k,t", SHAPES, ids=[f"k{k}-t{t}" for k, t in SHAPES])
@pytest.mark.parametrize("loss,rho", [("squared", 0.0), ("logistic", 0.4)])
def test_streamed_rows_match_reference(isa, rng, tile, k, t, loss, rho):
    n_features = 30
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    params = _model(rng, n_features, k, t)
    core = to_core(params)
    rows = np.arange(X.shape[0], dtype=np.int64)
    mask = _testing.dropout_mask(5, 2, rows, k, rho).astype(np.float64) if rho else None
    pair_indptr, _, want_a = reference.pair_attention(params, X)
    with forced_pair_tile(tile):
        got_y = _core.predict(core, *csr_arrays(X), True, 2)
        got_a = _core.pair_attention(core, *csr_arrays(X), pair_indptr.astype(np.int64), True, 2)
        got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(loss=loss, dropout=rho, seed=5, epoch=2, n_threads=2,
                                                attention_l2=0.3, l2=0.1), use_dropout=rho > 0)
    assert_per_element(got_y, reference.forward(params, X), "y")
    assert_per_element(got_a, want_a, "a")
    for r in np.flatnonzero(np.diff(pair_indptr) > 0):  # each row's weights sum to 1
        assert got_a[pair_indptr[r]:pair_indptr[r + 1]].sum() == pytest.approx(1.0, rel=1e-5)
    want_obj, want = reference.gradients(params, X, y, loss=loss, attention_l2=0.3, l2=0.1, dropout_mask=mask)
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=_dense_scale(want, name))
    assert_per_element(got["w0"], want.w0, "w0")
    assert_per_element(got["V"], want.V[got["touched"]], "V")
    assert_per_element(got["w"], want.w[got["touched"]], "w")


@pytest.mark.parametrize("tile", [1, 9, 36])
def test_streamed_rows_with_weights_and_frequency_l2_match_reference(isa, rng, tile):
    """Sample weights (0 included) and frequency_l2 on rows streamed through tiles: the same gradient as in
    the reference, as on the block path."""
    n_features, k, t = 30, 16, 8
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    w = rng.choice([0.0, 0.5, 1.0, 2.5], size=X.shape[0])
    counts = np.bincount(X.indices, minlength=n_features).astype(np.float32) * 2.0
    params = _model(rng, n_features, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    with forced_pair_tile(tile):
        got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(n_threads=2, l2=0.1, frequency_l2=3.0), weights=w.astype(np.float32),
                                       feature_counts=counts)
    want_obj, want = reference.gradients(params, X, y, l2=0.1, sample_weight=w, frequency_l2=3.0,
                                         feature_counts=counts)
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=_dense_scale(want, name))
    np.testing.assert_array_equal(np.sort(got["touched"]), reference.touched_features(X, w))
    assert_per_element(got["V"], want.V[got["touched"]], "V")
    assert_per_element(got["w"], want.w[got["touched"]], "w")


def test_tile_size_changes_results_only_by_rounding(rng):
    """The same rows streamed in tiles of 1, 4 and 23 pairs and as whole blocks (the default) agree to float32
    rounding: the online softmax and the recomputing backward are the block path reordered."""
    k, t, n_features = 12, 9, 25
    X = random_csr(rng, [40, 3, 0, 17, 2, 25], n_features=n_features, value_scale=0.7)
    y = rng.normal(size=X.shape[0]).astype(np.float32)
    core = to_core(_model(rng, n_features, k, t))
    rows = np.arange(X.shape[0], dtype=np.int64)
    cfg = core_config(n_threads=1, attention_l2=0.2)
    base_y = _core.predict(core, *csr_arrays(X), True, 1)
    base = _testing.batch_gradients(core, *csr_arrays(X), y, rows, cfg)
    for tile in (1, 4, 23):
        with forced_pair_tile(tile):
            got_y = _core.predict(core, *csr_arrays(X), True, 1)
            got = _testing.batch_gradients(core, *csr_arrays(X), y, rows, cfg)
        assert_close(got_y, base_y, f"y, tile {tile}", rtol=2e-6)
        for name in ("W", "b", "h", "p", "V", "w"):
            assert_close(got[name], base[name], f"{name}, tile {tile}", rtol=2e-5)


def test_streamed_gradient_matches_finite_differences(rng):
    """Directional derivatives of the float64 reference objective along random directions of every parameter
    against the core's streamed gradient (a row of 12 non-zeros, 66 pairs, in tiles of 7)."""
    k, t, n_features = 4, 3, 9
    X = random_csr(rng, [12, 3], n_features=n_features, value_scale=0.8)
    y = rng.normal(size=2)
    params = _model(rng, n_features, k, t)
    rows = np.arange(2, dtype=np.int64)
    with forced_pair_tile(7):
        got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(attention_l2=0.3, l2=0.2))
    assert_directional_derivatives(got, params, X, y, rng, attention_l2=0.3, l2=0.2)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_training_step_on_streamed_rows_is_the_reference_step(rng, n_threads):
    """One epoch of one batch over long rows (tiles of 5 pairs) is the reference Adagrad step with the core's
    batch gradient, which matches the reference above (the trainer's own block walk takes the streamed path)."""
    k, t, n_features, lr = 6, 5, 40, 0.05
    X = random_csr(rng, [14, 0, 9, 1, 6, 2, 11], n_features=n_features)
    y = rng.normal(size=X.shape[0]).astype(np.float32)
    params = random_params(rng, n_features, k, t)
    core = to_core(params)
    before = {name: a.copy() for name, a in core.items()}
    accum = {name: np.full_like(a, reference.ADAGRAD_INITIAL_ACCUMULATOR) for name, a in core.items()}
    order = np.arange(X.shape[0], dtype=np.int64)
    with forced_pair_tile(5):
        res = core_epoch(core, core_slots("adagrad", accum), *csr_arrays(X), y, order,
                         core_config(lr=lr, n_threads=n_threads, l2=0.1, attention_l2=0.2))
        cg = _testing.batch_gradients(before, *csr_arrays(X), y, order, core_config(l2=0.1, attention_l2=0.2))
    assert res["n_batches"] == 1 and np.isfinite(res["loss_sum"])
    _, want_g = reference.gradients(params, X, y, l2=0.1, attention_l2=0.2)
    assert_close(cg["V"], want_g.V[cg["touched"]], "V gradient")
    grads = dense_gradients(cg, n_features, k)
    want = params.copy()
    reference.adagrad_step(want, reference.init_accumulators(params), grads, reference.touched_features(X), lr)
    for name in ("w", "V", "W", "b", "h", "p"):
        step = core[name].astype(np.float64) - before[name]
        assert_close(step, getattr(want, name) - getattr(params, name), name, rtol=1e-4)


def test_streamed_rows_predict_the_same_on_any_thread_count(rng):
    k = t = 8
    X = random_csr(rng, [30, 2, 0, 30, 7, 1, 25, 30] * 3, n_features=50)
    core = to_core(random_params(rng, 50, k, t))
    pair_indptr = np.concatenate([[0], np.cumsum(np.diff(X.indptr) * (np.diff(X.indptr) - 1) // 2)]).astype(np.int64)
    with forced_pair_tile(16):
        runs = [(_core.predict(core, *csr_arrays(X), True, n), _core.pair_attention(core, *csr_arrays(X), pair_indptr,
                                                                                    True, n)) for n in (1, 2)]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_long_row_sums_keep_float32_precision(rng):
    """A row of 300 non-zeros (44,850 pairs) in tiles of 256: its softmax total, pooled vector and dense
    gradients accumulate in float64 across tiles, so it matches the float64 reference element by element."""
    k, t, n_features = 8, 4, 500
    X = random_csr(rng, [300], n_features=n_features, value_scale=0.5)
    y = rng.normal(size=1)
    params = random_params(rng, n_features, k, t, v_std=0.2)
    with forced_pair_tile(256):
        got_y = _core.predict(to_core(params), *csr_arrays(X))
        got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32),
                                       np.zeros(1, np.int64), core_config())
    _, want = reference.gradients(params, X, y)
    assert_per_element(got_y, reference.forward(params, X), "y", rtol=1e-5)
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, rtol=1e-3, scale=_dense_scale(want, name))
    assert_per_element(got["V"], want.V[got["touched"]], "V", rtol=1e-3)


def test_a_long_rows_linear_term_sums_in_float64(rng):
    """w.x of a row of 2,000 non-zeros with w ~ N(0, 1): its partial sums wander to ~100, and a float32 sum
    would be off by ~1e-6 of y (measured 1.9e-6 before the float64 sum); the streamed row (2 million pairs at
    k = t = 2, the default tiles) is within float32 rounding of y."""
    n_features = 5000
    X = random_csr(rng, [2000], n_features=n_features)
    params = random_params(rng, n_features, 2, 2, v_std=0.05)
    params.w = rng.normal(0, 1.0, n_features).astype(np.float32).astype(np.float64)
    assert_per_element(_core.predict(to_core(params), *csr_arrays(X)), reference.forward(params, X), "y", rtol=3e-7)


def _padded(n):
    return (n + 15) // 16 * 16


def test_scratch_grows_with_non_zeros_not_pairs():
    """The scratch of a row of m non-zeros is pair tiles of a fixed size plus O(m k): at k = t = 64 a row of
    4,000 non-zeros (8 million pairs; P (k + t) 4 bytes = 4.1 GB unstreamed) needs under 12 MB per thread, and
    each further non-zero adds two padded rows of k floats (v x and its gradient), nothing per pair."""
    k = t = 64
    m = 4000
    pairs = m * (m - 1) // 2
    need = _core.scratch_bytes(m, k, t, 1, True)
    assert need < 12 * 2**20 < pairs * (k + t) * 4 // 300
    assert _core.scratch_bytes(20_000, k, t, 1, True) - need == (20_000 - m) * 2 * _padded(k) * 4
    assert _core.scratch_bytes(m, k, t, 2, True) == 2 * need
    with forced_pair_tile(7):  # tiles of 7 pairs: the pair buffers shrink to 7 rows
        small = _core.scratch_bytes(m, k, t, 1, True)
    assert need - small > 0.9 * (need - m * 2 * _padded(k) * 4)


def test_estimator_fit_predict_and_attention_on_streamed_rows(rng):
    """AFMRegressor end to end (pretrain, 2 epochs, partial_fit, attention_weights) with rows of up to 40
    non-zeros streamed in tiles of 8 pairs: the same model as with whole blocks, up to float32 rounding."""
    X = random_csr(rng, list(rng.integers(0, 41, size=60)), n_features=80, value_scale=0.7)
    y = rng.normal(size=X.shape[0])

    def run():
        model = small_model(fastafm.AFMRegressor, n_epochs=2, n_threads=2).fit(X, y)
        model.partial_fit(X, y)
        return model.predict(X), model.attention_weights(X)[2]

    want_y, want_a = run()
    with forced_pair_tile(8):
        got_y, got_a = run()
    assert_close(got_y, want_y, "y", rtol=1e-4)
    assert_close(got_a, want_a, "attention", rtol=1e-4)
