"""Tests of the libFM / libSVM reader (fastafm.data.libfm.load_libfm over the C++ parser)."""

import os
import pathlib
import re

import numpy as np
import pytest
import scipy.sparse as sp

from fastafm.data.libfm import load_libfm


def write(tmp_path, content, name="data.libfm"):
    """Write `content` (str, or bytes for exact control) and return the path."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def check_shape_and_dtypes(X, y, n_rows, n_features):
    assert sp.issparse(X) and X.format == "csr"
    assert X.shape == (n_rows, n_features)
    assert X.dtype == np.float32
    assert y.dtype == np.float32
    assert y.shape == (n_rows,)


# --------------------------------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_basic(tmp_path, newline):
    text = newline.join(["1 0:1 3:2.5", "-1 1:0.5", "0 2:-3 4:1e2"]) + newline
    X, y = load_libfm(write(tmp_path, text))
    check_shape_and_dtypes(X, y, 3, 5)
    np.testing.assert_array_equal(y, [1, -1, 0])
    expected = np.array(
        [[1, 0, 0, 2.5, 0], [0, 0.5, 0, 0, 0], [0, 0, -3, 0, 100]], dtype=np.float32
    )
    np.testing.assert_array_equal(X.toarray(), expected)
    assert X.indices.dtype == np.int32


def test_tabs_and_runs_of_blanks(tmp_path):
    text = "1\t0:1\t \t2:2   \n \t -1  1:3\t\n"
    X, y = load_libfm(write(tmp_path, text))
    np.testing.assert_array_equal(y, [1, -1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 2], [0, 3, 0]])


def test_comments_and_blank_lines_are_skipped(tmp_path):
    text = (
        "# header comment\n"
        "\n"
        "1 0:1 # trailing comment with 5:5 inside\n"
        "   \t  \n"
        "\r\n"
        "   # indented comment\n"
        "-1 1:2#glued comment\n"
        "0# label then comment\n"
        "#\n"
    )
    X, y = load_libfm(write(tmp_path, text))
    check_shape_and_dtypes(X, y, 3, 2)
    np.testing.assert_array_equal(y, [1, -1, 0])
    np.testing.assert_array_equal(X.toarray(), [[1, 0], [0, 2], [0, 0]])


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_missing_final_newline(tmp_path, newline):
    X, y = load_libfm(write(tmp_path, f"1 0:1{newline}-1 1:2"))
    np.testing.assert_array_equal(y, [1, -1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0], [0, 2]])


def test_labels(tmp_path):
    labels = ["-1", "1", "0", "1.0", "+1", "3.5e-1", "-2.75", "1E2", ".5", "7."]
    text = "".join(f"{lab} 0:1\n" for lab in labels)
    X, y = load_libfm(write(tmp_path, text))
    np.testing.assert_array_equal(y, np.array([float(lab) for lab in labels], dtype=np.float32))


def test_real_values_round_like_numpy(tmp_path):
    values = ["0.1", "-2.5", "3.5e-1", "1e-3", "-7E+2", "123456789", "0.333333333333333333333", "0", "+4"]
    text = "1 " + " ".join(f"{i}:{v}" for i, v in enumerate(values)) + "\n"
    X, _ = load_libfm(write(tmp_path, text))
    expected = np.array([np.float32(float(v)) for v in values], dtype=np.float32)
    np.testing.assert_array_equal(X.data, expected)  # bit-exact float64 -> float32 rounding
    np.testing.assert_array_equal(X.indices, np.arange(len(values)))


def test_explicit_zero_is_kept(tmp_path):
    X, _ = load_libfm(write(tmp_path, "1 0:0 1:2\n"))
    assert X.nnz == 2
    np.testing.assert_array_equal(X.data, [0, 2])


def test_repeated_ids_are_kept_in_order(tmp_path):
    X, y = load_libfm(write(tmp_path, "1 3:1 3:2 1:5\n-1 0:1\n"))
    check_shape_and_dtypes(X, y, 2, 4)
    # neither summed nor sorted: each stored entry is its own non-zero
    np.testing.assert_array_equal(X.indptr, [0, 3, 4])
    np.testing.assert_array_equal(X.indices, [3, 3, 1, 0])
    np.testing.assert_array_equal(X.data, [1, 2, 5, 1])
    assert not X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), [[0, 5, 0, 3], [1, 0, 0, 0]])  # toarray sums them


def test_row_with_only_a_label(tmp_path):
    X, y = load_libfm(write(tmp_path, "1 0:1\n-1\n0 \t\n1 2:3\n"))
    check_shape_and_dtypes(X, y, 4, 3)
    np.testing.assert_array_equal(y, [1, -1, 0, 1])
    np.testing.assert_array_equal(X.indptr, [0, 1, 1, 1, 2])
    np.testing.assert_array_equal(X.getnnz(axis=1), [1, 0, 0, 1])


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n"], ids=["empty", "newlines", "comments"])
def test_no_rows(tmp_path, text):
    X, y = load_libfm(write(tmp_path, text))
    check_shape_and_dtypes(X, y, 0, 0)


def test_only_labels_gives_zero_features(tmp_path):
    X, y = load_libfm(write(tmp_path, "1\n-1\n"))
    check_shape_and_dtypes(X, y, 2, 0)
    X, y = load_libfm(write(tmp_path, "1\n-1\n"), n_features=4)
    check_shape_and_dtypes(X, y, 2, 4)


def test_largest_int32_id(tmp_path):
    X, _ = load_libfm(write(tmp_path, "1 2147483647:1 0:2\n"))
    assert X.shape == (1, 2**31)
    np.testing.assert_array_equal(X.indices, [2147483647, 0])


def test_leading_zeros_in_ids(tmp_path):
    X, _ = load_libfm(write(tmp_path, "1 007:1 0000000000000000000000012:2\n"))
    np.testing.assert_array_equal(X.indices, [7, 12])


def test_str_and_pathlike(tmp_path):
    path = write(tmp_path, "1 0:1\n")
    assert isinstance(path, pathlib.Path)
    for p in (path, str(path), os.fspath(path)):
        X, y = load_libfm(p)
        np.testing.assert_array_equal(X.toarray(), [[1]])


def test_agrees_with_sklearn(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    rng = np.random.default_rng(12345)
    fmts = ["{:.6g}", "{:d}", "{:.3e}", "{!r}", "{:.1f}"]
    lines = []
    for r in range(400):
        if r % 37 == 0:
            lines.append("# a comment line")
        if r % 53 == 0:
            lines.append("")
        label = ["1", "-1", "0", "1.0", f"{rng.normal():.4f}"][r % 5]
        k = int(rng.integers(0, 12))
        ids = np.sort(rng.choice(300, size=k, replace=False))  # sklearn wants sorted, unique ids
        toks = []
        for i in ids:
            fmt = fmts[int(rng.integers(len(fmts)))]
            v = int(rng.integers(-5, 6)) if fmt == "{:d}" else float(rng.normal() * 10.0 ** rng.integers(-4, 4))
            toks.append(f"{i}:" + fmt.format(v))
        sep = "\t" if r % 3 == 0 else " "
        line = sep.join([label, *toks])
        if r % 11 == 0:
            line += "  # trailing comment"
        lines.append(line)
    path = write(tmp_path, "\n".join(lines) + "\n")

    X, y = load_libfm(path)
    X_ref, y_ref = datasets.load_svmlight_file(str(path), zero_based=True, dtype=np.float64)
    assert X.shape == X_ref.shape
    np.testing.assert_array_equal(X.toarray(), X_ref.toarray().astype(np.float32))
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))
    np.testing.assert_array_equal(X.indptr, X_ref.indptr)
    np.testing.assert_array_equal(X.indices, X_ref.indices)


# --------------------------------------------------------------------------------------------------
# Malformed files: the error names the file and the 1-based line
# --------------------------------------------------------------------------------------------------

MALFORMED = [
    ("abc 1:1", "label 'abc' is not a number"),
    ("3:1 4:1", "label '3:1' is not a number"),
    ("1,2 3:1", "label '1,2' is not a number"),
    ("nan 1:1", "label 'nan' is not finite"),
    ("-inf 1:1", "label '-inf' is not finite"),
    ("1e39 1:1", "label '1e39' is out of the float32 range"),
    ("1 abc", "token 'abc' is not of the form id:value"),
    ("1 3 4:1", "token '3' is not of the form id:value"),
    ("1 3:", "value of feature 3 is empty"),
    ("1 3: 4:1", "value of feature 3 is empty"),
    ("1 :1", "feature id is empty"),
    ("1 -3:1", "feature id '-3' is negative"),
    ("1 2147483648:1", "feature id '2147483648' is beyond the int32 range"),
    ("1 99999999999999999999999:1", "is beyond the int32 range"),
    ("1 3x:1", "feature id '3x' is not a non-negative integer"),
    ("1 +3:1", "feature id '+3' is not a non-negative integer"),
    ("1 1.5:1", "feature id '1.5' is not a non-negative integer"),
    ("1 3:1.0abc", "value '1.0abc' of feature 3 is not a number"),
    ("1 12:abc", "value 'abc' of feature 12 is not a number"),
    ("1 3:1:2", "value '1:2' of feature 3 is not a number"),
    ("1 3:1e", "value '1e' of feature 3 is not a number"),
    ("1 3:0x10", "value '0x10' of feature 3 is not a number"),
    ("1 3:nan", "value 'nan' of feature 3 is not finite"),
    ("1 3:NaN", "value 'NaN' of feature 3 is not finite"),
    ("1 3:inf", "value 'inf' of feature 3 is not finite"),
    ("1 3:-Infinity", "value '-Infinity' of feature 3 is not finite"),
    ("1 3:1e39", "value '1e39' of feature 3 is out of the float32 range"),
    ("1 3:1e400", "value '1e400' of feature 3 is out of the float32 range"),
    ("1 qid:2 3:1", "qid tokens are not supported"),
    ("1 3:1 # a\0b", "NUL byte at column 10"),
    ("1\0 3:1", "NUL byte at column 2"),
    ("1 3:1\r4:1", r"value '1\r4:1' of feature 3 is not a number"),
]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("bad_line, fragment", MALFORMED, ids=[repr(c[0]) for c in MALFORMED])
def test_malformed_line(tmp_path, bad_line, fragment, newline):
    # The bad line is line 5, after a comment, a blank line and two good rows; a good row follows it.
    lines = ["# comment", "1 0:1", "", "-1 1:2", bad_line, "1 2:3"]
    path = write(tmp_path, newline.join(lines) + newline, name="bad_file.libfm")
    with pytest.raises(ValueError) as info:
        load_libfm(path)
    message = str(info.value)
    assert f"{path}:5: " in message
    assert "bad_file.libfm" in message
    assert fragment in message


@pytest.mark.parametrize("bad_line, fragment", MALFORMED, ids=[repr(c[0]) for c in MALFORMED])
def test_malformed_last_line_without_newline(tmp_path, bad_line, fragment):
    path = write(tmp_path, "1 0:1\n" + bad_line, name="last.libfm")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ")) as info:
        load_libfm(path)
    assert fragment in str(info.value)


def test_first_error_is_reported(tmp_path):
    path = write(tmp_path, "1 0:1\n1 0:x\n1 -1:1\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: value 'x' of feature 0 is not a number")):
        load_libfm(path)


def test_utf8_bom_is_rejected(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf1 0:1\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: ") + ".*byte-order mark"):
        load_libfm(path)


def test_long_token_is_truncated_in_message(tmp_path):
    path = write(tmp_path, "1 3:" + "9" * 500 + "x\n")
    with pytest.raises(ValueError) as info:
        load_libfm(path)
    message = str(info.value)
    assert "(501 bytes)" in message and len(message) < len(str(path)) + 200


# --------------------------------------------------------------------------------------------------
# n_features and the path
# --------------------------------------------------------------------------------------------------


def test_n_features(tmp_path):
    path = write(tmp_path, "1 0:1 4:2\n-1 2:3\n")
    X, _ = load_libfm(path)
    assert X.shape == (2, 5)
    X, _ = load_libfm(path, n_features=5)
    assert X.shape == (2, 5)
    X, _ = load_libfm(path, n_features=np.int64(9))
    assert X.shape == (2, 9)
    np.testing.assert_array_equal(X.toarray()[:, :5], [[1, 0, 0, 0, 2], [0, 0, 3, 0, 0]])
    assert not X.toarray()[:, 5:].any()


def test_n_features_too_small(tmp_path):
    path = write(tmp_path, "1 0:1 4:2\n-1 2:3\n")
    with pytest.raises(ValueError, match=r"feature id 4 .*n_features=4"):
        load_libfm(path, n_features=4)


@pytest.mark.parametrize("n_features", [0, -1, np.int32(-5)])
def test_n_features_not_positive(tmp_path, n_features):
    path = write(tmp_path, "1 0:1\n")
    with pytest.raises(ValueError, match="n_features must be a positive integer"):
        load_libfm(path, n_features=n_features)


@pytest.mark.parametrize("n_features", [2.0, "3", True, np.float32(4)])
def test_n_features_not_an_integer(tmp_path, n_features):
    path = write(tmp_path, "1 0:1\n")
    with pytest.raises(TypeError, match="n_features must be a positive integer"):
        load_libfm(path, n_features=n_features)


def test_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.libfm"
    for p in (path, str(path)):
        with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
            load_libfm(p)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_libfm(tmp_path)


def test_bad_path_type():
    with pytest.raises(TypeError):
        load_libfm(3)
