"""The rows layout's forward GEMM with the attention scores summed in its register tiles (gemm_scores in
cpp/src/isa/gemm.inc: AVX-512, t <= 16, k <= 256; other sets and shapes take gemm_ex + row_dots): predictions,
the attention weights and the gradients against the float64 reference per element on every ISA this CPU has,
for blocks whose pair counts fill whole tiles of 16 pairs and leave every tail size, t in {1, 7, 10, 16} and
one past the tile (17), k of 10, 16, 17 and past the GEMM's 256-row pack (300)."""
from __future__ import annotations

import numpy as np
import pytest

from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import assert_per_element, core_config, forced_pair_layout, own_scale, random_csr, random_params, to_core

# Pairs a row: 0, 0, 1, 3, 6, 15, 16 (nnz 17 -> 136), 21, 120, 741: block totals that end on tile boundaries
# and inside them.
ROW_NNZ = [0, 1, 2, 3, 4, 6, 17, 7, 16, 39, 2]
SHAPES = [(10, 10), (16, 16), (16, 7), (7, 16), (10, 1), (17, 16), (16, 17), (300, 10)]


@pytest.mark.parametrize("k,t", SHAPES, ids=[f"k{k}-t{t}" for k, t in SHAPES])
def test_scored_forward_against_reference(isa, rng, k, t):
    n_features = 30  # ids repeat within rows
    X = random_csr(rng, ROW_NNZ, n_features=n_features, value_scale=0.8)
    y = rng.normal(size=X.shape[0])
    params = random_params(rng, n_features, k, t, v_std=0.5 / np.sqrt(np.sqrt(k)))
    params.W = params.W / np.sqrt(max(k / 16, 1.0))
    core = to_core(params)
    with forced_pair_layout("rows"):
        for n_threads in (1, 2):
            assert_per_element(_core.predict(core, *csr_arrays(X), True, n_threads), reference.forward(params, X), "y")
        pair_indptr, _, want_a = reference.pair_attention(params, X)
        assert_per_element(_core.pair_attention(core, *csr_arrays(X), pair_indptr.astype(np.int64)), want_a, "a")
        rows = np.arange(X.shape[0], dtype=np.int64)
        _, want = reference.gradients(params, X, y, attention_l2=0.3, l2=0.1)
        got = _testing.batch_gradients(core, *csr_arrays(X), y.astype(np.float32), rows,
                                       core_config(n_threads=2, attention_l2=0.3, l2=0.1))
    for name in ("W", "b", "h", "p"):
        assert_per_element(got[name], getattr(want, name), name, scale=own_scale(want, name))
    assert_per_element(got["V"], want.V[got["touched"]], "V")
