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


def test_frappe_shape_and_compare():
    fwfm_speed.main(["--shape", "frappe", "--rows", "300", "--epochs", "1", "--rounds", "1", "--threads", "1",
                     "--no-modern", "--no-peak"])
    X, _, fields = fwfm_speed.shape_rows("frappe", 40)
    assert np.all(np.diff(X.indptr) == 10) and X.shape[1] == fields.shape[0] == 5382
    rates = fwfm_speed.compare("frappe", 4, 2500, 1, 1, 2, names=("fastafm FwFM", "fastafm FM"))
    assert set(rates) == {"fastafm FwFM", "fastafm FM"} and all(len(v) == 2 and min(v) > 0 for v in rates.values())


def test_shape_sweep_renders_the_fm_peers_table():
    import argparse

    import shape_sweep

    args = argparse.Namespace(threads=2, rounds=3)
    res = {("criteo", 16): {"fastafm FwFM": [40.0, 50.0, 45.0], "modern-fm FwFM": [10.0, 11.0, 12.0],
                            "fastafm FM": [300.0], "modern-fm FM": [100.0]}}
    lines = shape_sweep.fm_peers_markdown(res, args)
    assert lines[-1] == "| criteo | 16 | 45 | 11 | 300 | 100 | 4.09x | 3.00x |"
