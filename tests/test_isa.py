"""Every instruction-set path this CPU supports (avx512, avx2, baseline) computes the same model: its GEMM
against NumPy, and its predictions and gradients against the float64 reference."""
from __future__ import annotations

import numpy as np
import pytest

from fastafm import _core, reference
from fastafm._core import _testing
from fastafm.data.validation import csr_arrays
from support import assert_close, core_config, random_csr, random_params, to_core

ISAS = _core.supported_isas()


def test_the_best_path_is_active_and_baseline_is_always_there():
    assert ISAS[-1] == "baseline"
    assert _core.active_isa() in ISAS
    with pytest.raises(ValueError, match="not available"):
        _core.select_isa("avx1024")


@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 5, 3), (13, 40, 17), (90, 256, 64), (6, 16, 8), (33, 47, 29)])
def test_gemm_matches_numpy(isa, rng, M, N, K):
    A = rng.normal(size=(M, K)).astype(np.float32)
    B = rng.normal(size=(K, N)).astype(np.float32)
    np.testing.assert_allclose(_testing.gemm(A, B), A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("k,t", [(3, 5), (16, 16), (40, 24)])
@pytest.mark.parametrize("attention", [True, False])
def test_forward_and_gradients_match_reference(isa, rng, k, t, attention):
    X = random_csr(rng, [0, 1, 2, 9, 3, 14, 5], n_features=15)
    y = rng.normal(size=X.shape[0])
    params = random_params(rng, 15, k, t)
    got_y = _core.predict(to_core(params), *csr_arrays(X), attention, 2)
    assert_close(got_y, reference.forward(params, X, attention=attention), "y")
    rows = np.arange(X.shape[0], dtype=np.int64)
    got = _testing.batch_gradients(to_core(params), *csr_arrays(X), y.astype(np.float32), rows,
                                   core_config(attention=attention, n_threads=2, attention_l2=0.3, l2=0.1))
    _, want = reference.gradients(params, X, y, attention=attention, attention_l2=0.3, l2=0.1)
    for name in ("W", "b", "h", "p"):
        assert_close(got[name], getattr(want, name), name)
    assert_close(got["V"], want.V[got["touched"]], "V")
