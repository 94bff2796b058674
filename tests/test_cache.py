"""Row caches (fastafm.convert / CacheFile) and out-of-core training from them (fit streams shuffled blocks)."""
from __future__ import annotations

import os
import pathlib
import pickle
import struct

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm.training import engine as _engine
from fastafm.training import cache_rows as _streaming
from fastafm.models.hyperparams import core_settings
from fastafm.data.cache import HEADER_SIZE, CacheFile
from fastafm.data.convert import convert
from fastafm.cli import main

SMALL = dict(embedding_dim=8, attention_dim=8, n_epochs=3, n_threads=1, random_state=3, early_stopping=False)


def write_libfm(path, X, y, crlf=False, comments=True):
    """X, y as libFM text; every 7th row gets a comment line before it, so file lines != rows."""
    end = "\r\n" if crlf else "\n"
    with open(path, "w", newline="") as fh:
        for r in range(X.shape[0]):
            if comments and r % 7 == 0:
                fh.write(f"# row {r}{end}")
            lo, hi = X.indptr[r], X.indptr[r + 1]
            feats = " ".join(f"{i}:{v:.6g}" for i, v in zip(X.indices[lo:hi], X.data[lo:hi]))
            fh.write(f"{y[r]:g} {feats}{end}")
    return str(path)


def random_rows(rng, n_rows=400, n_features=60):
    """Rows of 0-9 non-zeros (empty rows included), repeated and unsorted ids, float labels."""
    counts = rng.integers(0, 10, size=n_rows)
    counts[:3] = 0
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = rng.integers(0, n_features, size=indptr[-1]).astype(np.int32)
    values = np.round(rng.normal(size=indptr[-1]), 4).astype(np.float32)
    X = sp.csr_matrix((values, indices, indptr), shape=(n_rows, n_features))
    y = np.round(rng.normal(size=n_rows), 3).astype(np.float32)
    return X, y


def same_rows(A, B):
    return (A.shape == B.shape and np.array_equal(A.indptr, B.indptr) and np.array_equal(A.indices, B.indices)
            and np.array_equal(A.data, B.data))


def params_equal(a, b):
    pa, pb = a.get_model_params(), b.get_model_params()
    return all(np.array_equal(pa[k], pb[k]) for k in pa)


@pytest.fixture()
def libfm_file(tmp_path):
    X, y = random_rows(np.random.default_rng(0))
    return write_libfm(tmp_path / "data.libfm", X, y, crlf=True)


@pytest.fixture()
def planted(tmp_path):
    X, y, _ = fastafm.make_planted(n_rows=3000, n_fields=6, cardinality=8, random_state=0)
    return X, y, convert((X, y), tmp_path / "planted.cache")


# ---------------------------------------------------------------------------------------------- the file
def test_libfm_round_trip_random_ranges(libfm_file, tmp_path):
    X, y = fastafm.load_libfm(libfm_file)
    cache = convert(libfm_file, tmp_path / "c.cache")
    assert (cache.n_rows, cache.n_features, cache.nnz) == (X.shape[0], X.shape[1], X.nnz)
    rng = np.random.default_rng(1)
    ranges = [(0, 0), (0, 3), (0, X.shape[0]), (X.shape[0] - 1, X.shape[0]), (X.shape[0], X.shape[0])]
    ranges += [tuple(sorted(rng.integers(0, X.shape[0] + 1, size=2))) for _ in range(30)]
    for start, stop in ranges:
        Xr, yr = cache.read_rows(start, stop)
        assert Xr.dtype == np.float32 and Xr.indices.dtype == np.int32 and yr.dtype == np.float32
        assert same_rows(Xr, X[start:stop]), (start, stop)
        assert np.array_equal(yr, y[start:stop])
    cache.verify()


def test_csr_source_and_dense_source(tmp_path):
    X, y = random_rows(np.random.default_rng(2))
    a = convert((X, y), tmp_path / "a.cache", chunk_rows=37)
    b = convert((X.toarray(), y), tmp_path / "b.cache")
    Xa, ya = a.read_rows(0, a.n_rows)
    assert same_rows(Xa, X) and np.array_equal(ya, y) and a.n_features == X.shape[1]
    Xb, _ = b.read_rows(0, b.n_rows)
    assert (Xb != X).nnz == 0
    wide = convert((X, y), tmp_path / "w.cache", n_features=100)
    assert wide.n_features == 100
    with pytest.raises(ValueError, match="less than X's 60 columns"):
        convert((X, y), tmp_path / "n.cache", n_features=10)
    with pytest.raises(ValueError, match="y has 3 values but X has 400 rows"):
        convert((X, y[:3]), tmp_path / "y.cache")


def test_pieces_from_a_generator(tmp_path):
    X, y = random_rows(np.random.default_rng(3))
    pieces = ((X[a:a + 90], y[a:a + 90]) for a in range(0, X.shape[0], 90))
    cache = convert(pieces, tmp_path / "g.cache")
    whole = convert((X, y), tmp_path / "w.cache")
    assert pathlib.Path(cache.path).read_bytes() == pathlib.Path(whole.path).read_bytes()
    with pytest.raises(ValueError, match="piece 1 has 61 columns, the pieces before it 60"):
        convert(iter([(X[:5], y[:5]), (sp.hstack([X[5:9], X[5:9, :1]]), y[5:9])]), tmp_path / "bad.cache")


def test_small_chunks_write_the_same_file(libfm_file, tmp_path):
    one = convert(libfm_file, tmp_path / "one.cache", chunk_bytes=1 << 30)
    for chunk in (1, 5, 64, 1000):
        many = convert(libfm_file, tmp_path / f"many{chunk}.cache", chunk_bytes=chunk)
        assert pathlib.Path(many.path).read_bytes() == pathlib.Path(one.path).read_bytes(), chunk


def test_chunked_errors_name_the_true_line(tmp_path):
    lines = ["1 1:1", "# comment", "", "-1 2:0.5 3:1"] * 50
    lines[151] = "1 4:x"  # line 152 of the file
    path = tmp_path / "bad.libfm"
    path.write_text("\r\n".join(lines) + "\r\n")
    with pytest.raises(ValueError) as whole:
        fastafm.load_libfm(path)
    for chunk in (3, 50, 1 << 20):
        with pytest.raises(ValueError) as streamed:
            convert(path, tmp_path / "bad.cache", chunk_bytes=chunk)
        assert str(streamed.value) == str(whole.value) and ":152:" in str(streamed.value)
    assert not (tmp_path / "bad.cache").exists()
    assert os.listdir(tmp_path) == ["bad.libfm"]  # no temporary files left behind


def test_n_features_of_a_libfm_source(libfm_file, tmp_path):
    assert convert(libfm_file, tmp_path / "a.cache", n_features=500).n_features == 500
    with pytest.raises(ValueError, match="does not fit n_features=5"):
        convert(libfm_file, tmp_path / "b.cache", n_features=5)
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "missing.libfm", tmp_path / "c.cache")


def corrupt(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.mark.parametrize("damage, message", [
    (lambda p: corrupt(p, 0, b"NOTACACHE"), "wrong magic"),
    (lambda p: corrupt(p, 8, struct.pack("<I", 99)), "format version 99 is not supported"),
    (lambda p: corrupt(p, 40, b"\x07"), "header checksum mismatch"),
    (lambda p: os.truncate(p, os.path.getsize(p) - 4), "truncated"),
    (lambda p: os.truncate(p, 100), "truncated header"),
    (lambda p: os.truncate(p, 0), "wrong magic"),
    (lambda p: corrupt(p, os.path.getsize(p), b"xx"), "trailing bytes"),
])
def test_damaged_file_is_a_value_error(libfm_file, tmp_path, damage, message):
    path = convert(libfm_file, tmp_path / "c.cache").path
    damage(path)
    with pytest.raises(ValueError, match=message):
        CacheFile(path)


def test_damaged_sections_are_found(libfm_file, tmp_path):
    cache = convert(libfm_file, tmp_path / "c.cache")
    corrupt(cache.path, cache._offsets["indices"] + 8, struct.pack("<i", 10**6))  # id beyond n_features
    with pytest.raises(ValueError, match="checksum mismatch in section indices"):
        cache.verify()
    with pytest.raises(ValueError, match="feature ids outside"):
        cache.read_rows(0, cache.n_rows)
    corrupt(cache.path, cache._offsets["indptr"] + 8 * 10, struct.pack("<q", -5))
    with pytest.raises(ValueError, match="indptr of rows"):
        cache.read_rows(0, 20)
    with pytest.raises(ValueError, match="not a range"):
        cache.read_rows(5, 2)


def test_pickles_as_its_path(planted):
    cache = CacheFile(planted[2].path, block_rows=123)
    again = pickle.loads(pickle.dumps(cache))
    assert again.path == cache.path and again.block_rows == 123
    assert same_rows(again.read_rows(10, 20)[0], cache.read_rows(10, 20)[0])


# ---------------------------------------------------------------------------------------------- training
def test_one_block_trains_exactly_as_in_memory(planted):
    X, y, cache = planted
    assert cache.block_rows == cache.n_rows
    for cls in (fastafm.AFMRegressor, fastafm.FMRegressor):
        kw = dict(SMALL, n_epochs=2) if cls is fastafm.FMRegressor else SMALL
        kw = {k: v for k, v in kw.items() if k != "attention_dim" or cls is fastafm.AFMRegressor}
        in_memory = cls(**kw).fit(X, y)
        streamed = cls(**kw).fit(cache)
        assert params_equal(in_memory, streamed)
        assert [r["train_loss"] for r in in_memory.history_] == [r["train_loss"] for r in streamed.history_]
        assert streamed.label_range_ == in_memory.label_range_


def test_blocks_reach_in_memory_accuracy(tmp_path):
    X, y, _ = fastafm.make_planted(n_rows=10000, n_fields=6, cardinality=8, random_state=1)
    X, Xt, y, yt = X[:8000], X[8000:], y[:8000], y[8000:]
    cache = convert((X, y), tmp_path / "p.cache", block_rows=900)
    kw = dict(SMALL, n_epochs=8, dropout=0.0, learning_rate=0.1, attention_l2=0.0)
    mem = fastafm.AFMRegressor(**kw).fit(X, y, eval_set=(Xt, yt))
    disk = fastafm.AFMRegressor(**kw).fit(cache, eval_set=(Xt, yt))
    baseline = float(np.sqrt(np.mean((yt - y.mean()) ** 2)))
    assert disk.history_[-1]["eval_rmse"] < 0.8 * baseline
    assert abs(disk.history_[-1]["eval_rmse"] - mem.history_[-1]["eval_rmse"]) < 0.05 * baseline
    assert not params_equal(mem, disk)


def test_streaming_is_deterministic_and_reshuffles_blocks(planted):
    X, y, cache = planted
    blocks = CacheFile(cache.path, block_rows=250)
    a = fastafm.AFMRegressor(**SMALL).fit(blocks)
    b = fastafm.AFMRegressor(**SMALL).fit(blocks)
    assert params_equal(a, b) and a.history_[-1]["train_loss"] == b.history_[-1]["train_loss"]
    c = fastafm.AFMRegressor(**dict(SMALL, random_state=4)).fit(blocks)
    assert not params_equal(a, c)
    rows = _streaming.CacheRows([blocks], lambda labels: labels)
    assert len(rows.blocks) == 12 and rows.blocks[-1][2] == cache.n_rows
    rng = np.random.default_rng(0)
    orders = [tuple(rows.epoch_order(rng).blocks.tolist()) for _ in range(4)]
    assert len(set(orders)) > 1 and all(sorted(o) == list(range(12)) for o in orders)


def test_last_partial_block_is_trained(tmp_path):
    """Blocks of 7 rows over 30 rows: the last block holds 2 rows; every row must be trained once per epoch."""
    X, y, _ = fastafm.make_planted(n_rows=30, n_fields=4, cardinality=5, random_state=2)
    cache = convert((X, y), tmp_path / "s.cache", block_rows=7)
    seen = []
    original = _engine.CoreTrainer.run

    def spy(self, indptr, indices, values, y_block, order, seed, epoch, progress=None, weights=None):
        seen.append((len(y_block), sorted(order.tolist())))
        return original(self, indptr, indices, values, y_block, order, seed, epoch, progress=progress, weights=weights)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine.CoreTrainer, "run", spy)
        fastafm.AFMRegressor(**dict(SMALL, n_epochs=1, pretrain=None)).fit(cache)
    assert sorted(n for n, _ in seen) == [2, 7, 7, 7, 7]
    assert all(order == list(range(n)) for n, order in seen)


def test_classifier_partial_fit_and_early_stopping(tmp_path):
    X, y, _ = fastafm.make_planted(n_rows=2000, n_fields=6, cardinality=8, classification=True, random_state=5)
    y = np.where(y > 0, 1.0, -1.0)
    cache = convert((X[:1500], y[:1500]), tmp_path / "c.cache", block_rows=400)
    model = fastafm.AFMClassifier(**dict(SMALL, n_epochs=30, n_iter_no_change=2)).fit(cache, eval_set=(X[1500:], y[1500:]))
    assert list(model.classes_) == [-1.0, 1.0] and model.best_epoch_ is not None
    # Learning from the cache, measured: eval AUC 0.754 after epoch 1, 0.824 at best (in memory: 0.816); a
    # model that learns nothing has 0.5, one that reads the blocks' labels wrongly far less than 0.78.
    aucs = [record["eval_auc"] for record in model.history_]
    assert max(aucs) > 0.78 and max(aucs) > aucs[0] + 0.03, aucs
    done = model.n_epochs_done_
    model.partial_fit(cache)
    assert model.n_epochs_done_ == done + 1
    fresh = fastafm.AFMClassifier(**SMALL).partial_fit(cache)
    assert fresh.n_epochs_done_ == 1
    three = convert((X, np.arange(2000) % 3), tmp_path / "three.cache")
    with pytest.raises(ValueError, match="needs two classes"):
        fastafm.AFMClassifier(**SMALL).fit(three)


def test_y_with_a_cache_and_wrong_widths_are_errors(planted, tmp_path):
    X, y, cache = planted
    with pytest.raises(ValueError, match="y must be None when X is a CacheFile"):
        fastafm.AFMRegressor(**SMALL).fit(cache, y)
    model = fastafm.AFMRegressor(**SMALL).fit(pathlib.Path(cache.path))  # a path object names a cache
    wide = convert((X, y), tmp_path / "wide.cache", n_features=X.shape[1] + 1)
    with pytest.raises(ValueError, match="expecting 48 features"):
        model.partial_fit(wide)
    empty = tmp_path / "empty.libfm"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="0 rows"):
        fastafm.AFMRegressor(**SMALL).fit(convert(empty, tmp_path / "empty.cache"))


def test_progress_counts_all_rows_of_the_epoch(planted, capsys):
    _, _, cache = planted
    blocks = CacheFile(cache.path, block_rows=700)
    model = fastafm.AFMRegressor(**dict(SMALL, n_epochs=0)).fit(blocks)
    calls = []
    rows = _streaming.CacheRows([blocks], lambda labels: labels)
    state = model.training_state_
    settings = core_settings(model.get_params(), "squared", True, True)
    trainer = _engine.CoreTrainer(state.params, state.slots, settings, rows.feature_counts(state.spec.n_features))
    rows.run_epoch(state, trainer, calls.append)
    assert calls[-1] == 3000 and calls == sorted(calls) and len(calls) >= 5  # at least once per block
    fastafm.AFMRegressor(**dict(SMALL, n_epochs=1, verbose=1)).fit(blocks)
    assert "epoch   1  train_loss=" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_convert_and_train_from_cache(tmp_path, capsys):
    X, y, _ = fastafm.make_planted(n_rows=1200, n_fields=6, cardinality=8, random_state=0)
    train = write_libfm(tmp_path / "t.libfm", X[:1000], y[:1000])
    valid = write_libfm(tmp_path / "v.libfm", X[1000:], y[1000:])
    out = str(tmp_path / "t.cache")
    assert main(["convert", train, out]) == 0
    assert "1000 rows" in capsys.readouterr().out
    opts = ["--epochs", "2", "--embedding-dim", "8", "--attention-dim", "8", "--threads", "1"]
    assert main(["train", out, "--valid", valid, "--model", str(tmp_path / "m.afm"), "--block-mb", "0.01"] + opts) == 0
    text = capsys.readouterr().out
    assert "streaming" in text and "eval_rmse" in text
    model = fastafm.load(str(tmp_path / "m.afm"))
    direct = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=2, n_threads=1, random_state=0,
                                  verbose=0).fit(CacheFile(out, block_bytes=10_000), eval_set=(X[1000:], y[1000:]))
    assert params_equal(model, direct)
    # --cache converts a text TRAIN first, then reuses the cache while it is newer than TRAIN
    assert main(["train", train, "--cache", "--model", str(tmp_path / "n.afm")] + opts) == 0
    assert "converted" in capsys.readouterr().out and os.path.isfile(train + ".cache")
    assert main(["train", train, "--cache", "--model", str(tmp_path / "n.afm")] + opts) == 0
    assert "using the cache" in capsys.readouterr().out


def test_cli_convert_errors(tmp_path, capsys):
    bad = tmp_path / "bad.libfm"
    bad.write_text("1 1:1\n1 2:y\n")
    assert main(["convert", str(bad), str(tmp_path / "o.cache")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("fastafm: error: ") and "bad.libfm:2:" in err
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "o.cache")]) == 3
    good = tmp_path / "g.libfm"
    good.write_text("1 1:1\n0 2:1\n3 0:1\n")
    cache = str(tmp_path / "g.cache")
    assert main(["convert", str(good), cache, "--quiet"]) == 0
    assert main(["train", cache, "--task", "classification", "--model", str(tmp_path / "m.afm")]) == 3
    assert "exactly two labels" in capsys.readouterr().err
    with open(cache, "r+b") as fh:
        fh.truncate(HEADER_SIZE + 10)
    assert main(["train", cache, "--model", str(tmp_path / "m.afm")]) == 3
    assert "not a valid fastafm cache" in capsys.readouterr().err
