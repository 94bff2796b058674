"""The libFM/libSVM reader against the messy files of issue 5. Each case is either read as libSVM tools read it
or rejected with "{file}:{line}: {what}". (The grammar and the common malformed lines are in test_libfm.py;
this file adds the boundary values, odd bytes and very long lines.)

Case by case (the tests below, in order):
  empty lines, blank lines, comment-only lines    skipped, no row (as sklearn's load_svmlight_file)
  missing value "3:" / missing id ":1"            rejected (test_libfm.MALFORMED)
  non-numbers, "nan", "inf", hex                  rejected (test_libfm.MALFORMED)
  ids beyond int32                                rejected; 2147483647 is the largest id read
  huge values                                     read up to FLT_MAX (and what rounds to it), rejected beyond;
                                                  tiny ones underflow to 0 or a subnormal, as float32(float(s))
  tabs, runs of blanks, trailing blanks           separators
  "#" comments                                    to the end of the line, also glued to a token
  no final newline                                the last line is read
  NUL bytes                                       rejected, with the column
  a 100 MB single line                            read (or rejected at its bad token) in about a second
  a non-UTF-8 byte                                in a token: rejected, the byte shown escaped; in a comment: ignored
  vertical tab, form feed, a lone CR              not separators: part of a token, so the token is rejected
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from fastafm.data.libfm import load_libfm

FLT_MAX = float(np.finfo(np.float32).max)


def write(tmp_path, content, name="data.libfm"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def rejected(path, line, fragment):
    with pytest.raises(ValueError) as info:
        load_libfm(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("text", ["3.4028234e38", "3.40282346638528859811704183484516925440e38", "-3.4028235e38",
                                  "3.4028235677973362e38", "340282346638528859811704183484516925440"])
def test_values_up_to_float32_max_are_read(tmp_path, text):
    X, _ = load_libfm(write(tmp_path, f"1 0:{text}\n"))
    assert X.data[0] == np.float32(float(text)) and abs(X.data[0]) == np.float32(FLT_MAX)


@pytest.mark.parametrize("text", ["3.4028235677973366e38", "3.5e38", "-1e39", "1e309", "1e99999999999999999999",
                                  "9" * 400])
def test_values_beyond_float32_are_rejected(tmp_path, text):
    path = write(tmp_path, f"1 0:1\n-1 0:{text} 1:1\n")
    rejected(path, 2, "of feature 0 is out of the float32 range")


@pytest.mark.parametrize("text", ["1e-50", "-1e-46", "1e-400", "1e-99999999999999999999", "0." + "0" * 500 + "1",
                                  "1.4e-45", "1e-40"])
def test_tiny_values_round_like_numpy(tmp_path, text):
    X, _ = load_libfm(write(tmp_path, f"1 0:{text}\n"))
    with np.errstate(under="ignore"):
        expected = np.float32(float(text))
    assert X.data[0] == expected and np.signbit(X.data[0]) == np.signbit(expected)


def test_long_mantissas_round_correctly(tmp_path):
    values = ["0." + "3" * 300, "1" * 25 + ".5", "0.1000000000000000055511151231257827", "16777217", "16777216.5"]
    X, _ = load_libfm(write(tmp_path, "1 " + " ".join(f"{i}:{v}" for i, v in enumerate(values)) + "\n"))
    np.testing.assert_array_equal(X.data, [np.float32(float(v)) for v in values])


def test_largest_id_and_the_one_after(tmp_path):
    X, _ = load_libfm(write(tmp_path, "1 2147483647:1\n"))
    assert X.shape == (1, 2**31) and X.indices[0] == 2**31 - 1
    rejected(write(tmp_path, "1 2147483648:1\n", "b.libfm"), 1, "beyond the int32 range")
    rejected(write(tmp_path, "1 18446744073709551617:1\n", "c.libfm"), 1, "beyond the int32 range")


# ------------------------------------------------------------------------------------------- blanks


def test_tabs_trailing_blanks_and_no_final_newline(tmp_path):
    X, y = load_libfm(write(tmp_path, "1\t0:1 \t \n\t-1 \t1:2\t\t\n0 2:3   \t"))
    np.testing.assert_array_equal(y, [1, -1, 0])
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0], [0, 2, 0], [0, 0, 3]])


@pytest.mark.parametrize("sep,shown", [("\v", r"\x0b"), ("\f", r"\x0c"), ("\r", r"\r"), ("\xa0", r"\xc2\xa0")])
def test_other_whitespace_is_not_a_separator(tmp_path, sep, shown):
    path = write(tmp_path, f"1 0:1\n1 0:1{sep}1:2\n".encode())
    message = rejected(path, 2, "of feature 0 is not a number")
    assert shown in message


def test_only_blank_and_comment_lines_among_rows(tmp_path):
    X, y = load_libfm(write(tmp_path, "\n\n  \n\t\n#\n # x\n1 0:1\n\n\n-1 1:1\n\n"))
    np.testing.assert_array_equal(y, [1, -1])


# -------------------------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("where,content,line,fragment", [
    ("label", b"1 0:1\n\xff 0:1\n", 2, r"label '\xff' is not a number"),
    ("value", b"1 0:1\n1 0:1\xe9\n", 2, r"value '1\xe9' of feature 0 is not a number"),
    ("id", b"1 0:1\n1 \xc3\xa93:1\n", 2, r"feature id '\xc3\xa93' is not a non-negative integer"),
    ("lone UTF-8 continuation", b"1 0:1 \x80\n", 1, r"token '\x80' is not of the form id:value"),
    ("NUL in a blank line", b"1 0:1\n \x00 \n", 2, "NUL byte at column 2"),
    ("NUL in a comment line", b"1 0:1\n# \x00\n", 2, "NUL byte at column 3"),
    ("NUL at the very end", b"1 0:1\n\x00", 2, "NUL byte at column 1"),
    ("BOM", b"\xef\xbb\xbf1 0:1\n", 1, "byte-order mark"),
    ("UTF-16", "1 0:1\n".encode("utf-16"), 1, "NUL byte at column 4"),
])
def test_odd_bytes_are_rejected_and_shown_escaped(tmp_path, where, content, line, fragment):
    message = rejected(write(tmp_path, content), line, "")
    assert fragment in message or re.search(fragment, message), message
    message.encode("ascii")  # the message itself is plain ASCII (only the path could add other characters)


def test_non_utf8_bytes_in_comments_are_ignored(tmp_path):
    X, y = load_libfm(write(tmp_path, b"# caf\xe9 \xff\xfe\n1 0:1 # \xc3\x28 bad UTF-8\n-1 1:2#\x80\n"))
    np.testing.assert_array_equal(y, [1, -1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0], [0, 2]])


def test_non_utf8_file_name(tmp_path):
    name = b"bad\xffname.libfm"
    path = tmp_path / name.decode("utf-8", "surrogateescape")
    path.write_bytes(b"1 0:1\n1 0:x\n")
    with pytest.raises(ValueError, match=re.escape(r"bad\xffname.libfm:2: value 'x' of feature 0")):
        load_libfm(path)
    path.write_bytes(b"1 0:1\n")
    assert load_libfm(path)[0].nnz == 1
    assert load_libfm(str(tmp_path).encode() + b"/" + name)[0].nnz == 1


# ---------------------------------------------------------------------------------------- long lines

MB100 = 100 * 2**20


def _line_100mb():
    """One 100 MB line holding every kind of long token: an id with 25 MB of leading zeros, a value of 25 MB
    of digits, 25 MB of features with 1 KB values, and a 25 MB comment."""
    quarter = MB100 // 4
    token = b"0.5" + b"0" * 1000 + b"1"  # rounds to 0.5
    n_long = quarter // (len(token) + 6)
    features = b" ".join(b"%d:%s" % (i % 1000, token) for i in range(n_long))
    line = (b"1 " + b"0" * quarter + b"5:2 3:2." + b"0" * quarter + b" " + features + b" #" + b"c" * (quarter + 65536))
    return line, n_long


def test_100mb_single_line(tmp_path):
    line, n_long = _line_100mb()
    assert len(line) > MB100
    X, y = load_libfm(write(tmp_path, line + b"\n-1 3:1"))
    assert y.tolist() == [1, -1] and X.indptr.tolist() == [0, n_long + 2, n_long + 3]
    assert X.indices[:2].tolist() == [5, 3] and X.data[:2].tolist() == [2, 2]
    assert np.all(X.data[2:-1] == np.float32(0.5))


def test_100mb_single_line_with_a_bad_last_token(tmp_path):
    line, _ = _line_100mb()
    bad = line[: line.rindex(b" #")] + b" 7:1x" + line[line.rindex(b" #"):]
    rejected(write(tmp_path, b"# header\n" + bad), 2, "value '1x' of feature 7 is not a number")


@pytest.mark.slow
def test_100mb_single_line_of_26_million_features(tmp_path):
    """The realistic worst case: one row of 26 million short features (about 2-4 s, hence slow)."""
    n = MB100 // 4
    X, y = load_libfm(write(tmp_path, b"1 " + b"7:1 " * n + b"\n"))
    assert X.shape == (1, 8) and X.nnz == n and y.tolist() == [1]
