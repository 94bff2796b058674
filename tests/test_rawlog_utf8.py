"""Raw logs that are not UTF-8 text: a clear ValueError at the first bad byte, with its line and column, in
every read (convert's passes, predict of raw rows), never pyarrow's unnumbered error or an ignored exception."""
from __future__ import annotations

import gzip

import pytest

import fastafm

pytest.importorskip("pyarrow")  # the test extra (tests/test_environment.py fails without it)


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz"])
@pytest.mark.parametrize("body, where", [
    (b"1,x,p\n0,\xe9t\xe9,q\n", ":3: column 3 "),   # latin-1 in a row of the right width
    (b"1,x,p\n0,ok,q\n1,\xff\n", ":4: column 3 "),  # in a row of the wrong width (pyarrow's handler failed)
])
def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path, name, body, where):
    data = b"y,a,b\n" + body
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ValueError, match=rf"{name}{where}\(byte offset in the line\): byte 0x.. is not UTF-8"):
        fastafm.convert(path, tmp_path / "out.cache", label="y", progress=False)
    assert not (tmp_path / "out.cache").exists()


def test_predict_of_raw_rows_checks_them_too(tmp_path):
    good = tmp_path / "train.csv"
    good.write_bytes(b"y,a,b\n" + b"1,x,p\n0,y,q\n" * 40)
    cache = fastafm.convert(good, tmp_path / "t.cache", label="y", progress=False)
    model = fastafm.FMClassifier(embedding_dim=2, n_epochs=1, random_state=0).fit(cache)
    bad = tmp_path / "new.csv"
    bad.write_bytes(b"y,a,b\n1,x,p\n1,\xc3(,p\n")
    with pytest.raises(ValueError, match=r"new\.csv:3: column 3 .*byte 0xc3 is not UTF-8"):
        model.predict(str(bad))
