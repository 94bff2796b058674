"""The conversion's speed-ups (issue 23) keep its results: several columns counted in one core call on threads
(ValueTable.add_columns) as one column at a time; Arrow columns read into NumPy from their buffers
(fastafm.rawlog.arrow_numpy) as pyarrow reads them, without importing pandas; batches produced on a thread of
their own (fastafm.rawlog.prefetch) in order, with the producer's errors and an early stop handled."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from fastafm import _core
from fastafm.rawlog.arrow_numpy import float64_values, int64_array, integer_values, null_mask
from fastafm.rawlog.prefetch import prefetched
from fastafm.rawlog.strings import ValueCounts, count_columns, string_buffers

pa = pytest.importorskip("pyarrow")


def _column(rng, n, distinct, large=False, missing=0.1):
    pool = [f"{i:x}" * int(rng.integers(1, 4)) for i in rng.integers(0, 10**9, distinct)]
    values = [None if rng.random() < missing else pool[i] for i in rng.integers(0, distinct, n)]
    return pa.array(values, type=pa.large_string() if large else pa.string())


@pytest.mark.parametrize("n_threads", [0, 1, 2, 5])
def test_columns_counted_together_as_one_at_a_time(n_threads):
    rng = np.random.default_rng(n_threads)
    together = [ValueCounts() for _ in range(7)]
    alone = [ValueCounts() for _ in range(7)]
    for _ in range(3):  # batches: ids continue across calls
        columns = [_column(rng, 2000, d, large=bool(j % 2)) for j, d in enumerate((1, 3, 50, 400, 3000, 1, 9000))]
        columns[2] = columns[2].slice(5, 1500)  # an offset into the buffers
        ids = count_columns(together, columns, n_threads)
        for j, col in enumerate(columns):
            np.testing.assert_array_equal(ids[j], alone[j].add(col))
    for a, b in zip(together, alone):
        assert a.strings()[0].equals(b.strings()[0])
        np.testing.assert_array_equal(a.strings()[1], b.strings()[1])
    assert count_columns([], []) == []


def test_add_columns_refuses_bad_arguments():
    t = _core.ValueTable()
    buffers = (np.array([0, 1], np.int32), np.frombuffer(b"a", np.uint8), None, 0)
    with pytest.raises(ValueError, match="twice"):
        _core.ValueTable.add_columns([t, t], [buffers, buffers])
    with pytest.raises(ValueError, match="one column per table"):
        _core.ValueTable.add_columns([t], [buffers, buffers])
    with pytest.raises(ValueError, match="offsets"):
        _core.ValueTable.add_columns([t], [(np.array([0, 5], np.int32), np.frombuffer(b"a", np.uint8), None, 0)])
    with pytest.raises(ValueError, match="n_threads"):
        _core.ValueTable.add_columns([t], [buffers], -1)
    assert len(t) == 0


def _csv_batch(text: bytes, types: dict):
    import io

    import pyarrow.csv as pcsv

    names = list(types)
    reader = pcsv.open_csv(io.BytesIO(text), read_options=pcsv.ReadOptions(column_names=names),
                           parse_options=pcsv.ParseOptions(delimiter="\t"),
                           convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""],
                                                               strings_can_be_null=True))
    return reader.read_all()


def test_float_columns_read_from_their_buffers():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=500) * 100, 3)
    missing = rng.random(500) < 0.3
    lines = [("" if m else repr(float(v))) + "\t" + repr(float(v)) for v, m in zip(x, missing)]
    table = _csv_batch(("\n".join(lines) + "\n").encode(), {"a": pa.float64(), "b": pa.float64()})
    a = table.column("a")
    got = float64_values(a)
    np.testing.assert_array_equal(np.isnan(got), missing)
    np.testing.assert_array_equal(got[~missing], x[~missing])
    np.testing.assert_array_equal(null_mask(a), missing)
    np.testing.assert_array_equal(float64_values(table.column("b")), x)
    assert not null_mask(table.column("b")).any()
    sliced = a.combine_chunks().slice(7, 100)  # an offset into the buffers, bits not byte-aligned
    np.testing.assert_array_equal(null_mask(sliced), missing[7:107])
    np.testing.assert_array_equal(float64_values(sliced)[~missing[7:107]], x[7:107][~missing[7:107]])
    ints = pa.Array.from_buffers(pa.int32(), 3, [None, pa.py_buffer(np.array([4, 5, 6], np.int32))])
    np.testing.assert_array_equal(float64_values(ints), [4.0, 5.0, 6.0])  # cast first
    assert float64_values(a.slice(0, 0)).shape == (0,)
    np.testing.assert_array_equal(integer_values(int64_array(np.array([3, -1, 7]))), [3, -1, 7])
    np.testing.assert_array_equal(integer_values(int64_array(np.arange(10)).slice(4, 3)), [4, 5, 6])
    with pytest.raises(ValueError, match="missing"):
        integer_values(pa.Array.from_buffers(pa.int64(), 1, [pa.py_buffer(np.zeros(1, np.uint8)),
                                                             pa.py_buffer(np.zeros(1, np.int64))], null_count=1))


def test_a_conversion_does_not_import_pandas(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("1\t3\t\tab\n0\t\t2.5\tcd\n1\t7\t1\t\n" * 50)
    code = ("import sys, fastafm; fastafm.convert(sys.argv[1], sys.argv[2], label=0, numeric=[1, 2], header=False);"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "c.cache")], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_prefetched_items_arrive_in_order():
    assert list(prefetched(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetched([])) == []


def test_a_producer_error_reaches_the_consumer_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("line 3: bad")

    got = []
    with pytest.raises(ValueError, match="line 3: bad"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_and_closes_the_producer():
    closed = threading.Event()
    produced = []

    def items():
        try:
            for i in range(10**6):
                produced.append(i)
                yield i
        finally:
            closed.set()

    for item in prefetched(items(), depth=2):
        if item == 5:
            break
    assert closed.wait(5)
    assert len(produced) <= 5 + 1 + 2 + 1  # the consumer's, the queue's and the one waiting to be put
    with pytest.raises(KeyError):
        for item in prefetched(items()):
            raise KeyError(item)


@pytest.mark.parametrize("alphabet", ["0123456789abcdef", "ab \t\"\\\x7f\x01é中😀,:[]"])
def test_a_vocabulary_is_written_as_json_dumps_writes_it(alphabet):
    import json
    import pickle

    from fastafm.rawlog.encoding import RawEncoding
    from fastafm.rawlog.json_strings import SortedStrings, json_array

    rng = np.random.default_rng(len(alphabet))
    values = sorted({"".join(rng.choice(list(alphabet), int(rng.integers(0, 9)))) for _ in range(3000)})
    for typ in (pa.string(), pa.large_string()):
        array = pa.array(values, type=typ)
        assert json_array(array) == json.dumps(values, separators=(",", ":")).encode()
        assert json_array(array.slice(5, 40)) == json.dumps(values[5:45], separators=(",", ":")).encode()
    assert json_array(pa.array([], type=pa.string())) == b"[]"
    lazy = SortedStrings(pa.array(values, type=pa.large_string()))
    assert len(lazy) == len(values) and lazy[3] == values[3] and list(lazy) == values and lazy == values
    assert pickle.loads(pickle.dumps(lazy)) == values
    fields = [{"column": "c1", "kind": "category", "categories": values[:10]},
              {"column": "n", "kind": "numeric", "center": 0.5, "scale": 2.0, "missing": "zero"},
              {"column": "c2", "kind": "category", "categories": values}]
    source = {"columns": ["y", "c1", "n", "c2"], "label": "y"}
    plain = RawEncoding(fields, source)
    spliced = RawEncoding([dict(fields[0], categories=SortedStrings(pa.array(values[:10]))), fields[1],
                           dict(fields[2], categories=SortedStrings(pa.array(values)))], source)
    assert spliced.to_json() == plain.to_json()
    assert spliced.n_features == plain.n_features
    assert RawEncoding.from_json(spliced.to_json(), "x") == plain


def test_values_that_differ_only_in_length_or_past_their_eighth_byte_stay_apart():
    """A slot holds a value's first 8 bytes and its length up to 255: NUL padding, long values that differ only
    in length (>= 255 bytes) or past the 8th byte, and growth (the table rehashes from the bytes) keep them
    apart."""
    base = ["", "a", "ab", "ab\0", "ab\0\0\0\0\0\0", "ab\0\0\0\0\0\0\0", "abcdefgh", "abcdefghi", "abcdefghj"]
    long = ["x" * n for n in (254, 255, 256, 300, 511)] + ["x" * 300 + "y", "x" * 299 + "y"]
    many = [f"{i:08x}" for i in range(5000)]  # several growths
    values = base + long + many
    counts = ValueCounts()
    order = values + values[::-1] + base
    ids = counts.add(pa.array(order, type=pa.string()))
    first = {v: i for i, v in enumerate(values)}
    np.testing.assert_array_equal(ids, [first[v] for v in order])
    stored, n = counts.strings()
    assert stored.to_pylist() == values
    np.testing.assert_array_equal(n, [3 if v in base else 2 for v in values])
    probe = pa.array(["ab\0\0", "x" * 257, "abcdefgk"] + base, type=pa.string())
    np.testing.assert_array_equal(counts.table.add(*string_buffers(probe), insert=False),
                                  [-1, -1, -1] + [first[v] for v in base])


def test_an_error_while_writing_stops_the_mapping_thread(tmp_path):
    import fastafm

    path = tmp_path / "log.tsv"
    path.write_text("1\t3\tab\n0\t\tcd\n" * 40000)  # two spill groups
    with pytest.raises(ValueError, match="weights"):
        fastafm.convert(str(path), str(tmp_path / "c.cache"), label=0, numeric=[1], header=False,
                        weights=np.ones(5, np.float32))
    assert not [t for t in threading.enumerate() if t.name == "fastafm-prefetch"]
    assert not list(tmp_path.glob(".fastafm-*"))  # the spill and the sections removed


@pytest.mark.parametrize("weighted", [False, True])
def test_a_cache_written_in_place_is_the_cache_written_by_sections(tmp_path, monkeypatch, weighted):
    """convert_raw announces every section's size, so the sections are written in place (no copy): the same
    bytes as the sections written apart and copied."""
    import fastafm
    from fastafm.data import convert as data_convert

    path = tmp_path / "log.tsv"
    rng = np.random.default_rng(0)
    path.write_text("".join(f"{rng.integers(2)}\t{rng.integers(9) if rng.random() < 0.8 else ''}\t"
                            f"c{rng.integers(50)}\n" for _ in range(70000)))
    w = rng.uniform(0.5, 2.0, 70000).astype(np.float32) if weighted else None
    kw = dict(label=0, numeric=[1], header=False, weights=w)
    fastafm.convert(str(path), str(tmp_path / "in_place.cache"), **kw)
    write_cache = data_convert.write_cache
    monkeypatch.setattr(data_convert, "write_cache", lambda *a, known=None: write_cache(*a))
    fastafm.convert(str(path), str(tmp_path / "copied.cache"), **kw)
    assert (tmp_path / "in_place.cache").read_bytes() == (tmp_path / "copied.cache").read_bytes()
    c = fastafm.CacheFile(str(tmp_path / "in_place.cache"))
    X, y = c.read_rows(0, c.n_rows)
    assert X.shape[0] == 70000 and c.has_weights == weighted


def test_sizes_announced_wrongly_are_an_error_not_a_broken_cache(tmp_path):
    from fastafm.data.convert import write_cache

    chunk = (np.array([0, 1], np.int64), np.array([0], np.int32), np.ones(1, np.float32), np.ones(1, np.float32), 0)
    with pytest.raises(RuntimeError, match="differ from the sizes announced"):
        write_cache(iter([chunk]), "x", str(tmp_path / "c.cache"), 1, None, 1 << 20, known={"rows": 2, "nnz": 2})
    assert not list(tmp_path.iterdir())
    write_cache(iter([chunk]), "x", str(tmp_path / "c.cache"), 1, None, 1 << 20, known={"rows": 1, "nnz": 1})
    assert fastafm_cache_rows(tmp_path / "c.cache") == 1


def fastafm_cache_rows(path) -> int:
    import fastafm

    return int(fastafm.CacheFile(str(path)).n_rows)
