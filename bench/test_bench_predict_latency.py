"""bench/predict_latency.py runs (the smoke test of the small-prediction benchmark; its figures are in
bench/RESULTS.md)."""
from __future__ import annotations

import json

import predict_latency


def test_predict_latency_script_runs(tmp_path, capsys):
    out = tmp_path / "latency.json"
    result = predict_latency.main(["--k", "8", "--rows", "200", "--batches", "1,9", "--repeats", "3",
                                   "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["rows"] for r in result["rows"]] == [1, 9]
    assert all(r[kind]["median_us"] > 0 for r in result["rows"] for kind in ("csr", "dense"))
    assert set(result["one_row_parts"]) == {"as_csr (validation)", "memory check", "core predict (binding + kernels)"}
    assert "one CSR row:" in capsys.readouterr().out
