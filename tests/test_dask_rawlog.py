"""Raw logs on a dask cluster (fastafm.dask.convert, docs/data.md "Dask"): the workers count their own files or
partitions, the merged statistics give the encoding one process learns from the same files, every worker's
cache holds exactly the rows fastafm.convert writes, and a Dask estimator trained from the caches keeps the
encoding and predicts raw rows as its local model does."""
from __future__ import annotations

import os

import numpy as np
import pytest

import fastafm
from fastafm.dask import DaskAFMClassifier, DaskFwFMClassifier
from rawlog_data import click_frame, write_text

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

SMALL = dict(embedding_dim=8, n_epochs=3, random_state=0, sync_rows=300, n_threads=1, early_stopping=False)


def _files(tmp_path, n_files=4, rows=700):
    frames = [click_frame(rows, seed=10 + i) for i in range(n_files)]
    frames[min(2, n_files - 1)].loc[5, "count"] = 2.5  # "auto": one file's count is no count: scaled after all
    return frames, [write_text(df, tmp_path / f"day-{i}.csv") for i, df in enumerate(frames)]


def _rows(caches):
    Xs, ys = zip(*(c.read_rows(0, c.n_rows) for c in caches))
    import scipy.sparse as sp

    return sp.vstack(Xs, format="csr"), np.concatenate(ys)


@pytest.mark.parametrize("kw", [dict(), dict(min_frequency=20, numeric_bins={"price": 4}), dict(hash_buckets=64)])
def test_the_workers_caches_hold_the_one_process_rows(client, tmp_path, kw):
    _, paths = _files(tmp_path)
    opts = dict(label="click", numeric=["count", "price"], ignore=["id"], **kw)
    caches = fastafm.dask.convert(paths, tmp_path / "parts", client=client, **opts)
    assert len(caches) == 2  # one per worker, each of its share of the files
    one = fastafm.convert(paths, tmp_path / "one.cache", **opts)
    assert caches[0].read_encoding() == one.read_encoding() == caches[1].read_encoding()
    X, y = _rows(caches)
    X_one, y_one = one.read_rows(0, one.n_rows)
    np.testing.assert_array_equal(y, y_one)
    np.testing.assert_array_equal(X.indptr, X_one.indptr)
    np.testing.assert_array_equal(X.indices, X_one.indices)
    np.testing.assert_array_equal(X.data, X_one.data)
    if not kw:
        kinds = [f["kind"] for f in one.read_encoding().fields]
        assert kinds == ["category", "category", "numeric", "numeric"]  # count is scaled: one file's 2.5


def test_a_dask_dataframe_converts_like_its_csv(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    frames, paths = _files(tmp_path, n_files=3)
    df = pd.concat(frames, ignore_index=True)
    ddf = dd.from_pandas(df, npartitions=3)
    opts = dict(label="click", numeric=["count", "price"], ignore=["id"])
    caches = fastafm.dask.convert(ddf, tmp_path / "parts", client=client, **opts)
    one = fastafm.convert(df, tmp_path / "one.cache", **opts)
    assert caches[0].read_encoding().fields == one.read_encoding().fields
    X, y = _rows(caches)
    X_one, y_one = one.read_rows(0, one.n_rows)
    np.testing.assert_array_equal(y, y_one)
    np.testing.assert_array_equal(X.indices, X_one.indices)
    np.testing.assert_allclose(X.data, X_one.data, rtol=1e-6)


@pytest.mark.parametrize("cls, extra", [(DaskAFMClassifier, {}), (DaskAFMClassifier, {"field_aware": "auto"}),
                                        (DaskFwFMClassifier, {})])
def test_a_dask_model_from_raw_files_keeps_the_encoding_and_predicts_raw_rows(client, tmp_path, cls, extra):
    frames, paths = _files(tmp_path)
    opts = dict(label="click", numeric=["count", "price"], ignore=["id"])
    caches = fastafm.dask.convert(paths[:3], tmp_path / "parts", client=client, **opts)
    model = cls(client=client, **SMALL, **extra).fit(caches)
    local = model.to_local()
    assert local.encoding_ == caches[0].read_encoding()
    if cls is DaskFwFMClassifier or extra:  # the caches' fields: one per column
        np.testing.assert_array_equal(local.training_state_.fields, caches[0].read_fields())
    if cls is DaskAFMClassifier:  # "auto" takes the caches' fields; the Dask default (None) does not
        assert local.field_aware_ == ("both" if extra else None)
    # raw rows of an unseen day (unseen categories among them), encoded as the training rows were
    test = frames[3].copy()
    test.loc[:20, "site"] = "never-seen"
    held = write_text(test.drop(columns=["click"]), tmp_path / "test.csv")
    proba = model.predict_proba(held)
    np.testing.assert_array_equal(proba, local.predict_proba(held))
    X_test, _ = fastafm.rawlog.encode_rows(held, local.encoding_)
    np.testing.assert_array_equal(proba, local.predict_proba(X_test))
    auc = fastafm.metrics.roc_auc(test["click"].to_numpy(), proba[:, 1])
    assert auc > 0.6, auc  # it learned the planted site/device/count effects


def test_caches_of_different_conversions_are_refused(client, tmp_path):
    _, paths = _files(tmp_path, n_files=2)
    a = fastafm.convert(paths[0], tmp_path / "a.cache", label="click", ignore=["id"])
    b = fastafm.convert(paths[1], tmp_path / "b.cache", label="click", ignore=["id"])
    with pytest.raises(ValueError, match="encoding differs"):
        DaskAFMClassifier(client=client, **SMALL).fit([a, b])


def test_inputs_with_other_columns_name_the_file(client, tmp_path):
    _, paths = _files(tmp_path, n_files=2)
    other = tmp_path / "other.csv"
    other.write_text("click,x\n1,a\n0,b\n")
    with pytest.raises(ValueError, match="other.csv"):
        fastafm.dask.convert([paths[0], str(other)], tmp_path / "parts", client=client, label="click")


def test_raw_files_and_raw_columns_given_to_fit_name_the_conversion(client, tmp_path):
    _, paths = _files(tmp_path, n_files=1, rows=50)
    with pytest.raises(ValueError, match=r"a raw log file, not a cache: .*fastafm\.dask\.RawLog"):
        DaskAFMClassifier(client=client, **SMALL).fit([str(paths[0])])
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(click_frame(50), npartitions=2)
    with pytest.raises(TypeError, match=r"raw log's columns .*fastafm\.dask\.RawLog"):
        DaskAFMClassifier(client=client, **SMALL).fit(ddf.drop(columns=["click"]), ddf["click"])


def test_fit_takes_a_raw_log_and_trains_as_on_its_caches(client, tmp_path):
    """fit(RawLog(files, folder, schema)) converts on the workers, then trains on the caches: the same model as
    fit(fastafm.dask.convert(...)) of the same files."""
    _, paths = _files(tmp_path)
    opts = dict(label="click", numeric=["count", "price"], ignore=["id"])
    caches = fastafm.dask.convert(paths[:3], tmp_path / "parts", client=client, **opts)
    two_steps = DaskAFMClassifier(client=client, **SMALL).fit(caches)
    log = fastafm.dask.RawLog(paths[:3], tmp_path / "parts-raw", **opts)
    one_step = DaskAFMClassifier(client=client, **SMALL).fit(log)
    assert one_step.to_local().encoding_ == two_steps.to_local().encoding_
    a, b = one_step.to_local().training_state_.params, two_steps.to_local().training_state_.params
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    written = sorted(p.name for p in (tmp_path / "parts-raw").iterdir())
    assert written == sorted(os.path.basename(c.path) for c in caches)
    with pytest.raises(ValueError, match="y must be None with a RawLog"):
        DaskAFMClassifier(client=client, **SMALL).fit(log, [0, 1])
    with pytest.raises(ValueError, match="needs label="):
        fastafm.dask.RawLog(paths[:3], tmp_path / "x")
    with pytest.raises(TypeError, match="no client"):
        fastafm.dask.RawLog(paths[:3], tmp_path / "x", label="click", client=client)
