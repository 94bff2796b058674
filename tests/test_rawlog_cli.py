"""`fastafm convert` of raw logs and `predict`/`eval` of raw rows (issue 23): the Criteo and Avazu shapes of
docs/data.md end to end, on small files the tests write."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm.cli import main
from rawlog_data import click_frame, write_text

pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")


def criteo_like(n: int, seed: int):
    """label, 13 counts, 26 categoricals (hex ids), empty fields missing: the Criteo layout."""
    rng = np.random.default_rng(seed)
    cols = {"label": rng.integers(0, 2, n)}
    for i in range(1, 14):
        x = rng.poisson(2.0 + i, n).astype(float)
        x[rng.random(n) < 0.1] = np.nan
        cols[f"I{i}"] = x
    for i in range(1, 27):
        v = np.array([f"{h:08x}" for h in rng.integers(0, 10 + i, n) * 2654435761 % 2**32], dtype=object)
        v[rng.random(n) < 0.1] = None
        cols[f"C{i}"] = v
    df = pd.DataFrame(cols)
    df[[f"I{i}" for i in range(1, 14)]] = df[[f"I{i}" for i in range(1, 14)]].astype("Int64")
    return df


def test_criteo_commands_from_raw_file_to_predictions(tmp_path, capsys):
    train, test = criteo_like(400, 0), criteo_like(150, 1)
    write_text(train, tmp_path / "train.txt.gz", sep="\t", header=False)
    write_text(test.drop(columns=["label"]), tmp_path / "test.txt", sep="\t", header=False)
    write_text(test, tmp_path / "valid.txt", sep="\t", header=False)
    cache, model = str(tmp_path / "train.cache"), str(tmp_path / "m.afm")
    assert main(["convert", str(tmp_path / "train.txt.gz"), cache, "--no-header", "--label", "0",
                 "--numeric", ",".join(map(str, range(1, 14))), "--quiet"]) == 0
    c = fastafm.CacheFile(cache)
    assert c.n_rows == 400 and c.nnz == 400 * 39
    assert main(["train", cache, "--task", "classification", "--model", model, "--epochs", "2", "--quiet"]) == 0
    assert main(["predict", "--model", model, str(tmp_path / "test.txt"), "--out", str(tmp_path / "p.txt"),
                 "--quiet"]) == 0
    got = np.loadtxt(tmp_path / "p.txt")
    loaded = fastafm.load(model)
    np.testing.assert_allclose(got, loaded.predict_proba(str(tmp_path / "test.txt"))[:, 1], rtol=1e-7)
    assert main(["eval", "--model", model, str(tmp_path / "valid.txt"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"rows": 150' in out and '"auc"' in out
    # eval needs the label column
    assert main(["eval", "--model", model, str(tmp_path / "test.txt")]) == 3
    assert "the label column '0' is missing" in capsys.readouterr().err


def test_avazu_commands_with_a_header_and_hashing(tmp_path, capsys):
    df = click_frame(500)
    write_text(df, tmp_path / "train.csv")
    write_text(df.drop(columns=["click"]).iloc[:20], tmp_path / "test.csv")
    cache, model = str(tmp_path / "train.cache"), str(tmp_path / "m.fm")
    assert main(["convert", str(tmp_path / "train.csv"), cache, "--label", "click", "--ignore", "id",
                 "--hash-buckets", "1000", "--quiet"]) == 0
    enc = fastafm.CacheFile(cache).read_encoding()
    assert [f["kind"] for f in enc.fields] == ["hash"] * 4  # every other column categorical
    assert main(["train", cache, "--task", "classification", "--model-type", "fm", "--model", model,
                 "--epochs", "1", "--quiet"]) == 0
    assert main(["predict", "--model", model, str(tmp_path / "test.csv")]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 20
    np.testing.assert_allclose(np.array(lines, float), fastafm.load(model).predict_proba(
        df.iloc[:20])[:, 1], rtol=1e-7)


def test_convert_takes_several_files_and_reports_throughput(tmp_path, capsys):
    df = click_frame(300)
    write_text(df.iloc[:100], tmp_path / "a.tsv", sep="\t")
    write_text(df.iloc[100:], tmp_path / "b.tsv", sep="\t")
    assert main(["convert", str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv"), str(tmp_path / "c.cache"),
                 "--label", "click", "--ignore", "id", "--numeric", "count,price",
                 "--numeric-bins", "count=3", "--min-frequency", "5"]) == 0
    out = capsys.readouterr().out
    assert "300 rows, 4 fields" in out and "MB/s of input" in out
    enc = fastafm.CacheFile(tmp_path / "c.cache").read_encoding()
    assert enc.fields[2]["kind"] == "bins" and enc.fields[3]["kind"] == "numeric"
    assert main(["convert", str(tmp_path / "a.tsv"), str(tmp_path / "c.cache"), "--label", "click",
                 "--numeric", "count", "--categorical", "count"]) == 3
    assert "named twice in the options" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "a.tsv"), str(tmp_path / "c.cache"), "--label", "click",
                 "--sep", "ab"]) == 2


def test_fwfm_trains_from_a_raw_logs_cache_on_the_command_line(tmp_path, capsys):
    df = click_frame(300)
    write_text(df, tmp_path / "train.csv")
    cache, model = str(tmp_path / "c.cache"), str(tmp_path / "m.fwfm")
    assert main(["convert", str(tmp_path / "train.csv"), cache, "--label", "click", "--ignore", "id",
                 "--numeric", "count,price", "--quiet"]) == 0
    assert main(["train", cache, "--task", "classification", "--model-type", "fwfm", "--model", model,
                 "--epochs", "1", "--quiet"]) == 0
    loaded = fastafm.load(model)
    np.testing.assert_array_equal(loaded.training_state_.fields, fastafm.CacheFile(cache).read_fields())
    assert main(["predict", "--model", model, str(tmp_path / "train.csv"), "--quiet"]) == 0
    assert len(capsys.readouterr().out.split()) == 300
