"""Bad raw logs and options (issue 23): a clear ValueError naming the file, the line and the column, never a
crash, silent garbage or a hang; and the command line's one-line errors with exit code 3 or 2."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

import fastafm
from fastafm.cli import main
from rawlog_data import click_frame, write_text

pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

HEAD = "click,site,price\n"


def _convert(tmp_path, text, name="log.csv", **kw):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    opts = dict(label="click", numeric="price")
    opts.update(kw)
    return fastafm.convert(path, tmp_path / "out.cache", **opts)


@pytest.mark.parametrize("text, message", [
    (HEAD + "1,a,2\n0,b\n1,c,3\n", r"log\.csv:3: 2 columns, expected 3"),
    (HEAD + "1,a,2\nyes,b,4\n", r"log\.csv:3: column 'click' \(#0\): 'yes' is not a number \(the label\)"),
    (HEAD + "1,a,2\n0,b,4\n1,c,abc\n", r"log\.csv:4: column 'price' \(#2\): 'abc' is not a number \(a numeric"),
    (HEAD + "1,a,2\n,b,4\n", r"log\.csv:3: the label \(column click\) is missing"),
    (HEAD + "1,a,inf\n", r"log\.csv:2: column price: inf is not a finite number"),
    ("", r"log\.csv: the file is empty"),
    (HEAD, r"log\.csv: no rows"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        _convert(tmp_path, text)
    assert not (tmp_path / "out.cache").exists()


def test_errors_far_into_a_compressed_file_name_the_true_line(tmp_path):
    # past the first blocks, where the threaded reader does not number rows
    text = HEAD + "1,a,2\n" * 300_000 + "0,b\n"
    with pytest.raises(ValueError, match=r"log\.csv\.gz:300002: 2 columns, expected 3"):
        _convert(tmp_path, text, name="log.csv.gz")
    text = HEAD + "1,a,2\n" * 300_000 + "0,b,x1\n"
    with pytest.raises(ValueError, match=r"log\.csv\.gz:300002: column 'price' \(#2\): 'x1' is not a number"):
        _convert(tmp_path, text, name="log.csv.gz")


def test_without_a_header_columns_are_indices(tmp_path):
    with pytest.raises(ValueError, match=r"log\.txt:2: column 2: 'q' is not a number"):
        _convert(tmp_path, "1\tx\t2\n0\ty\tq\n", name="log.txt", label=0, numeric=[2], header=False)
    with pytest.raises(ValueError, match="label column 7 does not exist: the file has 3 columns"):
        _convert(tmp_path, "1\tx\t2\n", name="log.txt", label=7, numeric=[2], header=False)
    with pytest.raises(ValueError, match="without a header, columns are named by their 0-based index"):
        _convert(tmp_path, "1\tx\t2\n", name="log.txt", label="click", header=False)


@pytest.mark.parametrize("kw, message", [
    (dict(numeric="price", categorical="price"), "column 'price' is named twice in the options "
                                                 r"\(numeric and categorical\)"),
    (dict(numeric="price,price"), r"column 'price' is named twice in the options \(numeric\)"),
    (dict(numeric="price", ignore="click"), r"column 'click' is named twice in the options \(label and ignore\)"),
    (dict(label=None), "label is required"),
    (dict(label="clk"), r"label column 'clk' is not in the header"),
    (dict(hash_buckets=0), "hash_buckets must be an integer >= 1"),
    (dict(hash_buckets=8, min_frequency=2), "min_frequency applies to vocabularies"),
    (dict(numeric_bins=1), "numeric_bins must be an integer >= 2"),
    (dict(sep=",,"), "sep must be one character"),
])
def test_bad_options_are_named(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _convert(tmp_path, HEAD + "1,a,2\n", **kw)


def test_inputs_of_one_conversion_share_their_columns(tmp_path):
    (tmp_path / "a.csv").write_text(HEAD + "1,a,2\n")
    (tmp_path / "b.csv").write_text("click,site\n1,a\n")
    with pytest.raises(ValueError, match=r"b\.csv: its columns \['click', 'site'\] differ from .*a\.csv's"):
        fastafm.convert([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "c.cache", label="click")
    with pytest.raises(FileNotFoundError, match="the pattern matches no file"):
        fastafm.convert(str(tmp_path / "nothing-*.csv"), tmp_path / "c.cache", label="click")


def test_too_many_categories_suggest_hashing(tmp_path):
    text = HEAD + "".join(f"1,s{i},1\n" for i in range(500))
    with pytest.raises(ValueError, match=r"more than max_categories=100 distinct values .*hash_buckets"):
        _convert(tmp_path, text, max_categories=100)
    # site: 64 buckets + the unknown id; price (1 everywhere: a count, binned by default): 1 bin + the unknown id
    assert _convert(tmp_path, text, max_categories=100, hash_buckets=64).n_features == 64 + 1 + 2


def test_a_model_refuses_rows_of_another_format(tmp_path):
    df = click_frame(200)
    cache = fastafm.convert(write_text(df, tmp_path / "train.csv"), tmp_path / "c.cache", label="click",
                            numeric="count,price", ignore="id")
    model = fastafm.FMClassifier(n_epochs=1, random_state=0).fit(cache)
    other = write_text(df[["click", "site"]], tmp_path / "other.csv")
    with pytest.raises(ValueError, match=r"other\.csv: lacks the columns \['device', 'count', 'price'\]"):
        model.predict(other)
    with pytest.raises(ValueError, match=r"DataFrame: lacks the columns \['site'\]"):
        model.predict(df.drop(columns=["site"]))
    # a model from a header-less log: the column count must be the training's (or one less: no label)
    cache = fastafm.convert(write_text(df, tmp_path / "t.txt", sep="\t", header=False), tmp_path / "d.cache",
                            label=1, numeric=[4, 5], ignore=[0], header=False)
    model = fastafm.FMClassifier(n_epochs=1, random_state=0).fit(cache)
    wrong = write_text(df[["click", "site", "price"]], tmp_path / "w.txt", sep="\t", header=False)
    with pytest.raises(ValueError, match=r"w\.txt:1: 3 columns, but the model reads rows of 6 columns"):
        model.predict(wrong)


def test_cli_errors_are_one_line_with_exit_3(tmp_path, capsys):
    (tmp_path / "log.csv").write_text(HEAD + "1,a,2\n0,b\n")
    assert main(["convert", str(tmp_path / "log.csv"), str(tmp_path / "c.cache"), "--label", "click",
                 "--numeric", "price"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "log.csv:3: 2 columns, expected 3" in err
    assert main(["convert", str(tmp_path / "log.csv"), str(tmp_path / "c.cache"), "--numeric", "price"]) == 2
    assert "needs --label COL" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "log.csv"), str(tmp_path / "c.cache"), "--label", "click",
                 "--numeric-bins", "1"]) == 2
    assert np.isscalar(1)


def test_a_pipe_is_refused_before_it_is_opened(tmp_path):
    import os

    fifo = tmp_path / "log.csv"
    os.mkfifo(fifo)  # nobody writes to it: opening it would block forever
    with pytest.raises(ValueError, match=r"log\.csv: cannot read a raw log \(it is read twice.*it is a pipe"):
        fastafm.convert(fifo, tmp_path / "c.cache", label="click")
