"""fastafm.dask (issue 16): early stopping, eval_set, validation_fraction, partial_fit, touched-row sync and
memory limits, on a LocalCluster of 2 single-threaded workers."""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from distributed import Client, LocalCluster

import fastafm
from fastafm.dask import merge as mg
from fastafm.dask import worker as dist
from fastafm.dask import DaskAFMClassifier, DaskAFMRegressor
from support import raw_output

SMALL = dict(embedding_dim=8, attention_dim=8, n_epochs=4, random_state=0, sync_rows=500, n_threads=1,
             early_stopping=False)


@pytest.fixture(scope="module")
def overfitting():
    """Planted pairs plus an id field of 300 values seen ~10 times each, strong noise, no dropout: the model
    learns the pairs in a few epochs, then memorises the noise through the ids, and the eval RMSE rises
    steeply. A sharp minimum: on a flat one the best epoch moves by several epochs with the row order alone
    (docs/distributed.md), in one process too."""
    n, n_ids = 4000, 300
    X, y, _ = fastafm.make_planted(n, n_fields=4, cardinality=6, noise=1.0, random_state=4)
    ids = np.random.default_rng(4).integers(0, n_ids, n)
    X = sp.hstack([X, sp.csr_matrix((np.ones(n, np.float32), ids, np.arange(n + 1)), shape=(n, n_ids))],
                  format="csr")
    return X[:3000], y[:3000], X[3000:], y[3000:]


def _arrays(X, y, rows):
    return da.from_array(X, chunks=(rows, -1), asarray=False), da.from_array(y, chunks=rows)


def _caches(tmp_path, X, y, n_files, name="part", block_rows=None):
    bounds = np.linspace(0, X.shape[0], n_files + 1).astype(int)
    paths = []
    for i in range(n_files):
        path = tmp_path / f"{name}{i}.afmcache"
        fastafm.convert((X[bounds[i]:bounds[i + 1]], y[bounds[i]:bounds[i + 1]]), path)
        paths.append(fastafm.CacheFile(path, block_rows=block_rows) if block_rows else str(path))
    return paths


STOPPING = dict(embedding_dim=8, attention_dim=8, n_epochs=30, dropout=0.0, attention_l2=0.0, learning_rate=0.1,
                batch_size=64, n_threads=1, random_state=0, early_stopping=True, n_iter_no_change=3)


# ---------------------------------------------------------------------------------------------- early stopping
def test_early_stopping_restores_the_best_epoch_and_matches_one_process(client, overfitting):
    X, y, Xv, yv = overfitting
    single = fastafm.AFMRegressor(**STOPPING, pretrain=None).fit(X, y, eval_set=(Xv, yv))
    model = DaskAFMRegressor(**STOPPING, sync_rows=512, client=client).fit(*_arrays(X, y, 750), eval_set=(Xv, yv))
    assert 1 < single.best_epoch_ < len(single.history_) < STOPPING["n_epochs"]  # it did stop, after a best epoch
    assert model.do_early_stopping_ and len(model.history_) < STOPPING["n_epochs"]
    assert abs(model.best_epoch_ - single.best_epoch_) <= 1, (model.best_epoch_, single.best_epoch_)
    assert len(model.history_) == model.best_epoch_ + STOPPING["n_iter_no_change"]
    # the restored model is the best epoch's: its eval RMSE is that epoch's, not the last one's
    local = model.to_local()
    restored = fastafm.metrics.rmse(yv, local.predict(Xv), clip=model.label_range_)
    scores = model.validation_score_
    assert restored == pytest.approx(model.best_score_, rel=1e-9) and model.best_score_ == scores.min()
    assert scores[-1] > model.best_score_
    assert [r["epoch"] for r in model.history_] == list(range(1, len(scores) + 1))
    assert all({"train_loss", "eval_rmse", "eval_mae", "seconds"} <= set(r) for r in model.history_)
    # the eval metrics are the in-memory estimator's on the same model
    assert local.n_epochs_done_ == len(model.history_)


def test_eval_set_as_client_data_dask_arrays_or_cache_files_scores_the_same(client, overfitting, tmp_path):
    X, y, Xv, yv = overfitting
    params = {**STOPPING, "n_epochs": 3, "early_stopping": False, "sync_rows": 512}
    dX, dy = _arrays(X, y, 750)
    runs = [DaskAFMRegressor(**params, client=client).fit(dX, dy, eval_set=es) for es in (
        (Xv, yv), [(Xv.toarray(), yv)], _arrays(Xv, yv, 250), (_caches(tmp_path, Xv, yv, 3, "eval"), None))]
    first = runs[0]
    assert not first.do_early_stopping_ and first.best_epoch_ >= 1
    for other in runs[1:]:
        np.testing.assert_array_equal(other.to_local().V_, first.to_local().V_)  # evaluation never trains
        for a, b in zip(first.history_, other.history_):
            assert a["eval_rmse"] == pytest.approx(b["eval_rmse"], rel=1e-12)
            assert a["eval_mae"] == pytest.approx(b["eval_mae"], rel=1e-12)
    # the client's figure is the in-memory estimator's metric of the fitted model
    assert first.history_[-1]["eval_rmse"] == pytest.approx(
        fastafm.metrics.rmse(yv, first.to_local().predict(Xv), clip=first.label_range_), rel=1e-9)


def test_classifier_eval_set_metrics_and_unknown_labels(client):
    X, y01, _ = fastafm.make_planted(2400, n_fields=4, cardinality=6, classification=True, noise=0.0,
                                     random_state=2)
    labels = np.where(y01 > 0, "yes", "no")
    X, labels, Xv, lv = X[:2000], labels[:2000], X[2000:], labels[2000:]
    model = DaskAFMClassifier(**{**SMALL, "early_stopping_metric": "auc"}, client=client).fit(
        *_arrays(X, labels, 500), eval_set=_arrays(Xv, lv, 200))
    local = model.to_local()
    z = raw_output(local)(Xv)
    assert model.history_[-1]["eval_auc"] == pytest.approx(fastafm.metrics.roc_auc(lv == "yes", z), rel=1e-12)
    p1 = local.predict_proba(Xv)[:, 1]
    assert model.history_[-1]["eval_logloss"] == pytest.approx(fastafm.metrics.log_loss(lv == "yes", p1), rel=1e-9)
    assert model.best_score_ == max(r["eval_auc"] for r in model.history_)
    with pytest.raises(ValueError, match=r"eval_set y contains labels not seen in fit: \['maybe'\]"):
        DaskAFMClassifier(**SMALL, client=client).fit(*_arrays(X, labels, 500),
                                                      eval_set=_arrays(Xv, np.full(400, "maybe"), 200))
    with pytest.raises(ValueError, match="labels not seen in fit"):
        DaskAFMClassifier(**SMALL, client=client).fit(*_arrays(X, labels, 500), eval_set=(Xv, np.full(400, "maybe")))
    from fastafm.models import registry as _registry

    for cls in (fastafm.AFMRegressor, fastafm.AFMClassifier):  # the Dask estimators' metrics are the local ones'
        assert _registry.kind(cls).metrics == cls._metrics
    with pytest.raises(ValueError, match="early_stopping_metric must be one of"):
        DaskAFMClassifier(**{**SMALL, "early_stopping_metric": "rmse"}, client=client).fit(*_arrays(X, labels, 500))


def test_validation_fraction_holds_rows_out_in_memory_and_when_streaming(client, overfitting, tmp_path):
    X, y, _, _ = overfitting
    params = {**STOPPING, "n_epochs": 3, "n_iter_no_change": 5, "sync_rows": 512, "validation_fraction": 0.2}
    in_memory = DaskAFMRegressor(**params, client=client).fit(*_arrays(X, y, 750))
    # 20% of each worker's 1,500 rows held out: 1,200 trained per worker per epoch
    assert in_memory.sync_stats_["rows_per_round"] * in_memory.sync_stats_["rounds"] == 3 * 2400
    assert len(in_memory.validation_score_) == 3 and np.isfinite(in_memory.best_score_)
    files = _caches(tmp_path, X, y, 4, block_rows=64)
    streamed = DaskAFMRegressor(**params, client=client).fit(files)
    every = dist.training_rows(dist.load_cache_shard(files, 0, X.shape[1]), "squared", None).with_holdout((0.2, 7))
    assert len(every.blocks) == 4 * 12  # 750 rows per file in blocks of 64
    # Which rows are held out depends on (seed, file, block) only, not on the worker a file is assigned to.
    alone = dist.training_rows(dist.load_cache_shard(files[2:], 2, X.shape[1]), "squared", None).with_holdout((0.2, 7))
    np.testing.assert_array_equal(alone.held_mask(1), every.held_mask(25))
    assert not np.array_equal(every.held_mask(1), every.held_mask(25))
    n_kept = streamed.sync_stats_["rows_per_round"] * streamed.sync_stats_["rounds"] / 3
    assert 0.75 * 3000 < n_kept < 0.85 * 3000 and n_kept == int(n_kept)
    assert len(streamed.validation_score_) == 3
    # "auto": on from AUTO_EARLY_STOPPING_ROWS training rows or with an eval_set, else off (as in one process)
    auto = DaskAFMRegressor(**{**params, "early_stopping": "auto"}, client=client).fit(*_arrays(X, y, 750))
    assert auto.do_early_stopping_ and hasattr(auto, "best_epoch_")
    few = DaskAFMRegressor(**{**params, "early_stopping": "auto"}, client=client).fit(*_arrays(X[:900], y[:900], 450))
    assert not few.do_early_stopping_ and not hasattr(few, "best_epoch_")
    with pytest.raises(ValueError, match="leaves no rows for validation"):
        DaskAFMRegressor(**{**params, "validation_fraction": 1e-6}, client=client).fit(*_arrays(X, y, 750))


# ---------------------------------------------------------------------------------------------- partial_fit
def test_partial_fit_continues_model_and_optimizer_state(client, tmp_path):
    X, y, _ = fastafm.make_planted(2000, n_fields=4, cardinality=6, random_state=1)
    dX, dy = _arrays(X, y, 500)
    twice = DaskAFMRegressor(**SMALL, client=client).partial_fit(dX, dy)
    assert twice.n_epochs_done_ == 1 and len(twice.history_) == 1
    twice.partial_fit(dX, dy)
    # two epochs of partial_fit are the two epochs of fit: the same shuffling, dropout and Adagrad state
    fit = DaskAFMRegressor(**{**SMALL, "n_epochs": 2}, client=client).fit(dX, dy)
    for name, a in fit.to_local().get_model_params().items():
        np.testing.assert_array_equal(twice.to_local().get_model_params()[name], a, err_msg=name)
    np.testing.assert_array_equal(twice.to_local().optimizer_state()["G"]["V"], fit.to_local().optimizer_state()["G"]["V"])
    assert twice.n_epochs_done_ == 2 and [r["epoch"] for r in twice.history_] == [1, 2]
    # more data of the same width, from cache files too
    twice.partial_fit(_caches(tmp_path, X, y, 2))
    assert twice.n_epochs_done_ == 3
    with pytest.raises(ValueError, match="expecting 24 features"):
        twice.partial_fit(*_arrays(sp.hstack([X, X], format="csr"), y, 500))


def test_classifier_partial_fit_with_classes_on_a_one_class_batch(client):
    X, y01, _ = fastafm.make_planted(2000, n_fields=4, cardinality=6, classification=True, random_state=2)
    ones = y01 > 0
    model = DaskAFMClassifier(**SMALL, client=client)
    model.partial_fit(*_arrays(X[ones], y01[ones], 300), classes=[0, 1])
    assert list(model.classes_) == [0, 1]
    model.partial_fit(*_arrays(X, y01, 500))
    assert model.n_epochs_done_ == 2
    with pytest.raises(ValueError, match=r"y contains labels not in classes: \[7\]"):
        model.partial_fit(*_arrays(X, np.where(ones, 7, 0), 500))
    with pytest.raises(ValueError, match="needs two classes"):
        DaskAFMClassifier(**SMALL, client=client).partial_fit(*_arrays(X[ones], y01[ones], 300))


# ---------------------------------------------------------------------------------------------- touched-row sync
def _wide(n_rows=3000, n_features=20000, seed=0):
    """Rows of 6 ids out of many: a round touches a small share of the features."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_features, (n_rows, 6))
    X = sp.csr_matrix((np.ones(ids.size, np.float32), ids.ravel(), np.arange(0, ids.size + 1, 6)),
                      shape=(n_rows, n_features))
    X.sum_duplicates()
    return X, (ids[:, 0] % 7 - 3 + rng.normal(0, 0.1, n_rows)).astype(np.float32)


@pytest.mark.parametrize("optimizer, learning_rate", [("adagrad", 0.05), ("sgd", 0.002)])
def test_touched_row_sync_gives_the_model_of_full_sync_with_fewer_bytes(client, optimizer, learning_rate):
    X, y = _wide()
    dX, dy = _arrays(X, y, 750)
    params = {**SMALL, "optimizer": optimizer, "learning_rate": learning_rate}
    touched = DaskAFMRegressor(**params, client=client).fit(dX, dy)
    full = DaskAFMRegressor(**params, client=client)
    full._full_sync = True  # the whole model to every worker every round, as before the rows were tracked
    full.fit(dX, dy)
    for name, a in full.to_local().get_model_params().items():
        np.testing.assert_array_equal(touched.to_local().get_model_params()[name], a, err_msg=name)
    for slot, arrays in full.to_local().optimizer_state().items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(touched.to_local().optimizer_state()[slot][name], a, err_msg=slot + name)
    t, f = touched.sync_stats_, full.sync_stats_
    assert f["bytes_down_per_round"] > f["state_bytes"]  # ids + every row, to the one other worker
    # 500 rows x 6 ids per worker per round: at most 6,000 of the 20,000 rows change in a round
    assert t["bytes_down_per_round"] < 0.4 * f["bytes_down_per_round"]
    assert t["bytes_down_full_per_round"] == t["state_bytes"] == f["bytes_down_full_per_round"]
    assert t["bytes_up_per_round"] == f["bytes_up_per_round"]


def test_a_replica_brought_back_by_the_delta_equals_the_merged_state():
    rng = np.random.default_rng(3)
    n, k = 10, 2
    params = {"w0": rng.random(1, np.float32), "w": rng.random(n, np.float32), "V": rng.random((n, k), np.float32),
              "W": rng.random((1, k), np.float32), "b": rng.random(1, np.float32), "h": rng.random(1, np.float32),
              "p": rng.random(k, np.float32)}
    state = mg.State(params, {"G": {name: a + 1 for name, a in params.items()}})
    key = "test-replica"
    dist.new_replica(state, key)
    try:
        mine = dist.replica(key)
        ids = np.array([1, 4], np.int32)
        for d in [mine.params] + list(mine.slots.values()):  # "training": rows 1 and 4 and the dense part
            d["V"][ids] += 1.0
            d["w"][ids] -= 1.0
            d["W"] += 2.0
        update = mg.Update(50, 1.0, ids, np.ones(2, np.float32),
                             {nm: a[ids] if nm in mg.SPARSE else a.copy() for nm, a in mine.params.items()},
                             {"G": {nm: a[ids] if nm in mg.SPARSE else a.copy() for nm, a in mine.slots["G"].items()}},
                             0.0)
        other = mg.Update(50, 1.0, np.array([4, 7], np.int32), np.ones(2, np.float32),
                            {nm: (a[[4, 7]] + 3 if nm in mg.SPARSE else a + 3) for nm, a in params.items()},
                            {"G": {nm: (a[[4, 7]] if nm in mg.SPARSE else a) for nm, a in state.slots["G"].items()}},
                            0.0)
        merged = mg.merge(state, [update, other], True)
        assert merged.delta.ids.tolist() == [1, 4, 7] and merged.version == 1
        mine.apply(merged.delta)
        for a, b in zip(mg.groups(mine), mg.groups(merged)):
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        mine.apply(merged.delta)  # applied once only
        assert mine.version == 1
        later = mg.merge(mg.merge(merged, [other], False), [other], False)
        with pytest.raises(RuntimeError, match="replica at round 1 got the delta of round 3"):
            mine.apply(later.delta)
    finally:
        dist.drop_replica(key)
    with pytest.raises(RuntimeError, match="replica test-replica is gone"):
        dist.replica(key)


# ---------------------------------------------------------------------------------------------- memory, bad input
def test_streaming_under_a_worker_memory_limit_smaller_than_its_shard(tmp_path):
    """A fit from cache files larger than each worker's memory limit runs, and Dask's memory management (its
    managed-memory spill target) changes nothing: the model equals the one without a limit. In-process workers
    share the test's RSS, so the RSS-based pause and terminate thresholds are off here; bench/dask_memory.py and
    bench/dask_scaling.py --limit-rows measure worker processes' RSS under a limit."""
    X, y = _wide(n_rows=40000, n_features=2000, seed=1)
    files = _caches(tmp_path, X, y, 4, block_rows=2000)
    shard_bytes = sum(p.stat().st_size for p in tmp_path.glob("part[01].afmcache"))
    limit = 1 << 20  # 1 MiB per worker, under each worker's ~1.2 MiB of cache files
    assert shard_bytes > limit
    config = {"distributed.worker.memory.target": 0.6, "distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False}
    params = {**SMALL, "n_epochs": 2, "sync_rows": 4000, "embedding_dim": 4, "attention_dim": 4}
    with dask.config.set(config), LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                               dashboard_address=":0", memory_limit=limit) as cluster, \
            Client(cluster) as c:
        assert set(c.run(lambda dask_worker: dask_worker.memory_manager.memory_limit).values()) == {limit}
        limited = DaskAFMRegressor(**params, client=c).fit(files)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        free = DaskAFMRegressor(**params, client=c).fit(files)
    np.testing.assert_array_equal(limited.to_local().V_, free.to_local().V_)  # same model, limit or not


def test_a_missing_cache_file_on_a_worker_is_a_clear_error_in_the_client(client, tmp_path):
    X, y, _ = fastafm.make_planted(2000, n_fields=4, cardinality=6, random_state=1)
    files = _caches(tmp_path, X, y, 2, block_rows=256)
    (tmp_path / "part1.afmcache").unlink()  # opened by the client, gone before the workers read it
    with pytest.raises(FileNotFoundError, match=r"partition 1 \(.*part1\.afmcache\) on this worker: the cache file "
                                                 "is missing"):
        DaskAFMRegressor(**SMALL, client=client).fit(files)
    files = _caches(tmp_path, X, y, 2, name="ok")
    evals = _caches(tmp_path, X[:400], y[:400], 2, name="eval", block_rows=100)  # opened here
    (tmp_path / "eval0.afmcache").unlink()
    with pytest.raises(FileNotFoundError, match=r"eval_set partition 0 \(.*eval0\.afmcache\) on this worker: the "
                                                 "cache file is missing"):
        DaskAFMRegressor(**SMALL, client=client).fit(files, eval_set=(evals, None))
    with pytest.raises(ValueError, match="eval_set must be a tuple"):
        DaskAFMRegressor(**SMALL, client=client).fit(files, eval_set=(X,))
    with pytest.raises(ValueError, match="eval_set X has 48 features"):
        DaskAFMRegressor(**SMALL, client=client).fit(files, eval_set=_arrays(sp.hstack([X, X], format="csr"), y, 500))


def test_a_failed_dask_refit_leaves_the_fitted_model_as_it_was(client, overfitting):
    """Atomic refits on Dask too (fastafm.models.atomic): a refit whose eval_set or hyperparameters are refused
    leaves every fitted attribute of the previous fit in place, the same objects. (A diverging Dask fit is not
    tested here: it corrupts the heap on main as well — docs/reliability.md, known limits.)"""
    X, y, Xv, yv = overfitting
    model = DaskAFMRegressor(**SMALL, client=client).fit(*_arrays(X, y, 750), eval_set=(Xv, yv))
    before = dict(model.__dict__)
    params = model.to_local().get_model_params()
    with pytest.raises(ValueError):
        model.fit(*_arrays(X, y, 750), eval_set=(Xv[:, :3], yv))
    with pytest.raises(ValueError, match="batch_size"):
        model.set_params(batch_size=0).fit(*_arrays(X, y, 750))
    model.set_params(batch_size=before["batch_size"])
    assert model.__dict__.keys() == before.keys()
    assert all(model.__dict__[key] is value for key, value in before.items())
    for name, value in model.to_local().get_model_params().items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)
