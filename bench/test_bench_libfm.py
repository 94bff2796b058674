"""libFM parsing: fastafm.load_libfm against sklearn.datasets.load_svmlight_file on the same ~100 MB file.

The file is the real Frappe validation file (or a synthetic Frappe-shaped one when ../shared/data is absent)
replicated to --bench-libfm-mb megabytes in a temporary directory. Both parsers must give the same matrix
and labels (checked once, outside the timing).
"""
from __future__ import annotations

import numpy as np
import pytest

import data
import harness


@pytest.fixture(scope="module")
def libfm_file(settings, tmp_path_factory):
    path = data.replicated_libfm(int(settings.libfm_mb * 1e6), tmp_path_factory.mktemp("libfm"))
    yield path
    path.unlink(missing_ok=True)


def _load_sklearn(path):
    from sklearn.datasets import load_svmlight_file

    return load_svmlight_file(str(path), n_features=data.FRAPPE_N_FEATURES, dtype=np.float32, zero_based=True)


def _load_fastafm(path):
    import fastafm

    return fastafm.load_libfm(path, n_features=data.FRAPPE_N_FEATURES)


def test_libfm_same_result(libfm_file):
    """Not a benchmark: both parsers read the same rows, ids, values and labels."""
    X1, y1 = _load_fastafm(libfm_file)
    X2, y2 = _load_sklearn(libfm_file)
    X1 = X1.copy()
    X1.sort_indices()  # sklearn sorts the ids of a row; fastafm keeps file order (Frappe's is sorted anyway)
    assert X1.shape == X2.shape
    np.testing.assert_array_equal(np.asarray(X1.indptr, np.int64), np.asarray(X2.indptr, np.int64))
    np.testing.assert_array_equal(X1.indices, X2.indices)
    np.testing.assert_array_equal(X1.data, X2.data)
    np.testing.assert_array_equal(y1, y2.astype(np.float32))


@pytest.mark.parametrize("impl", ["fastafm", "sklearn"])
def test_libfm(benchmark, settings, peak, libfm_file, impl):
    benchmark.group = "libfm"
    size = libfm_file.stat().st_size
    with open(libfm_file, "rb") as fh:
        n_rows = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 22), b""))
    harness.record(benchmark, peak, impl=impl, shape=f"libfm {size / 1e6:.0f}MB", items=n_rows, nbytes=size,
                   threads=1, file_bytes=size)
    fn = _load_fastafm if impl == "fastafm" else _load_sklearn
    X, y = benchmark.pedantic(fn, args=(libfm_file,), rounds=settings.rounds, warmup_rounds=0 if settings.smoke else 1)
    harness.finish(benchmark)
    assert X.shape[0] == n_rows == y.shape[0]
