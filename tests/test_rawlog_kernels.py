"""The raw-log pipeline's C++ string kernels (cpp/src/value_table.cpp): FNV-1a 64 bit for bit the NumPy
definition of fastafm.rawlog.hashing, the ValueTable of distinct values against a Python dict (ids in first-seen
order, counts, growth past many table sizes, lookups without insertion), their argument checks, and the
one-parse conversion (statistics pass spilling its ids, then mapped) against encoding the same file afresh."""
from __future__ import annotations

import numpy as np
import pytest

import fastafm
from fastafm import _core
from fastafm.rawlog import RawSchema, fnv1a64
from fastafm.rawlog.hashing import fnv1a64_bytes
from fastafm.rawlog.pipeline import convert_raw, encode_rows
from fastafm.rawlog.strings import ValueCounts, hash_strings, string_buffers

pa = pytest.importorskip("pyarrow")


def _random_strings(rng, n, distinct, missing=0.1):
    alphabet = list("ab\u00e9\u4e2dxyz01 \t,")
    pool = ["".join(rng.choice(alphabet, rng.integers(0, 12))) for _ in range(distinct)]
    return [None if rng.random() < missing else pool[i] for i in rng.integers(0, distinct, n)]


@pytest.mark.parametrize("large", [False, True])
def test_fnv1a64_in_cpp_is_the_numpy_definition(large):
    rng = np.random.default_rng(1)
    values = _random_strings(rng, 3000, 800) + ["", "a", "foobar", None]
    array = pa.array(values, type=pa.large_string() if large else pa.string())
    want = [0 if v is None else fnv1a64_bytes(v.encode()) for v in values]
    assert hash_strings(array).tolist() == want
    assert fnv1a64(array).tolist() == want
    # published FNV-1a 64 vectors
    assert hash_strings(pa.array(["", "a", "foobar"])).tolist() == [
        0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]
    for lo, hi in ((0, 1), (5, 17), (2999, 3004), (100, 100)):  # slices: an offset into the buffers
        assert hash_strings(array.slice(lo, hi - lo)).tolist() == want[lo:hi]
    assert hash_strings(pa.chunked_array([array.slice(0, 7), array.slice(7, 9)])).tolist() == want[:16]


@pytest.mark.parametrize("distinct", [1, 5, 3000, 40000])
def test_value_table_counts_like_a_dict(distinct):
    rng = np.random.default_rng(distinct)
    counts = ValueCounts()
    seen: dict = {}
    for part in range(3):
        values = _random_strings(rng, 20000, distinct) if distinct > 5 else \
            [None if rng.random() < 0.2 else f"v{rng.integers(distinct)}" for _ in range(500)]
        array = pa.array(values, type=pa.string())
        if part == 1:
            array = array.slice(3, len(array) - 10)
            values = values[3:len(values) - 7]
        ids = counts.add(array)
        want = []
        for v in values:
            if v is None:
                want.append(-1)
            else:
                seen.setdefault(v, [len(seen), 0])[1] += 1
                want.append(seen[v][0])
        assert ids.tolist() == want
    got_values, got_counts = counts.strings()
    assert got_values.to_pylist() == list(seen)
    assert got_counts.tolist() == [c for _, c in seen.values()]
    assert counts.size() == len(seen)
    # lookups only: seen values keep their ids, unseen ones are -1, nothing is counted or added
    probe = pa.array(list(seen)[:50] + ["never seen", None])
    ids = counts.table.add(*string_buffers(probe), insert=False)
    assert ids.tolist() == list(range(min(50, len(seen)))) + [-1, -1]
    assert counts.size() == len(seen) and counts.strings()[1].tolist() == got_counts.tolist()


def test_value_table_of_floats_keys_by_bits():
    counts = ValueCounts()
    x = np.array([1.0, 2.5, np.nan, 1.0, 0.0, 2.5, 1.0, 1e300])
    assert counts.add_floats(x).tolist() == [0, 1, -1, 0, 2, 1, 0, 3]
    values, c = counts.floats()
    assert values.tolist() == [1.0, 2.5, 0.0, 1e300] and c.tolist() == [3, 2, 1, 1]
    many = np.random.default_rng(0).integers(0, 5000, 30000).astype(np.float64)
    counts = ValueCounts()
    ids = counts.add_floats(many)
    values, c = counts.floats()
    np.testing.assert_array_equal(values[ids], many)
    u, n = np.unique(many, return_counts=True)
    np.testing.assert_array_equal(np.sort(values), u)
    np.testing.assert_array_equal(c[np.argsort(values)], n)


def test_the_string_kernels_check_their_arguments():
    t = _core.ValueTable()
    data = np.frombuffer(b"abcdef", dtype=np.uint8)
    with pytest.raises(ValueError, match="non-decreasing"):
        t.add(np.array([0, 3, 2], dtype=np.int32), data)
    with pytest.raises(ValueError, match="non-negative"):
        _core.fnv1a64_strings(np.array([-1, 3], dtype=np.int64), data)
    with pytest.raises(ValueError, match="past the end"):
        t.add(np.array([0, 3, 7], dtype=np.int32), data)
    with pytest.raises(TypeError, match="int32 or int64"):
        t.add(np.array([0, 3], dtype=np.float64), data)
    with pytest.raises(TypeError, match="data must have dtype uint8"):
        t.add(np.array([0, 3], dtype=np.int32), np.zeros(6, np.int16))
    with pytest.raises(ValueError, match="fewer bits"):
        t.add(np.array([0, 1, 2], dtype=np.int32), data, np.zeros(1, np.uint8), 7)
    with pytest.raises(ValueError, match="skip has shape"):
        t.add_keys(np.zeros(3, np.uint64), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="n \\+ 1"):
        _core.fnv1a64_strings(np.zeros(0, np.int32), data)
    assert len(t) == 0  # nothing was added by the refused calls


@pytest.mark.parametrize("kw", [dict(), dict(min_frequency=3), dict(hash_buckets=1000),
                                dict(numeric_bins=None, numeric_missing="indicator"), dict(numeric_bins=4)])
def test_one_parse_writes_what_encoding_the_file_afresh_gives(tmp_path, kw):
    """The spilled first-seen ids mapped to the vocabulary equal the rows RawEncoding.encode gives the same text
    (the route of predict): many distinct values (the table grows), many small blocks, groups of rows."""
    rng = np.random.default_rng(4)
    n = 30000
    lines = ["y,a,b,c,num"]
    pool = [f"k{i}" for i in range(20000)]
    for i in range(n):
        a = pool[int(rng.pareto(1.0) * 50) % len(pool)] if rng.random() > 0.1 else ""
        b = rng.choice(["x", "y", "z", ""])
        c = pool[rng.integers(0, len(pool))]
        num = "" if rng.random() < 0.1 else str(int(rng.geometric(0.2)))
        lines.append(f"{i % 2},{a},{b},{c},{num}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    cache = convert_raw(path, tmp_path / "c.cache", RawSchema(label="y", numeric=["num"], **kw),
                        read_block_bytes=8192)
    X, y = cache.read_rows(0, cache.n_rows)
    X_ref, y_ref = encode_rows(str(path), cache.read_encoding(), labels=True)
    assert cache.n_rows == n
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(X.indptr, X_ref.indptr)
    np.testing.assert_array_equal(X.indices, X_ref.indices)
    np.testing.assert_array_equal(X.data, X_ref.data)
    enc = cache.read_encoding()
    if "hash_buckets" not in kw:
        a_cats = enc.fields[0]["categories"]
        want = sorted({v for v in (line.split(",")[1] for line in lines[1:]) if v})
        if "min_frequency" not in kw:
            assert a_cats == want
    assert not list(tmp_path.glob(".fastafm-spill-*"))  # the temporary file is gone


def test_a_bad_line_after_many_good_ones_still_names_it_and_leaves_no_spill(tmp_path):
    lines = ["y,a,num"] + [f"{i % 2},v{i % 77},{i % 5}" for i in range(5000)]
    lines[4321] = "1,v3,abc"
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"log.csv:4322: column 'num' \(#2\): 'abc' is not a number"):
        fastafm.convert(path, tmp_path / "c.cache", label="y", numeric=["num"])
    lines[4321] = ",v3,1"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"log.csv:4322: the label \(column y\) is missing"):
        fastafm.convert(path, tmp_path / "c.cache", label="y", numeric=["num"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_a_value_too_large_after_scaling_names_its_line_from_the_spill(tmp_path):
    """The error is raised while the spill is mapped (after the pass): it still names the file and line, across
    the batches a group of rows holds."""
    lines = ["y,a,num"] + [f"{i % 2},v{i % 7},{i % 5}" for i in range(3000)]
    lines[2345] = "1,v1,1e39"  # finite in float64, not in float32 (no scaling keeps it as it is)
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"log.csv:2346: column num: 1e\+39 is too large for float32"):
        convert_raw(path, tmp_path / "c.cache", RawSchema(label="y", numeric=["num"], numeric_scaling=None,
                                                          numeric_bins=None), read_block_bytes=4096)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]
