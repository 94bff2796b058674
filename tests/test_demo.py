"""The main job: `fastafm demo` runs end to end, reports both models and finds the planted pairs."""
from __future__ import annotations

import subprocess
import sys

from fastafm.demo import PLANTED, run_demo


def test_demo_small_run_finds_planted_pairs():
    lines = []
    result = run_demo(n_rows=20000, n_epochs=10, n_threads=2, verbose=0, out=lines.append)
    text = "\n".join(lines)
    assert "uniform pooling (FM-like): test RMSE" in text and "AFM (attention): test RMSE" in text
    assert result["afm_rmse"] < result["fm_rmse"]
    top3 = {(a, b) for a, b, _ in result["top_pairs"][:3]}
    assert top3 == set(PLANTED)


def test_cli_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "fastafm", "demo", "--rows", "3000", "--epochs", "2", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "AFM's RMSE is" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "fastafm", "nonsense"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
