"""Sample weights in fastafm.dask: a dask array (or Series) of weights partitioned like X, or the weights
sections of cache files; all-ones weights train bit-identically to none, and bad weights are a ValueError in
the client."""
from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import fastafm
from fastafm.dask import DaskAFMClassifier, DaskAFMRegressor
from test_dask import SMALL, planted  # noqa: F401  (the module's data fixture; the cluster is conftest's)


def _fit(client, X, y, w=None, chunks=700, **kw):  # noqa: F811
    dX, dy = da.from_array(X, chunks=(chunks, -1), asarray=False), da.from_array(y, chunks=chunks)
    dw = None if w is None else da.from_array(w, chunks=chunks)
    return DaskAFMRegressor(client=client, **{**SMALL, **kw}).fit(dX, dy, sample_weight=dw)


def _params_equal(a, b) -> bool:
    pa, pb = a.to_local().get_model_params(), b.to_local().get_model_params()
    return all(np.array_equal(pa[n], pb[n]) for n in pa)


def test_weights_from_a_dask_array(client, planted):  # noqa: F811
    X, y = planted
    plain = _fit(client, X, y)
    ones = _fit(client, X, y, np.ones(X.shape[0]))
    assert _params_equal(plain, ones)
    assert [r["train_loss"] for r in plain.history_] == [r["train_loss"] for r in ones.history_]
    w = np.random.default_rng(0).uniform(0.0, 3.0, size=X.shape[0])
    weighted = _fit(client, X, y, w)
    assert not _params_equal(plain, weighted)
    assert weighted.history_[-1]["train_loss"] < weighted.history_[0]["train_loss"]
    # A partition of weight 0 is fine while others have weight.
    w0 = w.copy()
    w0[:700] = 0.0
    assert not _params_equal(weighted, _fit(client, X, y, w0))


def test_bad_dask_weights_are_value_errors(client, planted):  # noqa: F811
    X, y = planted
    n = X.shape[0]
    for bad, match in ((-np.ones(n), "negative"), (np.full(n, np.nan), "NaN"), (np.zeros(n), "all zero")):
        with pytest.raises(ValueError, match=match):
            _fit(client, X, y, bad)
    dX, dy = da.from_array(X, chunks=(700, -1), asarray=False), da.from_array(y, chunks=700)
    with pytest.raises(ValueError, match="different row chunks"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, dy, sample_weight=da.from_array(np.ones(n), chunks=600))
    with pytest.raises(ValueError, match="1-D"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, dy, sample_weight=da.ones((n, 2), chunks=(700, 2)))
    with pytest.raises(TypeError, match="dask array or Series"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, dy, sample_weight=np.ones(n))


def test_weights_of_cache_files(client, planted, tmp_path):  # noqa: F811
    X, y = planted
    w = np.random.default_rng(1).uniform(0.0, 2.0, size=X.shape[0]).astype(np.float32)
    paths = [tmp_path / f"w{i}.afmcache" for i in range(2)]
    for i, path in enumerate(paths):
        part = slice(1500 * i, 1500 * (i + 1))
        fastafm.convert((X[part], y[part], w[part]), path)
    from_files = DaskAFMRegressor(client=client, **SMALL).fit([str(p) for p in paths])
    from_array = _fit(client, X, y, w, chunks=1500)  # one file per worker, one block: the same rows in memory
    assert _params_equal(from_files, from_array)
    assert from_files.history_[0]["train_loss"] == from_array.history_[0]["train_loss"]
    with pytest.raises(ValueError, match="sample_weight must be None when X is a list of cache files"):
        DaskAFMRegressor(client=client, **SMALL).fit([str(p) for p in paths], sample_weight=da.ones(3000))


def test_classifier_takes_weights(client, planted):  # noqa: F811
    X, y = planted
    labels = (y > np.median(y)).astype(int)
    dX, dy = da.from_array(X, chunks=(700, -1), asarray=False), da.from_array(labels, chunks=700)
    w = np.where(labels == 1, 3.0, 1.0)
    plain = DaskAFMClassifier(client=client, **SMALL).fit(dX, dy)
    weighted = DaskAFMClassifier(client=client, **SMALL).fit(dX, dy, sample_weight=da.from_array(w, chunks=700))
    # Weighting the positive class up moves predictions towards it.
    assert np.mean(weighted.to_local().predict(X) == 1) > np.mean(plain.to_local().predict(X) == 1)


def test_weights_with_early_stopping_and_partial_fit(client, planted, tmp_path):  # noqa: F811
    """Weights meet the held-out split (in memory and streamed from cache files with weights sections) and
    partial_fit (two one-epoch calls make the model of fit with two epochs)."""
    X, y = planted
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=X.shape[0])
    stopped = _fit(client, X, y, w, early_stopping=True, n_epochs=4)
    assert stopped.do_early_stopping_ and 1 <= stopped.best_epoch_ <= 4
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["eval_rmse"]) for r in stopped.history_)
    # From cache files with weights sections, streamed, with the held-out subset of every block.
    paths = [tmp_path / f"es{i}.afmcache" for i in range(2)]
    for i, path in enumerate(paths):
        part = slice(1500 * i, 1500 * (i + 1))
        fastafm.convert((X[part], y[part], w[part].astype(np.float32)), path)
    streamed = DaskAFMRegressor(client=client, **{**SMALL, "early_stopping": True, "n_epochs": 3}).fit(
        [str(p) for p in paths])
    assert streamed.do_early_stopping_ and all(np.isfinite(r["train_loss"]) for r in streamed.history_)
    dX, dy = da.from_array(X, chunks=(700, -1), asarray=False), da.from_array(y, chunks=700)
    dw = da.from_array(w, chunks=700)
    once = DaskAFMRegressor(client=client, **{**SMALL, "n_epochs": 1}).fit(dX, dy, sample_weight=dw)
    more = DaskAFMRegressor(client=client, **{**SMALL, "n_epochs": 1}).fit(dX, dy, sample_weight=dw)
    more.partial_fit(dX, dy, sample_weight=dw)
    two = DaskAFMRegressor(client=client, **{**SMALL, "n_epochs": 2}).fit(dX, dy, sample_weight=dw)
    assert _params_equal(more, two) and not _params_equal(once, two)
