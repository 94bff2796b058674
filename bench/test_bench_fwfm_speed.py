"""bench/fwfm_speed.py runs (the smoke test of the FwFM-against-modern-fm benchmark; its figures are in
bench/RESULTS.md), and its rows give every feature one field."""
from __future__ import annotations

import numpy as np

import fwfm_speed


def test_fwfm_speed_script_runs(capsys):
    fwfm_speed.main(["--rows", "300", "--epochs", "1", "--rounds", "1", "--threads", "1", "--no-modern",
                     "--no-peak"])
    out = capsys.readouterr().out
    assert "fastafm   median" in out and "fields=39" in out


def test_rows_are_one_hot_per_field():
    X, y, fields = fwfm_speed.criteo_fielded(50)
    assert X.shape[1] == fields.shape[0] and np.all(np.diff(X.indptr) == 39)
    for r in range(5):
        ids = X.indices[X.indptr[r]:X.indptr[r + 1]]
        np.testing.assert_array_equal(fields[ids], np.arange(39))
