"""Raw logs to caches (issue 23): every format and compression, both header modes, the streamed encoding equal to
FieldEncoder's on the same data, stable hashing, and the encoding carried into the model's predictions."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastafm
from fastafm.rawlog import RawSchema, fnv1a64
from fastafm.rawlog.hashing import fnv1a64_bytes
from rawlog_data import click_frame, write_text

pd = pytest.importorskip("pandas")  # a test extra; required like pyarrow below
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

OPTS = dict(label="click", numeric=["count", "price"], ignore=["id"])


def _frame_encoder(df, **kw):
    """FieldEncoder fitted on the DataFrame route: categoricals as strings, label and id dropped."""
    enc = fastafm.FieldEncoder(numeric=["count", "price"], **kw)
    X = enc.fit_transform(df.drop(columns=["id", "click"]))
    return enc, X


@pytest.mark.parametrize("name, sep, header", [
    ("log.csv", ",", True), ("log.tsv", "\t", True), ("log.csv.gz", ",", True), ("log.tsv.bz2", "\t", True),
    ("log.csv.xz", ",", True), ("log.txt", "\t", False), ("log.txt.gz", "\t", False)])
def test_text_formats_give_the_field_encoders_rows(tmp_path, name, sep, header):
    df = click_frame()
    path = write_text(df, tmp_path / name, sep=sep, header=header)
    opts = OPTS if header else dict(label=1, numeric=[4, 5], ignore=[0], header=False)
    cache = fastafm.convert(path, tmp_path / "c.cache", **opts)
    X, y = cache.read_rows(0, cache.n_rows)
    enc, X_ref = _frame_encoder(df)
    np.testing.assert_array_equal(y, df["click"].to_numpy(np.float32))
    assert X.shape == X_ref.shape
    np.testing.assert_array_equal(X.indices, X_ref.indices)
    np.testing.assert_allclose(X.data, X_ref.data, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cache.read_fields(), enc.fields_)


@pytest.mark.parametrize("late_fraction", [False, True])
def test_the_streamed_encoding_is_the_field_encoders(tmp_path, late_fraction):
    df = click_frame(2000, seed=3)
    if late_fraction:  # count looks like a count for most batches, then is not: "auto" must scale it after all
        df.loc[1990, "count"] = 2.5
    path = write_text(df, tmp_path / "log.csv")
    for kw in (dict(), dict(numeric_bins=None), dict(min_frequency=30), dict(numeric_bins={"count": 4}),
               dict(numeric_scaling="minmax"), dict(numeric_missing="indicator"), dict(numeric_bins=5)):
        # small blocks: many batches to merge
        cache = fastafm.rawlog.pipeline.convert_raw(path, tmp_path / "c.cache", RawSchema(**OPTS, **kw),
                                                    read_block_bytes=4096)
        got = cache.read_encoding().to_field_encoder()
        ref, _ = _frame_encoder(df, **kw)
        for name in ("field_names_", "feature_names_", "fields_", "field_offsets_", "categorical_"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=f"{kw} {name}")
        for a, b in zip(got.categories_, ref.categories_):
            assert (a is None and b is None) or list(a) == list(b), kw
        for a, b in zip(got.bin_edges_, ref.bin_edges_):
            assert (a is None and b is None) or np.array_equal(a, b), kw  # exact quantiles from the counts
        np.testing.assert_allclose(got.numeric_center_, ref.numeric_center_, rtol=1e-12)
        np.testing.assert_allclose(got.numeric_scale_, ref.numeric_scale_, rtol=1e-12)
        X_ref = ref.transform(df.drop(columns=["id", "click"]))
        X = cache.read_rows(0, cache.n_rows)[0]
        np.testing.assert_array_equal(X.indices, X_ref.indices)
        np.testing.assert_allclose(X.data, X_ref.data, rtol=1e-6, atol=1e-6)


def test_parquet_globs_lists_and_frames_agree_with_csv(tmp_path):
    df = click_frame()
    first, second = df.iloc[:250], df.iloc[250:]
    write_text(first, tmp_path / "part-0.csv")
    write_text(second, tmp_path / "part-1.csv")
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table.slice(0, 250), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(250), tmp_path / "part-1.parquet")
    rows = []
    for source in (str(tmp_path / "part-*.csv"), [tmp_path / "part-0.parquet", tmp_path / "part-1.parquet"],
                   df, table):
        cache = fastafm.convert(source, tmp_path / "c.cache", **OPTS)
        rows.append((cache.read_rows(0, cache.n_rows), cache.read_encoding()))
    (X0, y0), e0 = rows[0]
    for (X, y), e in rows[1:]:
        assert e.fields == e0.fields
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(X.indices, X0.indices)
        np.testing.assert_allclose(X.data, X0.data, rtol=1e-6)


def test_fnv1a64_matches_the_definition_and_a_pinned_vector():
    values = ["", "a", "foobar", "68fd1e64", "ünïcode", None, "x" * 37]
    got = fnv1a64(pa.array(values, type=pa.string()))
    want = [0 if v is None else fnv1a64_bytes(v.encode()) for v in values]
    assert got.tolist() == want
    # Published FNV-1a 64 test vectors: "" -> offset basis, "a", "foobar".
    assert want[:3] == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]
    sliced = pa.array(values, type=pa.string()).slice(2, 3)
    assert fnv1a64(sliced).tolist() == want[2:5]
    assert fnv1a64(pa.array(values, type=pa.large_string())).tolist() == want


def test_hash_buckets_are_stable_across_processes(tmp_path):
    df = click_frame(300)
    path = write_text(df, tmp_path / "log.csv")
    cache = fastafm.convert(path, tmp_path / "c.cache", hash_buckets=7, **OPTS)
    X = cache.read_rows(0, cache.n_rows)[0]
    site = df["site"].to_numpy(dtype=object)
    expected = np.array([7 if s is None else fnv1a64_bytes(s.encode()) % 7 for s in site])
    np.testing.assert_array_equal(X.indices[0::4], expected)  # field 0: ids 0..6, 7 the missing id
    code = ("import fastafm, sys; c = fastafm.convert(sys.argv[1], sys.argv[2], hash_buckets=7, label='click', "
            "numeric=['count', 'price'], ignore=['id']); print(c.read_rows(0, c.n_rows)[0].indices.tolist())")
    out = subprocess.run([sys.executable, "-c", code, path, str(tmp_path / "d.cache")], check=True,
                         capture_output=True, text=True, env={"PYTHONHASHSEED": "123", **_env()}).stdout
    assert eval(out) == X.indices.tolist()


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


def test_the_model_carries_the_encoding_to_raw_predictions(tmp_path):
    df = click_frame(800)
    path = write_text(df, tmp_path / "train.csv")
    cache = fastafm.convert(path, tmp_path / "c.cache", **OPTS)
    model = fastafm.AFMClassifier(n_epochs=3, random_state=0).fit(cache)
    X, _ = cache.read_rows(0, cache.n_rows)
    want = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(path), want)
    np.testing.assert_array_equal(model.predict_proba(df), want)
    model.save(tmp_path / "m.afm")
    loaded = fastafm.load(tmp_path / "m.afm")
    assert loaded.encoding_ == model.encoding_
    np.testing.assert_array_equal(loaded.predict_proba(df.drop(columns=["click"])), want)
    # unseen categories and missing values go to the field's unknown id
    new = df.iloc[:3].copy()
    new["site"] = ["never-seen", None, "shop"]
    new["price"] = [np.nan, 1.0, 2.0]
    Xn = loaded.encoding_.to_field_encoder().transform(new.drop(columns=["id", "click"]))
    unknown = int(loaded.encoding_.field_offsets[1]) - 1
    assert Xn.indices[0] == unknown and Xn.indices[4] == unknown
    np.testing.assert_array_equal(loaded.predict_proba(new), loaded.predict_proba(Xn))


def test_predict_reads_text_without_the_label_column(tmp_path):
    df = click_frame(300)
    write_text(df, tmp_path / "train.txt", sep="\t", header=False)
    write_text(df.drop(columns=["click"]), tmp_path / "test.txt", sep="\t", header=False)
    cache = fastafm.convert(tmp_path / "train.txt", tmp_path / "c.cache", label=1, numeric=[4, 5], ignore=[0],
                            header=False)
    model = fastafm.FMClassifier(n_epochs=2, random_state=0).fit(cache)
    np.testing.assert_array_equal(model.predict_proba(str(tmp_path / "test.txt")),
                                  model.predict_proba(str(tmp_path / "train.txt")))


def test_fwfm_takes_the_fields_of_the_cache(tmp_path):
    df = click_frame(300)
    cache = fastafm.convert(df, tmp_path / "c.cache", **OPTS)
    model = fastafm.FwFMClassifier(n_epochs=2, random_state=0).fit(cache)
    np.testing.assert_array_equal(model.training_state_.fields, cache.read_fields())
    assert model.field_weights_.shape == (4, 4)
    model.save(tmp_path / "m.fwfm")
    np.testing.assert_array_equal(fastafm.load(tmp_path / "m.fwfm").predict_proba(df), model.predict_proba(df))


def test_a_cache_of_version_3_is_checked(tmp_path):
    cache = fastafm.convert(click_frame(100), tmp_path / "c.cache", **OPTS)
    assert cache.version == 3 and not cache.has_weights
    cache.verify()
    data = bytearray((tmp_path / "c.cache").read_bytes())
    data[-5] ^= 0xFF  # inside the encoding section
    (tmp_path / "d.cache").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch in section encoding"):
        fastafm.CacheFile(tmp_path / "d.cache").read_encoding()
    weighted = fastafm.convert(click_frame(100), tmp_path / "w.cache", weights=np.full(100, 2.0), **OPTS)
    assert weighted.has_weights and weighted.read_weights(0, 3).tolist() == [2.0, 2.0, 2.0]
    weighted.verify()


def test_the_vocabulary_lookup_checks_strings_and_survives_collisions(monkeypatch):
    from fastafm.rawlog import encoding as encoding_module

    rng = np.random.default_rng(0)
    cats = sorted({f"v{i}" for i in rng.integers(0, 5000, 3000)})
    queries = [None if r < 0.05 else f"v{i}" for r, i in zip(rng.random(4000), rng.integers(0, 7000, 4000))]
    want = np.array([cats.index(q) if q in cats else -7 for q in queries])
    column = pa.array(queries, type=pa.string())
    np.testing.assert_array_equal(encoding_module._Vocabulary(cats).codes(column, -7), want)
    # a hash under which "a" and "c" collide but the categories do not: "c" must not be taken for "a"
    monkeypatch.setattr(encoding_module, "fnv1a64", lambda arr: np.asarray(
        [len(v or "") for v in arr.to_pylist()], dtype=np.uint64))
    vocab = encoding_module._Vocabulary(["a", "bb"])
    assert not vocab.collide
    assert vocab.codes(pa.array(["c", "a", "bb", None, "dd"]), 9).tolist() == [9, 0, 1, 9, 9]
    clashing = encoding_module._Vocabulary(["a", "b"])  # equal hashes: index_in instead
    assert clashing.collide
    assert clashing.codes(pa.array(["b", "c", "a"]), 9).tolist() == [1, 9, 0]


def test_lists_of_pieces_and_libfm_files_keep_the_libfm_route(tmp_path):
    import scipy.sparse as sp

    X = sp.random(50, 8, density=0.3, format="csr", dtype=np.float32, random_state=0)
    y = np.arange(50, dtype=np.float32) % 2
    cache = fastafm.convert([(X[:20], y[:20]), (X[20:], y[20:])], tmp_path / "a.cache")
    assert cache.version == 1 and not cache.has_encoding and cache.read_encoding() is None
    np.testing.assert_array_equal(cache.read_rows(0, 50)[0].toarray(), X.toarray())
    (tmp_path / "d.libfm").write_text("1 0:1 3:2\n0 2:1\n")
    cache = fastafm.convert(tmp_path / "d.libfm", tmp_path / "b.cache")
    assert cache.version == 1 and cache.n_rows == 2
