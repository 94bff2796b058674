"""Shared fixtures: seeded random sparse rows and models, built fresh for every test."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm import reference


def random_csr(rng, row_nnz, n_features, value_scale=1.0, repeat_ids=True):
    """CSR rows with the given non-zero counts, real values of both signs, repeated ids allowed."""
    indptr = np.concatenate([[0], np.cumsum(row_nnz)]).astype(np.int64)
    nnz = int(indptr[-1])
    if repeat_ids:
        indices = rng.integers(0, n_features, size=nnz)
    else:
        indices = np.concatenate([rng.choice(n_features, size=m, replace=False) for m in row_nnz] or [[]])
    values = rng.uniform(0.3, 1.5, size=nnz) * rng.choice([-1.0, 1.0], size=nnz) * value_scale
    return sp.csr_matrix(
        (values.astype(np.float32), indices.astype(np.int32), indptr), shape=(len(row_nnz), n_features)
    )


def random_params(rng, n_features, k, t, v_std=0.4):
    """A model whose attention is far from uniform (so attention bugs show), as float32-exact float64."""
    p = reference.init_params(n_features, k, t, init_std=v_std, rng=rng)
    p.w = rng.normal(0, 0.3, n_features)
    p.w0 = float(rng.normal())
    p.p = rng.normal(1.0, 0.5, k)
    p.h = rng.normal(0, 2.0, t)
    # Round to float32 so the reference sees exactly the values the C++ core sees.
    for name in ("w", "V", "W", "b", "h", "p"):
        setattr(p, name, getattr(p, name).astype(np.float32).astype(np.float64))
    p.w0 = float(np.float32(p.w0))
    return p


def to_core(params) -> dict:
    """Reference Params -> the dict of float32 arrays the compiled core takes."""
    return {
        name: np.ascontiguousarray(np.atleast_1d(getattr(params, name)), dtype=np.float32)
        for name in reference.PARAM_NAMES
    }


@pytest.fixture
def rng(request):
    # A fresh, reproducible stream per test (seeded by the test's name).
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
