"""Sample weights stored in caches (the version 2 weights section) and given to the command line
(`fastafm convert/train --weights FILE`, `--class-weight`): written, read back, streamed by fit, and refused
when bad, with messages naming the file and line."""
from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

import fastafm
from fastafm.data.cache import HEADER_SIZE, VERSION, WEIGHTS_VERSION, CacheFile
from fastafm.data.convert import convert, read_weights_file
from fastafm.cli import main
from test_cache import SMALL, params_equal, random_rows, write_libfm


def _weights(rng, n):
    w = np.round(rng.uniform(0.0, 3.0, size=n), 3)
    w[::9] = 0.0
    return w


def _write_weights(path, w, lines=None):
    with open(path, "w") as fh:
        fh.write("".join(f"{v:g}\n" for v in w) if lines is None else "".join(f"{v}\n" for v in lines))
    return str(path)


def test_weights_section_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X, y = random_rows(rng)
    w = _weights(rng, X.shape[0])
    plain = convert((X, y), tmp_path / "plain.cache")
    cache = convert((X, y, w), tmp_path / "w.cache", chunk_rows=37)
    assert plain.version == VERSION and not plain.has_weights  # no weights: the version 1 file, as before
    assert cache.version == WEIGHTS_VERSION and cache.has_weights
    np.testing.assert_array_equal(cache.read_weights(0, cache.n_rows), w.astype(np.float32))
    np.testing.assert_array_equal(cache.read_weights(5, 50), w[5:50].astype(np.float32))
    Xa, ya = cache.read_rows(0, cache.n_rows)
    assert (Xa != X).nnz == 0 and np.array_equal(ya, y)
    cache.verify()
    # The same bytes from weights=, from pieces, and with the data sections of the unweighted file.
    again = convert((X, y), tmp_path / "again.cache", weights=w)
    pieces = convert(((X[a:a + 70], y[a:a + 70], w[a:a + 70]) for a in range(0, X.shape[0], 70)),
                     tmp_path / "pieces.cache")
    assert pathlib.Path(again.path).read_bytes() == pathlib.Path(cache.path).read_bytes()
    assert pathlib.Path(pieces.path).read_bytes() == pathlib.Path(cache.path).read_bytes()
    with pytest.raises(ValueError, match="holds no sample weights"):
        plain.read_weights(0, 1)


def test_weights_file_for_a_libfm_source(tmp_path):
    rng = np.random.default_rng(1)
    X, y = random_rows(rng)
    w = _weights(rng, X.shape[0])
    data = write_libfm(tmp_path / "d.libfm", X, y)  # with comment lines: weights go by row, not by file line
    wfile = _write_weights(tmp_path / "w.txt", w)
    for chunk in (1 << 30, 50):
        cache = convert(data, tmp_path / f"c{chunk}.cache", weights=wfile, chunk_bytes=chunk)
        np.testing.assert_array_equal(cache.read_weights(0, cache.n_rows), w.astype(np.float32))
    np.testing.assert_array_equal(read_weights_file(wfile, X.shape[0]), w.astype(np.float32))


@pytest.mark.parametrize("lines, match", [
    (["1", "-2", "1"], r"w.txt:2: weight -2\.0"),
    (["1", "nan", "1"], r"w.txt:2"),
    (["1", "inf", "1"], r"w.txt:2"),
    (["1", "x", "1"], r"w.txt:2: 'x' is not a number"),
    (["1", "1"], "fewer than the data's rows"),
    (["1", "1", "1", "1"], "more lines than the data has rows"),
    (["0", "0", "0"], "all zero"),
])
def test_bad_weights_files_are_value_errors(tmp_path, lines, match):
    X, y = random_rows(np.random.default_rng(2), n_rows=3)
    data = write_libfm(tmp_path / "d.libfm", X, y, comments=False)
    wfile = _write_weights(tmp_path / "w.txt", None, lines)
    with pytest.raises(ValueError, match=match):
        convert(data, tmp_path / "c.cache", weights=wfile)
    with pytest.raises(ValueError, match=match):
        read_weights_file(wfile, 3)
    assert not (tmp_path / "c.cache").exists()


@pytest.mark.parametrize("bad, match", [(-np.ones(3), "negative"), (np.array([1, np.nan, 1]), "NaN"),
                                        (np.ones(2), "2 values"), (np.zeros(3), "all zero"),
                                        (np.array(["a", "b", "c"]), "real numbers"), (np.ones((3, 1)), "1-D")])
def test_bad_weight_arrays_in_convert(tmp_path, bad, match):
    X, y = random_rows(np.random.default_rng(3), n_rows=3)
    with pytest.raises(ValueError, match=match):
        convert((X, y, bad), tmp_path / "c.cache")
    with pytest.raises(ValueError, match=match):
        convert((X, y), tmp_path / "c.cache", weights=bad)
    with pytest.raises(ValueError, match="once"):
        convert((X, y, np.ones(3)), tmp_path / "c.cache", weights=np.ones(3))


def test_a_damaged_weights_section_is_detected(tmp_path):
    rng = np.random.default_rng(4)
    X, y = random_rows(rng, n_rows=50)
    cache = convert((X, y, np.ones(50)), tmp_path / "w.cache")
    raw = bytearray(pathlib.Path(cache.path).read_bytes())
    offset = len(raw) - 4 * 50  # the weights section is last
    assert offset >= HEADER_SIZE and struct.unpack_from("<f", raw, offset)[0] == 1.0
    struct.pack_into("<f", raw, offset + 8, float("nan"))
    pathlib.Path(cache.path).write_bytes(bytes(raw))
    damaged = CacheFile(cache.path)
    with pytest.raises(ValueError, match="sample weights that are NaN"):
        damaged.read_weights(0, 50)
    with pytest.raises(ValueError, match="checksum mismatch in section weights"):
        damaged.verify()


@pytest.mark.parametrize("cls", [fastafm.AFMRegressor, fastafm.FMClassifier])
def test_fit_streams_a_weighted_cache_as_the_same_rows_in_memory(tmp_path, cls):
    rng = np.random.default_rng(5)
    X, y = random_rows(rng)
    if cls is fastafm.FMClassifier:
        y = (y > 0).astype(np.float32)
    w = _weights(rng, X.shape[0])
    cache = convert((X, y, w), tmp_path / "w.cache")
    kw = {k: v for k, v in SMALL.items() if not (cls is fastafm.FMClassifier and k == "attention_dim")}
    streamed = cls(**kw).fit(cache)  # one block: trained exactly as the rows in memory
    in_memory = cls(**kw).fit(X, y, sample_weight=w.astype(np.float32))
    assert params_equal(streamed, in_memory)
    assert not params_equal(streamed, cls(**kw).fit(X, y))
    assert streamed.history_[0]["train_loss"] == in_memory.history_[0]["train_loss"]
    with pytest.raises(ValueError, match="sample_weight must be None when X is a CacheFile"):
        cls(**kw).fit(cache, sample_weight=w)
    if cls is fastafm.FMClassifier:  # class weights times the cache's weights, as in memory
        for class_weight in ("balanced", {1.0: 3.0}):
            streamed = cls(**kw, class_weight=class_weight).fit(cache)
            assert params_equal(streamed, cls(**kw, class_weight=class_weight).fit(X, y, sample_weight=w.astype(
                np.float32)))
            assert not params_equal(streamed, in_memory)
        unweighted = convert((X, y), tmp_path / "plain.cache")  # class weights alone
        assert params_equal(cls(**kw, class_weight="balanced").fit(unweighted),
                            cls(**kw, class_weight="balanced").fit(X, y))
        with pytest.raises(ValueError, match="not one of the classes"):
            cls(**kw, class_weight={7.0: 1.0}).fit(cache)
        with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
            cls(**kw, class_weight="balanced").partial_fit(cache)


def test_streamed_holdout_keeps_the_weights_of_its_rows(tmp_path):
    rng = np.random.default_rng(6)
    X, y = random_rows(rng, n_rows=600)
    w = rng.uniform(0.1, 3.0, size=600)
    cache = CacheFile(convert((X, y, w), tmp_path / "w.cache").path, block_rows=100)
    m = fastafm.AFMRegressor(**{**SMALL, "n_epochs": 1, "early_stopping": True}, pretrain=None,
                             linear_fallback=False).fit(cache)  # the AFM epoch scored, not a linear model
    from fastafm.training.cache_rows import CacheRows
    from fastafm.training.session import split_generator

    _, held = CacheRows([cache], lambda labels: labels).hold_out_split(0.1, split_generator(3), stratify=False)
    X_val, y_val, w_val = held.X, held.y, held.w
    assert w_val is not None and w_val.shape[0] == X_val.shape[0] > 0
    pred = m.predict(X_val)
    assert m.history_[0]["eval_rmse"] == pytest.approx(
        fastafm.metrics.rmse(y_val, pred, clip=m.label_range_, sample_weight=w_val), rel=1e-9)


# ---------------------------------------------------------------------------------------------- the CLI
@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(7)
    X, y, _ = fastafm.make_planted(n_rows=400, n_fields=4, cardinality=6, classification=True, random_state=0)
    y = np.where(y > 0, 1, 0)
    w = _weights(rng, 400)
    return X, y, w, write_libfm(tmp_path / "t.libfm", X, y), _write_weights(tmp_path / "w.txt", w)


CLI_SMALL = ["--epochs", "2", "--embedding-dim", "4", "--attention-dim", "4", "--threads", "1", "--quiet",
             "--early-stopping", "off", "--pretrain", "none"]


def test_cli_train_with_weights_equals_fit_with_sample_weight(files, tmp_path, capsys):
    X, y, w, data, wfile = files
    assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--task", "classification", "--weights", wfile,
                 *CLI_SMALL]) == 0
    cli = fastafm.load(tmp_path / "m.afm")
    Xl, yl = fastafm.load_libfm(data)
    direct = fastafm.AFMClassifier(embedding_dim=4, attention_dim=4, n_epochs=2, n_threads=1, random_state=0,
                                   early_stopping=False, pretrain=None).fit(Xl, yl, sample_weight=w.astype(np.float32))
    assert params_equal(cli, direct)
    # Through a cache: the weights are stored in it and streamed.
    assert main(["train", data, "--model", str(tmp_path / "c.afm"), "--task", "classification", "--weights", wfile,
                 "--cache", str(tmp_path / "t.cache"), *CLI_SMALL]) == 0
    assert CacheFile(tmp_path / "t.cache").has_weights
    assert params_equal(fastafm.load(tmp_path / "c.afm"), direct)


def test_cli_convert_with_weights(files, tmp_path, capsys):
    X, y, w, data, wfile = files
    assert main(["convert", data, str(tmp_path / "c.cache"), "--weights", wfile]) == 0
    assert "sample weights" in capsys.readouterr().out
    np.testing.assert_array_equal(CacheFile(tmp_path / "c.cache").read_weights(0, 400), w.astype(np.float32))
    code = main(["train", str(tmp_path / "c.cache"), "--model", str(tmp_path / "m.afm"), "--weights", wfile,
                 *CLI_SMALL])
    assert code != 0 and "stored in it when it is converted" in capsys.readouterr().err


def test_cli_bad_weights_name_the_file_and_line(files, tmp_path, capsys):
    X, y, w, data, _ = files
    bad = _write_weights(tmp_path / "bad.txt", None, ["1"] * 10 + ["-1"] + ["1"] * 389)
    short = _write_weights(tmp_path / "short.txt", None, ["1"] * 399)
    for cmd in (["convert", data, str(tmp_path / "c.cache")],
                ["train", data, "--model", str(tmp_path / "m.afm"), *CLI_SMALL]):
        assert main([*cmd, "--weights", bad]) != 0
        assert "bad.txt:11" in capsys.readouterr().err
        assert main([*cmd, "--weights", short]) != 0
        assert "fewer than the data's rows" in capsys.readouterr().err
        assert main([*cmd, "--weights", str(tmp_path / "missing.txt")]) != 0
        assert "missing.txt" in capsys.readouterr().err


def test_cli_class_weight(files, tmp_path, capsys):
    X, y, w, data, _ = files
    for value, expected in (("balanced", "balanced"), ("0:1,1:4.5", {0.0: 1.0, 1.0: 4.5}), ("none", None)):
        assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--task", "classification",
                     "--class-weight", value, *CLI_SMALL]) == 0
        assert fastafm.load(tmp_path / "m.afm").class_weight == expected
    assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--class-weight", "balanced", *CLI_SMALL]) != 0
    assert "--class-weight applies to --task classification only" in capsys.readouterr().err
    assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--task", "classification", "--class-weight",
                 "1:-3", *CLI_SMALL]) != 0
    assert "class weights must be finite and >= 0" in capsys.readouterr().err
    assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--task", "classification", "--class-weight",
                 "7:2", *CLI_SMALL]) != 0
    assert "not one of the classes" in capsys.readouterr().err
    # Streaming a cache: the class weights apply to its rows as in memory.
    assert main(["train", data, "--model", str(tmp_path / "c.afm"), "--task", "classification", "--class-weight",
                 "0:1,1:4.5", "--cache", str(tmp_path / "t.cache"), *CLI_SMALL]) == 0
    assert main(["train", data, "--model", str(tmp_path / "m.afm"), "--task", "classification", "--class-weight",
                 "0:1,1:4.5", *CLI_SMALL]) == 0
    assert params_equal(fastafm.load(tmp_path / "c.afm"), fastafm.load(tmp_path / "m.afm"))
