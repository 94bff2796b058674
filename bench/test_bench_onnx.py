"""bench/onnx_latency.py runs (the smoke test of the ONNX serving benchmark; its figures are in docs/serving.md)."""
from __future__ import annotations

import json

import onnx_latency


def test_onnx_latency_script_runs(tmp_path, capsys):
    out = tmp_path / "latency.json"
    result = onnx_latency.main(["--k", "8", "--rows", "100", "--batches", "1,7", "--repeats", "3", "--threads", "1",
                                "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert [(c["model"], c["rows"]) for c in result["cases"]] == [("AFM", 1), ("AFM", 7), ("FM", 1), ("FM", 7)]
    assert all(c["max_rel_error"] <= 1e-5 and c["onnx"]["median_us"] > 0 for c in result["cases"])
    assert "onnx median" in capsys.readouterr().out
