"""precision="bf16": the bf16 kernel set against the emulated float64 reference (fastafm.reference_bf16), per
element, on fresh random inputs; its error on a CPU without AVX512_BF16 (the feature query mocked); its
determinism; and a bf16-trained model's files.

Tolerances. The emulated reference rounds exactly the GEMM inputs the core rounds (E is formed in float32 as the
core forms it, W is float32 already), so the forward differs from it only by float32 sums: observed <= 2.1e-7 of
the outputs' scale, allowed 2e-6. In the gradients, δ = dloss/dZ comes out of float32 arithmetic in the core and
float64 here, so a δ within ~1e-6 of a bf16 rounding boundary can round to the neighbouring bf16 value: one term
of dW (or of dE, then V) moves by 2^-8 of itself (observed 9.7e-5 of the scale at k = t = 64, else <= 1e-6);
allowed 3e-4 of the scale. Without the rounding (the float32 reference) the errors are 7e-5..3e-3 in the
forward and 5e-4..8e-3 in the gradients: test_the_rounding_is_what_is_checked asserts this margin.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm import _core, reference, reference_bf16
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import core_config, forced_pair_tile, random_csr, random_params, small_model, to_core

needs_bf16 = pytest.mark.skipif(not _core.bf16_supported(), reason="this CPU lacks AVX512_BF16 (bf16 kernels)")

# k, t: 1 (one lane), tails of a 16-float vector and of a 32-wide bf16 pair tile (5, 17, 31, 33, 70), whole
# 16- and 32-wide tiles (16, 32, 64), panels of 1, 2 and 3 vectors and more than one panel (100).
SHAPES = [(1, 1), (5, 3), (16, 16), (17, 31), (32, 32), (33, 17), (64, 64), (40, 70), (100, 48)]
# Rows of 0, 1, 2 and many pairs (3 non-zeros: 3 pairs; 25: 300 pairs), repeated ids allowed.
EDGE_NNZ = [0, 1, 2, 3, 25]
FORWARD_RTOL = 2e-6
GRADIENT_RTOL = 3e-4
# Blocks of ~170 pairs have more delta terms that can sit on a bf16 rounding boundary: one flip moved dW by 4.6e-4
# of its scale (k, t = 17, 31; the other shapes <= 1.5e-6, and the packing path gives the same bits). A pair
# misplaced in a copy would be off by a whole term, ~1e-1 of the scale.
BLOCK_GRADIENT_RTOL = 2e-3


def _bf16_config(**kw):
    cfg = core_config(**kw)
    cfg.bf16 = True
    return cfg


def _case(rng, k, t, n_rows=10, n_features=31, loss="squared"):
    X = random_csr(rng, EDGE_NNZ + list(rng.integers(0, 9, size=n_rows)), n_features=n_features)
    params = random_params(rng, n_features, k, t)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    return X, params, to_core(params), y


def _max_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want))) if want.size else 0.0


def _assert_scaled(got, want, rtol, name, scale=None):
    want = np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, scale or 0.0, 1e-6)
    err = _max_err(got, want)
    assert err <= rtol * scale, f"{name}: max error {err:.3g} vs scale {scale:.3g} (rtol {rtol})"


def _bf16_round_half_even(x):
    return reference_bf16.bf16(np.asarray(x, np.float32))


def test_reference_rounding_is_round_to_nearest_even():
    # 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7: ties go to the even mantissa (1); 1 + 3*2^-8 -> 1 + 2^-6.
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, 0.0, np.inf], np.float32)
    got = _bf16_round_half_even(x)
    np.testing.assert_array_equal(got, [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, 0.0, np.inf])
    assert np.isnan(_bf16_round_half_even(np.float32(np.nan)))


@needs_bf16
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (1, 17, 2), (5, 7, 3), (48, 48, 64), (33, 64, 64), (100, 17, 129),
                                   (7, 200, 31), (64, 64, 513), (50, 1, 2), (3, 5, 0)])
def test_gemm_matches_the_rounded_product(rng, M, N, K):
    A = rng.normal(size=(M, K)).astype(np.float32)
    B = rng.normal(size=(K, N)).astype(np.float32)
    got = _testing.gemm_bf16(A, B)
    Ab, Bb = reference_bf16.bf16(A), reference_bf16.bf16(B)
    want = Ab @ Bb
    # float32 sums of exact products (bf16 x bf16 fits a float32): per element at most ~K u |A||B| (u = 2^-24).
    bound = (K + 2) * 2.0**-24 * (np.abs(Ab) @ np.abs(Bb))
    assert np.all(np.abs(got - want) <= bound + 1e-30)
    if K >= 2:  # ... and the rounding is really applied: the unrounded product is further off somewhere
        assert np.max(np.abs(A.astype(np.float64) @ B - want) - bound) > 0


@needs_bf16
@pytest.mark.parametrize("k,t", SHAPES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_forward_matches_emulated_reference(rng, k, t, n_threads):
    X, _, core, _ = _case(rng, k, t)
    got = _testing.predict_bf16(core, *csr_arrays(X), n_threads)
    _assert_scaled(got, reference_bf16.forward(core, X), FORWARD_RTOL, "y")


@needs_bf16
@pytest.mark.parametrize("k,t", SHAPES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_gradients_match_emulated_reference(rng, k, t, loss, n_threads):
    X, _, core, y = _case(rng, k, t, loss=loss)
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                   _bf16_config(loss=loss, n_threads=n_threads, attention_l2=0.3))
    want_obj, want = reference_bf16.gradients(core, X, y, loss=loss, attention_l2=0.3)
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    assert got["w0"] == pytest.approx(want["w0"], rel=1e-5, abs=1e-6)
    for name in ("W", "b", "h", "p"):
        # db sums δ over pairs and cancels (softmax is shift-invariant): its rounding is that of the terms δ,
        # whose size dW and dh share (support.own_scale)
        other = max(np.max(np.abs(want["W"])), np.max(np.abs(want["h"]))) if name == "b" else None
        _assert_scaled(got[name], want[name], GRADIENT_RTOL, name, scale=other)
    touched = got["touched"]
    np.testing.assert_array_equal(np.sort(touched), reference.touched_features(X))
    _assert_scaled(got["V"], want["V"][touched], GRADIENT_RTOL, "V")
    _assert_scaled(got["w"], want["w"][touched], GRADIENT_RTOL, "w")


@needs_bf16
@pytest.mark.parametrize("k,t", [(17, 31), (64, 64)])
def test_long_rows_stream_the_same_sums(rng, k, t):
    """Rows of more pairs than a block holds take the streamed path (isa/long_rows.inc): its GEMMs are bf16 too."""
    X, _, core, y = _case(rng, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    with forced_pair_tile(7):
        got_y = _testing.predict_bf16(core, *csr_arrays(X), 2)
        got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows, _bf16_config(n_threads=2))
    _assert_scaled(got_y, reference_bf16.forward(core, X), FORWARD_RTOL, "y")
    _, want = reference_bf16.gradients(core, X, y)
    for name in ("W", "h"):
        _assert_scaled(got[name], want[name], GRADIENT_RTOL, name)
    _assert_scaled(got["V"], want["V"][got["touched"]], GRADIENT_RTOL, "V")


@needs_bf16
@pytest.mark.parametrize("k,t", [(1, 1), (5, 3), (17, 31), (64, 64), (100, 48), (40, 70), (33, 17)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_block_copies_of_rows_of_odd_pair_counts(rng, k, t, n_threads):
    """A block's bf16 copies of E and delta (isa/bf16_pairs.inc: written by build_pairs' rows and the ReLU backward,
    read by the GEMMs without packing) across many short rows: rows of 3 and 1 pairs start at odd pair offsets
    (E2's and D2's high halves filled by the next row), blocks of an odd total (the zero pair after it), more than
    128 pairs per block (dW's K blocks), rows of 0, 1 and 2 non-zeros and repeated ids between them."""
    row_nnz = [3, 2, 3, 0, 3, 1, 2, 3, 3, 2] * 7 + [3]
    X = random_csr(rng, row_nnz, n_features=13)
    params = random_params(rng, 13, k, t)
    core = to_core(params)
    y = rng.normal(size=X.shape[0])
    _assert_scaled(_testing.predict_bf16(core, *csr_arrays(X), n_threads), reference_bf16.forward(core, X),
                   FORWARD_RTOL, "y")
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                   _bf16_config(n_threads=n_threads, attention_l2=0.3))
    _, want = reference_bf16.gradients(core, X, y, attention_l2=0.3)
    for name in ("W", "h", "p"):
        _assert_scaled(got[name], want[name], BLOCK_GRADIENT_RTOL, name)
    delta_scale = max(np.max(np.abs(want["W"])), np.max(np.abs(want["h"])))  # db's, as in the test above
    _assert_scaled(got["b"], want["b"], BLOCK_GRADIENT_RTOL, "b", scale=delta_scale)
    _assert_scaled(got["V"], want["V"][got["touched"]], BLOCK_GRADIENT_RTOL, "V")


@needs_bf16
def test_the_rounding_is_what_is_checked(rng):
    """The float32 reference (no rounding) misses the bf16 kernels by far more than the tolerances: the tests
    above would fail if the kernels did not round their GEMM inputs (or rounded others)."""
    X, params, core, y = _case(rng, 33, 40)
    got_y = _testing.predict_bf16(core, *csr_arrays(X), 1)
    scale = np.max(np.abs(reference_bf16.forward(core, X)))
    assert _max_err(got_y, reference.forward(params, X)) > 10 * FORWARD_RTOL * scale
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows, _bf16_config())
    _, want32 = reference.gradients(params, X, y)
    _, want = reference_bf16.gradients(core, X, y)
    assert _max_err(got["W"], want32.W) > 3 * GRADIENT_RTOL * np.max(np.abs(want["W"]))


def test_bf16_on_a_cpu_without_avx512_bf16_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_core, "bf16_supported", lambda: False)
    X = random_csr(np.random.default_rng(0), [3] * 40, n_features=10)
    y = np.linspace(-1, 1, 40)
    with pytest.raises(ValueError, match="AVX512_BF16"):
        small_model(precision="bf16").fit(X, y)
    small_model(precision="fp32").fit(X, y)  # fp32 never asks


def test_precision_is_checked():
    X = random_csr(np.random.default_rng(0), [3] * 20, n_features=10)
    with pytest.raises(ValueError, match="precision"):
        small_model(precision="fp16").fit(X, np.zeros(20))


def _data(n_rows=600, n_features=60, seed=0):
    rng = np.random.default_rng(seed)
    X = random_csr(rng, rng.integers(2, 9, size=n_rows), n_features=n_features)
    return X, X @ rng.normal(size=n_features) + rng.normal(scale=0.1, size=n_rows)


@needs_bf16
def test_bf16_fit_is_deterministic_for_a_seed_and_thread_count():
    """docs/model.md, "Precision": the same seed and n_threads give a bit-identical bf16 fit (the blocks, chunks
    and sums are fp32 mode's; only the GEMMs' arithmetic differs), and it differs from the fp32 fit."""
    X, y = _data()
    fits = [small_model(precision=p, embedding_dim=24, attention_dim=20, n_threads=2, random_state=3).fit(X, y)
            for p in ("bf16", "bf16", "fp32")]
    for name in ("w_", "V_", "W_", "b_", "h_", "p_"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))
    assert not np.array_equal(fits[0].W_, fits[2].W_)


@needs_bf16
def test_bf16_model_is_float32_and_predicts_the_usual_way_after_save_and_load(tmp_path, monkeypatch):
    X, y = _data()
    model = small_model(precision="bf16", embedding_dim=24, attention_dim=20, random_state=1).fit(X, y)
    assert all(getattr(model, n).dtype == np.float32 for n in ("V_", "W_", "b_", "h_", "p_"))
    path = tmp_path / "bf16.afm"
    model.save(path)
    monkeypatch.setattr(_core, "bf16_supported", lambda: False)  # prediction never needs the feature
    loaded = fastafm.load(path)
    assert loaded.precision == "bf16"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # predict is float32 arithmetic on the float32 weights: the core's predict, as for any model
    core = {n: np.atleast_1d(getattr(model, n + "_")).astype(np.float32) for n in reference.PARAM_NAMES}
    np.testing.assert_array_equal(model.predict(X), _core.predict(core, *csr_arrays(X), True, 0))


@needs_bf16
@pytest.mark.parametrize("mode", ["weights", "logits", "both"])
def test_field_aware_afm_trains_in_bf16_close_to_fp32_and_deterministically(mode):
    """Field-aware AFM's attention GEMMs are the same attn_gemm calls (isa/attention_*.inc), so precision="bf16"
    applies to them too: the same seed gives the same bf16 fit, its field-pair terms move, and its outputs stay
    within the bf16 rounding of the fp32 fit's (3 epochs on the same rows)."""
    X, y = _data(seed=4)
    fields = np.arange(X.shape[1]) % 6
    kw = dict(field_aware=mode, fields=fields, embedding_dim=24, attention_dim=20, n_threads=2, random_state=7)
    bf16 = [small_model(precision="bf16", **kw).fit(X, y) for _ in range(2)]
    fp32 = small_model(precision="fp32", **kw).fit(X, y)
    np.testing.assert_array_equal(bf16[0].predict(X), bf16[1].predict(X))
    terms = fastafm.field_pair_terms(bf16[0])
    assert all(np.any(t != (1.0 if name == "weights" else 0.0)) for name, t in terms.items())
    scale = float(np.max(np.abs(fp32.predict(X))))
    assert float(np.max(np.abs(bf16[0].predict(X) - fp32.predict(X)))) <= 0.02 * scale  # observed <= 0.008
    assert not np.array_equal(bf16[0].predict(X), fp32.predict(X))
