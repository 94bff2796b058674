"""Kernel families, the C++ core next to the NumPy reference (float64) on the same shapes.

pairwise           _core.predict(attention=False): pair products and uniform pooling (no attention network)
attention_forward  _core.predict(attention=True): the forward pass with the attention GEMM, ReLU, h-dot, softmax
attention_backward _core._testing.batch_gradients: forward + backward of one mini-batch (no update)
adagrad            _core._testing.adagrad_update_ against the same update in NumPy (float32), per element

The reference runs on a few rows only (it loops over rows in Python); rows/s make the two comparable.
"""
from __future__ import annotations

import numpy as np
import pytest

import flops
import harness
from harness import KERNEL_CASES, case_id, shape_key

# Rows per _core.predict call in the forward groups: a block of data, large enough to amortise the call.
FORWARD_ROWS = 4096


def _forward_rows(settings, name, k):
    return min(FORWARD_ROWS, settings.rows_for(name, k)) if not settings.smoke else harness.SMOKE_ROWS


def _setup(settings, name, k, n_rows):
    """The first n_rows of the session's data for this shape, and a fresh model."""
    ds = harness.dataset(settings.dataset_name(name), settings.rows_for(name, k)).head(n_rows)
    params, _ = harness.init_model(ds.n_features, k, k)
    return ds, params


# ---------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("attention", [False, True], ids=["pairwise", "attention"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=case_id)
def test_forward_core(benchmark, settings, peak, case, attention):
    from fastafm import _core

    name, k, batch = case
    benchmark.group = "attention_forward" if attention else "pairwise"
    ds, params = _setup(settings, name, k, _forward_rows(settings, name, k))
    arrays = ds.arrays()
    harness.record(benchmark, peak, impl="fastafm", shape=shape_key(name, k, k), items=ds.n_rows,
                   flops=flops.epoch_flops_predict(ds.row_nnz, k, k, attention), threads=settings.threads)
    out = benchmark(_core.predict, params, *arrays, attention, settings.threads)
    harness.finish(benchmark)
    assert out.shape == (ds.n_rows,)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("attention", [False, True], ids=["pairwise", "attention"])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=case_id)
def test_forward_reference(benchmark, settings, peak, case, attention):
    from fastafm import reference

    name, k, batch = case
    benchmark.group = "attention_forward" if attention else "pairwise"
    ds, params = _setup(settings, name, k, settings.ref_rows(name, k))
    ref = harness.reference_params(params)
    harness.record(benchmark, peak, impl="reference", shape=shape_key(name, k, k), items=ds.n_rows,
                   flops=flops.epoch_flops_predict(ds.row_nnz, k, k, attention), threads=settings.threads)
    with harness.blas_limits(settings.threads):
        out = benchmark.pedantic(reference.forward, args=(ref, ds.X, attention), rounds=settings.rounds)
    harness.finish(benchmark)
    assert out.shape == (ds.n_rows,)


# ---------------------------------------------------------------------------------------------- backward
@pytest.mark.parametrize("case", KERNEL_CASES, ids=case_id)
def test_backward_core(benchmark, settings, peak, case):
    from fastafm import _core

    name, k, batch = case
    benchmark.group = "attention_backward"
    ds, params = _setup(settings, name, k, batch)
    rows = np.arange(min(batch, ds.n_rows), dtype=np.int64)
    cfg = harness.train_config(k, batch, settings.threads)
    harness.record(benchmark, peak, impl="fastafm", shape=shape_key(name, k, k, batch), items=len(rows),
                   flops=flops.gradient_flops(ds.row_nnz[rows], k, k), threads=settings.threads)
    out = benchmark(_core._testing.batch_gradients, params, *ds.arrays(), ds.y, rows, cfg, True)
    harness.finish(benchmark)
    assert np.isfinite(out["objective"])


@pytest.mark.parametrize("case", KERNEL_CASES, ids=case_id)
def test_backward_reference(benchmark, settings, peak, case):
    from fastafm import _core, reference

    name, k, batch = case
    benchmark.group = "attention_backward"
    ds, params = _setup(settings, name, k, settings.ref_rows(name, k))
    ref = harness.reference_params(params)
    mask = _core._testing.dropout_mask(0, 0, np.arange(ds.n_rows, dtype=np.int64), k, 0.2)
    harness.record(benchmark, peak, impl="reference", shape=shape_key(name, k, k, batch), items=ds.n_rows,
                   flops=flops.gradient_flops(ds.row_nnz, k, k), threads=settings.threads)
    with harness.blas_limits(settings.threads):
        J, _ = benchmark.pedantic(reference.gradients, args=(ref, ds.X, ds.y),
                                  kwargs={"dropout_mask": mask}, rounds=settings.rounds)
    harness.finish(benchmark)
    assert np.isfinite(J)


# ---------------------------------------------------------------------------------------------- adagrad
#: Array sizes: Frappe V at k=64 (344,448), W at 256x256 (65,536), Criteo-shaped V at k=16 (16,000,000).
ADAGRAD_SIZES = {"W-256x256": 256 * 256, "V-frappe-k64": 5382 * 64, "V-criteo-k16": 1_000_000 * 16}


def _adagrad_arrays(n, smoke):
    n = min(n, 1 << 16) if smoke else n
    rng = np.random.default_rng(0)
    theta = rng.normal(0, 0.01, n).astype(np.float32)
    accum = np.full(n, 1e-8, np.float32)
    grad = rng.normal(0, 0.1, n).astype(np.float32)
    return theta, accum, grad


def _numpy_adagrad(theta, accum, grad, lr):
    accum += grad * grad
    theta -= lr * grad / np.sqrt(accum)


@pytest.mark.parametrize("impl", ["fastafm", "numpy"])
@pytest.mark.parametrize("size", list(ADAGRAD_SIZES), ids=str)
def test_adagrad(benchmark, settings, peak, size, impl):
    from fastafm import _core

    benchmark.group = "adagrad"
    theta, accum, grad = _adagrad_arrays(ADAGRAD_SIZES[size], settings.smoke)
    n = theta.size
    harness.record(benchmark, peak, impl=impl, shape=f"adagrad {size}", items=n, unit="elements",
                   flops=n * flops.ADAGRAD_FLOPS_PER_ELEMENT, nbytes=n * flops.ADAGRAD_BYTES_PER_ELEMENT, threads=1)
    fn = _core._testing.adagrad_update_ if impl == "fastafm" else _numpy_adagrad
    # The update is in place; the accumulators only grow, which does not change the work per call.
    benchmark(fn, theta, accum, grad, 0.05)
    harness.finish(benchmark)
    assert np.all(np.isfinite(theta))
