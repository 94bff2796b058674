"""Fuzzer of raw-log conversion (fastafm.convert of CSV/TSV text with a schema, fastafm.rawlog), differential
between its two routes: the cache `convert` writes, and the same file encoded again with the encoding the cache
stores (`fastafm.rawlog.encode_rows`, what `model.predict` of raw rows does). The first byte of an input picks
the schema (header or not, comma or tab, vocabulary or hash buckets, min_frequency, numeric bins or scaling);
the rest is the file. The run fails (atheris saves the input) when:
  * convert raises anything but ValueError (or MemoryError), crashes or hangs, or a ValueError does not name the
    file;
  * it leaves a cache behind after failing;
  * the cache's rows are not well formed (ids within n_features, finite values and labels, every row with one
    non-zero per field), or differ in one bit from the rows encode_rows makes of the same file, or its labels
    from encode_rows' labels.

Run (see docs/reliability.md):
    python fuzz/fuzz_rawlog.py -max_total_time=600 -timeout=10 -max_len=2048 /tmp/corpus-rawlog fuzz/corpus/rawlog
Without atheris, `test_one_input` is what tests/test_fuzz_corpus.py replays over the seed corpus.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastafm  # noqa: E402
from fastafm.rawlog import encode_rows  # noqa: E402

SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def schema_of(flags: int) -> tuple:
    """(file suffix, convert keywords) chosen by the bits of the input's first byte."""
    header = not flags & 1
    suffix = ".tsv" if flags & 2 else ".csv"
    opts: dict = dict(header=header, progress=False)
    opts["label"] = "y" if header else 0
    if flags & 4:
        opts["numeric"] = ["n"] if header else [1]
    if flags & 8:
        opts["hash_buckets"] = 7
    if flags & 16 and "hash_buckets" not in opts:  # (the two together are refused: an option error, not fuzzed)
        opts["min_frequency"] = 2
    if flags & 32 and "numeric" in opts:
        opts["numeric_bins"] = 3
    return suffix, opts


def test_one_input(data: bytes) -> None:
    if not data:
        return
    suffix, opts = schema_of(data[0])
    base = os.path.join(SCRATCH, f"fastafm-fuzz-raw-{os.getpid()}")
    path, dest = base + suffix, base + ".cache"
    with open(path, "wb") as fh:
        fh.write(data[1:])
    try:
        _check(path, dest, opts)
    finally:
        for name in (path, dest):
            if os.path.exists(name):
                os.unlink(name)


def _check(path: str, dest: str, opts: dict) -> None:
    try:
        cache = fastafm.convert(path, dest, **opts)
    except MemoryError:
        return
    except ValueError as exc:
        assert os.path.basename(path) in str(exc) or "column" in str(exc) or "label" in str(exc), str(exc)
        assert not os.path.exists(dest), "a failed convert left its cache behind"
        return
    X, y = cache.read_rows(0, cache.n_rows)
    assert np.isfinite(X.data).all() and np.isfinite(y).all()
    assert X.indices.size == 0 or (X.indices.min() >= 0 and X.indices.max() < cache.n_features)
    widths = np.diff(X.indptr)
    assert np.all(widths == widths[0]), "rows of a raw log hold one non-zero per field"
    encoding = cache.read_encoding()
    X2, y2 = encode_rows(path, encoding, labels=True)
    assert X2.shape == X.shape, (X2.shape, X.shape)
    np.testing.assert_array_equal(X2.indptr, X.indptr)
    np.testing.assert_array_equal(X2.indices, X.indices)
    np.testing.assert_array_equal(X2.data.view(np.uint32), X.data.view(np.uint32))
    np.testing.assert_array_equal(np.asarray(y2, np.float32).view(np.uint32), y.view(np.uint32))


def main(argv) -> None:
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install atheris") from None
    from fuzz_load import instrument_modules
    from process_exit import skip_exit_destructors

    instrument_modules("fastafm.rawlog")
    skip_exit_destructors()
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
