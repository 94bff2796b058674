"""Whole training epochs and whole-data prediction, parametrised by (data, k = t, batch).

epoch    one epoch of a fresh _core.Trainer over every row (what AFMRegressor.fit runs per epoch), from fresh
         parameters and Adagrad state each round (pedantic setup), dropout 0.2, squared loss
predict  AFMRegressor.predict over every row (the public API: validation + _core.predict)

--bench-rows sets the Frappe rows (default per k: harness.DEFAULT_ROWS; the issue's figures use 200000).
"""
from __future__ import annotations

import numpy as np
import pytest

import flops
import harness
from harness import EPOCH_CASES, case_id, shape_key


@pytest.mark.parametrize("case", EPOCH_CASES, ids=case_id)
def test_epoch(benchmark, settings, peak, case):
    from fastafm import _core

    name, k, batch = case
    benchmark.group = "epoch"
    ds = harness.dataset(settings.dataset_name(name), settings.rows_for(name, k))
    arrays = ds.arrays()
    params0, accum0 = harness.init_model(ds.n_features, k, k)
    order = harness.epoch_order(ds.n_rows)
    cfg = harness.train_config(k, batch, settings.threads)
    total, gemm = harness.epoch_flops(ds, k, k, batch, order)
    harness.record(benchmark, peak, impl="fastafm", shape=shape_key(name, k, k, batch), items=ds.n_rows,
                   flops=total, gemm_flops=gemm,
                   threads=settings.threads, data=ds.name, n_rows=ds.n_rows, k=k, t=k, batch=batch)

    def setup():
        params = {n: a.copy() for n, a in params0.items()}
        accum = {n: a.copy() for n, a in accum0.items()}
        return (params, {"G": accum}), {}  # adagrad's state: slot G

    def epoch(params, slots):  # the trainer's construction (its work memory) is timed too
        return _core.Trainer(params, slots, cfg).train_epoch(*arrays, ds.y, order, cfg.seed, cfg.epoch)

    res = benchmark.pedantic(epoch, setup=setup, rounds=settings.rounds,
                             warmup_rounds=settings.warmup_rounds(ds.n_rows))
    harness.finish(benchmark)
    assert res["n_rows"] == ds.n_rows
    assert np.isfinite(res["loss_sum"])


PREDICT_CASES = [("frappe", 16), ("frappe", 64), ("frappe", 256), ("criteo", 16)]


@pytest.mark.parametrize("case", PREDICT_CASES, ids=lambda c: f"{c[0]}-k{c[1]}")
def test_predict(benchmark, settings, peak, case):
    import fastafm

    name, k = case
    benchmark.group = "predict"
    ds = harness.dataset(settings.dataset_name(name), settings.rows_for(name, k))
    model = fastafm.AFMRegressor(embedding_dim=k, attention_dim=k, n_epochs=0, n_threads=settings.threads,
                                 random_state=0).fit(ds.X, ds.y)  # n_epochs=0: initialised, not trained
    harness.record(benchmark, peak, impl="fastafm", shape=shape_key(name, k, k), items=ds.n_rows,
                   flops=flops.epoch_flops_predict(ds.row_nnz, k, k), threads=settings.threads,
                   data=ds.name, n_rows=ds.n_rows, k=k, t=k)
    out = benchmark.pedantic(model.predict, args=(ds.X,), rounds=settings.rounds,
                             warmup_rounds=settings.warmup_rounds(ds.n_rows))
    harness.finish(benchmark)
    assert out.shape == (ds.n_rows,)
