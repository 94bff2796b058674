"""The pairs-major layout of the block kernels (issue 13; cpp/src/isa/pairs_major.inc) and the rows layout, each
forced with _testing.set_pair_layout (the `pair_layout` fixture), against the float64 reference per element on
every ISA path this CPU has: k, t in {1, 7, 10, 15, 16, 17, 24, 32} and (16, 7), (7, 16); rows of 0, 1, 2, 3, 16,
17, 39, 48, 64 and 70 non-zeros with repeated ids, several rows per block, dropout, 1 and 2 threads; a directional
finite-difference check of the core's gradient; the dispatch rule; and bit-identical training for a fixed seed."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastafm
from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import (assert_directional_derivatives, assert_per_element, core_config, forced_pair_layout, forced_pair_tile, random_csr,
                     own_scale, random_params, to_core)

SIZES = [1, 7, 10, 15, 16, 17, 24, 32]
SHAPES = [(s, s) for s in SIZES] + [(16, 7), (7, 16)]
# 39 non-zeros: Criteo's 741 pairs, runs of pairs that start and end inside vectors at every width; 70: more than
# one register segment of the V-gradient pass (64 non-zeros on AVX-512); 16, 48 and 64: whole vectors and a
# whole segment (its last vector, masked, has every lane a pair).
ROW_NNZ = [39, 0, 1, 2, 3, 17, 2, 39, 3, 17, 1, 70, 16, 48, 64]


def _model(rng, n_features, k, t):
    params = random_params(rng, n_features, k, t, v_std=0.5 / np.sqrt(np.sqrt(k)))
    params.W = params.W / np.sqrt(max(k / 16, 1.0))
    return params


def _check_gradients(got, want):
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=own_scale(want, name))
    assert_per_element(got["V"], want.V[got["touched"]], "V")
    assert_per_element(got["w"], want.w[got["touched"]], "w")


@pytest.mark.parametrize("k,t", SHAPES, ids=[f"k{k}-t{t}" for k, t in SHAPES])
def test_layout_against_reference(isa, pair_layout, rng, k, t):
    n_features = 30  # ids repeat within rows (39 non-zeros of 30 ids)
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    params = _model(rng, n_features, k, t)
    core = to_core(params)
    assert _core.pairs_major_from(k, t) == (0 if pair_layout == "pairs" else -1)
    for n_threads in (1, 2):
        assert_per_element(_core.predict(core, *csr_arrays(X), True, n_threads), reference.forward(params, X), "y")
    pair_indptr, _, want_a = reference.pair_attention(params, X)
    got_a = _core.pair_attention(core, *csr_arrays(X), pair_indptr.astype(np.int64))
    assert_per_element(got_a, want_a, "a")
    rows = np.arange(X.shape[0], dtype=np.int64)
    _, want = reference.gradients(params, X, y, attention_l2=0.3, l2=0.1)
    for n_threads in (1, 2):
        got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(n_threads=n_threads, attention_l2=0.3, l2=0.1))
        _check_gradients(got, want)


@pytest.mark.parametrize("k,t", [(10, 10), (16, 7), (17, 24)])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_layout_with_dropout_against_reference(isa, pair_layout, rng, k, t, loss):
    n_features = 25
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    params = _model(rng, n_features, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    mask = _testing.dropout_mask(99, 2, rows, k, 0.4)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(loss=loss, dropout=0.4, seed=99, epoch=2, n_threads=2), use_dropout=True)
    want_obj, want = reference.gradients(params, X, y, loss=loss, dropout_mask=mask.astype(np.float64))
    assert got["objective"] == pytest.approx(want_obj, rel=1e-5)
    _check_gradients(got, want)


def test_blocks_next_to_streamed_rows(isa, pair_layout, rng):
    """Blocks of at most 40 pairs (several short rows, each layout) next to rows of more pairs, which are
    streamed in tiles whatever the layout."""
    k, t, n_features = 10, 10, 30
    X = random_csr(rng, [3, 5, 9, 2, 17, 0, 4, 39, 6, 6, 1], n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    params = _model(rng, n_features, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    with forced_pair_tile(40):
        assert_per_element(_core.predict(to_core(params), *csr_arrays(X), True, 1), reference.forward(params, X), "y")
        got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows, core_config())
    _, want = reference.gradients(params, X, y)
    _check_gradients(got, want)


def test_pairs_major_gradient_matches_finite_differences(isa, rng):
    """Directional derivatives of the float64 reference objective along random directions of every parameter
    against the pairs-major gradient of the core."""
    k, t, n_features = 10, 7, 12
    X = random_csr(rng, [17, 3, 1, 2], n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    params = _model(rng, n_features, k, t)
    rows = np.arange(X.shape[0], dtype=np.int64)
    with forced_pair_layout("pairs"):
        got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(attention_l2=0.3, l2=0.2))
    assert_directional_derivatives(got, params, X, y, rng, attention_l2=0.3, l2=0.2)


def test_layout_knob_and_dispatch_rule():
    with forced_pair_layout("rows"):
        assert {_core.pairs_major_from(k, t) for k, t in SHAPES} == {-1}
    with forced_pair_layout("pairs"):
        assert {_core.pairs_major_from(k, t) for k, t in SHAPES} == {0}
        # Above 32 the scratch is not sized for it: the rows layout whatever the knob says.
        assert _core.pairs_major_from(33, 16) == _core.pairs_major_from(16, 33) == _core.pairs_major_from(64, 64) == -1
    with forced_pair_layout("auto"):
        # Criteo-shaped rows (741 pairs) at k = t = 10 run pairs-major on every ISA, Frappe-shaped ones (45) do
        # not; nothing does at 64, nor at 16 (all lanes busy in the rows layout on every ISA).
        assert 45 < _core.pairs_major_from(10, 10) <= 741
        assert _core.pairs_major_from(64, 64) == _core.pairs_major_from(16, 16) == -1
    before = _testing.set_pair_layout("pairs")
    assert _testing.set_pair_layout(before) == "pairs"
    with pytest.raises(ValueError, match="layout must be 'auto', 'rows' or 'pairs'"):
        _testing.set_pair_layout("columns")


def _fit(X, y, n_threads):
    # AFM alone (the pretraining FM pools uniformly and never runs a pair layout), with SGD: its steps are
    # proportional to the gradients, so two summation orders stay float32 rounding apart (Adagrad's first
    # steps, g / |g|, turn a rounding difference of a near-zero gradient into a whole step).
    model = fastafm.AFMRegressor(embedding_dim=10, attention_dim=10, batch_size=32, n_epochs=2, dropout=0.3,
                                 n_threads=n_threads, random_state=5, pretrain=None, optimizer="sgd")
    model.fit(X, y)
    return model.get_model_params()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pairs_major_training_is_reproducible_and_close_to_rows(rng, n_threads):
    """A fixed seed and thread count give bit-identical models in the pairs-major layout; the rows layout trains
    the same model up to float32 rounding (the sums are the same, in another order)."""
    X = random_csr(rng, list(rng.integers(0, 20, size=200)), n_features=60, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    with forced_pair_layout("pairs"):
        first, second = _fit(X, y, n_threads), _fit(X, y, n_threads)
    with forced_pair_layout("rows"):
        rows = _fit(X, y, n_threads)
    for name, value in first.items():
        assert np.array_equal(second[name], value), name
        # two epochs of training let the layouts' rounding grow (measured up to 1.6e-3 relative in b); a
        # layout bug moves the parameters by far more
        np.testing.assert_allclose(rows[name], value, rtol=5e-3, atol=1e-4 * max(np.max(np.abs(value)), 1e-3),
                                   err_msg=name)


def test_a_rows_layout_and_output_do_not_depend_on_its_neighbours(rng):
    """With the automatic choice, rows of 300 pairs or more (here 26-39 non-zeros) run pairs-major and shorter
    ones the rows layout, in blocks of one layout: a row predicts the same alone, in any batch and with rows of
    the other layout around it."""
    assert _core.pairs_major_from(10, 10) == 300  # every ISA: k = t = 10 leaves lanes idle in the rows layout
    nnz = rng.integers(0, 40, size=120)
    assert np.any(nnz * (nnz - 1) // 2 >= 300) and np.any((nnz * (nnz - 1) // 2 < 300) & (nnz >= 2))
    X = random_csr(rng, list(nnz), n_features=60, value_scale=0.8)
    model = _model(rng, 60, 10, 10)
    params = to_core(model)
    whole = _core.predict(params, *csr_arrays(X), True, 2)
    alone = np.concatenate([_core.predict(params, *csr_arrays(X[i:i + 1]), True, 1) for i in range(X.shape[0])])
    np.testing.assert_array_equal(alone, whole)
    in_fives = np.concatenate([_core.predict(params, *csr_arrays(X[i:i + 5]), True, 1) for i in range(0, 120, 5)])
    np.testing.assert_array_equal(in_fives, whole)
    assert_per_element(whole, reference.forward(model, X), "y")


@pytest.mark.parametrize("n_threads", [2, 3])
def test_pairs_major_team_modes_give_bit_identical_models(monkeypatch, rng, n_threads):
    """As tests/test_contention.py, in the pairs-major layout: whichever threads run which batches (the team, or
    thread 0 alone every other batch), the model is bit-identical."""
    X = random_csr(rng, list(rng.integers(0, 30, size=150)), n_features=60, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    models = {}
    with forced_pair_layout("pairs"):
        for mode in ("team", "alternate"):
            monkeypatch.setenv("FASTAFM_TEAM_MODE", mode)
            models[mode] = _fit(X, y, n_threads)
    for name, value in models["team"].items():
        assert np.array_equal(models["alternate"][name], value), name


_MIXED_SETS_CHECK = """
import numpy as np
from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import assert_per_element, core_config, random_csr, random_params, to_core
import test_pairs_major as tpm
assert _core.kernel_isa(8, 8, 741) == _core.active_isa()  # the pairs-major blocks: the active set
rng = np.random.default_rng(5)
k = t = 8
X = random_csr(rng, [39, 3, 39, 2, 0, 25, 1, 39], n_features=30, value_scale=0.8)  # 741, 3, ..., 300 pairs
y = rng.normal(size=X.shape[0])
params = tpm._model(rng, 30, k, t)
core = to_core(params)
want_y = reference.forward(params, X)
for n_threads in (1, 2):
    assert_per_element(_core.predict(core, *csr_arrays(X), True, n_threads), want_y, "y")
for r in range(X.shape[0]):  # alone, each row gives what it gives in the batch
    alone = _core.predict(core, *csr_arrays(X[r]), True, 1)
    assert alone[0] == _core.predict(core, *csr_arrays(X), True, 1)[r], r
_, want = reference.gradients(params, X, y, attention_l2=0.3, l2=0.1)
rows = np.arange(X.shape[0], dtype=np.int64)
for n_threads in (1, 2):
    got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(n_threads=n_threads, attention_l2=0.3, l2=0.1))
    tpm._check_gradients(got, want)
print("ok", _core.kernel_isa(8, 8), _core.kernel_isa(8, 8, 741))
"""


def test_automatic_dispatch_runs_each_block_on_its_layouts_set():
    """Unforced (a fresh process: the `isa` fixture forces sets), k = t = 8: on an AVX-512 CPU the rows-layout
    blocks run AVX2 and the pairs-major ones (rows of >= 300 pairs) AVX-512; a batch mixing both against the float64
    reference per element (1 and 2 threads), and every row predicts the same alone as in the batch."""
    env = {k: v for k, v in os.environ.items() if k != "FASTAFM_ISA"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _MIXED_SETS_CHECK], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    _, rows_set, pm_set = out.stdout.split()
    if "avx512" in _core.supported_isas() and "avx2" in _core.supported_isas():
        assert (rows_set, pm_set) == ("avx2", "avx512")
    else:
        assert rows_set == pm_set
