"""The PyTorch AFM baseline (bench/torch_afm.py), on the epoch group's shapes and data.

Skipped when torch is not installed: it is a benchmark-only dependency (pip install torch==2.13.0).
PyTorch uses --bench-threads threads (torch.set_num_threads, restored afterwards), in-memory batches built
before timing, and a fresh model + Adagrad each round (pedantic setup; 2 warm-up steps in the setup).
"""
from __future__ import annotations

import numpy as np
import pytest

import harness
from harness import EPOCH_CASES, case_id, shape_key

torch = pytest.importorskip("torch")
torch_afm = pytest.importorskip("torch_afm")


@pytest.fixture(scope="module", autouse=True)
def _torch_threads(settings):
    with torch_afm.torch_threads(settings.threads):
        yield


@pytest.mark.parametrize("case", EPOCH_CASES, ids=case_id)
def test_torch_epoch(benchmark, settings, peak, case):
    name, k, batch = case
    benchmark.group = "torch"
    ds = harness.dataset(settings.dataset_name(name), settings.rows_for(name, k))
    if settings.torch_rows_for(name, k) < ds.n_rows:
        ds = ds.head(settings.torch_rows_for(name, k))
    sparse = name == "criteo"  # 1e6 hashed ids: a dense Adagrad over all of V each step would be a strawman
    harness.record(benchmark, peak, impl="torch", shape=shape_key(name, k, k, batch), items=ds.n_rows,
                   flops=harness.epoch_flops(ds, k, k, batch)[0], threads=settings.threads,
                   data=ds.name, n_rows=ds.n_rows, k=k, t=k, batch=batch, torch=torch.__version__,
                   torch_sparse_embedding=sparse)

    def setup():
        tr = torch_afm.Trainer(ds.ids, ds.y, ds.n_features, k, k, batch, sparse=sparse)
        tr.epoch(max_batches=2)  # warm-up: allocator and thread pool
        return (tr,), {}

    loss = benchmark.pedantic(lambda tr: tr.epoch(), setup=setup, rounds=settings.rounds)
    harness.finish(benchmark)
    assert np.isfinite(loss)


def test_torch_model_matches_reference():
    """Not a benchmark: the PyTorch model computes docs/model.md's forward pass and gradients."""
    import data
    from fastafm import reference

    ds = data.frappe_like(40, seed=3)
    k, t = 8, 6
    P = reference.init_params(ds.n_features, k, t, init_std=0.3, rng=1)
    rng = np.random.default_rng(2)
    P.w, P.w0, P.p = rng.normal(size=ds.n_features), 0.3, rng.normal(size=k)
    model = torch_afm.TorchAFM(ds.n_features, ds.ids.shape[1], k, t, dropout=0.0).double()
    with torch.no_grad():
        model.V.weight.copy_(torch.as_tensor(P.V))
        model.w.weight.copy_(torch.as_tensor(P.w)[:, None])
        model.w0.fill_(P.w0)
        for name in "Wbhp":
            getattr(model, name).copy_(torch.as_tensor(getattr(P, name)))
    out = model(torch.as_tensor(ds.ids, dtype=torch.long))
    np.testing.assert_allclose(out.detach().numpy(), reference.forward(P, ds.X), rtol=1e-10, atol=1e-12)
    loss = 0.5 * torch.sum((out - torch.as_tensor(ds.y, dtype=torch.float64)) ** 2)
    loss.backward()
    J, G = reference.gradients(P, ds.X, ds.y)
    assert float(loss.detach()) == pytest.approx(J, rel=1e-10)
    for name, grad in (("W", model.W.grad), ("b", model.b.grad), ("h", model.h.grad), ("p", model.p.grad),
                       ("V", model.V.weight.grad), ("w", model.w.weight.grad[:, 0])):
        np.testing.assert_allclose(grad.numpy(), getattr(G, name), rtol=1e-8, atol=1e-12, err_msg=name)
