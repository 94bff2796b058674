"""fastafm.dask: data-parallel training on a LocalCluster of 2 single-threaded workers (issue 7)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm

# The test extra installs dask and distributed: these tests run everywhere the suite runs, never skip.
import dask
import dask.array as da
import dask.dataframe as dd
import pandas as pd
from distributed import get_client

from fastafm.dask import merge as mg
from fastafm.dask import worker as dist
from fastafm.models.hyperparams import AUTO_LEARNING_RATES, AUTO_RATE_NNZ
from fastafm.dask import DaskAFMClassifier, DaskAFMRegressor

SMALL = dict(embedding_dim=8, attention_dim=8, n_epochs=4, random_state=0, sync_rows=500, early_stopping=False)


@pytest.fixture(scope="module")
def planted():
    X, y, _ = fastafm.make_planted(3000, n_fields=4, cardinality=6, random_state=1)
    return X, y


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


# ---------------------------------------------------------------------------------------------- fitting
def test_fit_dask_array_predict_matches_local_model(client, planted):
    X, y = planted
    dX, dy = da.from_array(X.toarray(), chunks=(600, -1)), da.from_array(y, chunks=600)
    model = DaskAFMRegressor(client=client, **SMALL).fit(dX, dy)
    assert model.n_workers_ == 2 and model.n_features_in_ == X.shape[1] and len(model.history_) == 4
    pred = model.predict(dX)
    assert isinstance(pred, da.Array) and pred.chunks == (dX.chunks[0],)
    local = model.to_local()
    assert isinstance(local, fastafm.AFMRegressor) and local.n_epochs_done_ == 4
    np.testing.assert_allclose(pred.compute(), local.predict(X), rtol=0, atol=0)
    # The training loss went down and the model learned the planted pairs.
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert _rmse(local.predict(X), y) < 0.8 * np.std(y)


def test_sparse_chunks_give_the_same_model_as_dense_chunks_and_fits_are_deterministic(client, planted):
    X, y = planted
    dense = DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(X.toarray(), chunks=(700, -1)),
                                                         da.from_array(y, chunks=700))
    sparse = DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(X, chunks=(700, -1), asarray=False),
                                                          da.from_array(y, chunks=700))
    a, b = dense.to_local().get_model_params(), sparse.to_local().get_model_params()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other_seed = DaskAFMRegressor(client=client, **{**SMALL, "random_state": 1}).fit(
        da.from_array(X, chunks=(700, -1), asarray=False), da.from_array(y, chunks=700))
    assert not np.array_equal(other_seed.to_local().V_, a["V"])


def test_fit_dask_dataframe_numeric_columns(client, planted):
    X, y = planted
    frame = pd.DataFrame(X.toarray(), columns=[f"f{i}" for i in range(X.shape[1])])
    frame.index = frame.index + 100  # predictions keep the input's index
    ddf = dd.from_pandas(frame, npartitions=4)
    dy = dd.from_pandas(pd.Series(y, index=frame.index, name="y"), npartitions=4)
    model = DaskAFMRegressor(client=client, **SMALL).fit(ddf, dy)
    pred = model.predict(ddf)
    assert isinstance(pred, dd.Series)
    out = pred.compute()
    assert list(out.index) == list(frame.index)
    np.testing.assert_allclose(out.to_numpy(), model.to_local().predict(X), rtol=0, atol=0)


def test_accuracy_close_to_single_process(client):
    X, y, _ = fastafm.make_planted(6000, n_fields=4, cardinality=6, noise=0.1, random_state=3)
    Xt, yt, X, y = X[4800:], y[4800:], X[:4800], y[:4800]
    params = dict(embedding_dim=8, attention_dim=8, n_epochs=15, n_threads=1)
    # Single-process test RMSE moves by +-10% with the seed on data this small (0.43-0.53 here), so the
    # reference is its mean over four seeds, not one run.
    single = np.mean([_rmse(fastafm.AFMRegressor(**params, random_state=s).fit(X, y).predict(Xt), yt)
                      for s in range(4)])
    model = DaskAFMRegressor(client=client, sync_rows=300, random_state=0, **params).fit(
        da.from_array(X, chunks=(600, -1), asarray=False), da.from_array(y, chunks=600))
    distributed_rmse = _rmse(model.to_local().predict(Xt), yt)
    assert single < 0.6 * np.std(yt)  # the setting is learnable, so the comparison means something
    assert distributed_rmse < 1.03 * single, (distributed_rmse, single)


def test_classifier_with_string_labels(client):
    X, y01, _ = fastafm.make_planted(3000, n_fields=4, cardinality=6, classification=True, noise=0.0,
                                     random_state=2)
    labels = np.where(y01 > 0, "yes", "no")
    dX, dy = da.from_array(X, chunks=(750, -1), asarray=False), da.from_array(labels, chunks=750)
    model = DaskAFMClassifier(client=client, **{**SMALL, "n_epochs": 8}).fit(dX, dy)
    assert list(model.classes_) == ["no", "yes"]
    pred = model.predict(dX).compute()
    local = model.to_local()
    assert isinstance(local, fastafm.AFMClassifier)
    np.testing.assert_array_equal(pred, local.predict(X))
    assert np.mean(pred == labels) > 0.8
    proba = model.predict_proba(dX).compute()
    assert proba.shape == (3000, 2)
    np.testing.assert_allclose(proba, local.predict_proba(X))


def test_to_local_model_saves_and_explains(client, planted, tmp_path):
    X, y = planted
    model = DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(X, chunks=(1000, -1), asarray=False),
                                                         da.from_array(y, chunks=1000))
    local = model.to_local()
    local.save(tmp_path / "m.afm")
    np.testing.assert_array_equal(fastafm.load(tmp_path / "m.afm").predict(X[:50]), local.predict(X[:50]))
    assert len(local.pair_attention(X[:3])) == 3
    assert local.label_range_ == (float(y.min()), float(y.max()))


def test_sync_stats_count_the_bytes_moved(client, planted):
    X, y = planted
    n, k, t = X.shape[1], 8, 8
    assert client is get_client()  # client=None below: the current client is used
    from sklearn.base import clone

    twin = clone(DaskAFMRegressor(client=client, **SMALL))
    assert twin.client is client and twin.get_params()["sync_rows"] == SMALL["sync_rows"]
    model = DaskAFMRegressor(**SMALL).fit(da.from_array(X, chunks=(500, -1), asarray=False),
                                          da.from_array(y, chunks=500))
    s = model.sync_stats_
    assert s["state_bytes"] == 2 * 4 * (n * (k + 1) + t * k + 2 * t + k + 1)  # params + Adagrad state, float32
    assert s["bytes_down_full_per_round"] == s["bytes_initial"] == s["state_bytes"]  # to the one other worker
    # each round's delta: the rows touched (here all 24 features every round) with their ids, and the dense part
    assert s["bytes_down_per_round"] == s["state_bytes"] + 4 * n
    assert s["rounds"] == 4 * 3  # 1500 rows per worker, 500 per round, 4 epochs
    assert 0 < s["bytes_up_per_round"] <= 2 * (s["state_bytes"] + 8 * n)
    assert 0 <= s["sync_share"] < 1


# ---------------------------------------------------------------------------------------------- merging
def _update(rows, ids, counts, w_rows, dense):
    k = 2
    ids = np.asarray(ids, np.int32)
    params = {"w0": np.full(1, dense, np.float32), "W": np.full((1, k), dense, np.float32),
              "b": np.full(1, dense, np.float32), "h": np.full(1, dense, np.float32),
              "p": np.full(k, dense, np.float32), "w": np.asarray(w_rows, np.float32),
              "V": np.repeat(np.asarray(w_rows, np.float32)[:, None], k, axis=1)}
    return mg.Update(rows, 1.0, ids, np.asarray(counts, np.float32), params,
                       {"G": {name: a + 1 for name, a in params.items()}}, 0.0)


@pytest.mark.parametrize("combine", ["sum", "average"])
def test_merge_keeps_rows_of_one_worker_and_combines_shared_rows(combine):
    k, n = 2, 4
    zeros = {"w0": np.zeros(1, np.float32), "W": np.zeros((1, k), np.float32), "b": np.zeros(1, np.float32),
             "h": np.zeros(1, np.float32), "p": np.zeros(k, np.float32), "w": np.zeros(n, np.float32),
             "V": np.zeros((n, k), np.float32)}
    state = mg.State(zeros, {"G": {name: a + 1 for name, a in zeros.items()}})
    a = _update(100, [0, 2], [3, 1], [0.1, 2.0], dense=1.0)  # feature 0 only here
    b = _update(300, [2, 3], [3, 5], [6.0, 4.0], dense=2.0)  # feature 3 only here, feature 2 shared
    out = mg.merge(state, [a, b], new_epoch=True, combine=combine)
    w = out.params["w"]
    # One worker's rows are kept bit for bit (not count * value / count), rows nobody touched are unchanged.
    assert w[0] == np.float32(0.1) and w[3] == 4.0 and w[1] == 0.0
    assert out.slots["G"]["w"][0] == np.float32(0.1) + np.float32(1) and out.slots["G"]["w"][3] == 5.0
    if combine == "sum":
        assert w[2] == 8.0 and out.params["w0"][0] == 3.0  # old + sum of the deltas
        assert out.slots["G"]["w"][2] == 9.0  # 1 + (3 - 1) + (7 - 1)
    else:
        assert w[2] == pytest.approx((1 * 2.0 + 3 * 6.0) / 4)  # weighted by how often each saw it
        assert out.params["w0"][0] == pytest.approx((100 * 1.0 + 300 * 2.0) / 400)  # weighted by rows
    np.testing.assert_array_equal(out.params["V"][:, 0], w)
    assert out.epoch_rows == 400 and out.stats["rounds"] == 1
    assert state.params["w"][0] == 0.0  # the input state is not modified


def test_adam_trains_on_dask_and_its_step_counts_merge_like_their_rows(client, planted):
    """Adam on Dask: the merge takes slot "step", which holds only w and w0, with the other slots, and the
    fitted model carries the whole state."""
    X, y = planted
    dX, dy = da.from_array(X.toarray(), chunks=(600, -1)), da.from_array(y, chunks=600)
    model = DaskAFMRegressor(client=client, optimizer="adam", **SMALL).fit(dX, dy)
    local = model.to_local()
    state = local.optimizer_state()
    assert sorted(state) == ["m", "step", "v"] and sorted(state["step"]) == ["w", "w0"]
    assert state["step"]["w0"][0] > 0 and state["step"]["w"].max() > 0
    assert model.learning_rate_ == local.learning_rate_ == AUTO_LEARNING_RATES["afm"]["adam"]  # "auto" resolved
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert _rmse(local.predict(X), y) < 0.8 * np.std(y)


def test_auto_rate_follows_the_mean_non_zeros_of_all_workers_rows(client):
    """learning_rate="auto" scales with the mean non-zeros a row of all the rows given (summed over the shards,
    before any hold-out), as the in-memory estimator's: rows of 12 and 30 non-zeros in separate partitions."""
    X, y, _ = fastafm.make_planted(1200, n_fields=30, cardinality=4, random_state=4)
    X = X.tolil()
    X[:600, 12 * 4:] = 0  # the first 12 fields (one-hot, 4 columns each) kept
    X = X.tocsr()
    X.eliminate_zeros()
    dX, dy = da.from_array(X.toarray(), chunks=(600, -1)), da.from_array(y, chunks=600)
    model = DaskAFMRegressor(client=client, **SMALL).fit(dX, dy)
    expected = AUTO_LEARNING_RATES["afm"]["adagrad"] * AUTO_RATE_NNZ / 21.0  # (12 + 30) / 2 non-zeros a row
    assert model.learning_rate_ == model.to_local().learning_rate_ == pytest.approx(expected)
    assert fastafm.AFMRegressor(**{k: v for k, v in SMALL.items() if k != "sync_rows"}, pretrain=None).fit(
        X, y).learning_rate_ == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(client, planted):
    X, y = planted
    dX = da.from_array(X.toarray(), chunks=(600, -1))
    with pytest.raises(ValueError, match="different row chunks"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, da.from_array(y, chunks=1000))
    with pytest.raises(ValueError, match="y is None"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, None)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX.astype(str), da.from_array(y, chunks=600))
    with pytest.raises(TypeError, match="y must hold real numbers"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, da.from_array(y.astype(str), chunks=600))
    with pytest.raises(TypeError, match="dask.array.Array, a dask.dataframe.DataFrame or a list of cache files"):
        DaskAFMRegressor(client=client, **SMALL).fit(X, y)
    with pytest.raises(TypeError, match="y must be a dask array or a dask Series"):
        DaskAFMRegressor(client=client, **SMALL).fit(dX, y)
    with pytest.raises(ValueError, match="sync_rows must be >= 1"):
        DaskAFMRegressor(client=client, **{**SMALL, "sync_rows": 0}).fit(dX, da.from_array(y, chunks=600))
    with pytest.raises(ValueError, match="combine must be"):
        DaskAFMRegressor(client=client, combine="median", **SMALL).fit(dX, da.from_array(y, chunks=600))
    with pytest.raises(ValueError, match="dropout"):
        DaskAFMRegressor(client=client, **{**SMALL, "dropout": 1.5}).fit(dX, da.from_array(y, chunks=600))
    bad = X.toarray()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"X \(partition 0\) contains NaN"):  # raised on a worker, re-raised here
        DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(bad, chunks=(600, -1)),
                                                     da.from_array(y, chunks=600))
    with pytest.raises(ValueError, match="needs two classes"):
        DaskAFMClassifier(client=client, **SMALL).fit(dX, da.from_array(np.arange(3000) % 3, chunks=600))
    with pytest.raises(Exception, match="not fitted"):
        DaskAFMRegressor(client=client).predict(dX)


def test_bad_dataframe_input_raises_clear_errors(client, planted):
    X, y = planted
    frame = pd.DataFrame(X.toarray()[:, :3], columns=["a", "b", "c"])
    ys = pd.Series(y, name="y")
    with pytest.raises(TypeError, match=r"numeric columns only .*\['c'\]"):
        DaskAFMRegressor(client=client, **SMALL).fit(dd.from_pandas(frame.assign(c="x"), npartitions=2),
                                                     dd.from_pandas(ys, npartitions=2))
    with pytest.raises(ValueError, match="X has 2 partitions but y has 3"):
        DaskAFMRegressor(client=client, **SMALL).fit(dd.from_pandas(frame, npartitions=2),
                                                     dd.from_pandas(ys, npartitions=3))
    shifted = dd.from_pandas(ys, npartitions=2).repartition(divisions=[0, 1000, 2999])
    # Both partitions disagree; which worker reports first depends on scheduling.
    with pytest.raises(ValueError, match=r"partition (0: X has 1500 rows but y has 1000|1: X has 1500 rows but y has 2000)"):
        DaskAFMRegressor(client=client, **SMALL).fit(dd.from_pandas(frame, npartitions=2), shifted)
    model = DaskAFMRegressor(client=client, **SMALL).fit(dd.from_pandas(frame, npartitions=2),
                                                         dd.from_pandas(ys, npartitions=2))
    with pytest.raises(ValueError, match="expecting 3 features"):
        model.predict(dd.from_pandas(frame[["a", "b"]], npartitions=2))


def test_import_fastafm_without_dask_and_a_clear_error_for_fastafm_dask():
    code = (
        "import sys\n"
        "for name in ('dask', 'distributed'): sys.modules[name] = None\n"
        "import fastafm\n"
        "try:\n"
        "    import fastafm.dask\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ImportError: fastafm.dask needs the optional dependencies dask and distributed: " \
           "pip install fastafm[dask]" in out


def test_dask_is_optional_in_the_package_metadata():
    # The installed distribution's metadata (works for a wheel installed outside the source tree too).
    from importlib import metadata

    requires = metadata.requires("fastafm") or []
    core = [r for r in requires if "extra ==" not in r]
    assert core and not any(r.startswith(("dask", "distributed")) for r in core)
    for extra in ("dask", "test"):
        names = [r.split(";")[0].strip() for r in requires if f'extra == "{extra}"' in r]
        assert "dask[dataframe]>=2024.1" in names and "distributed>=2024.1" in names, (extra, names)
    assert dask.__version__


# ---------------------------------------------------------------------------------------------- cache files
def test_fit_on_cache_files_equals_fit_on_the_same_partitions(client, planted, tmp_path):
    # One file per worker, each read as one block: streamed exactly as the same rows in memory.
    X, y = planted
    paths = [tmp_path / f"part{i}.afmcache" for i in range(2)]
    for i, path in enumerate(paths):
        fastafm.convert((X[1500 * i:1500 * (i + 1)], y[1500 * i:1500 * (i + 1)]), path)
    from_files = DaskAFMRegressor(client=client, **SMALL).fit([str(p) for p in paths])
    from_array = DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(X, chunks=(1500, -1), asarray=False),
                                                              da.from_array(y, chunks=1500))
    a, b = from_files.to_local().get_model_params(), from_array.to_local().get_model_params()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    opened = DaskAFMRegressor(client=client, **SMALL).fit([fastafm.CacheFile(p) for p in paths])
    np.testing.assert_array_equal(opened.to_local().V_, a["V"])
    with pytest.raises(ValueError, match="y must be None"):
        DaskAFMRegressor(client=client, **SMALL).fit([str(p) for p in paths], da.from_array(y, chunks=1000))
    with pytest.raises(TypeError, match="cache file paths or fastafm.CacheFile"):
        DaskAFMRegressor(client=client, **SMALL).fit([1, 2])
    with pytest.raises(FileNotFoundError):
        DaskAFMRegressor(client=client, **SMALL).fit([str(tmp_path / "missing.afmcache")])


def test_workers_stream_cache_files_in_blocks(client, planted, tmp_path):
    X, y = planted
    paths = [tmp_path / f"part{i}.afmcache" for i in range(3)]
    for i, path in enumerate(paths):
        fastafm.convert((X[1000 * i:1000 * (i + 1)], y[1000 * i:1000 * (i + 1)]), path)
    # A worker's shard as the workers see it: blocks of 128 rows, one buffer for the largest block.
    shard = dist.training_rows(dist.load_cache_shard([fastafm.CacheFile(p, block_rows=128) for p in paths[:2]], 0,
                                                     X.shape[1]), "squared", None)
    assert shard.n_rows == 2000 and len(shard.blocks) == 2 * 8 and shard.nbytes_buffer() == 0
    order = dist.epoch_order(shard, 5)
    assert sorted(order.blocks.tolist()) == list(range(16)) and order.sizes.sum() == 2000
    init = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=0, optimizer="sgd", random_state=0)
    state = mg.State(dict(init.fit(X[:10], y[:10]).training_state_.params), {})
    settings = dict(loss="squared", optimizer="sgd", attention=True, learn_projection=True, dropout=0.0,
                    attention_l2=0.0, l2=0.0, frequency_l2=0.0, learning_rate=0.01, batch_size=64, n_threads=1)
    updates = {}
    for strength in (0.0, 50.0):
        key = dist.new_replica(state, f"test-stream-{strength}")
        try:  # spans several blocks
            updates[strength] = dist.train_round(shard, order, key, None, 100, 700,
                                                 {**settings, "frequency_l2": strength}, 1, 0)
        finally:
            dist.drop_replica(key)
    update = updates[0.0]
    assert update.rows == 600 and np.isfinite(update.loss_sum)
    # frequency_l2's n_i: the worker's whole shard, read block by block
    np.testing.assert_array_equal(shard.feature_counts(X.shape[1]), np.bincount(X[:2000].indices, minlength=X.shape[1]))
    assert not np.array_equal(updates[50.0].params["V"], update.params["V"])
    # one buffer for the largest block: 128 rows of 4 non-zeros (planted: 4 fields), never the 2000-row shard
    assert shard.nbytes_buffer() == 8 * 129 + 128 * 4 * (4 + 4) + 4 * 128
    # what Dask spills or sends is the file list, not the buffer; the copy reads its blocks again
    import pickle

    copy = pickle.loads(pickle.dumps(shard))
    assert copy.nbytes_buffer() == 0 and len(pickle.dumps(shard)) < 4096
    np.testing.assert_array_equal(copy.read(3)[1], shard.read(3)[1].copy())
    # Whole fits: streamed in blocks of 128 rows, as good as the same rows in memory.
    streamed = DaskAFMRegressor(client=client, **SMALL).fit([fastafm.CacheFile(p, block_rows=128) for p in paths])
    in_memory = DaskAFMRegressor(client=client, **SMALL).fit(da.from_array(X, chunks=(1000, -1), asarray=False),
                                                             da.from_array(y, chunks=1000))
    a = _rmse(streamed.to_local().predict(X), y)
    b = _rmse(in_memory.to_local().predict(X), y)
    # Another order of the same rows: at 4 epochs of 3,000 rows seeds alone move the RMSE by ~15%, so this
    # checks that streaming learns (a broken stream, e.g. labels of another block, stays near y's spread).
    assert a < 0.6 * float(np.std(y)) and a < 1.25 * b, (a, b, float(np.std(y)))


def test_a_damaged_cache_file_on_a_worker_is_a_clear_error_in_the_client(client, planted, tmp_path):
    X, y = planted
    paths = [tmp_path / f"part{i}.afmcache" for i in range(2)]
    for i, path in enumerate(paths):
        fastafm.convert((X[1500 * i:1500 * (i + 1)], y[1500 * i:1500 * (i + 1)]), path)
    caches = [fastafm.CacheFile(p) for p in paths]  # opened (headers read) before the damage
    raw = bytearray(paths[1].read_bytes())
    raw[-8:] = b"\xff" * 8  # the labels section's end: NaN labels
    paths[1].write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"part1\.afmcache: not a valid fastafm cache"):
        DaskAFMRegressor(client=client, **SMALL).fit(caches)


def test_rounds_never_split_a_mini_batch():
    from fastafm.dask.driver import round_bounds as _round_bounds

    for n, rounds in ((80000, 10), (1000, 3), (100, 4), (5, 2)):
        bounds = [_round_bounds(n, r, rounds, 128) for r in range(rounds)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all((lo % 128 == 0 or lo == n) and lo <= hi for lo, hi in bounds)
