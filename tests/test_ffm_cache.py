"""Caches that carry fields without an encoding (format version 4): convert() of libFFM text (streamed in chunks,
auto-detected or format=), convert(fields=) of in-memory data, fit from such caches (FwFM, field-aware AFM), the
command line's convert / train / predict on them, and bad input."""
import os
import struct

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import CacheFile
from fastafm.cli.commands import main
from fastafm.data.cache import FIXED, FIELDS_VERSION, VERSION, WEIGHTS_VERSION
from fastafm.data.convert import convert
from support import write_libffm

KW = dict(embedding_dim=8, n_epochs=2, random_state=0, n_threads=1, early_stopping=False)
AFM_KW = dict(KW, attention_dim=8)


def planted(n=400, seed=0):
    return fastafm.make_planted(n, n_fields=5, cardinality=6, classification=True, random_state=seed)


def messy_libffm(path, X, y, fields):
    """X as libFFM text with comments, blank lines, CRLF and an id gap (feature ids are sparse in the file)."""
    lines = ["# a libFFM file", ""]
    for i in range(X.shape[0]):
        ids = X.indices[X.indptr[i]:X.indptr[i + 1]]
        vals = X.data[X.indptr[i]:X.indptr[i + 1]]
        lines.append(f"{int(y[i])} " + " ".join(f"{fields[j]}:{j}:{v:g}" for j, v in zip(ids, vals))
                     + ("  # row" if i % 7 == 0 else ""))
        if i % 11 == 0:
            lines.append("")
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def open_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def same_rows(A, B):
    return (A.shape == B.shape and np.array_equal(A.indptr, B.indptr) and np.array_equal(A.indices, B.indices)
            and np.array_equal(A.data, B.data))


def params_equal(a, b):
    pa, pb = a.get_model_params(), b.get_model_params()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.fixture()
def ffm_file(tmp_path):
    X, y, fields = planted()
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.uniform(0.5, 2, X.nnz).astype(np.float32), X.indices, X.indptr), shape=X.shape)
    # a shuffled field assignment: fields need not be blocks of ids in a libFFM file
    fields = rng.permutation(fields).astype(np.int32)
    return messy_libffm(tmp_path / "d.ffm", X, y, fields)


# ---------------------------------------------------------------------------------------------- libFFM text
@pytest.mark.parametrize("chunk_bytes", [7, 300, 1 << 20])
@pytest.mark.parametrize("fmt", ["auto", "libffm"])
def test_libffm_file_converts_to_load_libffms_arrays(ffm_file, tmp_path, chunk_bytes, fmt):
    X, y, fields = fastafm.load_libffm(ffm_file)
    cache = convert(ffm_file, tmp_path / "c.cache", chunk_bytes=chunk_bytes, format=fmt)
    assert cache.version == FIELDS_VERSION and cache.has_fields and not cache.has_encoding
    assert cache.read_encoding() is None and not cache.has_weights
    Xc, yc = cache.read_rows(0, cache.n_rows)
    assert same_rows(Xc, X) and np.array_equal(yc, y)
    got = cache.read_fields()
    assert got.dtype == np.int32 and np.array_equal(got, fields)
    cache.verify()


def test_id_gaps_and_n_features_follow_load_libffms_rule(tmp_path):
    path = tmp_path / "g.ffm"
    path.write_text("1 2:4:1 0:1:1\n0 1:9:1 2:4:0.5\n1 3:12:1\n")
    for n_features in (None, 20):
        X, y, fields = fastafm.load_libffm(path, n_features=n_features)
        cache = convert(path, tmp_path / "g.cache", n_features=n_features, chunk_bytes=5)
        assert np.array_equal(cache.read_fields(), fields) and cache.n_features == X.shape[1]
    assert fields.tolist() == [0, 0, 0, 0, 2, 2, 2, 2, 2, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3]


def fifo_writer(fifo, data: bytes) -> int:
    """A FIFO at `fifo` and a forked writer of `data` into it (its pid: the caller waits for it)."""
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # the writer end
        try:
            with open(fifo, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    return pid


def test_a_libffm_pipe_converts_too(ffm_file, tmp_path):
    fifo = tmp_path / "p.fifo"
    pid = fifo_writer(fifo, ffm_file.read_bytes())
    try:
        cache = convert(fifo, tmp_path / "p.cache", chunk_bytes=64)
    finally:
        os.waitpid(pid, 0)
    X, y, fields = fastafm.load_libffm(ffm_file)
    assert np.array_equal(cache.read_fields(), fields) and same_rows(cache.read_rows(0, cache.n_rows)[0], X)


def test_a_libffm_file_with_sample_weights(ffm_file, tmp_path):
    X, y, fields = fastafm.load_libffm(ffm_file)
    w = np.random.default_rng(2).uniform(0, 2, X.shape[0])
    (tmp_path / "w.txt").write_text("".join(f"{float(v)!r}\n" for v in w))
    for weights in (w, tmp_path / "w.txt"):
        cache = convert(ffm_file, tmp_path / "c.cache", weights=weights, chunk_bytes=100)
        assert cache.version == FIELDS_VERSION and cache.has_weights and np.array_equal(cache.read_fields(), fields)
        assert np.array_equal(cache.read_weights(0, cache.n_rows), w.astype(np.float32))
    streamed = fastafm.FwFMClassifier(**KW).fit(cache)
    assert params_equal(streamed, fastafm.FwFMClassifier(fields=fields, **KW).fit(X, y, sample_weight=w))


def test_libfm_text_still_writes_version_1_without_fields(tmp_path):
    path = tmp_path / "a.libfm"
    path.write_text("1 0:1 3:2\n0 1:1\n")
    cache = convert(path, tmp_path / "a.cache")
    assert cache.version == VERSION and not cache.has_fields and cache.read_fields() is None


@pytest.mark.parametrize("chunk_bytes", [4, 1 << 20])
def test_a_feature_in_two_fields_names_both_lines(tmp_path, chunk_bytes):
    path = tmp_path / "two.ffm"
    path.write_text("1 0:1:1 1:2:1\n# comment\n\n0 0:1:1 1:3:1\n1 2:2:1\n")
    with pytest.raises(ValueError) as loaded:
        fastafm.load_libffm(path)
    with pytest.raises(ValueError) as streamed:
        convert(path, tmp_path / "two.cache", chunk_bytes=chunk_bytes)
    assert str(streamed.value) == str(loaded.value)
    assert "two.ffm:5: feature 2 is in field 2, but" in str(streamed.value) and "two.ffm:1 put it in field 1" in str(
        streamed.value)
    assert not os.path.exists(tmp_path / "two.cache") and os.listdir(tmp_path) == ["two.ffm"]


@pytest.mark.parametrize("text", [
    "1 0:1:1 2:1:1\n",                                  # one line, the same feature twice
    "1 0:3:1\n0 1:4:1 0:3:1 1:4:1 2:3:1 0:1:1\n",        # repeats within a chunk, the clash later in the line
    "0 5:9:1\n" * 3 + "1 5:9:1 0:8:1\n1 4:8:1\n",       # a clash after the id's chunk
])
@pytest.mark.parametrize("chunk_bytes", [1, 9, 1 << 20])
def test_two_fields_anywhere_give_load_libffms_message(tmp_path, text, chunk_bytes):
    path = tmp_path / "c.ffm"
    path.write_text(text)
    with pytest.raises(ValueError) as loaded:
        fastafm.load_libffm(path)
    with pytest.raises(ValueError) as streamed:
        convert(path, tmp_path / "c.cache", chunk_bytes=chunk_bytes)
    assert str(streamed.value) == str(loaded.value) and "a feature belongs to one field" in str(loaded.value)


def test_a_field_id_out_of_range_is_an_error(tmp_path):
    path = tmp_path / "big.ffm"
    path.write_text("1 0:0:1\n0 65536:1:1\n")
    with pytest.raises(ValueError, match=r"big.ffm:2: field id '65536' is beyond the limit \(max 65535\)"):
        convert(path, tmp_path / "big.cache")
    path.write_text("1 0:0:1\n0 65535:1:1\n")
    assert convert(path, tmp_path / "big.cache").read_fields().tolist() == [0, 65535]


@pytest.mark.parametrize("text, line, read_as", [
    ("1 0:1:1 1:2:1\n0 0:1 2:1\n", 2, "libFFM"),       # libFFM first, then a libFM token
    ("1 0:1 2:1\n\n0 0:1:1 1:2:1\n", 3, "libFM"),      # libFM first, then a libFFM token
    ("1 0:1:1 1:1\n", 1, "libFFM"),                    # both in one line
])
def test_mixed_libfm_and_libffm_tokens_are_an_error(tmp_path, text, line, read_as):
    path = tmp_path / "mixed.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        convert(path, tmp_path / "m.cache", chunk_bytes=3)
    message = str(err.value)
    assert f"mixed.txt:{line}:" in message and f"read as {read_as} text" in message
    assert "a file holds one format" in message and not os.path.exists(tmp_path / "m.cache")


def test_explicit_format_and_its_errors(ffm_file, tmp_path):
    with pytest.raises(ValueError, match=r"read as libFM text, as format='libfm' asks"):
        convert(ffm_file, tmp_path / "c.cache", format="libfm")
    lib = tmp_path / "a.libfm"
    lib.write_text("1 0:1\n")
    with pytest.raises(ValueError, match=r"a.libfm:1: token '0:1' is not of the form field:feature:value"):
        convert(lib, tmp_path / "c.cache", format="libffm")
    with pytest.raises(ValueError, match="format must be one of"):
        convert(lib, tmp_path / "c.cache", format="ffm")
    X, y, _ = planted(20)
    with pytest.raises(ValueError, match="applies to a text source"):
        convert((X, y), tmp_path / "c.cache", format="libffm")
    for fmt in ("auto", "libffm"):
        with pytest.raises(ValueError, match="carries the field of every feature"):
            convert(ffm_file, tmp_path / "c.cache", fields=np.zeros(30, np.int32), format=fmt)


# ---------------------------------------------------------------------------------------------- fields=
def test_in_memory_convert_with_fields(tmp_path):
    X, y, fields = planted(300)
    cache = convert((X, y), tmp_path / "m.cache", fields=fields, chunk_rows=64)
    assert cache.version == FIELDS_VERSION and np.array_equal(cache.read_fields(), fields)
    pieces = ((X[i:i + 100], y[i:i + 100], np.ones(min(100, 300 - i))) for i in range(0, 300, 100))
    weighted = convert(pieces, tmp_path / "w.cache", fields=list(fields))
    assert weighted.has_weights and np.array_equal(weighted.read_fields(), fields)
    assert np.array_equal(weighted.read_weights(0, 300), np.ones(300, np.float32))
    wider = convert((X, y), tmp_path / "n.cache", n_features=X.shape[1] + 2, fields=np.append(fields, [0, 7]))
    assert wider.read_fields()[-1] == 7
    libfm = tmp_path / "t.libfm"
    libfm.write_text("1 0:1 2:1\n0 1:1\n")
    assert convert(libfm, tmp_path / "t.cache", fields=[4, 0, 4]).read_fields().tolist() == [4, 0, 4]


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros(29, np.int32), ValueError, "fields has 29 entries but the cache has 30 features"),
    (np.zeros(31, np.int32), ValueError, "fields has 31 entries but the cache has 30 features"),
    (np.full(30, 0.5), TypeError, "integer field numbers"),
    (np.zeros(30, bool), TypeError, "integer field numbers"),
    (np.array(["a"] * 30), TypeError, "integer field numbers"),
    ("0123", TypeError, "fields must be an array"),
    (np.r_[np.zeros(29, np.int64), -1], ValueError, "feature 29 the negative field number -1"),
    (np.r_[np.zeros(29, np.int64), 65536], ValueError, "field number 65536: at most 65,536 fields"),
    (np.zeros((30, 3), np.int32), ValueError, r"shape \(30,\)"),
])
def test_bad_fields_arrays(tmp_path, bad, error, match):
    X, y, _ = planted(50)
    assert X.shape[1] == 30
    with pytest.raises(error, match=match):
        convert((X, y), tmp_path / "b.cache", fields=bad)
    assert not os.path.exists(tmp_path / "b.cache")
    with pytest.raises(error, match=match):  # the same check, up front, with n_features given
        convert((X, y), tmp_path / "b.cache", fields=bad, n_features=30)


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("make", [
    lambda: fastafm.FwFMClassifier(**KW),
    lambda: fastafm.AFMClassifier(field_aware="both", **AFM_KW),
])
def test_fit_on_a_libffm_cache_equals_the_fit_on_load_libffms_arrays(ffm_file, tmp_path, make):
    X, y, fields = fastafm.load_libffm(ffm_file)
    cache = convert(ffm_file, tmp_path / "c.cache")
    assert cache.block_rows == cache.n_rows  # one block: the rows in order, as in memory
    in_memory = make().set_params(fields=fields).fit(X, y)
    streamed = make().fit(cache)
    assert params_equal(in_memory, streamed)
    assert np.array_equal(streamed.fields_, fields) and streamed.encoding_ is None
    assert [r["train_loss"] for r in in_memory.history_] == [r["train_loss"] for r in streamed.history_]


@pytest.mark.parametrize("make", [
    lambda: fastafm.FwFMClassifier(**KW),
    lambda: fastafm.AFMClassifier(field_aware="weights", **AFM_KW),
])
def test_fit_on_an_in_memory_cache_with_fields(tmp_path, make):
    X, y, fields = planted(300)
    cache = convert((X, y), tmp_path / "m.cache", fields=fields)
    in_memory = make().set_params(fields=fields).fit(X, y)
    streamed = make().fit(cache)
    assert params_equal(in_memory, streamed) and np.array_equal(streamed.fields_, fields)


def test_a_fields_only_cache_gives_no_raw_encoding(tmp_path):
    X, y, fields = planted(300)
    cache = convert((X, y), tmp_path / "m.cache", fields=fields)
    model = fastafm.FwFMClassifier(**KW).fit(cache)
    assert model.encoding_ is None
    proba = model.predict_proba(X)  # X as usual
    model.save(tmp_path / "m.npz")
    loaded = fastafm.load(tmp_path / "m.npz")
    assert loaded.encoding_ is None and np.array_equal(loaded.fields_, fields)
    assert np.array_equal(loaded.predict_proba(X), proba)
    # AFM's field_aware "auto" takes them as from a raw log's cache (with early stopping)
    auto = fastafm.AFMClassifier(**dict(AFM_KW, early_stopping=True)).fit(cache)
    assert auto.field_aware_ == "both" and np.array_equal(auto.fields_, fields)


def test_old_format_caches_still_load(tmp_path):
    X, y, _ = planted(100)
    plain = convert((X, y), tmp_path / "v1.cache")
    weighted = convert((X, y), tmp_path / "v2.cache", weights=np.ones(100))
    for cache, version in ((plain, VERSION), (weighted, WEIGHTS_VERSION)):
        with open(cache.path, "rb") as fh:
            head = fh.read(FIXED.size)
        assert head[:8] == b"FAFMCACH" and struct.unpack_from("<I", head, 8)[0] == version
        again = CacheFile(cache.path)
        assert again.version == version and not again.has_fields and again.read_fields() is None
        assert same_rows(again.read_rows(0, 100)[0], X)
        model = fastafm.FwFMClassifier(**KW).fit(again)  # no fields: one field, as fields=None in memory
        assert params_equal(model, fastafm.FwFMClassifier(**KW).fit(X, y, sample_weight=np.ones(100)))


def test_an_unknown_version_is_refused_by_name(tmp_path):
    X, y, fields = planted(40)
    cache = convert((X, y), tmp_path / "c.cache", fields=fields)
    data = bytearray(open_bytes(cache.path))
    struct.pack_into("<I", data, 8, 5)
    (tmp_path / "v5.cache").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cache format version 5 is not supported .*versions 1 to 4"):
        CacheFile(tmp_path / "v5.cache")


def test_a_damaged_fields_section_is_found(tmp_path):
    X, y, fields = planted(40)
    cache = convert((X, y), tmp_path / "c.cache", fields=fields)
    data = bytearray(open_bytes(cache.path))
    data[-4:] = struct.pack("<i", 70000)  # the last feature's field: out of range
    (tmp_path / "d.cache").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum mismatch in section fields"):
        CacheFile(tmp_path / "d.cache").read_fields()


# ---------------------------------------------------------------------------------------------- command line
def test_cli_convert_train_fwfm_predict_on_the_cache(ffm_file, tmp_path, capsys):
    X, y, fields = fastafm.load_libffm(ffm_file)
    cache = str(tmp_path / "c.cache")
    assert main(["convert", str(ffm_file), cache]) == 0
    assert f"{int(fields.max()) + 1} fields" in capsys.readouterr().out
    model = str(tmp_path / "m.fwfm")
    opts = ["--embedding-dim", "8", "--epochs", "2", "--threads", "1", "--seed", "0", "--task", "classification",
            "--quiet"]
    assert main(["train", cache, "--model-type", "fwfm", "--model", model, "--early-stopping", "off"] + opts) == 0
    loaded = fastafm.load(model)
    assert type(loaded).__name__ == "FwFMClassifier" and np.array_equal(loaded.fields_, fields)
    assert params_equal(loaded, fastafm.FwFMClassifier(**KW).fit(CacheFile(cache)))
    out = tmp_path / "p.txt"
    assert main(["predict", "--model", model, cache, "--out", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(np.loadtxt(out), loaded.predict_proba(X)[:, 1], rtol=1e-6)
    out2 = tmp_path / "p2.txt"
    assert main(["predict", "--model", model, str(ffm_file), "--out", str(out2), "--quiet"]) == 0
    assert out.read_text() == out2.read_text()
    assert main(["eval", "--model", model, cache, "--json"]) == 0
    assert '"auc"' in capsys.readouterr().out


def test_cli_field_aware_and_valid_on_a_cache(ffm_file, tmp_path, capsys):
    cache = str(tmp_path / "c.cache")
    assert main(["convert", str(ffm_file), cache, "--format", "libffm", "--quiet"]) == 0
    model = str(tmp_path / "m.afm")
    assert main(["train", cache, "--field-aware", "both", "--task", "classification", "--model", model,
                 "--valid", str(ffm_file), "--epochs", "1", "--threads", "1", "--quiet"]) == 0
    assert fastafm.load(model).field_aware_ == "both"


def test_cli_refuses_a_cache_without_fields(tmp_path, capsys):
    libfm = tmp_path / "a.libfm"
    libfm.write_text("1 0:1 3:1\n0 1:1\n")
    cache = str(tmp_path / "a.cache")
    assert main(["convert", str(libfm), cache, "--quiet"]) == 0
    for flags in (["--model-type", "fwfm"], ["--field-aware", "both"]):
        assert main(["train", cache, "--model", str(tmp_path / "m"), "--quiet"] + flags) == 3
        err = capsys.readouterr().err
        assert f"the cache {cache} carries none" in err and "convert a libFFM file" in err
    # --format libffm on libFM text: the parser's error, naming the line and the format asked for
    assert main(["convert", str(libfm), cache, "--format", "libffm"]) == 3
    assert "a.libfm:1:" in capsys.readouterr().err


@pytest.mark.parametrize("model_type", ["fwfm", "fm"])
def test_cli_trains_from_a_libffm_pipe(ffm_file, tmp_path, model_type):
    """FwFM keeps the pipe's fields; FM reads its rows (the format sniffed from the pipe's first bytes, which are
    handed back to the parser), with and without --cache."""
    X, y, fields = fastafm.load_libffm(ffm_file)
    for extra in ([], ["--cache", str(tmp_path / "p.cache")]):
        fifo = tmp_path / "p.fifo"
        pid = fifo_writer(fifo, ffm_file.read_bytes())
        try:
            assert main(["train", str(fifo), "--model-type", model_type, "--task", "classification", "--model",
                         str(tmp_path / "m.model"), "--epochs", "1", "--threads", "1", "--seed", "0",
                         "--early-stopping", "off", "--quiet"] + extra) == 0
        finally:
            os.waitpid(pid, 0)
            os.unlink(fifo)
        loaded = fastafm.load(tmp_path / "m.model")
        if model_type == "fwfm":
            assert np.array_equal(loaded.fields_, fields)
        else:  # the same model as from the rows in memory
            ref = fastafm.FMClassifier(embedding_dim=loaded.embedding_dim, n_epochs=1, n_threads=1, random_state=0,
                                       early_stopping=False).fit(X, y)
            assert params_equal(loaded, ref)
    assert CacheFile(tmp_path / "p.cache").has_fields


# ---------------------------------------------------------------------------------------------- Dask
def test_dask_fwfm_takes_the_fields_of_caches_that_carry_them(client, tmp_path):
    from fastafm.dask import DaskFwFMClassifier

    X, y, fields = planted(600)
    halves = [(X[:300], y[:300]), (X[300:], y[300:])]
    with_fields = [convert(h, tmp_path / f"f{i}.cache", fields=fields) for i, h in enumerate(halves)]
    plain = [convert(h, tmp_path / f"p{i}.cache") for i, h in enumerate(halves)]
    kw = dict(embedding_dim=8, n_epochs=2, random_state=0, sync_rows=200, n_threads=1, early_stopping=False,
              client=client)
    taken = DaskFwFMClassifier(**kw).fit(with_fields).to_local()
    given = DaskFwFMClassifier(fields=fields, **kw).fit(plain).to_local()
    assert np.array_equal(taken.fields_, fields) and params_equal(taken, given)
    other = convert(halves[1], tmp_path / "o.cache", fields=np.zeros_like(fields))
    with pytest.raises(ValueError, match="its fields differ"):
        DaskFwFMClassifier(**kw).fit([with_fields[0], other])
    with pytest.raises(ValueError, match="some of the cache files carry fields"):
        DaskFwFMClassifier(**kw).fit([with_fields[0], plain[1]])


@pytest.mark.parametrize("model_type,field_aware,kept", [("afm", None, "both"), ("afm", "none", None),
                                                         ("fm", None, None)])
def test_cli_trains_and_predicts_any_model_from_libffm_text(ffm_file, tmp_path, model_type, field_aware, kept):
    """A libFFM file (the libffm / xLearn user's input) in memory, without --cache: the default classifier's
    field_aware "auto" keeps its fields ("both", early stopping on: 400 rows with --valid), a model without field
    terms reads its rows; predicting on the libFFM file equals predicting on the same rows (a cache of them)."""
    X, y, fields = fastafm.load_libffm(ffm_file)
    model = str(tmp_path / "m.model")
    args = ["train", str(ffm_file), "--model-type", model_type, "--model", model, "--task", "classification",
            "--valid", str(ffm_file), "--embedding-dim", "4", "--epochs", "2", "--threads", "1", "--seed", "0",
            "--quiet"] + ([] if field_aware is None else ["--field-aware", field_aware])
    assert main(args) == 0
    loaded = fastafm.load(model)
    assert getattr(loaded, "field_aware_", None) == kept
    if kept:
        assert np.array_equal(loaded.fields_, fields)
    out, cache = tmp_path / "p.txt", str(tmp_path / "rows.cache")
    assert main(["predict", "--model", model, str(ffm_file), "--out", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(np.loadtxt(out), loaded.predict_proba(X)[:, 1], rtol=1e-6)
    fastafm.convert((X, y), cache)
    out2 = tmp_path / "p2.txt"
    assert main(["predict", "--model", model, cache, "--out", str(out2), "--quiet"]) == 0
    assert out.read_text() == out2.read_text()
